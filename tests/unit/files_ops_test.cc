// Stat, read, write, mkdir, remove and move on a temp-directory root, as the test's own user
// (no id switch): the semantics and the bounds. The hostile races and the id switch are in
// tests/integration/files_*_test.cc.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "supervisor/files/files.h"
#include "unit/files_testing.h"

namespace sbx::files {
namespace {

using testing::BinaryBytes;
using testing::Exists;
using testing::Slurp;
using testing::Spit;
using testing::TempDir;

class FilesOps : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::mkdir((tmp_ / "root").c_str(), 0755), 0);
    Spit(tmp_ / "outside", "host file\n");
    Open({});
  }
  void Open(const Limits& limits) {
    auto r = SandboxRoot::OpenDirectory(tmp_ / "root", Owner{::geteuid(), ::getegid()}, limits);
    ASSERT_TRUE(r.ok()) << r.error().ToString();
    root_.emplace(std::move(*r));
  }
  std::string Host(const std::string& rel) { return tmp_ / ("root/" + rel); }
  std::string ReadBack(std::string_view path) {
    auto r = root_->Read(path);
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    if (!r.ok() || !r->file) return "<none>";
    std::string out(r->info.size, '\0');
    auto n = ReadAllAt(r->file.get(), out.data(), out.size(), 0);
    EXPECT_TRUE(n.ok());
    out.resize(n.ok() ? *n : 0);
    return out;
  }

  TempDir tmp_;
  std::optional<SandboxRoot> root_;
};

TEST_F(FilesOps, WriteAndReadBinaryByteExact) {
  std::string data = BinaryBytes(64);
  ASSERT_TRUE(root_->Write("/bin.dat", data).ok());
  EXPECT_EQ(Slurp(Host("bin.dat")), data);
  EXPECT_EQ(ReadBack("bin.dat"), data);
  auto st = root_->Stat("/bin.dat");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->type, FileType::kRegular);
  EXPECT_EQ(st->size, data.size());
  EXPECT_EQ(st->mode, 0644u);
  EXPECT_EQ(st->name, "bin.dat");
}

TEST_F(FilesOps, LargeStreamedUploadByteExact) {
  // 64 MiB in uneven chunks, every byte position distinct mod 251.
  auto up = root_->BeginWrite("/big.bin");
  ASSERT_TRUE(up.ok()) << up.error().ToString();
  const size_t total = 64u << 20;
  std::string chunk;
  size_t written = 0;
  while (written < total) {
    size_t n = std::min<size_t>(total - written, 1000003);
    chunk.resize(n);
    for (size_t i = 0; i < n; ++i) chunk[i] = static_cast<char>(((written + i) * 7919) % 251);
    ASSERT_TRUE(up->Append(chunk).ok());
    written += n;
  }
  // Nothing is visible before the commit.
  EXPECT_FALSE(Exists(Host("big.bin")));
  ASSERT_TRUE(up->Commit().ok());
  auto r = root_->Read("/big.bin");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->info.size, total);
  std::string buf(1 << 20, '\0');
  for (uint64_t off = 0; off < total; off += buf.size()) {
    auto n = ReadAllAt(r->file.get(), buf.data(), buf.size(), off);
    ASSERT_TRUE(n.ok());
    ASSERT_EQ(*n, buf.size());
    for (size_t i = 0; i < buf.size(); i += 4099) {
      ASSERT_EQ(buf[i], static_cast<char>(((off + i) * 7919) % 251)) << off + i;
    }
  }
  // And the whole file compared once, from the host's side.
  std::string all = Slurp(Host("big.bin"));
  ASSERT_EQ(all.size(), total);
  for (size_t i = 0; i < total; ++i) {
    if (all[i] != static_cast<char>((i * 7919) % 251)) FAIL() << "byte " << i;
  }
}

