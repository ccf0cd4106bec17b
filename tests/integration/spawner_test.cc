// Sandboxes whose inits are cloned by the spawner (isolate/spawner.h), as the daemon makes them:
// the same isolation, the same results, and the spawner's end takes its sandboxes with it.
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "base/fs.h"
#include "base/syscalls.h"
#include "base/unique_fd.h"
#include "integration/sandbox_harness.h"
#include "isolate/spawner.h"
#include "seccomp/seccomp.h"
#include "tests/support/skip.h"

namespace sbx::testing {
namespace {

using isolate::EndReason;

class SpawnerTest : public SandboxTest {
 protected:
  void SetUp() override {
    SandboxTest::SetUp();
    if (IsSkipped()) return;
    // Each test is a process of its own (gtest_discover_tests): started while it has one thread.
    auto s = isolate::Spawner::Start();
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    spawner_ = std::move(*s);
    engine_.spawner = spawner_.get();
  }
  void TearDown() override {
    engine_.spawner = nullptr;
    spawner_.reset();
  }

  static pid_t ParentOf(pid_t pid) {
    auto status = ReadFile(fmt::format("/proc/{}/status", pid));
    if (!status.ok()) return -1;
    auto at = status->find("\nPPid:\t");
    return at == std::string::npos ? -1 : std::atoi(status->c_str() + at + 7);
  }

  std::unique_ptr<isolate::Spawner> spawner_;
};

TEST_F(SpawnerTest, TheInitIsTheSpawnersChildAndRunsLikeAnyOther) {
  auto sb = Create(DefaultSpec());
  ASSERT_TRUE(sb);
  EXPECT_EQ(ParentOf(sb->init_pid()), spawner_->pid());
  RunOutput o = RunIn(*sb, {"/bin/sh", "-c", "echo out; echo err >&2; exit 7"});
  EXPECT_EQ(o.result.reason, EndReason::kExited);
  EXPECT_EQ(o.result.exit_code, 7);
  EXPECT_EQ(o.out, "out\n");
  EXPECT_EQ(o.err, "err\n");
  EXPECT_EQ(o.result.isolation.network, "none");
  // A second process in the same sandbox: the init keeps serving.
  RunOutput again = RunIn(*sb, {"/bin/sh", "-c", "echo $$"});
  EXPECT_EQ(again.result.exit_code, 0);
  EXPECT_NE(again.out, "1\n");
  ASSERT_TRUE(sb->Destroy().ok());
}

TEST_F(SpawnerTest, AHostileProgramStillCannotSeeOrSignalTheHost) {
  // The spawner (a host process, root) is outside the pid namespace: not visible, not killable.
  std::string script = fmt::format("kill -9 {} 2>/dev/null && echo KILLED; ls /proc | grep -c '^[0-9]'",
                                   spawner_->pid());
  RunOutput o = Run(DefaultSpec(), {"/bin/sh", "-c", script});
  EXPECT_EQ(o.out.find("KILLED"), std::string::npos) << o.out;
  EXPECT_EQ(::kill(spawner_->pid(), 0), 0) << "the spawner died";
  // The sandbox's own few processes, not the host's hundreds.
  EXPECT_LT(std::atoi(o.out.c_str()), 8) << o.out;
}

TEST_F(SpawnerTest, DeniedSyscallsAreAnsweredAndCountedThroughTheListenerHandoff) {
  if (!seccomp::NotifySupported()) SBX_SKIP_PRIVILEGED("seccomp user notification needs Linux 5.5");
  auto spec = DefaultSpec();
  seccomp::CompileOptions opts;
  opts.notify_errors = true;
  auto prog = seccomp::Compile(seccomp::DefaultProfile(), opts);
  ASSERT_TRUE(prog.ok()) << prog.error().ToString();
  spec.seccomp = std::move(*prog);
  RunOutput o = Run(spec, {Hostile(), "ptrace-times", "2"});
  EXPECT_EQ(o.result.reason, EndReason::kExited) << o.err;
  EXPECT_NE(o.out.find("DENIED errno=1 "), std::string::npos) << o.out;
  ASSERT_FALSE(o.result.seccomp_denials.empty());
  EXPECT_EQ(o.result.seccomp_denials.front().name, "ptrace");
  EXPECT_EQ(o.result.seccomp_denials.front().count, 2u);
}

TEST_F(SpawnerTest, APayloadIgnoresNoSignalTheDaemonOrTheSpawnerIgnored) {
  // The daemon ignores SIGPIPE, the spawner SIGCHLD: neither may reach a payload's execve.
  struct sigaction old;
  struct sigaction ign;
  std::memset(&ign, 0, sizeof ign);
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ign, &old);
  // Signal 32, which glibc keeps for itself and its sigaction() refuses: an ancestor that
  // ignores it (a CI runner did) passes that on too, and it must not reach the payload either.
  struct {
    void* handler;
    unsigned long flags;
    void* restorer;
    uint64_t mask;
  } raw_ign = {reinterpret_cast<void*>(SIG_IGN), 0, nullptr, 0}, raw_old = {};
  ASSERT_EQ(::syscall(SYS_rt_sigaction, 32, &raw_ign, &raw_old, sizeof raw_ign.mask), 0);
  engine_.spawner = nullptr;
  spawner_.reset();
  auto s = isolate::Spawner::Start();  // inherits the ignored SIGPIPE, as the daemon's does
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  spawner_ = std::move(*s);
  engine_.spawner = spawner_.get();
  RunOutput o = Run(DefaultSpec(), {"/bin/sh", "-c", "grep SigIgn /proc/self/status"});
  // A pipe whose reader is gone kills its writer with SIGPIPE (status 128+13), as on any host.
  RunOutput pipe = Run(DefaultSpec(), {"/bin/sh", "-c", "(yes; echo status=$? >&2) | head -c1"});
  ::sigaction(SIGPIPE, &old, nullptr);
  ::syscall(SYS_rt_sigaction, 32, &raw_old, nullptr, sizeof raw_old.mask);
  EXPECT_EQ(o.out, "SigIgn:\t0000000000000000\n");
  EXPECT_NE(pipe.err.find("status=141"), std::string::npos) << pipe.err;
  EXPECT_EQ(pipe.err.find("Broken pipe"), std::string::npos) << pipe.err;
}

TEST_F(SpawnerTest, SandboxesCreatedFromManyThreadsAtOnceAreEachTheirOwn) {
  constexpr int kThreads = 6;
  std::vector<std::string> outs(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      RunOutput o = Run(DefaultSpec(), {"/bin/sh", "-c", fmt::format("echo {}; hostname", i)});
      outs[i] = o.out;
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) EXPECT_EQ(outs[i], fmt::format("{}\nsandbox\n", i));
}

TEST_F(SpawnerTest, ASpawnerThatDiesLeavesItsSandboxesToTheDaemon) {
  auto sb = Create(DefaultSpec());
  ASSERT_TRUE(sb);
  UniqueFd init(sys::PidfdOpen(sb->init_pid()));
  ASSERT_TRUE(init);
  isolate::ProcessSpec p;
  p.argv = {"/bin/sh", "-c", "echo running; exec sleep 600"};
  p.timeout_ms = 60'000;
  bool killed = false;
  // Once the program runs, the spawner dies; the daemon still holds the sandbox and ends it.
  auto r = sb->Run(p, [&](int, std::string_view) {
    if (killed) return;
    killed = ::kill(spawner_->pid(), SIGKILL) == 0;
    sb->Cancel();
  });
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_TRUE(killed);
  EXPECT_EQ(r->reason, EndReason::kCancelled);
  ASSERT_TRUE(sb->Destroy().ok());
  // Exited (perhaps not yet reaped: with the spawner gone, the host's init reaps it).
  struct pollfd pfd = {init.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 0), 1) << "the init outlived Destroy()";
  // A spawner that is gone is a clear error, not a hang.
  auto next = isolate::Sandbox::Create(DefaultSpec(), *driver_, engine_);
  ASSERT_FALSE(next.ok());
  EXPECT_NE(next.error().ToString().find("spawner"), std::string::npos) << next.error().ToString();
}

