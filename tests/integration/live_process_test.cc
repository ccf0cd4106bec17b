// Live processes in one long-lived sandbox (isolate/live.h): several at once, stdin from the
// caller, signals to a whole group, timeouts that take a process's whole tree, pause/resume,
// stats, and the errors for bad input. Real sandboxes; every wait is on an fd.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <random>

#include "base/syscalls.h"
#include "base/unique_fd.h"
#include "integration/live_support.h"
#include "integration/sandbox_harness.h"

namespace sbx::testing {
namespace {

using isolate::LiveEndReason;
using isolate::LiveProcess;
using isolate::LiveProcessSpec;
using isolate::LiveStdio;

class LiveProcessTest : public SandboxTest {
 protected:
  void SetUp() override {
    SandboxTest::SetUp();
    if (IsSkipped()) return;
    sb_ = Create(DefaultSpec());
    ASSERT_TRUE(sb_);
  }
  void TearDown() override {
    if (sb_) {
      Status st = sb_->Destroy();
      EXPECT_TRUE(st.ok()) << st.error().ToString();
    }
  }

  LiveProcess Start(LiveProcessSpec spec) {
    auto p = sb_->Start(spec);
    EXPECT_TRUE(p.ok()) << p.error().ToString();
    return p.ok() ? std::move(*p) : LiveProcess{};
  }
  static LiveProcessSpec Sh(const std::string& script, bool in_pipe = false) {
    LiveProcessSpec s;
    s.argv = {"/bin/sh", "-c", script};
    s.out = LiveStdio::Pipe();
    s.err = LiveStdio::Pipe();
    if (in_pipe) s.in = LiveStdio::Pipe();
    return s;
  }
  isolate::LiveProcessResult WaitDone(const LiveProcess& p, int ms = 20'000) {
    EXPECT_TRUE(Readable(p.done.get(), ms)) << "process " << p.id << " did not end";
    auto r = sb_->ResultOf(p.id);
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    return r.ok() ? *r : isolate::LiveProcessResult{};
  }

