// The hybrid driver on the real host: v1 cpu/cpuacct/memory/pids plus a controller-less cgroup2.
// Needs root and a hybrid layout; skips otherwise. Works only under its own parent cgroup,
// "sandboxd-test-<pid>" in each hierarchy, and removes it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "base/syscalls.h"
#include "cgroup/cgroup.h"
#include "cgroup/common.h"
#include "tests/support/skip.h"

namespace sbx::cgroup {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool WriteText(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok;
}

// A child started by `start` that blocks reading a pipe; one byte tells it to run `then`.
class Child {
 public:
  template <typename Start>
  explicit Child(Start start, void (*then)() = nullptr) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = start();
    if (pid_ == 0) {
      ::close(fds[1]);
      char c;
      if (::read(fds[0], &c, 1) == 1 && then != nullptr) then();
      ::_exit(0);
    }
    ::close(fds[0]);
    write_end_ = fds[1];
  }
  ~Child() {
    if (write_end_ >= 0) ::close(write_end_);
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  void Go() { (void)!::write(write_end_, "x", 1); }
  // The signal that ended the child, or 0 when it exited.
  int WaitSignal() {
    int status = 0;
    if (::waitpid(pid_, &status, 0) != pid_) return -1;
    reaped_ = true;
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  }

 private:
  pid_t pid_ = -1;
  int write_end_ = -1;
  bool reaped_ = false;
};

pid_t PlainFork() { return ::fork(); }

void TouchTooMuchMemory() {
  constexpr size_t kSize = 256 * kMiB;
  auto* p = static_cast<char*>(
      ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (p == MAP_FAILED) ::_exit(3);
  for (size_t i = 0; i < kSize; i += 4096) p[i] = 1;
  ::_exit(4);  // not OOM-killed: the limit did not hold
}

class HybridTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) SBX_SKIP_PRIVILEGED("needs root to create cgroups");
    auto host = DetectHost();
    ASSERT_TRUE(host.ok()) << host.error().ToString();
    if (host->layout != Layout::kHybrid) {
      GTEST_SKIP() << "needs a hybrid cgroup host (v1 controllers + cgroup2); this one is "
                   << LayoutName(host->layout);
    }
    for (const char* c : {"cpu", "cpuacct", "memory", "pids"}) {
      if (host->v1_mounts.count(c) == 0) GTEST_SKIP() << "v1 controller " << c << " not mounted";
    }
    host_ = *host;
    parent_ = "sandboxd-test-" + std::to_string(::getpid());
    roots_.insert(host_.unified_mount);
    for (const char* c : {"cpu", "memory", "pids"}) roots_.insert(host_.v1_mounts[c]);
  }

  void TearDown() override {
    for (const std::string& root : roots_) {
      std::string dir = root + "/" + parent_;
      if (Exists(dir)) {
        EXPECT_EQ(::rmdir(dir.c_str()), 0) << dir << ": " << std::strerror(errno);
      }
    }
  }

  std::unique_ptr<Driver> OpenDriver() {
    auto d = Driver::Open({.parent = parent_}, host_);
    EXPECT_TRUE(d.ok()) << d.error().ToString();
    return d.ok() ? std::move(d).value() : nullptr;
  }
  std::string V1Dir(const char* controller, const std::string& name) {
    return host_.v1_mounts[controller] + "/" + parent_ + "/" + name;
  }
  std::string UnifiedDir(const std::string& name) {
    return host_.unified_mount + "/" + parent_ + "/" + name;
  }
  std::vector<std::string> AllDirs(const std::string& name) {
    std::vector<std::string> out;
    for (const std::string& root : roots_) out.push_back(root + "/" + parent_ + "/" + name);
    return out;
  }

  HostInfo host_;
  std::string parent_;
  std::set<std::string> roots_;  // distinct hierarchy roots the driver uses
};

TEST_F(HybridTest, OpenCreatesTheParentInEveryHierarchy) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  for (const std::string& root : roots_) EXPECT_TRUE(Exists(root + "/" + parent_)) << root;
  EXPECT_EQ(Trim(ReadText(host_.v1_mounts["memory"] + "/" + parent_ + "/memory.use_hierarchy")),
            "1");
}

