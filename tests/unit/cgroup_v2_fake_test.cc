// The v2 driver rooted at a temp dir that emulates cgroupfs. No privileges.
//
// FakeCgroupFs does, in a plain directory tree, what the kernel does on its own in cgroupfs:
// mkdir creates the interface files (controller files only for the controllers the parent's
// cgroup.subtree_control enables), a write replaces a file's value, cgroup.subtree_control accepts
// only controllers listed in cgroup.controllers, cgroup.freeze updates cgroup.events' "frozen",
// cgroup.procs lists only live processes, and rmdir
// removes the interface files itself but refuses (EBUSY) while processes or child cgroups remain.
// Everything else goes to the real filesystem, and every successful mkdir/write/rmdir is logged
// so the tests can check exactly what the driver did.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cgroup/cgroup.h"
#include "cgroup/cgroup_fs.h"

namespace sbx::cgroup {
namespace {

namespace stdfs = std::filesystem;

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void PutText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

std::vector<std::string> WordsOf(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

bool Alive(pid_t pid) {
  std::string stat = ReadText("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

class FakeCgroupFs : public CgroupFs {
 public:
  explicit FakeCgroupFs(std::string root) : root_(std::move(root)) {}

  bool has_kill = true;    // cgroup.kill, Linux 5.14
  bool has_freeze = true;  // cgroup.freeze, Linux 5.2
  bool has_swap = true;    // memory.swap.max, swap accounting on
  std::string fail_write;  // a file name whose writes fail with EINVAL
  std::vector<std::string> ops;

  Status MakeDir(const std::string& path) override {
    SBX_TRY(CgroupFs::MakeDir(path));
    ops.push_back("mkdir " + Rel(path));
    std::vector<std::string> enabled =
        WordsOf(ReadText(stdfs::path(path).parent_path() / "cgroup.subtree_control"));
    auto on = [&](const char* c) {
      return std::find(enabled.begin(), enabled.end(), c) != enabled.end();
    };
    std::string controllers;
    for (const auto& c : enabled) controllers += (controllers.empty() ? "" : " ") + c;
    Put(path, "cgroup.controllers", controllers + "\n");
    Put(path, "cgroup.subtree_control", "");
    Put(path, "cgroup.procs", "");
    Put(path, "cgroup.events", "populated 0\nfrozen 0\n");
    if (has_freeze) Put(path, "cgroup.freeze", "0\n");
    if (has_kill) Put(path, "cgroup.kill", "");
    Put(path, "cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n");
    if (on("cpu")) Put(path, "cpu.max", "max 100000\n");
    if (on("memory")) {
      Put(path, "memory.max", "max\n");
      if (has_swap) Put(path, "memory.swap.max", "max\n");
      Put(path, "memory.oom.group", "0\n");
      Put(path, "memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n");
      Put(path, "memory.peak", "0\n");
    }
    if (on("pids")) Put(path, "pids.max", "max\n");
    return Ok();
  }

  Status RemoveDir(const std::string& path) override {
    std::error_code ec;
    if (!stdfs::is_directory(path, ec)) return ErrnoValueError(ENOENT, "rmdir {}", path);
    auto procs = Read(path + "/cgroup.procs");
    bool busy = procs.ok() && !WordsOf(*procs).empty();
    for (const auto& e : stdfs::directory_iterator(path)) busy = busy || e.is_directory();
    if (busy) return ErrnoValueError(EBUSY, "rmdir {}", path);
    for (const auto& e : stdfs::directory_iterator(path)) stdfs::remove(e.path());
    SBX_TRY(CgroupFs::RemoveDir(path));
    ops.push_back("rmdir " + Rel(path));
    return Ok();
  }

  Result<std::string> Read(const std::string& path) override {
    auto text = CgroupFs::Read(path);
    if (!text.ok() || stdfs::path(path).filename() != "cgroup.procs") return text;
    std::string live;
    for (const auto& w : WordsOf(*text)) {
      if (Alive(std::stoi(w))) live += w + "\n";
    }
    return live;
  }

  Status Write(const std::string& path, std::string_view value) override {
    std::string file = stdfs::path(path).filename();
    if (::access(path.c_str(), F_OK) != 0) return ErrnoError("open {}", path);
    if (file == fail_write) return ErrnoValueError(EINVAL, "write '{}' to {}", value, path);
    std::string content(value);
    if (file == "cgroup.subtree_control") {
      std::string dir = stdfs::path(path).parent_path();
      std::vector<std::string> offered = WordsOf(ReadText(dir + "/cgroup.controllers"));
      std::vector<std::string> enabled = WordsOf(ReadText(path));
      for (const auto& tok : WordsOf(content)) {
        std::string c = tok.substr(1);
        if (std::find(offered.begin(), offered.end(), c) == offered.end()) {
          return ErrnoValueError(ENOENT, "write '{}' to {}", value, path);
        }
        if (tok[0] == '+' && std::find(enabled.begin(), enabled.end(), c) == enabled.end()) {
          enabled.push_back(c);
        }
      }
      content.clear();
      for (const auto& c : offered) {  // the kernel lists them in its own order
        if (std::find(enabled.begin(), enabled.end(), c) != enabled.end()) {
          content += (content.empty() ? "" : " ") + c;
        }
      }
      content += "\n";
    }
    PutText(path, content);
    if (file == "cgroup.freeze") {
      // The kernel reports the new state in cgroup.events once every task has stopped.
      std::string events = stdfs::path(path).parent_path() / "cgroup.events";
      bool populated = ReadText(events).find("populated 1") != std::string::npos;
      PutText(events,
              fmt::format("populated {}\nfrozen {}\n", populated ? 1 : 0, content == "1" ? 1 : 0));
    }
    ops.push_back("write " + Rel(path) + " " + std::string(value));
    return Ok();
  }

 private:
  std::string Rel(const std::string& path) const { return path.substr(root_.size() + 1); }
  static void Put(const std::string& dir, const char* file, const std::string& text) {
    PutText(dir + "/" + file, text);
  }

  std::string root_;
};

// A forked child blocked in read(2) on a pipe until killed.
struct BlockedChild {
  BlockedChild() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    pid = ::fork();
    if (pid == 0) {
      ::close(fds[1]);
      char c;
      (void)!::read(fds[0], &c, 1);
      ::_exit(0);
    }
    ::close(fds[0]);
    write_end = fds[1];
  }
  ~BlockedChild() {
    if (write_end >= 0) ::close(write_end);
    if (pid > 0 && !reaped) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  // The signal that ended the child, or 0.
  int WaitSignal() {
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid) return 0;
    reaped = true;
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  }
  pid_t pid = -1;
  int write_end = -1;
  bool reaped = false;
};

constexpr uint64_t kMiB = 1024 * 1024;

class V2FakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sbx-cgroup-v2fake-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    PutText(root_ + "/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
    PutText(root_ + "/cgroup.subtree_control", "cpu io memory pids\n");
    PutText(root_ + "/cgroup.procs", "");
    fake_ = std::make_unique<FakeCgroupFs>(root_);
    host_.layout = Layout::kV2;
    host_.unified_mount = root_;
    host_.v2_controllers = {"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"};
  }
  void TearDown() override { stdfs::remove_all(root_); }

  DriverOptions Options() {
    return {.parent = "sandboxd-test",
            .destroy_timeout = std::chrono::milliseconds(2000),
            .fs = fake_.get()};
  }
  std::unique_ptr<Driver> OpenDriver() {
    auto d = Driver::Open(Options(), host_);
    EXPECT_TRUE(d.ok()) << d.error().ToString();
    return d.ok() ? std::move(d).value() : nullptr;
  }
  // The ops logged since the last call.
  std::vector<std::string> NewOps() {
    std::vector<std::string> out(fake_->ops.begin() + seen_, fake_->ops.end());
    seen_ = fake_->ops.size();
    return out;
  }
  std::string Path(const std::string& rel) const { return root_ + "/" + rel; }

  std::string root_;
  std::unique_ptr<FakeCgroupFs> fake_;
  HostInfo host_;
  size_t seen_ = 0;
};

using Ops = std::vector<std::string>;

TEST_F(V2FakeTest, OpenCreatesTheParentAndEnablesControllersInItOnly) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(NewOps(), (Ops{"mkdir sandboxd-test",
                           "write sandboxd-test/cgroup.subtree_control +cpu +memory +pids",
                           "write sandboxd-test/cgroup.subtree_control +io"}));
  EXPECT_EQ(ReadText(Path("sandboxd-test/cgroup.subtree_control")), "cpu io memory pids\n");
  EXPECT_EQ(ReadText(Path("cgroup.subtree_control")), "cpu io memory pids\n");
  EXPECT_EQ(d->host().unified_mount, root_);
}

TEST_F(V2FakeTest, OpenKeepsAnExistingParent) {
  ASSERT_TRUE(fake_->MakeDir(Path("sandboxd-test")).ok());
  NewOps();
  ASSERT_NE(OpenDriver(), nullptr);
  EXPECT_EQ(NewOps(), (Ops{"write sandboxd-test/cgroup.subtree_control +cpu +memory +pids",
                           "write sandboxd-test/cgroup.subtree_control +io"}));
}

TEST_F(V2FakeTest, OpenSaysWhichControllerIsNotDelegatedAndRemovesTheParent) {
  PutText(root_ + "/cgroup.subtree_control", "cpu pids\n");
  auto d = Driver::Open(Options(), host_);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(d.error().message,
            "cgroup v2 controller 'memory' not enabled in " + root_ +
                "/cgroup.subtree_control; run under systemd with Delegate=yes or enable it");
  EXPECT_EQ(NewOps(), (Ops{"mkdir sandboxd-test", "rmdir sandboxd-test"}));
  EXPECT_FALSE(stdfs::exists(Path("sandboxd-test")));
}

TEST_F(V2FakeTest, OpenLeavesAnExistingParentInPlaceOnFailure) {
  PutText(root_ + "/cgroup.subtree_control", "cpu memory\n");
  ASSERT_TRUE(fake_->MakeDir(Path("sandboxd-test")).ok());
  NewOps();
  auto d = Driver::Open(Options(), host_);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("'pids' not enabled"), std::string::npos);
  EXPECT_TRUE(NewOps().empty());
  EXPECT_TRUE(stdfs::exists(Path("sandboxd-test")));
}

TEST_F(V2FakeTest, TheParentItMadeGoesWithTheDriverWhenEmpty) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  {
    auto cg = d->Create("sbx-1", {.pids = 8});
    ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  }
  NewOps();
  d.reset();
  EXPECT_EQ(NewOps(), (Ops{"rmdir sandboxd-test"}));
  EXPECT_FALSE(stdfs::exists(Path("sandboxd-test")));
  // The next driver makes it again.
  ASSERT_NE(OpenDriver(), nullptr);
  EXPECT_EQ(NewOps(), (Ops{"mkdir sandboxd-test",
                           "write sandboxd-test/cgroup.subtree_control +cpu +memory +pids",
                           "write sandboxd-test/cgroup.subtree_control +io",
                           "rmdir sandboxd-test"}));
}

