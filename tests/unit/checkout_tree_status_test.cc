#include <fcntl.h>
#include <git2.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "checkout_test_repo.h"
#include "supervisor/checkout/blob_hash.h"
#include "supervisor/checkout/materialize.h"
#include "supervisor/checkout/remove_tree.h"
#include "supervisor/checkout/tree_status.h"

namespace sbx::supervisor::checkout {
namespace {

using testing::FileSpec;
using testing::Repo;
using testing::TempDir;
using Paths = std::vector<std::string>;

template <typename T>
std::string ErrorText(const Result<T>& r) {
  return r.ok() ? "ok" : r.error().ToString();
}
std::string ErrorText(const Status& s) { return s.ok() ? "ok" : s.error().ToString(); }

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  ASSERT_TRUE(out.good()) << path;
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

class CheckoutTreeStatus : public ::testing::Test {
 protected:
  CheckoutTreeStatus() : origin_(tmp_ / "origin.git", /*bare=*/true) {}

  TreeManifest Checkout(const std::vector<FileSpec>& files) {
    const std::string sha = origin_.Commit(files, "c");
    auto manifest = Materialize(origin_.path(), sha, dest_);
    EXPECT_TRUE(manifest.ok()) << ErrorText(manifest);
    return manifest.ok() ? *manifest : TreeManifest{};
  }

  TempDir tmp_;
  Repo origin_;
  std::string dest_ = tmp_ / "checkout";
};

const std::vector<FileSpec> kFiles = {
    {"README", "readme\n"},    {"same-size", "abcdef\n"}, {"grows", "short\n"},
    {"script", "#!/bin/sh\n"}, {"gone", "bye\n"},         {"link", "README", 0120000},
    {"src/a.cc", "int a;\n"},  {"src/b.cc", "int b;\n"},  {"docs/guide/intro.md", "intro\n"},
};

TEST_F(CheckoutTreeStatus, AnUntouchedTreeIsClean) {
  const TreeManifest manifest = Checkout(kFiles);
  auto status = CheckClean(dest_, manifest);
  ASSERT_TRUE(status.ok()) << ErrorText(status);
  EXPECT_TRUE(status->clean());
  EXPECT_TRUE(status->modified.empty());
  EXPECT_TRUE(status->deleted.empty());
  EXPECT_TRUE(status->untracked.empty());
  EXPECT_FALSE(status->capped);
}

TEST_F(CheckoutTreeStatus, ListsExactlyWhatChanged) {
  const TreeManifest manifest = Checkout(kFiles);
  WriteFile(dest_ + "/same-size", "ABCDEF\n");  // same length: found by its hash
  WriteFile(dest_ + "/grows", "much longer now\n");
  ASSERT_EQ(::chmod((dest_ + "/script").c_str(), 0755), 0);
  ASSERT_EQ(::unlink((dest_ + "/gone").c_str()), 0);
  ASSERT_EQ(::unlink((dest_ + "/link").c_str()), 0);
  ASSERT_EQ(::symlink("src/a.cc", (dest_ + "/link").c_str()), 0);
  WriteFile(dest_ + "/new.txt", "new\n");
  ASSERT_EQ(::mkdir((dest_ + "/build").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dest_ + "/build/obj").c_str(), 0755), 0);
  WriteFile(dest_ + "/build/obj/a.o", "obj");
  WriteFile(dest_ + "/src/c.cc", "int c;\n");  // untracked, in a tracked directory

  auto status = CheckClean(dest_, manifest);
  ASSERT_TRUE(status.ok()) << ErrorText(status);
  EXPECT_EQ(status->modified, (Paths{"grows", "link", "same-size", "script"}));
  EXPECT_EQ(status->deleted, (Paths{"gone"}));
  EXPECT_EQ(status->untracked, (Paths{"build/", "new.txt", "src/c.cc"}));
  EXPECT_FALSE(status->capped);
  EXPECT_FALSE(status->clean());

