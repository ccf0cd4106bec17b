#include <git2.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "checkout_test_repo.h"
#include "supervisor/checkout/materialize.h"
#include "supervisor/checkout/mirrors.h"
#include "supervisor/checkout/tree_status.h"

namespace sbx::supervisor::checkout {
namespace {

using testing::FileSpec;
using testing::Hex;
using testing::RawEntry;
using testing::Repo;
using testing::TempDir;

template <typename T>
std::string ErrorText(const Result<T>& r) {
  return r.ok() ? "ok" : r.error().ToString();
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every path under `root` (not following symlinks) with its lstat mode.
std::map<std::string, mode_t> Listing(const std::string& root) {
  std::map<std::string, mode_t> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
    struct stat st {};
    EXPECT_EQ(::lstat(e.path().c_str(), &st), 0);
    // Not std::filesystem::relative: it resolves symlinks.
    out[e.path().string().substr(root.size() + 1)] = st.st_mode;
  }
  return out;
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// Restores the umask at the end of a scope.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }

 private:
  mode_t old_;
};

class CheckoutMaterialize : public ::testing::Test {
 protected:
  CheckoutMaterialize() : origin_(tmp_ / "origin.git", /*bare=*/true) {}

  // A commit whose tree is `tree`, in the origin (used directly as the mirror).
  std::string CommitOf(const git_oid& tree) { return origin_.CommitTree(tree, "c"); }

  // Materialize must fail with kInvalidArgument, leaving neither dest nor anything outside.
  void ExpectRefused(const git_oid& tree, const std::string& why) {
    const std::string sha = CommitOf(tree);
    const std::string dest = tmp_ / "refused";
    auto r = Materialize(origin_.path(), sha, dest);
    ASSERT_FALSE(r.ok()) << why << ": the tree was written";
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << why << ": " << ErrorText(r);
    EXPECT_FALSE(Exists(dest)) << why << ": what was written stayed";
  }

  TempDir tmp_;
  Repo origin_;
};

TEST_F(CheckoutMaterialize, WritesExactlyTheTreeThroughAMirror) {
  const std::vector<FileSpec> files = {
      {"README.md", "# hello\n"},
      {"empty", ""},
      {"bin/run.sh", "#!/bin/sh\necho run\n", 0100755},
      {"src/lib/deep/x.cc", "int x;\n"},
      {"src/main.cc", "int main() {}\n"},
      {"link-to-readme", "README.md", 0120000},
      {"src/up", "../bin/run.sh", 0120000},
      {"dangling", "/nonexistent/target", 0120000},
  };
  const std::string sha = origin_.Commit(files, "tree");
  Mirrors mirrors(tmp_ / "mirrors");
  auto mirror = mirrors.Ensure(origin_.path(), sha);
  ASSERT_TRUE(mirror.ok()) << ErrorText(mirror);

  const std::string dest = tmp_ / "checkout";
  ScopedUmask mask(077);  // the modes must not depend on it
  auto manifest = Materialize(*mirror, sha, dest);
  ASSERT_TRUE(manifest.ok()) << ErrorText(manifest);

  const std::map<std::string, mode_t> expected = {
      {"README.md", S_IFREG | 0644},    {"empty", S_IFREG | 0644},
      {"bin", S_IFDIR | 0755},          {"bin/run.sh", S_IFREG | 0755},
      {"src", S_IFDIR | 0755},          {"src/lib", S_IFDIR | 0755},
      {"src/lib/deep", S_IFDIR | 0755}, {"src/lib/deep/x.cc", S_IFREG | 0644},
      {"src/main.cc", S_IFREG | 0644},  {"link-to-readme", S_IFLNK | 0777},
      {"src/up", S_IFLNK | 0777},       {"dangling", S_IFLNK | 0777},
  };
  EXPECT_EQ(Listing(dest), expected);
  struct stat st {};
  ASSERT_EQ(::stat(dest.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode, S_IFDIR | 0755);
  EXPECT_FALSE(Exists(dest + "/.git"));

  for (const FileSpec& f : files) {
    if (f.mode == 0120000) {
      char buf[256];
      const ssize_t n = ::readlink((dest + "/" + f.path).c_str(), buf, sizeof(buf));
      ASSERT_GT(n, 0) << f.path;
      EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), f.content) << f.path;
    } else {
      EXPECT_EQ(ReadAll(dest + "/" + f.path), f.content) << f.path;
    }
  }