TEST_F(V2FakeTest, AParentThatWasThereStays) {
  ASSERT_TRUE(fake_->MakeDir(Path("sandboxd-test")).ok());
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  NewOps();
  d.reset();
  EXPECT_TRUE(NewOps().empty());
  EXPECT_TRUE(stdfs::exists(Path("sandboxd-test")));
}

TEST_F(V2FakeTest, TheParentStaysWhileAnotherDriverUsesIt) {
  auto maker = OpenDriver();
  ASSERT_NE(maker, nullptr);
  auto other = OpenDriver();
  ASSERT_NE(other, nullptr);
  NewOps();
  maker.reset();
  EXPECT_TRUE(NewOps().empty());
  auto cg = other->Create("sbx-2", {});
  ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  // With a cgroup in it, not even its maker could remove it.
  auto third = OpenDriver();
  ASSERT_NE(third, nullptr);
  other.reset();
  third.reset();
  EXPECT_TRUE(stdfs::exists(Path("sandboxd-test/sbx-2")));
}

TEST_F(V2FakeTest, OpenSaysWhenTheHostLacksAController) {
  host_.v2_controllers = {"cpu", "pids"};
  PutText(root_ + "/cgroup.controllers", "cpu pids\n");
  PutText(root_ + "/cgroup.subtree_control", "cpu pids\n");
  auto d = Driver::Open(Options(), host_);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("'memory' is not available on this host"), std::string::npos)
      << d.error().message;
}