  // A mode change that git does not see (group write) is no change; restoring the rest is clean.
  const TreeManifest again = manifest;
  ASSERT_TRUE(RemoveTree(dest_).ok());
  ASSERT_TRUE(Materialize(origin_.path(), manifest.commit, dest_).ok());
  ASSERT_EQ(::chmod((dest_ + "/README").c_str(), 0664), 0);
  status = CheckClean(dest_, again);
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(status->clean()) << status->modified.size();
}

TEST_F(CheckoutTreeStatus, TypeChangesAreModifications) {
  const TreeManifest manifest = Checkout(kFiles);
  // A file replaced by a symlink to an identical file, a symlink by a file with its target.
  ASSERT_EQ(::unlink((dest_ + "/README").c_str()), 0);
  WriteFile(tmp_ / "copy", "readme\n");
  ASSERT_EQ(::symlink((tmp_ / "copy").c_str(), (dest_ + "/README").c_str()), 0);
  ASSERT_EQ(::unlink((dest_ + "/link").c_str()), 0);
  WriteFile(dest_ + "/link", "README");
  ASSERT_EQ(::unlink((dest_ + "/gone").c_str()), 0);
  ASSERT_EQ(::mkdir((dest_ + "/gone").c_str(), 0755), 0);
  auto status = CheckClean(dest_, manifest);
  ASSERT_TRUE(status.ok()) << ErrorText(status);
  EXPECT_EQ(status->modified, (Paths{"README", "gone", "link"}));
  EXPECT_TRUE(status->deleted.empty());
  EXPECT_TRUE(status->untracked.empty());
}

TEST_F(CheckoutTreeStatus, ADeletedDirectoryListsItsFilesAndASymlinkInItsPlaceIsNotFollowed) {
  const TreeManifest manifest = Checkout(kFiles);
  ASSERT_TRUE(RemoveTree(dest_ + "/src").ok());
  // docs/ replaced by a symlink to a directory holding the same files: not followed.
  TempDir outside;
  ASSERT_EQ(::mkdir((outside / "guide").c_str(), 0755), 0);
  WriteFile(outside / "guide/intro.md", "intro\n");
  ASSERT_TRUE(RemoveTree(dest_ + "/docs").ok());
  ASSERT_EQ(::symlink(outside.path().c_str(), (dest_ + "/docs").c_str()), 0);
  auto status = CheckClean(dest_, manifest);
  ASSERT_TRUE(status.ok()) << ErrorText(status);
  EXPECT_TRUE(status->modified.empty());
  EXPECT_EQ(status->deleted, (Paths{"docs/guide/intro.md", "src/a.cc", "src/b.cc"}));
  EXPECT_EQ(status->untracked, (Paths{"docs"}));
}

TEST_F(CheckoutTreeStatus, ASubmoduleDirectoryMustStayEmpty) {
  git_oid sub{};
  git_oid_fromstr(&sub, "89abcdef0123456789abcdef0123456789abcdef");
  const git_oid tree =
      origin_.RawTree({{"100644", "f", origin_.Blob("x")},
                       {"40000", "vendor", origin_.RawTree({{"160000", "lib", sub}})}});
  auto manifest = Materialize(origin_.path(), origin_.CommitTree(tree, "c"), dest_);
  ASSERT_TRUE(manifest.ok()) << ErrorText(manifest);
  WriteFile(dest_ + "/vendor/lib/file", "x");
  auto status = CheckClean(dest_, *manifest);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->untracked, (Paths{"vendor/lib/"}));
  ASSERT_TRUE(RemoveTree(dest_ + "/vendor/lib").ok());
  status = CheckClean(dest_, *manifest);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->deleted, (Paths{"vendor/lib"}));
  EXPECT_TRUE(status->untracked.empty());
}