  EXPECT_EQ(manifest->commit, sha);
  git_oid commit_oid{};
  git_oid_fromstr(&commit_oid, sha.c_str());
  git_commit* commit = nullptr;
  ASSERT_EQ(git_commit_lookup(&commit, origin_.get(), &commit_oid), 0);
  EXPECT_EQ(manifest->tree, Hex(*git_commit_tree_id(commit)));
  git_commit_free(commit);
  ASSERT_EQ(manifest->entries.size(), files.size());
  std::map<std::string, TreeEntry> by_path;
  for (const TreeEntry& e : manifest->entries) by_path[e.path] = e;
  for (const FileSpec& f : files) {
    ASSERT_EQ(by_path.count(f.path), 1u) << f.path;
    const TreeEntry& e = by_path[f.path];
    EXPECT_EQ(e.mode, f.mode) << f.path;
    EXPECT_EQ(e.oid, Hex(origin_.Blob(f.content))) << f.path;
    EXPECT_EQ(e.size, f.content.size()) << f.path;
  }
  EXPECT_TRUE(manifest->skipped.empty());
}

TEST_F(CheckoutMaterialize, DestMustNotExistAndItsParentMust) {
  const std::string sha = origin_.Commit({{"f", "x\n"}}, "c");
  const std::string dest = tmp_ / "taken";
  ASSERT_EQ(::mkdir(dest.c_str(), 0700), 0);
  ASSERT_EQ(::symlink("/", (tmp_ / "keep").c_str()), 0);
  auto r = Materialize(origin_.path(), sha, dest);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kAlreadyExists) << ErrorText(r);
  EXPECT_TRUE(Exists(dest)) << "an existing directory was removed";
  EXPECT_TRUE(Listing(dest).empty());
  EXPECT_FALSE(Materialize(origin_.path(), sha, tmp_ / "keep").ok());
  EXPECT_FALSE(Materialize(origin_.path(), sha, tmp_ / "no/such/parent").ok());
}

TEST_F(CheckoutMaterialize, AnUnknownCommitOrMirrorIsNotFoundAndWritesNothing) {
  origin_.Commit({{"f", "x\n"}}, "c");
  const std::string dest = tmp_ / "checkout";
  auto r = Materialize(origin_.path(), "0123456789abcdef0123456789abcdef01234567", dest);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound) << ErrorText(r);
  EXPECT_FALSE(Exists(dest));
  r = Materialize(tmp_ / "no-mirror", "0123456789abcdef0123456789abcdef01234567", dest);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound) << ErrorText(r);
  r = Materialize(origin_.path(), "HEAD", dest);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << ErrorText(r);
  EXPECT_FALSE(Exists(dest));
}

TEST_F(CheckoutMaterialize, TraversalNamesAreRefused) {
  const git_oid blob = origin_.Blob("pwned\n");
  ExpectRefused(origin_.RawTree({{"100644", "..", blob}}), "'..'");
  ExpectRefused(origin_.RawTree({{"100644", ".", blob}}), "'.'");
  ExpectRefused(origin_.RawTree({{"100644", "a/b", blob}}), "a name with '/'");
  ExpectRefused(origin_.RawTree({{"100644", "../../escape", blob}}), "'../../escape'");
  ExpectRefused(origin_.RawTree({{"100644", "/etc/passwd", blob}}), "an absolute name");
  const git_oid inner = origin_.RawTree({{"100644", "..", blob}});
  ExpectRefused(origin_.RawTree({{"100644", "ok", blob}, {"40000", "sub", inner}}),
                "'..' in a subtree, after a file was written");
  EXPECT_FALSE(Exists(tmp_ / "pwned"));
}