// The parents a sandboxd made go with their last user, in every hierarchy, once empty, whichever
// user made them; parents that were there stay, and so does a parent with a cgroup in it.
TEST_F(HybridTest, TheParentGoesWithItsLastUserWhenASandboxdMadeIt) {
  auto maker = OpenDriver();
  ASSERT_NE(maker, nullptr);
  auto other = OpenDriver();
  ASSERT_NE(other, nullptr);
  maker.reset();  // another driver uses it: it stays
  for (const std::string& root : roots_) EXPECT_TRUE(Exists(root + "/" + parent_)) << root;
  {
    auto cg = other->Create("sbx-after-the-maker", {.memory_bytes = 64 << 20, .pids = 16});
    ASSERT_TRUE(cg.ok()) << cg.error().ToString();
    auto held = other->Create("sbx-held", {.memory_bytes = 64 << 20});
    ASSERT_TRUE(held.ok()) << held.error().ToString();
    ASSERT_TRUE((*cg)->Destroy().ok());
    auto last = OpenDriver();
    ASSERT_NE(last, nullptr);
    other.reset();
    last.reset();  // the last user, with a cgroup still in the unified and memory parents
    EXPECT_TRUE(Exists(host_.unified_mount + "/" + parent_));
    EXPECT_TRUE(Exists(host_.v1_mounts["memory"] + "/" + parent_));
    ASSERT_TRUE((*held)->Destroy().ok());
  }
  auto again = OpenDriver();  // makes the missing v1 parents again
  ASSERT_NE(again, nullptr);
  again.reset();  // the last user, all empty: gone everywhere
  for (const std::string& root : roots_) EXPECT_FALSE(Exists(root + "/" + parent_)) << root;

  // Parents that were there before (an administrator's) stay.
  for (const std::string& root : roots_) {
    ASSERT_EQ(::mkdir((root + "/" + parent_).c_str(), 0755), 0) << root;
  }
  auto guest = OpenDriver();
  ASSERT_NE(guest, nullptr);
  guest.reset();
  for (const std::string& root : roots_) EXPECT_TRUE(Exists(root + "/" + parent_)) << root;
}

TEST_F(HybridTest, LimitsAttachKillDestroy) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  auto created = d->Create("sbx-1", {.cpus = 0.5, .memory_bytes = 64 * kMiB, .pids = 32});
  ASSERT_TRUE(created.ok()) << created.error().ToString();
  std::unique_ptr<Cgroup> cg = std::move(created).value();
  EXPECT_EQ(cg->version(), "hybrid");
  EXPECT_EQ(cg->controllers(), (std::vector<std::string>{"cpu", "memory", "pids"}));
  for (const std::string& dir : AllDirs("sbx-1")) EXPECT_TRUE(Exists(dir)) << dir;

  EXPECT_EQ(Trim(ReadText(V1Dir("cpu", "sbx-1") + "/cpu.cfs_period_us")), "100000");
  EXPECT_EQ(Trim(ReadText(V1Dir("cpu", "sbx-1") + "/cpu.cfs_quota_us")), "50000");
  EXPECT_EQ(Trim(ReadText(V1Dir("memory", "sbx-1") + "/memory.limit_in_bytes")), "67108864");
  const std::string memsw = V1Dir("memory", "sbx-1") + "/memory.memsw.limit_in_bytes";
  if (Exists(memsw)) {
    EXPECT_EQ(Trim(ReadText(memsw)), "67108864");
  }
  EXPECT_EQ(Trim(ReadText(V1Dir("memory", "sbx-1") + "/memory.swappiness")), "0");
  EXPECT_EQ(Trim(ReadText(V1Dir("pids", "sbx-1") + "/pids.max")), "32");

  Child child(PlainFork);
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(cg->AttachV1(child.pid()).ok());
  ASSERT_TRUE(WriteText(UnifiedDir("sbx-1") + "/cgroup.procs", std::to_string(child.pid())));
  std::string membership = ReadText("/proc/" + std::to_string(child.pid()) + "/cgroup");
  const std::string path = "/" + parent_ + "/sbx-1\n";
  EXPECT_NE(membership.find("0::" + path), std::string::npos) << membership;
  for (const char* c : {"cpu", "memory", "pids"}) {
    EXPECT_NE(membership.find(std::string(":") + c + ":" + path), std::string::npos)
        << c << " in " << membership;
  }
  EXPECT_EQ(Trim(ReadText(V1Dir("pids", "sbx-1") + "/pids.current")), "1");
  EXPECT_NE(ReadText(UnifiedDir("sbx-1") + "/cgroup.events").find("populated 1"),
            std::string::npos);

  auto usage = cg->ReadUsage();
  ASSERT_TRUE(usage.ok()) << usage.error().ToString();
  EXPECT_EQ(usage->oom_kills, 0u);

  ASSERT_TRUE(cg->Kill().ok());
  EXPECT_EQ(child.WaitSignal(), SIGKILL);

  Status destroyed = cg->Destroy();
  ASSERT_TRUE(destroyed.ok()) << destroyed.error().ToString();
  for (const std::string& dir : AllDirs("sbx-1")) EXPECT_FALSE(Exists(dir)) << dir;
  EXPECT_TRUE(cg->Destroy().ok());
}