TEST_F(V2FakeTest, CreateWritesExactlyThePlannedFiles) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  NewOps();
  auto cg = d->Create("sbx-1", {.cpus = 1.5, .memory_bytes = 256 * kMiB, .pids = 64});
  ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  EXPECT_EQ(NewOps(),
            (Ops{"mkdir sandboxd-test/sbx-1", "write sandboxd-test/sbx-1/cpu.max 150000 100000",
                 "write sandboxd-test/sbx-1/memory.max 268435456",
                 "write sandboxd-test/sbx-1/memory.swap.max 0",
                 "write sandboxd-test/sbx-1/memory.oom.group 1",
                 "write sandboxd-test/sbx-1/pids.max 64"}));
  const std::string dir = Path("sandboxd-test/sbx-1");
  EXPECT_EQ(ReadText(dir + "/cpu.max"), "150000 100000");
  EXPECT_EQ(ReadText(dir + "/memory.max"), "268435456");
  EXPECT_EQ(ReadText(dir + "/memory.swap.max"), "0");
  EXPECT_EQ(ReadText(dir + "/memory.oom.group"), "1");
  EXPECT_EQ(ReadText(dir + "/pids.max"), "64");
  EXPECT_EQ((*cg)->name(), "sbx-1");
  EXPECT_EQ((*cg)->version(), "v2");
  EXPECT_EQ((*cg)->controllers(), (std::vector<std::string>{"cpu", "memory", "pids"}));
  EXPECT_TRUE((*cg)->AttachV1(::getpid()).ok());  // a no-op on v2
  EXPECT_TRUE(NewOps().empty());

  // The dirfd is an O_PATH handle on the cgroup's directory.
  int fd = (*cg)->unified_dirfd();
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::fcntl(fd, F_GETFL) & O_PATH, O_PATH);
  EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
  struct stat by_fd, by_path;
  ASSERT_EQ(::fstat(fd, &by_fd), 0);
  ASSERT_EQ(::stat(dir.c_str(), &by_path), 0);
  EXPECT_EQ(by_fd.st_ino, by_path.st_ino);
}