TEST_F(CheckoutTreeStatus, TheWalkAndTheListsAreBounded) {
  std::vector<FileSpec> files;
  for (int i = 0; i < 20; ++i) files.push_back({fmt::format("d{}/f", i), "x"});
  const TreeManifest manifest = Checkout(files);
  for (int i = 0; i < 5; ++i) WriteFile(fmt::format("{}/u{}", dest_, i), "u");
  CheckCleanLimits few;
  few.max_entries = 10;
  auto status = CheckClean(dest_, manifest, few);
  ASSERT_TRUE(status.ok()) << ErrorText(status);
  EXPECT_TRUE(status->capped);
  EXPECT_FALSE(status->clean());
  EXPECT_TRUE(status->deleted.empty())
      << "unvisited files were reported deleted: " << status->deleted.front();
  CheckCleanLimits short_lists;
  short_lists.max_reported = 2;
  status = CheckClean(dest_, manifest, short_lists);
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(status->capped);
  EXPECT_EQ(status->untracked.size(), 2u);
  status = CheckClean(dest_, manifest);
  ASSERT_TRUE(status.ok());
  EXPECT_FALSE(status->capped);
  EXPECT_EQ(status->untracked.size(), 5u);
}

TEST_F(CheckoutTreeStatus, AMissingOrSymlinkedDirectoryIsAnError) {
  const TreeManifest manifest = Checkout(kFiles);
  auto status = CheckClean(tmp_ / "nothing-here", manifest);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, ErrorCode::kNotFound);
  ASSERT_EQ(::symlink(dest_.c_str(), (tmp_ / "via-link").c_str()), 0);
  EXPECT_FALSE(CheckClean(tmp_ / "via-link", manifest).ok());
}