TEST_F(FilesOps, ReplaceIsAtomicAndKeepsMode) {
  ASSERT_TRUE(root_->Write("f", "old", {.mode = 0600}).ok());
  EXPECT_EQ(root_->Stat("f")->mode, 0600u);
  auto r = root_->Read("f");  // a reader holding the old file keeps seeing it
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(root_->Write("f", "new!").ok());
  EXPECT_EQ(Slurp(Host("f")), "new!");
  EXPECT_EQ(root_->Stat("f")->mode, 0600u);  // the replaced file's bits
  char buf[8] = {};
  EXPECT_EQ(::pread(r->file.get(), buf, sizeof buf, 0), 3);
  EXPECT_EQ(std::string(buf), "old");
  ASSERT_TRUE(root_->Write("f", "x", {.mode = 0755}).ok());
  EXPECT_EQ(root_->Stat("f")->mode, 0755u);
  EXPECT_EQ(root_->Write("f", "x", {.mode = 04755}).error().code, ErrorCode::kInvalidArgument);
  // No temp file is left next to it.
  auto list = root_->List("/");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->entries.size(), 1u);
  EXPECT_EQ(list->entries[0].name, "f");
}

TEST_F(FilesOps, OversizedUploadChangesNothing) {
  Limits l;
  l.max_file_bytes = 1000;
  Open(l);
  ASSERT_TRUE(root_->Write("f", "original").ok());
  auto up = root_->BeginWrite("f");
  ASSERT_TRUE(up.ok());
  ASSERT_TRUE(up->Append(std::string(600, 'a')).ok());
  Status st = up->Append(std::string(401, 'b'));
  EXPECT_EQ(st.error().code, ErrorCode::kResourceExhausted);
  EXPECT_EQ(up->Commit().error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(Slurp(Host("f")), "original");
  EXPECT_EQ(root_->Write("g", std::string(1001, 'c')).error().code, ErrorCode::kResourceExhausted);
  EXPECT_FALSE(Exists(Host("g")));
  EXPECT_TRUE(root_->Write("g", std::string(1000, 'c')).ok());
  EXPECT_EQ(root_->List("/")->entries.size(), 2u);
}

TEST_F(FilesOps, AbandonedUploadLeavesNothing) {
  ASSERT_TRUE(root_->Write("f", "keep").ok());
  {
    auto up = root_->BeginWrite("f");
    ASSERT_TRUE(up.ok());
    ASSERT_TRUE(up->Append("partial").ok());
  }
  EXPECT_EQ(Slurp(Host("f")), "keep");
  EXPECT_EQ(root_->List("/")->entries.size(), 1u);
}

TEST_F(FilesOps, BadPathsAreRefusedAndChangeNothing) {
  std::string before = testing::TreeListing(tmp_.path());
  for (std::string_view p :
       {std::string_view(""), std::string_view("a\0b", 3), std::string_view("../outside"),
        std::string_view("/a/../../outside")}) {
    EXPECT_EQ(root_->Write(p, "x").error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(root_->Stat(p).error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(root_->Read(p).error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(root_->MakeDirectories(p).error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(root_->Remove(p, true).error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(root_->Move(p, "x").error().code, ErrorCode::kInvalidArgument);
  }
  EXPECT_EQ(root_->Write("/" + std::string(5000, 'a'), "x").error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(root_->Write("/", "x").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(root_->Remove("/", true).error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(root_->Move("/", "/x").error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(root_->Read("/nope").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(root_->Write("/nodir/f", "x").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(testing::TreeListing(tmp_.path()), before);
}

TEST_F(FilesOps, SymlinksResolveInsideTheRoot) {
  // Absolute and climbing links point at the sandbox's own tree, never the host's.
  ASSERT_EQ(::symlink("/outside", Host("abs").c_str()), 0);
  ASSERT_EQ(::symlink("../../../../outside", Host("up").c_str()), 0);
  ASSERT_EQ(::symlink("/", Host("rootlink").c_str()), 0);
  ASSERT_EQ(::symlink("../..", Host("dotdot").c_str()), 0);
  EXPECT_EQ(root_->Read("abs").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(root_->Read("up").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(root_->Read("dotdot/outside").error().code, ErrorCode::kNotFound);
  Spit(Host("outside"), "sandbox's own\n");
  EXPECT_EQ(ReadBack("abs"), "sandbox's own\n");
  EXPECT_EQ(ReadBack("up"), "sandbox's own\n");
  EXPECT_EQ(ReadBack("rootlink/dotdot/outside"), "sandbox's own\n");
  // Writing through a link in the middle stays inside; writing at a link replaces the link.
  ASSERT_TRUE(root_->Write("dotdot/new", "n").ok());
  EXPECT_EQ(Slurp(Host("new")), "n");
  ASSERT_TRUE(root_->Write("abs", "replaced").ok());
  EXPECT_EQ(Slurp(tmp_ / "outside"), "host file\n");
  EXPECT_EQ(Slurp(Host("outside")), "sandbox's own\n");
  EXPECT_EQ(root_->Stat("abs")->type, FileType::kRegular);
  // Stat reports a link as one.
  auto st = root_->Stat("up");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->type, FileType::kSymlink);
  EXPECT_EQ(st->link_target, "../../../../outside");
  // Remove and move act on the link itself.
  ASSERT_TRUE(root_->Move("up", "up2").ok());
  EXPECT_EQ(root_->Stat("up2")->type, FileType::kSymlink);
  ASSERT_TRUE(root_->Remove("up2").ok());
  EXPECT_TRUE(Exists(Host("outside")));
  EXPECT_EQ(Slurp(tmp_ / "outside"), "host file\n");
}

TEST_F(FilesOps, FifosAndDevicesAreNotOpened) {
  ASSERT_EQ(::mkfifo(Host("fifo").c_str(), 0644), 0);
  // A blocking open of a fifo without a writer would hang this test.
  auto r = root_->Read("fifo");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(root_->List("fifo").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(root_->Stat("fifo")->type, FileType::kFifo);
}

TEST_F(FilesOps, ListsADirectory) {
  ASSERT_TRUE(root_->MakeDirectories("/d/sub").ok());
  ASSERT_TRUE(root_->Write("/d/b.txt", "12345").ok());
  ASSERT_EQ(::symlink("b.txt", Host("d/a-link").c_str()), 0);
  auto r = root_->Read("/d");
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(r->file);
  ASSERT_TRUE(r->listing);
  const auto& e = r->listing->entries;
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].name, "a-link");
  EXPECT_EQ(e[0].type, FileType::kSymlink);
  EXPECT_EQ(e[0].link_target, "b.txt");
  EXPECT_EQ(e[1].name, "b.txt");
  EXPECT_EQ(e[1].size, 5u);
  EXPECT_GT(e[1].mtime_ns, 0);
  EXPECT_EQ(e[2].name, "sub");
  EXPECT_EQ(e[2].type, FileType::kDirectory);
  EXPECT_EQ(e[2].mode, 0755u);
  EXPECT_FALSE(r->listing->truncated);

  Limits l;
  l.max_list_entries = 2;
  Open(l);
  auto t = root_->List("/d");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->entries.size(), 2u);
  EXPECT_TRUE(t->truncated);
}

TEST_F(FilesOps, MakeDirectories) {
  ASSERT_TRUE(root_->MakeDirectories("/a/b/c", 0750).ok());
  struct stat st;
  ASSERT_EQ(::stat(Host("a/b/c").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_TRUE(root_->MakeDirectories("/a/b/c").ok());  // exists: fine
  EXPECT_TRUE(root_->MakeDirectories("/").ok());
  ASSERT_TRUE(root_->Write("/a/file", "x").ok());
  EXPECT_EQ(root_->MakeDirectories("/a/file/sub").error().code, ErrorCode::kAlreadyExists);
  ASSERT_EQ(::symlink("/nowhere", Host("dangling").c_str()), 0);
  EXPECT_EQ(root_->MakeDirectories("/dangling/x").error().code, ErrorCode::kAlreadyExists);
  EXPECT_FALSE(Exists(Host("nowhere")));
  // Parents made on the way of a write.
  ASSERT_TRUE(root_->Write("/p/q/r.txt", "r", {.make_parents = true}).ok());
  EXPECT_EQ(Slurp(Host("p/q/r.txt")), "r");
}

TEST_F(FilesOps, Remove) {
  ASSERT_TRUE(root_->Write("/f", "x").ok());
  ASSERT_TRUE(root_->Remove("/f").ok());
  EXPECT_FALSE(Exists(Host("f")));
  EXPECT_EQ(root_->Remove("/f").error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(root_->MakeDirectories("/t/a/b/c").ok());
  ASSERT_TRUE(root_->Write("/t/a/b/c/f", "x").ok());
  ASSERT_TRUE(root_->Write("/t/g", "x").ok());
  // A link inside the tree to a directory outside it: the link goes, the target stays.
  ASSERT_TRUE(root_->MakeDirectories("/keep").ok());
  ASSERT_TRUE(root_->Write("/keep/k", "k").ok());
  ASSERT_EQ(::symlink("/keep", Host("t/a/link").c_str()), 0);
  ASSERT_EQ(::symlink(tmp_.path().c_str(), Host("t/hostlink").c_str()), 0);
  EXPECT_EQ(root_->Remove("/t").error().code, ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(Exists(Host("t/g")));
  ASSERT_TRUE(root_->Remove("/t", true).ok());
  EXPECT_FALSE(Exists(Host("t")));
  EXPECT_EQ(Slurp(Host("keep/k")), "k");
  EXPECT_EQ(Slurp(tmp_ / "outside"), "host file\n");
  ASSERT_TRUE(root_->MakeDirectories("/e").ok());
  EXPECT_TRUE(root_->Remove("/e").ok());
}

TEST_F(FilesOps, RemoveIsBounded) {
  Limits l;
  l.max_walk_entries = 50;
  l.max_depth = 5;
  Open(l);
  ASSERT_TRUE(root_->MakeDirectories("/deep/1/2/3/4/5/6/7").ok());
  EXPECT_EQ(root_->Remove("/deep", true).error().code, ErrorCode::kResourceExhausted);
  ASSERT_TRUE(root_->MakeDirectories("/wide").ok());
  for (int i = 0; i < 60; ++i) ASSERT_TRUE(root_->Write("/wide/" + std::to_string(i), "").ok());
  EXPECT_EQ(root_->Remove("/wide", true).error().code, ErrorCode::kResourceExhausted);
}

TEST_F(FilesOps, Move) {
  ASSERT_TRUE(root_->Write("/a", "A").ok());
  ASSERT_TRUE(root_->Write("/b", "B").ok());
  EXPECT_EQ(root_->Move("/a", "/b").error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(Slurp(Host("b")), "B");
  ASSERT_TRUE(root_->Move("/a", "/b", /*replace=*/true).ok());
  EXPECT_EQ(Slurp(Host("b")), "A");
  EXPECT_FALSE(Exists(Host("a")));
  ASSERT_TRUE(root_->MakeDirectories("/d/e").ok());
  EXPECT_EQ(root_->Move("/d", "/d/e/f").error().code, ErrorCode::kInvalidArgument);
  ASSERT_TRUE(root_->Move("/b", "/d/e/b").ok());
  EXPECT_EQ(Slurp(Host("d/e/b")), "A");
  EXPECT_EQ(root_->Move("/missing", "/x").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(root_->Move("/d", "/").error().code, ErrorCode::kFailedPrecondition);
}

}  // namespace
}  // namespace sbx::files