TEST_F(CheckoutMaterialize, GitDirectoriesInAnyCaseAreRefused) {
  const git_oid config = origin_.Blob("[core]\n\thooksPath = /tmp\n");
  const git_oid git_dir = origin_.RawTree({{"100644", "config", config}});
  for (const char* name : {".git", ".GIT", ".Git", ".gIt"}) {
    ExpectRefused(origin_.RawTree({{"40000", name, git_dir}}), name);
    ExpectRefused(origin_.RawTree({{"100644", name, config}}), std::string(name) + " as a file");
    const git_oid sub = origin_.RawTree({{"40000", name, git_dir}});
    ExpectRefused(origin_.RawTree({{"40000", "vendor", sub}}), std::string("vendor/") + name);
  }
}

TEST_F(CheckoutMaterialize, APathThroughAnEarlierSymlinkIsRefusedAndNothingLandsOutside) {
  TempDir outside;
  const git_oid target = origin_.Blob(outside.path());
  const git_oid payload = origin_.Blob("pwned\n");
  const git_oid sub = origin_.RawTree({{"100644", "x", payload}});
  // "a" -> <outside> first, then a tree "a" holding "x": writing a/x would go through the link.
  ExpectRefused(origin_.RawTree({{"120000", "a", target}, {"40000", "a", sub}}),
                "a symlink and a tree of one name");
  // The same one level down.
  const git_oid nested =
      origin_.RawTree({{"100644", "first", payload}, {"120000", "a", target}, {"40000", "a", sub}});
  ExpectRefused(origin_.RawTree({{"40000", "dir", nested}}), "the same in a subdirectory");
  // A symlink and a file of one name.
  ExpectRefused(origin_.RawTree({{"120000", "a", target}, {"100644", "a", payload}}),
                "a symlink and a file of one name");
  ExpectRefused(origin_.RawTree({{"100644", "a", payload}, {"100644", "a", payload}}),
                "a file twice");
  EXPECT_TRUE(Listing(outside.path()).empty()) << "something was written outside dest";
}

TEST_F(CheckoutMaterialize, ASymlinkPointingOutsideIsWrittenButNeverFollowed) {
  TempDir outside;
  const std::string sha =
      origin_.Commit({{"a", outside.path(), 0120000}, {"b/x", "inside\n"}}, "links");
  const std::string dest = tmp_ / "checkout";
  auto manifest = Materialize(origin_.path(), sha, dest);
  ASSERT_TRUE(manifest.ok()) << ErrorText(manifest);
  char buf[4096];
  const ssize_t n = ::readlink((dest + "/a").c_str(), buf, sizeof(buf));
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), outside.path());
  EXPECT_TRUE(Listing(outside.path()).empty());
}

TEST_F(CheckoutMaterialize, BadSymlinkTargetsAndObjectsAreRefused) {
  ExpectRefused(origin_.RawTree({{"120000", "l", origin_.Blob(std::string("a\0b", 3))}}),
                "a target with NUL");
  ExpectRefused(origin_.RawTree({{"120000", "l", origin_.Blob("")}}), "an empty target");
  ExpectRefused(origin_.RawTree({{"120000", "l", origin_.Blob(std::string(5000, 'a'))}}),
                "a target too long");
  const git_oid tree = origin_.RawTree({{"100644", "f", origin_.Blob("x")}});
  ExpectRefused(origin_.RawTree({{"100644", "f", tree}}), "a file that is a tree");
}