TEST_F(HybridTest, UnlimitedSandboxUsesOnlyTheUnifiedHierarchy) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  auto cg = d->Create("sbx-free", Limits{});
  ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  EXPECT_TRUE(Exists(UnifiedDir("sbx-free")));
  for (const char* c : {"cpu", "memory", "pids"}) EXPECT_FALSE(Exists(V1Dir(c, "sbx-free"))) << c;
  EXPECT_TRUE((*cg)->controllers().empty());
  auto usage = (*cg)->ReadUsage();
  ASSERT_TRUE(usage.ok()) << usage.error().ToString();
  EXPECT_EQ(usage->memory_peak_bytes, 0u);
  ASSERT_TRUE((*cg)->Destroy().ok());
  EXPECT_FALSE(Exists(UnifiedDir("sbx-free")));
}

TEST_F(HybridTest, DestroyKillsWhatIsLeftEvenInV1Only) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  auto cg = d->Create("sbx-v1only", {.pids = 8});
  ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  Child in_both(PlainFork), in_v1_only(PlainFork);
  ASSERT_GT(in_both.pid(), 0);
  ASSERT_GT(in_v1_only.pid(), 0);
  ASSERT_TRUE((*cg)->AttachV1(in_both.pid()).ok());
  ASSERT_TRUE(WriteText(UnifiedDir("sbx-v1only") + "/cgroup.procs", std::to_string(in_both.pid())));
  ASSERT_TRUE((*cg)->AttachV1(in_v1_only.pid()).ok());  // cgroup.kill cannot see this one

  Status destroyed = (*cg)->Destroy();
  ASSERT_TRUE(destroyed.ok()) << destroyed.error().ToString();
  EXPECT_EQ(in_both.WaitSignal(), SIGKILL);
  EXPECT_EQ(in_v1_only.WaitSignal(), SIGKILL);
  for (const std::string& dir : AllDirs("sbx-v1only")) EXPECT_FALSE(Exists(dir)) << dir;
}

TEST_F(HybridTest, CloneIntoCgroupWithTheUnifiedDirfd) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  auto cg = d->Create("sbx-clone", {.memory_bytes = 32 * kMiB});
  ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  const int dirfd = (*cg)->unified_dirfd();
  Child child([dirfd] {
    struct clone_args args = {};
    args.flags = CLONE_INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.cgroup = static_cast<uint64_t>(dirfd);
    return static_cast<pid_t>(sys::Clone3(&args));
  });
  ASSERT_GT(child.pid(), 0) << std::strerror(errno);
  std::string membership = ReadText("/proc/" + std::to_string(child.pid()) + "/cgroup");
  EXPECT_NE(membership.find("0::/" + parent_ + "/sbx-clone\n"), std::string::npos) << membership;

  ASSERT_TRUE((*cg)->Destroy().ok());  // kills the child itself
  EXPECT_EQ(child.WaitSignal(), SIGKILL);
  EXPECT_FALSE(Exists(UnifiedDir("sbx-clone")));
}