TEST_F(V2FakeTest, CreateWithoutLimitsOnlyMakesTheDirectory) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  NewOps();
  auto cg = d->Create("plain", {});
  ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  EXPECT_EQ(NewOps(), (Ops{"mkdir sandboxd-test/plain"}));
  EXPECT_TRUE((*cg)->controllers().empty());
}

TEST_F(V2FakeTest, CreateSkipsSwapWhenTheKernelDoesNotAccountIt) {
  fake_->has_swap = false;
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  NewOps();
  auto cg = d->Create("sbx-1", {.memory_bytes = 64 * kMiB});
  ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  EXPECT_EQ(NewOps(),
            (Ops{"mkdir sandboxd-test/sbx-1", "write sandboxd-test/sbx-1/memory.max 67108864",
                 "write sandboxd-test/sbx-1/memory.oom.group 1"}));
}

TEST_F(V2FakeTest, CreateFailureLeavesNothingBehind) {
  fake_->fail_write = "pids.max";
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  NewOps();
  auto cg = d->Create("sbx-1", {.cpus = 1, .pids = 10});
  ASSERT_FALSE(cg.ok());
  EXPECT_EQ(cg.error().sys_errno, EINVAL);
  EXPECT_NE(cg.error().ToString().find("pids.max"), std::string::npos) << cg.error().ToString();
  EXPECT_EQ(NewOps(),
            (Ops{"mkdir sandboxd-test/sbx-1", "write sandboxd-test/sbx-1/cpu.max 100000 100000",
                 "rmdir sandboxd-test/sbx-1"}));
  EXPECT_FALSE(stdfs::exists(Path("sandboxd-test/sbx-1")));
}