TEST_F(CheckoutMaterialize, SubmodulesAreSkippedAndListedAndEmptyTreesAreNotMade) {
  const git_oid blob = origin_.Blob("x\n");
  git_oid sub_commit{};
  git_oid_fromstr(&sub_commit, "89abcdef0123456789abcdef0123456789abcdef");
  const git_oid empty = origin_.RawTree({});
  const git_oid only_empty = origin_.RawTree({{"40000", "inner", empty}});
  const git_oid vendor = origin_.RawTree({{"160000", "lib", sub_commit}});
  const std::string sha = CommitOf(origin_.RawTree({{"100644", "f", blob},
                                                    {"40000", "nothing", empty},
                                                    {"40000", "nothing2", only_empty},
                                                    {"40000", "vendor", vendor}}));
  const std::string dest = tmp_ / "checkout";
  auto manifest = Materialize(origin_.path(), sha, dest);
  ASSERT_TRUE(manifest.ok()) << ErrorText(manifest);
  EXPECT_EQ(manifest->skipped, std::vector<std::string>{"vendor/lib"});
  const std::map<std::string, mode_t> expected = {
      {"f", S_IFREG | 0644}, {"vendor", S_IFDIR | 0755}, {"vendor/lib", S_IFDIR | 0755}};
  EXPECT_EQ(Listing(dest), expected);
  ASSERT_EQ(manifest->entries.size(), 1u);
  auto status = CheckClean(dest, *manifest);
  ASSERT_TRUE(status.ok()) << ErrorText(status);
  EXPECT_TRUE(status->clean());
}

TEST_F(CheckoutMaterialize, LimitsStopTheCheckoutAndRemoveWhatWasWritten) {
  const std::string sha =
      origin_.Commit({{"a/b/c/d.txt", "1234567890"}, {"e.txt", "1234567890"}, {"f.txt", "x"}}, "c");
  const std::string dest = tmp_ / "checkout";
  MaterializeLimits entries;
  entries.max_entries = 4;
  MaterializeLimits depth;
  depth.max_depth = 2;
  MaterializeLimits bytes;
  bytes.max_bytes = 15;
  for (const MaterializeLimits& limits : {entries, depth, bytes}) {
    auto r = Materialize(origin_.path(), sha, dest, std::nullopt, limits);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kResourceExhausted) << ErrorText(r);
    EXPECT_FALSE(Exists(dest));
  }
  MaterializeLimits enough;
  enough.max_entries = 6;
  enough.max_depth = 3;
  enough.max_bytes = 21;
  auto r = Materialize(origin_.path(), sha, dest, std::nullopt, enough);
  EXPECT_TRUE(r.ok()) << ErrorText(r);
}

TEST_F(CheckoutMaterialize, OwnerIsAppliedToEverything) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown to another uid needs root (CAP_CHOWN)";
  const std::string sha =
      origin_.Commit({{"f", "x\n"}, {"d/g", "y\n", 0100755}, {"d/l", "../f", 0120000}}, "c");
  const std::string dest = tmp_ / "checkout";
  const uid_t uid = 64123;
  const gid_t gid = 64124;
  auto manifest = Materialize(origin_.path(), sha, dest, std::make_pair(uid, gid));
  ASSERT_TRUE(manifest.ok()) << ErrorText(manifest);
  std::vector<std::string> paths = {dest};
  for (const auto& [p, mode] : Listing(dest)) paths.push_back(dest + "/" + p);
  ASSERT_EQ(paths.size(), 5u) << ::testing::PrintToString(Listing(dest));
  for (const std::string& p : paths) {
    struct stat st {};
    ASSERT_EQ(::lstat(p.c_str(), &st), 0) << p;
    EXPECT_EQ(st.st_uid, uid) << p;
    EXPECT_EQ(st.st_gid, gid) << p;
  }
  struct stat st {};
  ASSERT_EQ(::lstat((dest + "/d/g").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u) << "chown cleared or changed the mode";
}

TEST_F(CheckoutMaterialize, WithoutOwnerTheCallerOwnsEverything) {
  const std::string sha = origin_.Commit({{"f", "x\n"}, {"d/l", "../f", 0120000}}, "c");
  const std::string dest = tmp_ / "checkout";
  ASSERT_TRUE(Materialize(origin_.path(), sha, dest).ok());
  for (const std::string& p : {dest, dest + "/f", dest + "/d", dest + "/d/l"}) {
    struct stat st {};
    ASSERT_EQ(::lstat(p.c_str(), &st), 0) << p;
    EXPECT_EQ(st.st_uid, ::geteuid()) << p;
  }
}

}  // namespace
}  // namespace sbx::supervisor::checkout