TEST(CheckoutBlobHash, MatchesLibgit2) {
  git_libgit2_init();
  for (size_t size : {0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 1000, 65536, 65537, 300000}) {
    std::string content(size, '\0');
    for (size_t i = 0; i < size; ++i) content[i] = static_cast<char>((i * 131 + 7) % 251);
    git_oid oid{};
    ASSERT_EQ(git_odb_hash(&oid, content.data(), content.size(), GIT_OBJECT_BLOB), 0);
    EXPECT_EQ(GitBlobId(content), testing::Hex(oid)) << size;

    TempDir tmp;
    WriteFile(tmp / "f", content);
    const int fd = ::open((tmp / "f").c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    auto id = GitBlobIdOfFd(fd, size);
    ::close(fd);
    ASSERT_TRUE(id.ok()) << ErrorText(id);
    EXPECT_EQ(*id, testing::Hex(oid)) << size;
  }
  // The empty blob, as git knows it.
  EXPECT_EQ(GitBlobId(""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
}

TEST(CheckoutBlobHash, AFileOfAnotherSizeThanExpectedIsAnError) {
  TempDir tmp;
  WriteFile(tmp / "f", "12345");
  for (uint64_t expected : {4u, 6u}) {
    const int fd = ::open((tmp / "f").c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    auto id = GitBlobIdOfFd(fd, expected);
    ::close(fd);
    ASSERT_FALSE(id.ok()) << expected;
    EXPECT_EQ(id.error().code, ErrorCode::kFailedPrecondition);
  }
}

class CheckoutRemoveTree : public ::testing::Test {
 protected:
  TempDir tmp_;
};

TEST_F(CheckoutRemoveTree, RemovesATreeWithReadOnlyDirectoriesAndLeavesSymlinkTargets) {
  TempDir outside;
  WriteFile(outside / "precious", "keep me\n");
  ASSERT_EQ(::mkdir((outside / "dir").c_str(), 0755), 0);
  WriteFile(outside / "dir/also", "keep\n");
  const std::string root = tmp_ / "tree";
  ASSERT_EQ(::mkdir(root.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((root + "/ro").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((root + "/ro/inner").c_str(), 0755), 0);
  WriteFile(root + "/ro/inner/f", "x");
  WriteFile(root + "/ro/g", "y");
  ASSERT_EQ(::symlink((outside / "precious").c_str(), (root + "/ro/to-file").c_str()), 0);
  ASSERT_EQ(::symlink((outside / "dir").c_str(), (root + "/to-dir").c_str()), 0);
  ASSERT_EQ(::mkdir((root + "/locked").c_str(), 0755), 0);
  WriteFile(root + "/locked/h", "z");
  ASSERT_EQ(::chmod((root + "/ro/inner").c_str(), 0555), 0);
  ASSERT_EQ(::chmod((root + "/ro").c_str(), 0555), 0);
  ASSERT_EQ(::chmod((root + "/locked").c_str(), 0), 0);
  ASSERT_EQ(::chmod(root.c_str(), 0555), 0);

  Status s = RemoveTree(root);
  ASSERT_TRUE(s.ok()) << ErrorText(s);
  EXPECT_FALSE(Exists(root));
  std::ifstream in(outside / "precious");
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "keep me");
  EXPECT_TRUE(Exists(outside / "dir/also"));
  // Gone already: success.
  EXPECT_TRUE(RemoveTree(root).ok());
}

TEST_F(CheckoutRemoveTree, RemovesAMaterializedTree) {
  Repo origin(tmp_ / "origin.git", true);
  const std::string sha =
      origin.Commit({{"a/b/c", "x"}, {"exe", "y", 0100755}, {"l", "/etc", 0120000}}, "c");
  const std::string dest = tmp_ / "checkout";
  ASSERT_TRUE(Materialize(origin.path(), sha, dest).ok());
  ASSERT_TRUE(RemoveTree(dest).ok());
  EXPECT_FALSE(Exists(dest));
  EXPECT_TRUE(Exists("/etc/passwd") || Exists("/etc/hostname"));
}

TEST_F(CheckoutRemoveTree, ASymlinkOrAFileIsNotATreeToRemove) {
  TempDir outside;
  WriteFile(outside / "f", "x");
  ASSERT_EQ(::symlink(outside.path().c_str(), (tmp_ / "link").c_str()), 0);
  Status s = RemoveTree(tmp_ / "link");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kInvalidArgument);
  EXPECT_TRUE(Exists(outside / "f"));
  EXPECT_TRUE(Exists(tmp_ / "link"));
  // A trailing slash does not make it followed either.
  EXPECT_FALSE(RemoveTree(tmp_ / "link/").ok());
  EXPECT_TRUE(Exists(outside / "f"));
  WriteFile(tmp_ / "file", "x");
  EXPECT_FALSE(RemoveTree(tmp_ / "file").ok());
}

TEST_F(CheckoutRemoveTree, RemovesTreesDeeperThanTheDescriptorLimit) {
  const std::string root = tmp_ / "deep";
  ASSERT_EQ(::mkdir(root.c_str(), 0755), 0);
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  for (int i = 0; i < 3000; ++i) {
    ASSERT_EQ(::mkdirat(fd, "d", 0755), 0) << i;
    const int next = ::openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ::close(fd);
    ASSERT_GE(next, 0);
    fd = next;
  }
  WriteFile(fmt::format("/proc/self/fd/{}/leaf", fd), "x");
  ::close(fd);
  Status s = RemoveTree(root);
  ASSERT_TRUE(s.ok()) << ErrorText(s);
  EXPECT_FALSE(Exists(root));
}

TEST_F(CheckoutRemoveTree, NeverCrossesAMountPoint) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting needs root";
  const std::string root = tmp_ / "tree";
  ASSERT_EQ(::mkdir(root.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((root + "/mnt").c_str(), 0755), 0);
  WriteFile(root + "/other", "x");
  // In a child with a mount namespace of its own, so nothing stays mounted on the host.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::unshare(CLONE_NEWNS) != 0) ::_exit(77);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(77);
    if (::mount("tmpfs", (root + "/mnt").c_str(), "tmpfs", 0, "size=1m") != 0) ::_exit(77);
    {
      std::ofstream out(root + "/mnt/inside");
      out << "mounted";
    }
    Status s = RemoveTree(root);
    if (s.ok() || s.error().code != ErrorCode::kFailedPrecondition) ::_exit(1);
    if (s.error().message.find("mnt") == std::string::npos) ::_exit(2);
    if (!Exists(root + "/mnt/inside")) ::_exit(3);  // crossed into the mount
    if (Exists(root + "/other")) ::_exit(4);        // the rest must be gone
    ::_exit(0);
  }
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus));
  if (WEXITSTATUS(wstatus) == 77) GTEST_SKIP() << "no mount namespace here";
  EXPECT_EQ(WEXITSTATUS(wstatus), 0) << "see the exit codes in the child";
}

}  // namespace
}  // namespace sbx::supervisor::checkout
