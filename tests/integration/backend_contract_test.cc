// One contract, two backends: the behaviour a run relies on (exit codes and streams, signals,
// setup failures, no network, no privileges, seccomp, memory and OOM, pids, timeouts and
// cancellation of a whole tree, shared filesystem between steps, stdin, output limits) proven
// against the native engine and against Docker (a test-owned dockerd, a busybox image) through
// the same supervisor::Backend interface, with the same hostile program (statically linked, so
// it runs in both) bound at /t.
#include <dirent.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "base/fs.h"
#include "integration/sandbox_harness.h"
#include "seccomp/seccomp.h"
#include "supervisor/backend/backend.h"
#include "tests/support/dockerd.h"
#include "tests/support/skip.h"

namespace sbx::testing {
namespace {

using isolate::EndReason;
using supervisor::Backend;

class BackendContractTest : public SandboxTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    SandboxTest::SetUp();
    if (IsSkipped()) return;
    if (GetParam() == "native") {
      backend_ = supervisor::MakeNativeBackend(driver_.get(), {},
                                               supervisor::ProbeNativeHost(driver_.get(), ""));
    } else {
      auto d = TestDockerd::Shared();
      if (!d.ok()) SBX_SKIP_PRIVILEGED("no Docker daemon for the test: " + d.error().ToString());
      auto image = (*d)->BusyboxImage();
      ASSERT_TRUE(image.ok()) << image.error().ToString();
      image_ = *image;
      supervisor::DockerBackendOptions o;
      o.host = (*d)->host();
      o.identity = fmt::format("sbx-test-{}", ::getpid());
      o.default_image = image_;
      backend_ = supervisor::MakeDockerBackend(o);
    }
    auto a = backend_->Availability();
    ASSERT_TRUE(a.available) << a.reason;
  }

  supervisor::SandboxRequest Request() {
    supervisor::SandboxRequest r;
    r.spec = DefaultSpec();
    r.seccomp_json = std::string(seccomp::DefaultProfileJson());
    r.image = image_;
    return r;
  }
  std::unique_ptr<supervisor::RunSandbox> Make(const supervisor::SandboxRequest& r) {
    auto sb = backend_->Create(r);
    EXPECT_TRUE(sb.ok()) << sb.error().ToString();
    return sb.ok() ? std::move(*sb) : nullptr;
  }
  RunOutput In(supervisor::RunSandbox& sb, std::vector<std::string> argv,
               uint64_t timeout_ms = 20'000, int stdin_fd = -1) {
    isolate::ProcessSpec p;
    p.argv = std::move(argv);
    p.timeout_ms = timeout_ms;
    p.output_limit_bytes = output_limit_;
    p.stdin_fd = stdin_fd;
    RunOutput o;
    auto r = sb.Run(p, [&](int s, std::string_view d) { (s == 1 ? o.out : o.err).append(d); });
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    if (r.ok()) o.result = *r;
    return o;
  }
  // A sandbox for `processes` processes: 1, the only one (Docker: the container's own process);
  // 0, not said (Docker: each one an exec into an idle container).
  std::unique_ptr<supervisor::RunSandbox> MakeFor(size_t processes) {
    auto r = Request();
    r.processes = processes;
    return Make(r);
  }
  // A sandbox for this one process (Docker: the container's own process, not an exec).
  RunOutput Once(supervisor::SandboxRequest r, std::vector<std::string> argv,
                 uint64_t timeout_ms = 20'000) {
    r.processes = 1;
    auto sb = Make(r);
    if (!sb) return {};
    auto o = In(*sb, std::move(argv), timeout_ms);
    EXPECT_TRUE(sb->Destroy().ok());
    return o;
  }
  static std::string Hostile() { return "/t/hostile-static"; }

  std::unique_ptr<Backend> backend_;
  std::string image_;
  uint64_t output_limit_ = 16 << 20;
};

TEST_P(BackendContractTest, ExitCodeAndSeparateStreams) {
  auto o = Once(Request(), {"/bin/sh", "-c", "echo out; echo err >&2; exit 7"});
  EXPECT_EQ(o.result.reason, EndReason::kExited);
  EXPECT_EQ(o.result.exit_code, 7);
  EXPECT_EQ(o.out, "out\n");
  EXPECT_EQ(o.err, "err\n");
  EXPECT_EQ(o.result.stdout_bytes, 4u);
  EXPECT_EQ(o.result.stderr_bytes, 4u);
  EXPECT_FALSE(o.result.output_truncated);
  EXPECT_EQ(o.result.isolation.network, "none");
  EXPECT_EQ(o.result.isolation.capabilities, "none");
  EXPECT_EQ(o.result.isolation.seccomp_profile, "default");
}

