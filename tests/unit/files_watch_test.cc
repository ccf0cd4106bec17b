// Recursive watches on a temp-directory root: the events of a create, a write and a delete in
// order, moves, new directories, and the end of the watched directory. Waits on the watcher's
// descriptor (poll), never a sleep.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "supervisor/files/files.h"
#include "supervisor/files/watch.h"
#include "unit/files_testing.h"

namespace sbx::files {
namespace {

using testing::Spit;
using testing::TempDir;

std::string Show(const WatchEvent& e) {
  std::string s = std::string(WatchEventTypeName(e.type)) + " " + e.path;
  if (e.type == WatchEventType::kMoved) s += " from " + e.from;
  return s;
}

class FilesWatch : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::mkdir((tmp_ / "root").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((tmp_ / "root/w").c_str(), 0755), 0);
    auto r = SandboxRoot::OpenDirectory(tmp_ / "root", Owner{::geteuid(), ::getegid()});
    ASSERT_TRUE(r.ok()) << r.error().ToString();
    root_.emplace(std::move(*r));
    auto w = Watcher::Open(*root_, "/w");
    ASSERT_TRUE(w.ok()) << w.error().ToString();
    watcher_ = std::move(*w);
  }
  std::string Host(const std::string& rel) { return tmp_ / ("root/w/" + rel); }

  // Events until `last` has been seen (as "type path"), waiting on the descriptor; at most 10 s.
  std::vector<std::string> Until(const std::string& last) {
    std::vector<std::string> seen;
    for (int round = 0; round < 1000; ++round) {
      auto evs = watcher_->Read();
      EXPECT_TRUE(evs.ok()) << evs.error().ToString();
      if (!evs.ok()) break;
      for (const auto& e : *evs) seen.push_back(Show(e));
      if (std::find(seen.begin(), seen.end(), last) != seen.end()) return seen;
      struct pollfd pfd = {watcher_->fd(), POLLIN, 0};
      if (::poll(&pfd, 1, 10'000) <= 0) break;
    }
    ADD_FAILURE() << "no '" << last << "' event";
    return seen;
  }

  TempDir tmp_;
  std::optional<SandboxRoot> root_;
  std::unique_ptr<Watcher> watcher_;
};

TEST_F(FilesWatch, CreateWriteDeleteInOrder) {
  // As a program in the sandbox would.
  int fd = ::open(Host("f").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "abc", 3), 3);
  ::close(fd);
  ASSERT_EQ(::unlink(Host("f").c_str()), 0);
  auto seen = Until("deleted f");
  std::vector<std::string> want = {"created f", "modified f", "deleted f"};
  EXPECT_EQ(seen, want);
}

TEST_F(FilesWatch, LibraryWritesReadAsModified) {
  ASSERT_TRUE(root_->Write("/w/g", "data").ok());
  ASSERT_TRUE(root_->Write("/w/g", "more data").ok());
  ASSERT_TRUE(root_->Remove("/w/g").ok());
  auto seen = Until("deleted g");
  std::vector<std::string> want = {"modified g", "deleted g"};  // the two writes merged
  EXPECT_EQ(seen, want);
}

TEST_F(FilesWatch, EndsWithTheWatchedDirectory) {
  ASSERT_TRUE(root_->Remove("/w", true).ok());
  Until("deleted ");
  EXPECT_TRUE(watcher_->ended());
}

TEST_F(FilesWatch, MovesAndNewDirectories) {
  ASSERT_EQ(::mkdir(Host("d").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(Host("d/e").c_str(), 0755), 0);  // may be made before d is watched
  Spit(Host("d/e/f"), "x");
  auto seen = Until("created d/e/f");
  EXPECT_EQ(seen.front(), "created d");
  // d/e is watched now: a file there is seen.
  Spit(Host("d/e/g"), "y");
  Until("created d/e/g");
  // A move inside the tree, then a file in the moved directory under its new name.
  ASSERT_EQ(::rename(Host("d").c_str(), Host("d2").c_str()), 0);
  seen = Until("moved d2 from d");
  Spit(Host("d2/e/h"), "z");
  seen = Until("created d2/e/h");
  // A move out of the tree reads as deleted; a move in as created.
  ASSERT_EQ(::rename(Host("d2").c_str(), (tmp_ / "root/out").c_str()), 0);
  Until("deleted d2");
  ASSERT_EQ(::rename((tmp_ / "root/out").c_str(), Host("back").c_str()), 0);
  seen = Until("created back/e/h");
  EXPECT_NE(std::find(seen.begin(), seen.end(), "created back"), seen.end());
}

}  // namespace
}  // namespace sbx::files