TEST_F(V2FakeTest, CreateValidatesBeforeTouchingAnything) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  NewOps();
  auto bad_limits = d->Create("sbx-1", {.memory_bytes = 1 * kMiB});
  ASSERT_FALSE(bad_limits.ok());
  EXPECT_EQ(bad_limits.error().code, ErrorCode::kInvalidArgument);
  for (const std::string& name :
       std::vector<std::string>{"", ".", "..", "a/b", "../x", "sp ace", std::string(201, 'a')}) {
    auto cg = d->Create(name, {});
    ASSERT_FALSE(cg.ok()) << name;
    EXPECT_EQ(cg.error().code, ErrorCode::kInvalidArgument) << name;
  }
  EXPECT_TRUE(NewOps().empty());
}

TEST_F(V2FakeTest, CreateRefusesAnExistingNameAndLeavesItAlone) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  auto first = d->Create("sbx-1", {.pids = 5});
  ASSERT_TRUE(first.ok());
  NewOps();
  auto second = d->Create("sbx-1", {.pids = 7});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::kAlreadyExists);
  EXPECT_TRUE(NewOps().empty());
  EXPECT_EQ(ReadText(Path("sandboxd-test/sbx-1/pids.max")), "5");
}

TEST_F(V2FakeTest, DestroyKillsThenRemovesOnce) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  auto cg = d->Create("sbx-1", {.pids = 5});
  ASSERT_TRUE(cg.ok());
  NewOps();
  ASSERT_TRUE((*cg)->Destroy().ok());
  EXPECT_EQ(NewOps(),
            (Ops{"write sandboxd-test/sbx-1/cgroup.kill 1", "rmdir sandboxd-test/sbx-1"}));
  EXPECT_FALSE(stdfs::exists(Path("sandboxd-test/sbx-1")));
  EXPECT_TRUE(stdfs::exists(Path("sandboxd-test")));
  EXPECT_EQ((*cg)->unified_dirfd(), -1);

  EXPECT_TRUE((*cg)->Destroy().ok());
  EXPECT_TRUE((*cg)->Kill().ok());
  EXPECT_TRUE(NewOps().empty());
  auto usage = (*cg)->ReadUsage();
  ASSERT_FALSE(usage.ok());
  EXPECT_EQ(usage.error().code, ErrorCode::kFailedPrecondition);
}

TEST_F(V2FakeTest, DestructorDestroys) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  {
    auto cg = d->Create("sbx-1", {});
    ASSERT_TRUE(cg.ok());
    NewOps();
  }
  EXPECT_EQ(NewOps(),
            (Ops{"write sandboxd-test/sbx-1/cgroup.kill 1", "rmdir sandboxd-test/sbx-1"}));
}

TEST_F(V2FakeTest, DestroyRemovesSubCgroupsDeepestFirst) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  auto cg = d->Create("sbx-1", {});
  ASSERT_TRUE(cg.ok());
  ASSERT_TRUE(fake_->MakeDir(Path("sandboxd-test/sbx-1/inner")).ok());
  NewOps();
  ASSERT_TRUE((*cg)->Destroy().ok());
  EXPECT_EQ(NewOps(), (Ops{"write sandboxd-test/sbx-1/cgroup.kill 1",
                           "rmdir sandboxd-test/sbx-1/inner", "rmdir sandboxd-test/sbx-1"}));
}