TEST_F(SpawnerTest, ADaemonKilledWithSigkillTakesItsSandboxesWithIt) {
#if defined(__SANITIZE_THREAD__)
  // The forked "daemon" below starts a spawner, which refuses a process with a second thread;
  // ThreadSanitizer starts one of its own in every forked child.
  GTEST_SKIP() << "ThreadSanitizer runs a thread of its own in a forked child";
#endif
  // The "daemon" is a child process holding a spawner and a sandbox whose program runs; it
  // reports the init's pid once the program has started, then is killed with SIGKILL.
  int report[2];
  ASSERT_EQ(::pipe(report), 0);
  spawner_.reset();
  engine_.spawner = nullptr;
  const auto spec = DefaultSpec();
  pid_t daemon = ::fork();
  ASSERT_GE(daemon, 0);
  if (daemon == 0) {
    auto s = isolate::Spawner::Start();
    if (!s.ok()) ::_exit(2);
    isolate::EngineOptions engine;
    engine.spawner = s->get();
    auto sb = isolate::Sandbox::Create(spec, *driver_, engine);
    if (!sb.ok()) ::_exit(3);
    isolate::ProcessSpec p;
    p.argv = {"/bin/sh", "-c", "echo running; exec sleep 600"};
    pid_t init = (*sb)->init_pid();
    (void)(*sb)->Run(p, [&](int, std::string_view) {
      (void)!::write(report[1], &init, sizeof init);
    });
    ::_exit(4);
  }
  ::close(report[1]);
  pid_t init = -1;
  ASSERT_EQ(::read(report[0], &init, sizeof init), static_cast<ssize_t>(sizeof init));
  ::close(report[0]);
  UniqueFd init_fd(sys::PidfdOpen(init));
  ASSERT_TRUE(init_fd);
  ASSERT_EQ(::kill(daemon, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(daemon, &status, 0), daemon);
  // The init sees its control socket close and exits; the kernel ends the pid namespace.
  struct pollfd pfd = {init_fd.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 10'000), 1) << "the sandbox outlived its daemon";
  // What a restarted daemon removes: the sandbox's cgroups, now empty.
  for (const auto& root : CgroupRoots()) ::rmdir((root + "/" + parent_ + "/" + spec.id).c_str());
}

TEST_F(SpawnerTest, StartingOneFromAThreadedProcessIsRefused) {
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::thread other([&] {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return release; });
  });
  auto s = isolate::Spawner::Start();
  {
    std::lock_guard<std::mutex> lk(mu);
    release = true;
  }
  cv.notify_one();
  other.join();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(s.error().message.find("one thread"), std::string::npos) << s.error().message;
}

}  // namespace
}  // namespace sbx::testing