TEST_F(HybridTest, MemoryLimitOomKillsAndIsCounted) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  auto cg = d->Create("sbx-oom", {.memory_bytes = 16 * kMiB});
  ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  if (!Exists(V1Dir("memory", "sbx-oom") + "/memory.memsw.limit_in_bytes") &&
      Trim(ReadText("/proc/swaps")).find('\n') != std::string::npos) {
    GTEST_SKIP() << "swap is on and not accounted: the limit would push the child to swap";
  }
  Child child(PlainFork, TouchTooMuchMemory);
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE((*cg)->AttachV1(child.pid()).ok());
  ASSERT_TRUE(WriteText(UnifiedDir("sbx-oom") + "/cgroup.procs", std::to_string(child.pid())));
  child.Go();
  EXPECT_EQ(child.WaitSignal(), SIGKILL);
  auto usage = (*cg)->ReadUsage();
  ASSERT_TRUE(usage.ok()) << usage.error().ToString();
  EXPECT_GE(usage->oom_kills, 1u);
  EXPECT_GE(usage->memory_peak_bytes, 8 * kMiB);
  EXPECT_LE(usage->memory_peak_bytes, 16 * kMiB);
  EXPECT_GT(usage->cpu_usec, 0u);
  ASSERT_TRUE((*cg)->Destroy().ok());
}

TEST_F(HybridTest, CreateFailureLeavesNothingBehind) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  // A stale directory in one hierarchy makes Create fail after it made the others.
  const std::string stale = V1Dir("pids", "sbx-stale");
  ASSERT_EQ(::mkdir(stale.c_str(), 0755), 0) << std::strerror(errno);
  auto cg = d->Create("sbx-stale", {.cpus = 1, .pids = 4});
  ASSERT_FALSE(cg.ok());
  EXPECT_EQ(cg.error().code, ErrorCode::kAlreadyExists);
  for (const std::string& dir : AllDirs("sbx-stale")) {
    EXPECT_EQ(Exists(dir), dir == stale) << dir;
  }
  EXPECT_EQ(::rmdir(stale.c_str()), 0);

  auto bad = d->Create("sbx-bad", {.memory_bytes = 1024});
  ASSERT_FALSE(bad.ok());
  for (const std::string& dir : AllDirs("sbx-bad")) EXPECT_FALSE(Exists(dir)) << dir;
}

// The wait in Destroy() sleeps in poll(POLLPRI) on cgroup.events and the kernel's notification
// ends it: the waiter is seen blocked in poll() before the child is killed, and it must return
// long before its 10 s deadline.
TEST_F(HybridTest, WaitForPopulatedZeroWakesOnTheKernelsNotification) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  auto cg = d->Create("sbx-wait", {});
  ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  Child child(PlainFork);
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(WriteText(UnifiedDir("sbx-wait") + "/cgroup.procs", std::to_string(child.pid())));

  std::atomic<pid_t> waiter_tid{0};
  Status waited;
  auto start = std::chrono::steady_clock::now();
  std::thread waiter([&] {
    waiter_tid = static_cast<pid_t>(::syscall(SYS_gettid));
    waited = internal::WaitForEvent(*RealCgroupFs(), UnifiedDir("sbx-wait") + "/cgroup.events",
                                    "populated", 0, start + std::chrono::seconds(10));
  });
  // /proc/<tid>/syscall starts with the number of the syscall the thread is blocked in.
  bool in_poll = false;
  while (!in_poll && std::chrono::steady_clock::now() < start + std::chrono::seconds(5)) {
    pid_t tid = waiter_tid.load();
    if (tid != 0) {
      std::string sc = ReadText("/proc/self/task/" + std::to_string(tid) + "/syscall");
      in_poll = sc.rfind(std::to_string(SYS_poll) + " ", 0) == 0;
    }
    if (!in_poll) std::this_thread::yield();
  }
  EXPECT_TRUE(in_poll) << "the waiter never blocked in poll()";
  ::kill(child.pid(), SIGKILL);
  waiter.join();
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(waited.ok()) << waited.error().ToString();
  EXPECT_LT(elapsed, std::chrono::seconds(5));
  EXPECT_EQ(child.WaitSignal(), SIGKILL);
  ASSERT_TRUE((*cg)->Destroy().ok());
}

TEST_F(HybridTest, DestructorRemovesTheCgroup) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  {
    auto cg = d->Create("sbx-scoped", {.pids = 4});
    ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  }
  for (const std::string& dir : AllDirs("sbx-scoped")) EXPECT_FALSE(Exists(dir)) << dir;
}

}  // namespace
}  // namespace sbx::cgroup