TEST_F(V2FakeTest, RemoveLeftoversKillsAndRemovesWhatACrashLeft) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  // What a daemon killed with SIGKILL leaves: sandbox cgroups, one with a sub-cgroup.
  ASSERT_TRUE(fake_->MakeDir(Path("sandboxd-test/run_a")).ok());
  ASSERT_TRUE(fake_->MakeDir(Path("sandboxd-test/run_b")).ok());
  ASSERT_TRUE(fake_->MakeDir(Path("sandboxd-test/run_b/inner")).ok());
  NewOps();
  auto removed = d->RemoveLeftovers();
  ASSERT_TRUE(removed.ok()) << removed.error().ToString();
  std::vector<std::string> names = *removed;
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"run_a", "run_b"}));
  Ops ops = NewOps();
  for (const char* want : {"write sandboxd-test/run_a/cgroup.kill 1", "rmdir sandboxd-test/run_a",
                           "write sandboxd-test/run_b/cgroup.kill 1",
                           "rmdir sandboxd-test/run_b/inner", "rmdir sandboxd-test/run_b"}) {
    EXPECT_NE(std::find(ops.begin(), ops.end(), want), ops.end()) << want;
  }
  EXPECT_FALSE(stdfs::exists(Path("sandboxd-test/run_a")));
  EXPECT_FALSE(stdfs::exists(Path("sandboxd-test/run_b")));
  EXPECT_TRUE(stdfs::exists(Path("sandboxd-test")));
  auto again = d->RemoveLeftovers();
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
}

TEST_F(V2FakeTest, DestroyWaitsForPopulatedZeroThenGivesUpAndCanBeRetried) {
  DriverOptions options = Options();
  options.destroy_timeout = std::chrono::milliseconds(300);
  auto d = Driver::Open(options, host_);
  ASSERT_TRUE(d.ok());
  auto cg = (*d)->Create("sbx-1", {});
  ASSERT_TRUE(cg.ok());
  const std::string events = Path("sandboxd-test/sbx-1/cgroup.events");
  PutText(events, "populated 1\nfrozen 0\n");
  NewOps();

  auto start = std::chrono::steady_clock::now();
  Status s = (*cg)->Destroy();
  auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("still reads 'populated 1'"), std::string::npos)
      << s.error().ToString();
  EXPECT_GE(waited, std::chrono::milliseconds(250));  // it waited in poll() for the deadline
  EXPECT_LT(waited, std::chrono::seconds(3));
  EXPECT_EQ(NewOps(), (Ops{"write sandboxd-test/sbx-1/cgroup.kill 1"}));
  EXPECT_TRUE(stdfs::exists(Path("sandboxd-test/sbx-1")));

  PutText(events, "populated 0\nfrozen 0\n");
  ASSERT_TRUE((*cg)->Destroy().ok());
  EXPECT_EQ(NewOps(),
            (Ops{"write sandboxd-test/sbx-1/cgroup.kill 1", "rmdir sandboxd-test/sbx-1"}));
}

TEST_F(V2FakeTest, KillFallsBackToFreezeKillThawWithoutCgroupKill) {
  fake_->has_kill = false;
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  auto cg = d->Create("sbx-1", {});
  ASSERT_TRUE(cg.ok());
  BlockedChild a, b;
  ASSERT_GT(a.pid, 0);
  ASSERT_GT(b.pid, 0);
  const std::string dir = Path("sandboxd-test/sbx-1");
  PutText(dir + "/cgroup.procs", std::to_string(a.pid) + "\n" + std::to_string(b.pid) + "\n");
  PutText(dir + "/cgroup.events", "populated 1\nfrozen 0\n");
  NewOps();

  ASSERT_TRUE((*cg)->Kill().ok());
  EXPECT_EQ(a.WaitSignal(), SIGKILL);
  EXPECT_EQ(b.WaitSignal(), SIGKILL);
  EXPECT_EQ(NewOps(), (Ops{"write sandboxd-test/sbx-1/cgroup.freeze 1",
                           "write sandboxd-test/sbx-1/cgroup.freeze 0"}));
  EXPECT_EQ(ReadText(dir + "/cgroup.freeze"), "0");
  EXPECT_EQ(ReadText(dir + "/cgroup.events"), "populated 1\nfrozen 0\n");

  PutText(dir + "/cgroup.events", "populated 0\nfrozen 0\n");
  ASSERT_TRUE((*cg)->Destroy().ok());
  EXPECT_FALSE(stdfs::exists(dir));
}