  std::unique_ptr<isolate::Sandbox> sb_;
};

TEST_F(LiveProcessTest, TwoAtOnceEachWithItsOwnOutputWhileABackgroundOneRuns) {
  LiveProcess a = Start(Sh("echo a-started; read line; echo a-got-$line; echo a-err >&2", true));
  ASSERT_GT(a.id, 0u);
  EXPECT_EQ(ReadUntil(a.out.get(), "a-started\n"), "a-started\n");

  LiveProcess b = Start(Sh("echo b-out; echo b-err >&2; exit 3"));
  ASSERT_GT(b.id, 0u);
  EXPECT_NE(a.id, b.id);
  EXPECT_EQ(ReadAll(b.out.get()), "b-out\n");
  EXPECT_EQ(ReadAll(b.err.get()), "b-err\n");
  auto rb = WaitDone(b);
  EXPECT_EQ(rb.reason, LiveEndReason::kExited);
  EXPECT_EQ(rb.exit_code, 3);

  // a is still waiting for its line: no result yet, its done fd silent.
  EXPECT_FALSE(Readable(a.done.get(), 0));
  auto ra_early = sb_->ResultOf(a.id);
  ASSERT_FALSE(ra_early.ok());
  EXPECT_EQ(ra_early.error().code, ErrorCode::kFailedPrecondition);

  ASSERT_EQ(::write(a.in.get(), "hello\n", 6), 6);
  a.in.reset();
  EXPECT_EQ(ReadAll(a.out.get()), "a-got-hello\n");
  EXPECT_EQ(ReadAll(a.err.get()), "a-err\n");
  auto ra = WaitDone(a);
  EXPECT_EQ(ra.reason, LiveEndReason::kExited);
  EXPECT_EQ(ra.exit_code, 0);
}

TEST_F(LiveProcessTest, StdinReachesCatByteExact) {
  std::string data(1 << 20, '\0');
  std::mt19937 rng(42);
  for (auto& c : data) c = static_cast<char>(rng());
  for (int i = 0; i < 256; ++i) data[static_cast<size_t>(i)] = static_cast<char>(i);
  LiveProcessSpec spec;
  spec.argv = {"cat"};
  spec.in = LiveStdio::Pipe();
  spec.out = LiveStdio::Pipe();
  LiveProcess p = Start(spec);
  ASSERT_GT(p.id, 0u);
  // Write and read side by side: cat blocks once its output pipe is full.
  std::string got;
  size_t sent = 0;
  char buf[65536];
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    struct pollfd fds[2] = {{p.out.get(), POLLIN, 0}, {p.in ? p.in.get() : -1, POLLOUT, 0}};
    if (::poll(fds, 2, 1000) < 0) break;
    if (fds[1].revents & POLLOUT) {
      ssize_t w = ::write(p.in.get(), data.data() + sent, data.size() - sent);
      if (w > 0) sent += static_cast<size_t>(w);
      if (sent == data.size()) p.in.reset();
    }
    if (fds[0].revents & (POLLIN | POLLHUP)) {
      ssize_t r = ::read(p.out.get(), buf, sizeof buf);
      if (r == 0) break;
      if (r > 0) got.append(buf, static_cast<size_t>(r));
    }
  }
  EXPECT_EQ(sent, data.size());
  EXPECT_EQ(got.size(), data.size());
  EXPECT_TRUE(got == data) << "the bytes cat wrote back differ";
  auto r = WaitDone(p);
  EXPECT_EQ(r.reason, LiveEndReason::kExited);
  EXPECT_EQ(r.exit_code, 0);
}

TEST_F(LiveProcessTest, SignalReachesTheWholeGroup) {
  // The shell's child installs its own handler (a shell's background job would ignore SIGINT:
  // POSIX, job control off), so both report the SIGINT they got.
  const std::string script =
      "trap 'echo parent-int; wait; exit 5' INT; "
      "perl -e '$|=1; $SIG{INT}=sub{print qq(child-int\\n); exit 0}; print qq(ready\\n); "
      "sleep 1 while 1' & wait";
  LiveProcess p = Start(Sh(script));
  ASSERT_GT(p.id, 0u);
  std::string out = ReadUntil(p.out.get(), "ready\n");
  ASSERT_NE(out.find("ready\n"), std::string::npos) << out;
  Status st = sb_->Signal(p.id, SIGINT);
  ASSERT_TRUE(st.ok()) << st.error().ToString();
  out = ReadAll(p.out.get());
  EXPECT_NE(out.find("child-int"), std::string::npos) << out;
  EXPECT_NE(out.find("parent-int"), std::string::npos) << out;
  auto r = WaitDone(p);
  EXPECT_EQ(r.reason, LiveEndReason::kExited);
  EXPECT_EQ(r.exit_code, 5);
}

TEST_F(LiveProcessTest, ASignalRightAfterTheStartIsNeverRefused) {
  // A process signalled at once may not have reached its setsid() yet: its group does not
  // exist, and the signal goes to it alone instead of being refused as "has ended".
  for (int i = 0; i < 30; ++i) {
    LiveProcess p = Start(Sh("sleep 30"));
    ASSERT_GT(p.id, 0u);
    Status st = sb_->Signal(p.id, SIGKILL);
    ASSERT_TRUE(st.ok()) << "round " << i << ": " << st.error().ToString();
    auto r = WaitDone(p);
    EXPECT_EQ(r.reason, LiveEndReason::kSignaled) << "round " << i;
  }
}

TEST_F(LiveProcessTest, TimeoutKillsADoubleForkedSetsidGrandchildWhileAnotherProcessRuns) {
  LiveProcess keeper = Start(Sh("echo keeper-up; read line; echo keeper-$line", true));
  ASSERT_EQ(ReadUntil(keeper.out.get(), "keeper-up\n"), "keeper-up\n");

  // The subshell forks `setsid sleep`, then exits: the sleep is re-parented to the sandbox's
  // init, in a session of its own, out of reach of any process group signal.
  LiveProcessSpec spec = Sh("(setsid sleep 1000 &); echo started; exec sleep 1000");
  spec.timeout_ms = 3000;
  LiveProcess p = Start(spec);
  ASSERT_GT(p.id, 0u);
  ASSERT_EQ(ReadUntil(p.out.get(), "started\n"), "started\n");
  auto pids = sb_->HostPids(p.id);
  ASSERT_TRUE(pids.ok()) << pids.error().ToString();
  ASSERT_GE(pids->size(), 2u) << "the shell and the setsid'd sleep";
  std::vector<UniqueFd> pidfds;
  for (pid_t pid : *pids) {
    UniqueFd fd(sys::PidfdOpen(pid));
    if (fd) pidfds.push_back(std::move(fd));
  }
  ASSERT_GE(pidfds.size(), 2u);

  auto r = WaitDone(p);
  EXPECT_EQ(r.reason, LiveEndReason::kTimedOut);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_GE(r.wall_ms, 3000u);
  // Every process of its tree has exited (a pidfd turns readable when its process exits), and
  // its cgroup is empty.
  for (auto& fd : pidfds) EXPECT_TRUE(Readable(fd.get(), 0)) << "a process of the tree lives on";
  auto left = sb_->HostPids(p.id);
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());

