// A hostile program inside a sandbox-like root races the files library. The "sandbox" is a
// child of the test in a mount namespace of its own, chrooted into a temp directory, with a
// procfs of the host's pid namespace at /proc (so /proc/1/root inside it is a magic link to the
// host's /) and a tmpfs at /tmp, running as an unprivileged uid. The library reaches it as the
// daemon reaches a real sandbox: SandboxRoot::OfProcess(pid) (/proc/<pid>/root), as that uid.
//
// The child plants symlinks to /etc/shadow, /proc/1/root and ../../, and swaps a directory and
// a symlink (to the host's directory next to the root, by the magic link and by "../" climbs)
// in a tight loop while the library writes, reads, moves, removes and tars through it. Every
// operation must succeed inside the root or fail cleanly; afterwards the host is unchanged and
// everything the library made belongs to the sandbox's uid.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "base/syscalls.h"
#include "supervisor/files/files.h"
#include "supervisor/files/tar.h"
#include "supervisor/files/watch.h"
#include "unit/files_testing.h"
#include "tests/support/skip.h"

namespace sbx::files {
namespace {

using testing::Slurp;
using testing::Spit;
using testing::TempDir;
using testing::TreeListing;

constexpr uid_t kUid = 62011;  // the "sandbox user" on the host; owns nothing else

class FilesHostile : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) SBX_SKIP_PRIVILEGED("needs root (mount namespaces, chroot, setfsuid)");
    base_ = tmp_.path();
    root_ = base_ + "/root";
    outside_ = base_ + "/outside";
    for (const char* d : {"/root", "/root/proc", "/root/tmp", "/root/etc", "/root/work",
                          "/root/work/swap", "/outside"}) {
      ASSERT_EQ(::mkdir((base_ + d).c_str(), 0755), 0) << d;
    }
    // The outside is writable by anyone: an escape as the sandbox's uid would succeed there.
    ASSERT_EQ(::chmod(outside_.c_str(), 0777), 0);
    Spit(outside_ + "/sentinel", "host sentinel\n");
    ASSERT_EQ(::chmod((outside_ + "/sentinel").c_str(), 0666), 0);
    Spit(root_ + "/etc/shadow", "sandbox's own shadow\n");
    for (const char* d :
         {"/root", "/root/tmp", "/root/etc", "/root/work", "/root/work/swap", "/root/etc/shadow"}) {
      ASSERT_EQ(::chown((base_ + d).c_str(), kUid, kUid), 0);
    }
    host_shadow_ = Slurp("/etc/shadow");
    struct stat st;
    ASSERT_EQ(::stat("/etc/shadow", &st), 0);
    host_shadow_mtime_ = st.st_mtim.tv_sec;
    outside_before_ = TreeListing(outside_);
    StartSandbox();
  }

  void TearDown() override { StopSandbox(); }

  void StopSandbox() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

  // The child: everything it needs is prepared here; after fork it makes raw syscalls only.
  void StartSandbox() {
    int ready[2];
    ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
    std::string proc_dir = root_ + "/proc", tmp_dir = root_ + "/tmp";
    std::string via_magic = "/proc/1/root" + outside_;
    std::string via_climb = "../../../../../../../.." + outside_;
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      ::close(ready[0]);
      if (::unshare(CLONE_NEWNS) < 0 ||
          ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0 ||
          ::mount("proc", proc_dir.c_str(), "proc", 0, nullptr) < 0 ||
          ::mount("tmpfs", tmp_dir.c_str(), "tmpfs", 0, "size=4m,mode=1777") < 0 ||
          ::chroot(root_.c_str()) < 0 || ::chdir("/") < 0 || sys::SetGroups0() < 0 ||
          sys::SetResGid(kUid, kUid, kUid) < 0 || sys::SetResUid(kUid, kUid, kUid) < 0) {
        ::_exit(1);
      }
      if (::symlink("/etc/shadow", "/work/shadow") != 0) ::_exit(1);
      if (::symlink("/proc/1/root", "/work/proc1") != 0) ::_exit(1);
      if (::symlink("../../", "/work/up") != 0) ::_exit(1);
      if (::symlink(via_magic.c_str(), "/work/magic-out") != 0) ::_exit(1);
      if (::symlink(via_climb.c_str(), "/work/climb-out") != 0) ::_exit(1);
      if (::symlink(via_magic.c_str(), "/work/swap-a") != 0) ::_exit(1);
      if (::symlink(via_climb.c_str(), "/work/swap-b") != 0) ::_exit(1);
      if (::write(ready[1], "r", 1) != 1) ::_exit(1);
      // Swap the directory with one link, then the other, forever.
      for (unsigned i = 0;; ++i) {
        ::renameat2(AT_FDCWD, "/work/swap", AT_FDCWD, (i & 2) ? "/work/swap-a" : "/work/swap-b",
                    RENAME_EXCHANGE);
      }
    }
    ::close(ready[1]);
    char c;
    ASSERT_EQ(::read(ready[0], &c, 1), 1) << "the hostile child failed to set up";
    ::close(ready[0]);
    pidfd_ = UniqueFd(sys::PidfdOpen(pid_));
    ASSERT_TRUE(pidfd_);
    auto r = SandboxRoot::OfProcess(pid_, pidfd_.get(), Owner{kUid, kUid});
    ASSERT_TRUE(r.ok()) << r.error().ToString();
    files_.emplace(std::move(*r));
  }

  void ExpectHostUnchanged() {
    // The hostile child swaps work/swap for a link without end: stopped first, so that the
    // walk below does not race it (a directory turned link under the iterator: ENOTDIR).
    StopSandbox();
    EXPECT_EQ(Slurp(outside_ + "/sentinel"), "host sentinel\n");
    EXPECT_EQ(TreeListing(outside_), outside_before_);
    EXPECT_EQ(Slurp("/etc/shadow"), host_shadow_);
    struct stat st;
    ASSERT_EQ(::stat("/etc/shadow", &st), 0);
    EXPECT_EQ(st.st_mtim.tv_sec, host_shadow_mtime_);
    // Nothing appeared next to the root either.
    std::vector<std::string> top;
    for (auto& e : std::filesystem::directory_iterator(base_)) top.push_back(e.path().filename());
    std::sort(top.begin(), top.end());
    EXPECT_EQ(top, (std::vector<std::string>{"outside", "root"}));
    // Everything in the root belongs to the sandbox's uid (the library wrote as it).
    for (auto it = std::filesystem::recursive_directory_iterator(root_);
         it != std::filesystem::recursive_directory_iterator(); ++it) {
      struct stat est;
      ASSERT_EQ(::lstat(it->path().c_str(), &est), 0);
      if (it->path() == root_ + "/proc") {
        it.disable_recursion_pending();
        continue;
      }
      EXPECT_EQ(est.st_uid, kUid) << it->path();
    }
  }

  TempDir tmp_{"sbx-files-hostile-"};
  std::string base_, root_, outside_;
  std::string host_shadow_, outside_before_;
  time_t host_shadow_mtime_ = 0;
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  std::optional<SandboxRoot> files_;
};