TEST_F(V2FakeTest, KillWithoutAnyFreezerSignalsEveryListedProcess) {
  fake_->has_kill = false;
  fake_->has_freeze = false;
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  auto cg = d->Create("sbx-1", {});
  ASSERT_TRUE(cg.ok());
  ASSERT_TRUE(fake_->MakeDir(Path("sandboxd-test/sbx-1/inner")).ok());
  BlockedChild a, b;
  ASSERT_GT(a.pid, 0);
  ASSERT_GT(b.pid, 0);
  PutText(Path("sandboxd-test/sbx-1/cgroup.procs"), std::to_string(a.pid) + "\n");
  PutText(Path("sandboxd-test/sbx-1/inner/cgroup.procs"), std::to_string(b.pid) + "\n");
  NewOps();

  ASSERT_TRUE((*cg)->Kill().ok());
  EXPECT_EQ(a.WaitSignal(), SIGKILL);
  EXPECT_EQ(b.WaitSignal(), SIGKILL);
  EXPECT_TRUE(NewOps().empty());
  ASSERT_TRUE((*cg)->Destroy().ok());
}

TEST_F(V2FakeTest, KillLeavesProcessesOutsideTheCgroupAlone) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  fake_->has_kill = false;
  auto cg = d->Create("sbx-1", {});
  ASSERT_TRUE(cg.ok());
  BlockedChild outside;
  ASSERT_GT(outside.pid, 0);
  ASSERT_TRUE((*cg)->Kill().ok());
  EXPECT_TRUE(Alive(outside.pid));
}

TEST_F(V2FakeTest, ReadUsage) {
  auto d = OpenDriver();
  ASSERT_NE(d, nullptr);
  auto cg = d->Create("sbx-1", {.memory_bytes = 64 * kMiB});
  ASSERT_TRUE(cg.ok());
  const std::string dir = Path("sandboxd-test/sbx-1");
  PutText(dir + "/cpu.stat", "usage_usec 12345\nuser_usec 10000\nsystem_usec 2345\n");
  PutText(dir + "/memory.peak", "1048576\n");
  PutText(dir + "/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\noom_group_kill 1\n");
  auto u = (*cg)->ReadUsage();
  ASSERT_TRUE(u.ok()) << u.error().ToString();
  EXPECT_EQ(u->cpu_usec, 12345u);
  EXPECT_EQ(u->memory_peak_bytes, 1048576u);
  EXPECT_EQ(u->oom_kills, 2u);

  stdfs::remove(dir + "/memory.peak");  // Linux < 5.19
  u = (*cg)->ReadUsage();
  ASSERT_TRUE(u.ok()) << u.error().ToString();
  EXPECT_EQ(u->memory_peak_bytes, 0u);

  // io.stat: every device's bytes added up; a cgroup that did no block I/O has an empty one.
  PutText(dir + "/io.stat",
          "8:0 rbytes=4096 wbytes=1048576 rios=1 wios=8 dbytes=0 dios=0\n"
          "253:1 rbytes=8192 wbytes=0 rios=2 wios=0 dbytes=0 dios=0\n");
  u = (*cg)->ReadUsage();
  ASSERT_TRUE(u.ok()) << u.error().ToString();
  EXPECT_EQ(u->io_read_bytes, 12288u);
  EXPECT_EQ(u->io_write_bytes, 1048576u);
  PutText(dir + "/io.stat", "");
  u = (*cg)->ReadUsage();
  EXPECT_EQ(u->io_read_bytes, 0u);
  stdfs::remove(dir + "/io.stat");  // no io controller
  u = (*cg)->ReadUsage();
  EXPECT_FALSE(u->io_read_bytes.has_value());
  EXPECT_FALSE(u->io_write_bytes.has_value());

  PutText(dir + "/cpu.stat", "user_usec 1\n");
  u = (*cg)->ReadUsage();
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.error().message.find("usage_usec"), std::string::npos);
}

}  // namespace
}  // namespace sbx::cgroup