TEST_P(BackendContractTest, ASignalDeathIsSignaled) {
  auto o = Once(Request(), {Hostile(), "raise", "15"});
  EXPECT_EQ(o.result.reason, EndReason::kSignaled) << o.out << o.err;
  EXPECT_EQ(o.result.signal, SIGTERM);
  EXPECT_EQ(o.result.ShellExitCode(), 128 + SIGTERM);
}

TEST_P(BackendContractTest, AMissingCommandIsSetupFailed) {
  auto o = Once(Request(), {"/no/such/program"});
  EXPECT_EQ(o.result.reason, EndReason::kSetupFailed) << o.out << o.err;
  ASSERT_TRUE(o.result.error.has_value());
  EXPECT_EQ(o.result.error->stage, "execve");
  EXPECT_EQ(o.result.error->sys_errno, ENOENT);
  EXPECT_EQ(o.out, "");
}

TEST_P(BackendContractTest, UnprivilegedWithoutCapabilitiesUnderSeccomp) {
  auto o = Once(Request(), {"/bin/sh", "-c",
                            "id -u; grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' "
                            "/proc/self/status"});
  EXPECT_EQ(o.result.exit_code, 0) << o.err;
  std::istringstream in(o.out);
  std::string uid;
  in >> uid;
  EXPECT_NE(uid, "0");
  EXPECT_NE(o.out.find("CapEff:\t0000000000000000"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("CapBnd:\t0000000000000000"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("NoNewPrivs:\t1"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("Seccomp:\t2"), std::string::npos) << o.out;
  auto caps = Once(Request(), {Hostile(), "caps"});
  EXPECT_EQ(caps.result.exit_code, 1) << caps.out;  // 1: not root, no effective capability
}

TEST_P(BackendContractTest, SeccompDeniesNamespacesAndMounts) {
  for (const char* what : {"unshare", "mount", "unshare-ns"}) {
    auto o = Once(Request(), {Hostile(), what});
    EXPECT_EQ(o.result.exit_code, 1) << what << ": " << o.out;
    EXPECT_NE(o.out.find("DENIED"), std::string::npos) << what << ": " << o.out;
  }
}

TEST_P(BackendContractTest, TheNetworkIsNone) {
  auto o = Once(Request(), {"/bin/sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"});
  EXPECT_EQ(o.result.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "lo\n");
  auto c = Once(Request(), {Hostile(), "connect", "1.1.1.1"});
  EXPECT_NE(c.result.exit_code, 0) << c.out;
}

TEST_P(BackendContractTest, ACgroupNamespaceOfItsOwnShowsNoHostPath) {
  // Each hierarchy of /proc/self/cgroup (each v1 controller on a hybrid host, and the unified
  // one) reads "/": neither the host's layout nor the run's cgroup names show.
  for (size_t processes : {1, 0}) {
    auto sb = MakeFor(processes);
    ASSERT_TRUE(sb);
    auto o = In(*sb, {"/bin/cat", "/proc/self/cgroup"});
    EXPECT_TRUE(sb->Destroy().ok());
    ASSERT_EQ(o.result.exit_code, 0) << o.err;
    std::istringstream in(o.out);
    int lines = 0;
    for (std::string line; std::getline(in, line); ++lines) {
      EXPECT_TRUE(line.ends_with(":/")) << processes << ": " << line << "\n" << o.out;
    }
    EXPECT_GE(lines, 1) << o.out;
  }
}

TEST_P(BackendContractTest, TheRootIsReadOnlyAndTmpIsWritable) {
  auto o = Once(Request(), {"/bin/sh", "-c", "touch /x 2>/dev/null && echo wrote-root; "
                                              "echo hi > /tmp/f && cat /tmp/f"});
  EXPECT_EQ(o.out, "hi\n");
}

TEST_P(BackendContractTest, MemoryLimitEndsInOomKilled) {
  auto r = Request();
  r.spec.limits.memory_bytes = 64ull << 20;
  auto o = Once(r, {Hostile(), "alloc", "512"});
  EXPECT_EQ(o.result.reason, EndReason::kOomKilled) << o.out << o.err;
  EXPECT_EQ(o.result.signal, SIGKILL);
  EXPECT_LE(o.result.memory_peak_bytes, 80ull << 20);
  EXPECT_GT(o.result.memory_peak_bytes, 32ull << 20);
}

TEST_P(BackendContractTest, ForkBombIsContainedByPidsLimit) {
  auto r = Request();
  r.spec.limits.pids = 32;
  auto o = Once(r, {Hostile(), "forkbomb"});
  EXPECT_NE(o.out.find("errno=11"), std::string::npos) << o.out;  // EAGAIN from fork
  int forked = 0;
  std::sscanf(o.out.c_str(), "forked=%d", &forked);
  EXPECT_GT(forked, 0);
  EXPECT_LT(forked, 32);
  // The host is fine: it can still fork.
  pid_t p = ::fork();
  if (p == 0) ::_exit(0);
  ASSERT_GT(p, 0);
  int status;
  ASSERT_EQ(::waitpid(p, &status, 0), p);
}

// processes 1: the only process (Docker: the container's own); 0: one of several (an exec).
TEST_P(BackendContractTest, TimeoutKillsTheWholeTree) {
  for (size_t processes : {1, 0}) {
    SCOPED_TRACE(processes);
    std::string name = fmt::format("sbxc{}p{}", ::getpid() % 100000, processes);
    auto sb = MakeFor(processes);
    ASSERT_TRUE(sb);
    auto o = In(*sb, {Hostile(), "daemon", name}, 1000);
    EXPECT_EQ(o.result.reason, EndReason::kTimedOut);
    EXPECT_EQ(o.result.signal, SIGKILL);
    EXPECT_GE(o.result.wall_ms, 1000u);
    EXPECT_LT(o.result.wall_ms, 8000u);
    EXPECT_FALSE(ProcessNamed(name)) << "the daemon survived the timeout";
    EXPECT_TRUE(sb->Destroy().ok());
  }
}

TEST_P(BackendContractTest, CancelKillsTheTree) {
  for (size_t processes : {1, 0}) {
    SCOPED_TRACE(processes);
    auto sb = MakeFor(processes);
    ASSERT_TRUE(sb);
    // Cancelled once the program says it runs (its first output), not after a guessed delay.
    isolate::ProcessSpec p;
    p.argv = {"/bin/sh", "-c", "sleep 60 & echo started; sleep 60; echo never"};
    p.timeout_ms = 20'000;
    p.output_limit_bytes = output_limit_;
    RunOutput o;
    auto start = std::chrono::steady_clock::now();
    auto r = sb->Run(p, [&](int stream, std::string_view d) {
      (stream == 1 ? o.out : o.err).append(d);
      if (o.out.find("started\n") != std::string::npos) sb->Cancel();
    });
    ASSERT_TRUE(r.ok()) << r.error().ToString();
    o.result = *r;
    EXPECT_EQ(o.result.reason, EndReason::kCancelled);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
    EXPECT_EQ(o.out, "started\n");
    EXPECT_TRUE(sb->Destroy().ok());
  }
}

TEST_P(BackendContractTest, StepsShareTheFilesystemAndGetStdin) {
  auto sb = Make(Request());
  ASSERT_TRUE(sb);
  auto first = In(*sb, {"/bin/sh", "-c", "echo from-step-1 > /tmp/shared"});
  EXPECT_EQ(first.result.exit_code, 0) << first.err;
  auto second = In(*sb, {"/bin/cat", "/tmp/shared"});
  EXPECT_EQ(second.out, "from-step-1\n");
  UniqueFd in(::memfd_create("stdin", MFD_CLOEXEC));
  ASSERT_TRUE(WriteAll(in.get(), "line one\nline two\n").ok());
  ASSERT_EQ(::lseek(in.get(), 0, SEEK_SET), 0);
  auto third = In(*sb, {"/bin/sh", "-c", "wc -l"}, 20'000, in.get());
  EXPECT_EQ(third.out.find_first_not_of(' '), third.out.find('2')) << third.out;
  EXPECT_TRUE(sb->Destroy().ok());
}

TEST_P(BackendContractTest, OutputBeyondTheLimitIsTruncatedAndFlagged) {
  output_limit_ = 1000;
  auto o = Once(Request(), {"/bin/sh", "-c", "seq 1 2000"});
  EXPECT_EQ(o.result.reason, EndReason::kExited);
  EXPECT_EQ(o.out.size(), 1000u);
  EXPECT_EQ(o.result.stdout_bytes, 8893u);  // what it wrote, all of it read and counted
  EXPECT_TRUE(o.result.output_truncated);
}

// Output reaches the sink while the program still runs, and a program that goes quiet holds up
// nothing: its timeout still ends it on time.
TEST_P(BackendContractTest, OutputArrivesWhileTheProgramRunsAndAQuietOneStillTimesOut) {
  auto sb = MakeFor(1);
  ASSERT_TRUE(sb);
  isolate::ProcessSpec p;
  p.argv = {"/bin/sh", "-c", "echo first; sleep 30; echo never"};
  p.timeout_ms = 2000;
  p.output_limit_bytes = output_limit_;
  const auto start = std::chrono::steady_clock::now();
  std::string out;
  std::chrono::steady_clock::duration first_at{};
  auto r = sb->Run(p, [&](int, std::string_view d) {
    if (out.empty()) first_at = std::chrono::steady_clock::now() - start;
    out.append(d);
  });
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->reason, EndReason::kTimedOut);
  EXPECT_EQ(out, "first\n");
  EXPECT_LT(first_at, std::chrono::milliseconds(1900)) << "the output waited for the timeout";
  EXPECT_LT(took, std::chrono::seconds(10));
  EXPECT_TRUE(sb->Destroy().ok());
}

TEST_P(BackendContractTest, CpuTimeAndWallTimeAreMeasured) {
  // The only process: on Docker, the daemon's samples (one a second) while it runs.
  auto o = Once(Request(), {Hostile(), "spin", "3"});
  EXPECT_EQ(o.result.reason, EndReason::kExited);
  EXPECT_GE(o.result.wall_ms, 2900u);
  EXPECT_GE(o.result.cpu_ms, 1000u);
  // One of several: what this step used, exactly.
  auto sb = Make(Request());
  ASSERT_TRUE(sb);
  auto first = In(*sb, {Hostile(), "spin", "1"});
  EXPECT_GE(first.result.cpu_ms, 500u);
  EXPECT_LT(first.result.cpu_ms, 2500u);
  auto second = In(*sb, {"/bin/true"});
  EXPECT_LT(second.result.cpu_ms, 500u) << "the first step's CPU time counted again";
  EXPECT_TRUE(sb->Destroy().ok());
}

// The runtime's start-failure words are held back until the exit code says whose they are; a
// program that prints them itself gets all of its output, in order.
TEST_P(BackendContractTest, OutputThatLooksLikeTheRuntimesIsTheProgramsOwn) {
  const std::string script =
      "echo '[FATAL tini (1)] exec /x failed: No such file or directory' >&2; seq 1 3000 >&2; "
      "echo 'OCI runtime exec failed: exec failed: not really'; seq 1 3000";
  std::string seq;
  for (int i = 1; i <= 3000; ++i) seq += std::to_string(i) + "\n";
  for (size_t processes : {1, 0}) {
    SCOPED_TRACE(processes);
    auto sb = MakeFor(processes);
    ASSERT_TRUE(sb);
    auto o = In(*sb, {"/bin/sh", "-c", script});
    EXPECT_EQ(o.result.reason, EndReason::kExited);
    EXPECT_EQ(o.result.exit_code, 0);
    EXPECT_EQ(o.err, "[FATAL tini (1)] exec /x failed: No such file or directory\n" + seq);
    EXPECT_EQ(o.out, "OCI runtime exec failed: exec failed: not really\n" + seq);
    EXPECT_EQ(o.result.stdout_bytes, o.out.size());
    EXPECT_EQ(o.result.stderr_bytes, o.err.size());
    EXPECT_TRUE(sb->Destroy().ok());
  }
}

TEST_P(BackendContractTest, StdinReachesTheOnlyProcess) {
  auto sb = MakeFor(1);
  ASSERT_TRUE(sb);
  UniqueFd in(::memfd_create("stdin", MFD_CLOEXEC));
  ASSERT_TRUE(WriteAll(in.get(), "a\nb\nc\n").ok());
  ASSERT_EQ(::lseek(in.get(), 0, SEEK_SET), 0);
  auto o = In(*sb, {"/bin/sh", "-c", "wc -l; echo done >&2"}, 20'000, in.get());
  EXPECT_EQ(o.result.exit_code, 0);
  EXPECT_EQ(o.out.find_first_not_of(' '), o.out.find('3')) << o.out;
  EXPECT_EQ(o.err, "done\n");
  EXPECT_TRUE(sb->Destroy().ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendContractTest, ::testing::Values("native", "docker"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace sbx::testing