// Acceptable outcomes of an operation raced by the swap: done, or refused cleanly. Unavailable
// is the lookup starved by the renames (openat2's EAGAIN, every retry): nothing was opened,
// and the message says so.
void ExpectCleanly(const Status& st, const char* what) {
  if (st.ok()) return;
  ErrorCode c = st.error().code;
  EXPECT_TRUE(c == ErrorCode::kNotFound || c == ErrorCode::kPermissionDenied ||
              c == ErrorCode::kInvalidArgument || c == ErrorCode::kAlreadyExists ||
              c == ErrorCode::kFailedPrecondition ||
              (c == ErrorCode::kUnavailable &&
               st.error().message.find("kept changing") != std::string::npos))
      << what << ": " << st.error().ToString();
}

template <typename T>
Status AsStatus(const Result<T>& r) {
  if (r.ok()) return Ok();
  return r.error();
}

TEST_F(FilesHostile, PlantedLinksStayInside) {
  // /etc/shadow through a link: the sandbox's own file.
  auto shadow = files_->Read("/work/shadow");
  ASSERT_TRUE(shadow.ok()) << shadow.error().ToString();
  std::string got(shadow->info.size, '\0');
  ASSERT_EQ(::pread(shadow->file.get(), got.data(), got.size(), 0),
            static_cast<ssize_t>(got.size()));
  EXPECT_EQ(got, "sandbox's own shadow\n");
  // Magic links are refused, directly or through a planted link.
  for (const char* p : {"/work/proc1/etc/passwd", "/proc/1/root/etc/passwd",
                        "/work/magic-out/sentinel", "/proc/self/root/etc/passwd"}) {
    auto r = files_->Read(p);
    ASSERT_FALSE(r.ok()) << p;
    EXPECT_EQ(r.error().code, ErrorCode::kPermissionDenied) << p << ": " << r.error().ToString();
  }
  EXPECT_EQ(files_->Write("/work/proc1/etc/sbx-owned", "x").error().code,
            ErrorCode::kPermissionDenied);
  EXPECT_EQ(files_->Write("/work/magic-out/sentinel", "x").error().code,
            ErrorCode::kPermissionDenied);
  EXPECT_EQ(files_->MakeDirectories("/work/magic-out/made").error().code,
            ErrorCode::kPermissionDenied);
  // "../" climbs end at the root.
  ASSERT_TRUE(files_->Write("/work/up/escaped", "e").ok());
  EXPECT_EQ(Slurp(root_ + "/escaped"), "e");
  auto r = files_->Write("/work/climb-out/sentinel", "x");
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound) << r.error().ToString();
  // mkdir -p does not create through a dangling link (as mkdir(1) -p does not).
  EXPECT_EQ(files_->Write("/work/climb-out/sentinel", "x", {.make_parents = true}).error().code,
            ErrorCode::kAlreadyExists);
  // Once the sandbox has that path itself, the link leads there, inside.
  ASSERT_TRUE(files_->MakeDirectories(outside_).ok());
  Status made = files_->Write("/work/climb-out/sentinel", "x");
  ASSERT_TRUE(made.ok()) << made.error().ToString();
  // Made inside, at the same path (in the sandbox's /tmp, a tmpfs the host does not see).
  auto inside = files_->Stat(outside_ + "/sentinel");
  ASSERT_TRUE(inside.ok()) << inside.error().ToString();
  EXPECT_EQ(inside->size, 1u);
  // Writing at a link replaces the link.
  ASSERT_TRUE(files_->Write("/work/shadow", "replaced").ok());
  EXPECT_EQ(Slurp(root_ + "/work/shadow"), "replaced");
  EXPECT_EQ(Slurp(root_ + "/etc/shadow"), "sandbox's own shadow\n");
  // The sandbox's own /tmp mount is crossed; the host's directory under it stays empty.
  ASSERT_TRUE(files_->Write("/tmp/in-tmpfs", "t").ok());
  auto t = files_->Stat("/tmp/in-tmpfs");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->size, 1u);
  EXPECT_TRUE(std::filesystem::is_empty(root_ + "/tmp"));
  // A tar of the whole root leaves /proc out and finishes.
  uint64_t bytes = 0;
  auto tar = WriteTar(*files_, "/", [&](std::string_view d) {
    bytes += d.size();
    return Ok();
  });
  ASSERT_TRUE(tar.ok()) << tar.error().ToString();
  bool proc_skipped = false;
  for (const auto& s : tar->skipped) proc_skipped |= s.rfind("proc:", 0) == 0;
  EXPECT_TRUE(proc_skipped);
  EXPECT_LT(bytes, 1u << 20);
  // Root-owned files stay out of reach: the library acts as the sandbox's uid.
  Spit(root_ + "/etc/root-only", "secret");
  ASSERT_EQ(::chmod((root_ + "/etc/root-only").c_str(), 0600), 0);
  EXPECT_EQ(files_->Read("/etc/root-only").error().code, ErrorCode::kPermissionDenied);
  ::unlink((root_ + "/etc/root-only").c_str());
  ExpectHostUnchanged();
}