  // The other process was not touched.
  EXPECT_FALSE(Readable(keeper.done.get(), 0));
  ASSERT_EQ(::write(keeper.in.get(), "alive\n", 6), 6);
  keeper.in.reset();
  EXPECT_EQ(ReadAll(keeper.out.get()), "keeper-alive\n");
  EXPECT_EQ(WaitDone(keeper).exit_code, 0);
}

TEST_F(LiveProcessTest, KillTakesTheTreeAndReleaseForgetsIt) {
  LiveProcess p = Start(Sh("sleep 1000 & sleep 1000 & echo up; wait"));
  ASSERT_EQ(ReadUntil(p.out.get(), "up\n"), "up\n");
  auto pids = sb_->HostPids(p.id);
  ASSERT_TRUE(pids.ok());
  EXPECT_GE(pids->size(), 3u);
  ASSERT_TRUE(sb_->Kill(p.id).ok());
  auto r = WaitDone(p);
  EXPECT_EQ(r.reason, LiveEndReason::kKilled);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_TRUE(sb_->HostPids(p.id)->empty());
  ASSERT_TRUE(sb_->Release(p.id).ok());
  auto gone = sb_->ResultOf(p.id);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code, ErrorCode::kNotFound);
}

TEST_F(LiveProcessTest, PauseStopsTheSandboxAndResumeContinuesIt) {
  LiveProcess p = Start(Sh("i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done"));
  std::string out = ReadUntil(p.out.get(), "\n3\n");
  ASSERT_NE(out.find("\n3\n"), std::string::npos) << out;

  Status st = sb_->Pause();
  ASSERT_TRUE(st.ok()) << st.error().ToString();
  EXPECT_TRUE(sb_->paused());
  auto stats = sb_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_TRUE(stats->paused);
  // What was written before the freeze is in the pipe; after it, nothing more comes.
  char buf[65536];
  for (ssize_t r; (r = ::read(p.out.get(), buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(r));
  EXPECT_FALSE(Readable(p.out.get(), 500)) << "output while frozen";
  // Signal needs the (frozen) init: refused, not hung.
  auto sig = sb_->Signal(p.id, SIGTERM);
  ASSERT_FALSE(sig.ok());
  EXPECT_EQ(sig.error().code, ErrorCode::kFailedPrecondition);
  // A start is refused too.
  auto started = sb_->Start(Sh("true"));
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.error().code, ErrorCode::kFailedPrecondition);

  st = sb_->Resume();
  ASSERT_TRUE(st.ok()) << st.error().ToString();
  EXPECT_FALSE(sb_->paused());
  // The counter goes on from where it stopped.
  while (!out.empty() && out.back() == '\n') out.pop_back();
  const int last = std::stoi(out.substr(out.rfind('\n') + 1));
  const std::string next = "\n" + std::to_string(last + 2) + "\n";
  std::string more = ReadUntil(p.out.get(), next, 20'000, "\n");
  EXPECT_NE(more.find(next), std::string::npos) << "last before the pause: " << last << "\n" << more;
  ASSERT_TRUE(sb_->Kill(p.id).ok());
  EXPECT_EQ(WaitDone(p).reason, LiveEndReason::kKilled);
}

TEST_F(LiveProcessTest, StatsSayWhatTheHostReports) {
  LiveProcess p = Start(Sh("echo up; read x", true));
  ASSERT_EQ(ReadUntil(p.out.get(), "up\n"), "up\n");
  auto s = sb_->Stats();
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  ASSERT_TRUE(s->cpu_usec.has_value());
  EXPECT_GT(*s->cpu_usec, 0u);
  EXPECT_GE(s->processes, 2u);  // the init and the shell
  EXPECT_FALSE(s->paused);
  // Each value is either there or said to be missing.
  EXPECT_EQ(s->memory_current_bytes.has_value() + s->memory_peak_bytes.has_value() +
                s->pids_current.has_value() + s->io_read_bytes.has_value() +
                s->unavailable.size(),
            4u);
  EXPECT_EQ(s->io_read_bytes.has_value(), s->io_write_bytes.has_value());
  bool io_said = s->io_read_bytes.has_value();
  for (const auto& why : s->unavailable) io_said = io_said || why.rfind("io: ", 0) == 0;
  EXPECT_TRUE(io_said);
  for (const auto& why : s->unavailable) EXPECT_NE(why.find(':'), std::string::npos) << why;
}

TEST_F(LiveProcessTest, StatsWithLimitsReportMemoryAndPids) {
  auto spec = DefaultSpec();
  spec.limits.memory_bytes = 256ull << 20;
  spec.limits.pids = 100;
  auto sb = Create(spec);
  ASSERT_TRUE(sb);
  auto p = sb->Start(Sh("echo up; read x", true));
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  ASSERT_EQ(ReadUntil(p->out.get(), "up\n"), "up\n");
  auto s = sb->Stats();
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  ASSERT_TRUE(s->memory_current_bytes.has_value())
      << (s->unavailable.empty() ? "" : s->unavailable[0]);
  EXPECT_GT(*s->memory_current_bytes, 0u);
  ASSERT_TRUE(s->pids_current.has_value());
  EXPECT_GE(*s->pids_current, 2u);
  EXPECT_TRUE(sb->Destroy().ok());
  // Destroying the sandbox ends the process, and says so on its done fd.
  EXPECT_TRUE(Readable(p->done.get(), 0));
  auto r = sb->ResultOf(p->id);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->reason, LiveEndReason::kKilled);
}

TEST_F(LiveProcessTest, BadInputIsAClearError) {
  // An id this sandbox never gave.
  for (const Status& st : {sb_->Signal(999, SIGTERM), sb_->Kill(999),
                           sb_->Resize(999, {80, 24}), sb_->Release(999)}) {
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, ErrorCode::kNotFound) << st.error().ToString();
  }
  EXPECT_EQ(sb_->ResultOf(999).error().code, ErrorCode::kNotFound);

  // Signal after the process ended.
  LiveProcess p = Start(Sh("exit 0"));
  ASSERT_GT(p.id, 0u);
  EXPECT_EQ(WaitDone(p).exit_code, 0);
  Status late = sb_->Signal(p.id, SIGTERM);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(late.error().message.find("ended"), std::string::npos) << late.error().message;
  // Not a signal; a terminal on a process without one.
  EXPECT_EQ(sb_->Signal(p.id, 0).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(sb_->Signal(p.id, 65).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(sb_->Resize(p.id, {80, 24}).error().code, ErrorCode::kFailedPrecondition);

  // A huge argv.
  LiveProcessSpec huge;
  huge.argv = {"/bin/true", std::string(300 * 1024, 'x')};
  auto h = sb_->Start(huge);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(h.error().message.find("too large"), std::string::npos) << h.error().message;
  // No argv; an env entry without '='; stdio next to a pty; an fd of -1.
  EXPECT_EQ(sb_->Start(LiveProcessSpec{}).error().code, ErrorCode::kInvalidArgument);
  LiveProcessSpec bad_env = Sh("true");
  bad_env.env = {"NOEQUALS"};
  EXPECT_EQ(sb_->Start(bad_env).error().code, ErrorCode::kInvalidArgument);
  LiveProcessSpec both = Sh("true");
  both.pty = isolate::PtySize{80, 24};
  EXPECT_EQ(sb_->Start(both).error().code, ErrorCode::kInvalidArgument);
  LiveProcessSpec bad_fd = Sh("true");
  bad_fd.in = LiveStdio::Fd(-1);
  EXPECT_EQ(sb_->Start(bad_fd).error().code, ErrorCode::kInvalidArgument);

  // A command that does not exist: started, then ended as a setup failure with its stage.
  LiveProcessSpec missing;
  missing.argv = {"/no/such/program"};
  LiveProcess m = Start(missing);
  ASSERT_GT(m.id, 0u);
  auto mr = WaitDone(m);
  EXPECT_EQ(mr.reason, LiveEndReason::kSetupFailed);
  ASSERT_TRUE(mr.error.has_value());
  EXPECT_EQ(mr.error->stage, "execve");
  EXPECT_EQ(mr.error->sys_errno, ENOENT);

  // Run() is for sandboxes that never started a live process.
  isolate::ProcessSpec run;
  run.argv = {"/bin/true"};
  auto rr = sb_->Run(run, nullptr);
  ASSERT_FALSE(rr.ok());
  EXPECT_EQ(rr.error().code, ErrorCode::kFailedPrecondition);
}

TEST_F(LiveProcessTest, CallerFdsAndManyProcessesSideBySide) {
  // Output to a caller's pipe, several processes writing to it at once.
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  UniqueFd r(fds[0]), w(fds[1]);
  std::vector<LiveProcess> ps;
  for (int i = 0; i < 8; ++i) {
    LiveProcessSpec s;
    s.argv = {"/bin/sh", "-c", "echo p$0", std::to_string(i)};
    s.out = LiveStdio::Fd(w.get());
    ps.push_back(Start(s));
  }
  w.reset();
  std::string out = ReadAll(r.get());
  for (int i = 0; i < 8; ++i) {
    EXPECT_NE(out.find("p" + std::to_string(i) + "\n"), std::string::npos) << out;
    EXPECT_EQ(WaitDone(ps[static_cast<size_t>(i)]).exit_code, 0);
    EXPECT_TRUE(sb_->Release(ps[static_cast<size_t>(i)].id).ok());
  }
}

}  // namespace
}  // namespace sbx::testing