TEST_F(FilesHostile, RacedDirectorySwapStaysInside) {
  std::string bin;
  for (int i = 0; i < 4096; ++i) bin += static_cast<char>(i & 0xff);
  std::string small_tar;
  {
    TarEntry e{"t/x", TarType::kRegular, '0', 0644, 3, 1700000000, {}};
    small_tar = TarHeader(e) + "abc" + std::string(TarPadding(3), '\0') + TarTrailer();
  }
  int ok = 0;
  for (int round = 0; round < 400; ++round) {
    Status st = files_->Write("/work/swap/f", bin);
    ok += st.ok();
    ExpectCleanly(st, "write");
    st = files_->Write("/work/swap/deep/f", "d", {.make_parents = true});
    ExpectCleanly(st, "write with parents");
    auto r = files_->Read("/work/swap/f");
    ExpectCleanly(AsStatus(r), "read");
    if (r.ok() && r->file) {
      // Whatever was read is a file the library wrote, inside.
      std::string got(r->info.size, '\0');
      ASSERT_EQ(::pread(r->file.get(), got.data(), got.size(), 0),
                static_cast<ssize_t>(got.size()));
      EXPECT_EQ(got, bin);
    }
    ExpectCleanly(files_->MakeDirectories("/work/swap/m/n"), "mkdir");
    ExpectCleanly(files_->Move("/work/swap/f", "/work/swap/g", true), "move");
    ExpectCleanly(files_->Remove("/work/swap/m", true), "remove");
    auto in = ExtractTar(*files_, "/work/swap",
                         [&, pos = size_t{0}](char* b, size_t n) mutable -> Result<size_t> {
                           size_t k = std::min(n, small_tar.size() - pos);
                           std::memcpy(b, small_tar.data() + pos, k);
                           pos += k;
                           return k;
                         });
    ExpectCleanly(AsStatus(in), "tar in");
    auto out = WriteTar(*files_, "/work/swap", [](std::string_view) { return Ok(); });
    ExpectCleanly(AsStatus(out), "tar out");
  }
  EXPECT_GT(ok, 0) << "no write got through at all: the race says nothing";
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  ExpectHostUnchanged();
}

TEST_F(FilesHostile, WatchSeesTheSandboxWrite) {
  auto w = Watcher::Open(*files_, "/tmp");
  ASSERT_TRUE(w.ok()) << w.error().ToString();
  ASSERT_TRUE(files_->Write("/tmp/w", "1").ok());
  ASSERT_TRUE(files_->Remove("/tmp/w").ok());
  std::vector<std::string> seen;
  for (int i = 0; i < 100 && seen.size() < 2; ++i) {
    auto evs = (*w)->Read();
    ASSERT_TRUE(evs.ok()) << evs.error().ToString();
    for (const auto& e : *evs)
      seen.push_back(std::string(WatchEventTypeName(e.type)) + " " + e.path);
    if (seen.size() >= 2) break;
    struct pollfd pfd = {(*w)->fd(), POLLIN, 0};
    ASSERT_GT(::poll(&pfd, 1, 10'000), 0);
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"modified w", "deleted w"}));
}

}  // namespace
}  // namespace sbx::files
