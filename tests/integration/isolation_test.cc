// Each isolation property, proven by a hostile program inside a real sandbox that attempts the
// forbidden thing and must fail. What both backends promise alike (signals, the memory and pids
// limits, timeouts and cancellation of the whole tree, steps sharing a filesystem) is proven once
// for both, in backend_contract_test.cc; this file keeps what only the native engine does.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <linux/mount.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <poll.h>

#include <filesystem>
#include <fstream>

#include "base/fs.h"
#include "base/syscalls.h"
#include "base/unique_fd.h"
#include "integration/sandbox_harness.h"
#include "isolate/mount_plan.h"

namespace sbx::testing {
namespace {

using isolate::EndReason;

class IsolationTest : public SandboxTest {};

TEST_F(IsolationTest, RunsAndReportsExitCode) {
  auto o = Run(DefaultSpec(), {"/bin/sh", "-c", "echo out; echo err >&2; exit 7"});
  EXPECT_EQ(o.result.reason, EndReason::kExited);
  EXPECT_EQ(o.result.exit_code, 7);
  EXPECT_EQ(o.out, "out\n");
  EXPECT_EQ(o.err, "err\n");
  EXPECT_EQ(o.result.stdout_bytes, 4u);
  EXPECT_EQ(o.result.stderr_bytes, 4u);
  EXPECT_FALSE(o.result.output_truncated);
  EXPECT_EQ(o.result.isolation.seccomp_profile, "default");
  EXPECT_EQ(o.result.isolation.network, "none");
}

TEST_F(IsolationTest, MissingCommandIsSetupFailedWithStageAndErrno) {
  auto o = Run(DefaultSpec(), {"/no/such/program"});
  EXPECT_EQ(o.result.reason, EndReason::kSetupFailed);
  ASSERT_TRUE(o.result.error.has_value());
  EXPECT_EQ(o.result.error->stage, "execve");
  EXPECT_EQ(o.result.error->sys_errno, ENOENT);
  EXPECT_NE(o.result.error->message.find("not found"), std::string::npos);
}

TEST_F(IsolationTest, BadBindSourceIsAClearError) {
  auto spec = DefaultSpec();
  spec.binds.push_back({"/definitely/not/here", "/x", false});
  auto sb = isolate::Sandbox::Create(spec, *driver_);
  ASSERT_FALSE(sb.ok());
  EXPECT_NE(sb.error().ToString().find("/definitely/not/here"), std::string::npos);
}

TEST_F(IsolationTest, PidOneIsInitAndOnlyOwnProcessesAreVisible) {
  auto o = Run(DefaultSpec(), {"/bin/sh", "-c", "cat /proc/1/comm; echo $$; ls /proc | grep -c '^[0-9]'"});
  EXPECT_EQ(o.result.exit_code, 0) << o.err;
  std::istringstream in(o.out);
  std::string comm, self, count;
  in >> comm >> self >> count;
  EXPECT_EQ(comm, "sbx-init");
  EXPECT_EQ(self, "2");
  // init, sh, ls, grep at most.
  EXPECT_LE(std::stoi(count), 4);
}

TEST_F(IsolationTest, CgroupNamespaceIsRootedAtTheSandboxesCgroupInEveryHierarchy) {
  // One line per hierarchy (each v1 controller on a hybrid host, and the unified one): the
  // sandbox's own cgroup is "/" in all of them, and no host path shows.
  auto o = Run(DefaultSpec(), {"/bin/cat", "/proc/self/cgroup"});
  ASSERT_EQ(o.result.exit_code, 0) << o.err;
  std::istringstream in(o.out);
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    EXPECT_TRUE(line.ends_with(":/")) << line << "\n" << o.out;
  }
  EXPECT_GE(lines, 1) << o.out;
}

TEST_F(IsolationTest, OwnHostname) {
  auto spec = DefaultSpec();
  spec.hostname = "box-under-test";
  auto o = Run(spec, {"/bin/hostname"});
  EXPECT_EQ(o.out, "box-under-test\n");
}

TEST_F(IsolationTest, ProcStatusShowsNoCapsNoNewPrivsSeccomp) {
  auto o = Run(DefaultSpec(), {"/bin/grep", "-E", "^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):",
                               "/proc/self/status"});
  EXPECT_NE(o.out.find("CapEff:\t0000000000000000"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("CapBnd:\t0000000000000000"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("CapAmb:\t0000000000000000"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("NoNewPrivs:\t1"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("Seccomp:\t2"), std::string::npos) << o.out;
}

TEST_F(IsolationTest, RunsAsUnprivilegedUserByDefault) {
  auto o = Run(DefaultSpec(), {"/bin/sh", "-c", "id -u; id -g; cat /proc/self/uid_map"});
  EXPECT_EQ(o.out.substr(0, 10), "1000\n1000\n");
  EXPECT_NE(o.out.find("100000"), std::string::npos) << o.out;  // mapped, never host root
}

TEST_F(IsolationTest, RootInsideIsNotHostRoot) {
  // A host file only host root may read, bound in: root inside still cannot read it.
  char dir[] = "/tmp/sbx-secret-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::string secret = std::string(dir) + "/secret";
  { std::ofstream(secret) << "top secret\n"; }
  ASSERT_EQ(::chmod(secret.c_str(), 0600), 0);
  auto spec = DefaultSpec();
  spec.uid = 0;
  spec.gid = 0;
  spec.binds.push_back({dir, "/host", true});
  auto o = Run(spec, {"/bin/sh", "-c",
                      "id -u; " + Hostile() + " read /host/secret; " + Hostile() +
                          " write /host/planted"});
  EXPECT_EQ(o.out.substr(0, 2), "0\n");
  EXPECT_NE(o.out.find("DENIED errno=13"), std::string::npos) << o.out;
  struct stat st;
  EXPECT_NE(::stat((std::string(dir) + "/planted").c_str(), &st), 0);
  ::unlink(secret.c_str());
  ::rmdir(dir);
}

TEST_F(IsolationTest, HostLoopbackIsUnreachable) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(s, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
  ASSERT_EQ(::listen(s, 4), 0);
  socklen_t len = sizeof sin;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&sin), &len);
  std::string port = std::to_string(ntohs(sin.sin_port));
  auto o = Run(DefaultSpec(), {Hostile(), "connect", port});
  EXPECT_EQ(o.result.exit_code, 1) << o.out;
  EXPECT_NE(o.out.find("DENIED"), std::string::npos);
  // The loopback inside is up (brought up through netlink) and is the only interface.
  auto lo = Run(DefaultSpec(), {Hostile(), "loopback"});
  EXPECT_EQ(lo.result.exit_code, 0) << lo.out;
  auto devs = Run(DefaultSpec(), {"/bin/sh", "-c", "grep -c ':' /proc/net/dev"});
  EXPECT_EQ(devs.out, "1\n") << "only lo in the namespace";
  ::close(s);
}

TEST_F(IsolationTest, HostFilesOutsideBindsAreInvisible) {
  for (const char* path : {"/etc/shadow", "/root", "/home", "/var/log", "/run", "/boot"}) {
    auto o = Run(DefaultSpec(), {Hostile(), "read", path});
    EXPECT_EQ(o.result.exit_code, 1) << path << ": " << o.out;
  }
  // The synthesized /etc has no shadow file at all.
  auto o = Run(DefaultSpec(), {"/bin/ls", "/etc"});
  EXPECT_EQ(o.out.find("shadow"), std::string::npos) << o.out;
}

TEST_F(IsolationTest, RootAndSystemDirsAreReadOnly) {
  for (const char* path : {"/evil", "/usr/evil", "/etc/passwd", "/bin/evil", "/dev/evil"}) {
    auto o = Run(DefaultSpec(), {Hostile(), "write", path});
    EXPECT_EQ(o.result.exit_code, 1) << path << ": " << o.out;
  }
  auto o = Run(DefaultSpec(), {Hostile(), "write", "/tmp/fine"});
  EXPECT_EQ(o.result.exit_code, 0) << o.out;
}

TEST_F(IsolationTest, ForbiddenSyscallsAreDenied) {
  for (const char* action : {"mount", "unshare", "unshare-ns", "ptrace", "setns"}) {
    auto o = Run(DefaultSpec(), {Hostile(), action});
    EXPECT_EQ(o.result.exit_code, 1) << action << ": " << o.out;
    EXPECT_NE(o.out.find("errno=1 "), std::string::npos) << action << ": " << o.out;
  }
  auto o = Run(DefaultSpec(), {Hostile(), "clone3"});
  EXPECT_NE(o.out.find("errno=38"), std::string::npos) << o.out;  // ENOSYS: libc falls back
}

#if defined(__x86_64__)
TEST_F(IsolationTest, CompatSyscallsKillTheProcess) {
  // The builtin profile covers the native ABI only; the 32-bit entry point is a kill.
  auto spec = DefaultSpec();
  spec.seccomp.reset();
  auto bare = Run(spec, {Hostile(), "int80"});
  if (bare.result.reason != EndReason::kExited) {
    GTEST_SKIP() << "this host has no usable 32-bit syscall entry (int 0x80 ends in signal "
                 << bare.result.signal.value_or(0) << " even without seccomp)";
  }
  auto o = Run(DefaultSpec(), {Hostile(), "int80"});
  EXPECT_EQ(o.result.reason, EndReason::kSignaled) << o.out;
  EXPECT_EQ(o.result.signal, SIGSYS);
}
#endif

TEST_F(IsolationTest, UnconfinedStillHasNoCapabilities) {
  // Without seccomp, mount still fails: no capabilities and no_new_privs.
  auto spec = DefaultSpec();
  spec.seccomp.reset();
  auto o = Run(spec, {Hostile(), "mount"});
  EXPECT_EQ(o.result.exit_code, 1) << o.out;
  EXPECT_EQ(o.result.isolation.seccomp_profile, "unconfined");
}

TEST_F(IsolationTest, SetuidBinaryGainsNothing) {
  char dir[] = "/tmp/sbx-suid-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  ASSERT_EQ(::chmod(dir, 0755), 0);
  std::string copy = std::string(dir) + "/hostile";
  {
    std::ifstream in(std::string(SBX_TESTCASES_DIR) + "/hostile", std::ios::binary);
    std::ofstream out(copy, std::ios::binary);
    out << in.rdbuf();
  }
  ASSERT_EQ(::chown(copy.c_str(), 0, 0), 0);
  ASSERT_EQ(::chmod(copy.c_str(), 04755), 0);
  auto spec = DefaultSpec();
  spec.binds.push_back({dir, "/suid", false});
  auto o = Run(spec, {"/suid/hostile", "caps"});
  EXPECT_EQ(o.result.exit_code, 1) << o.out;
  EXPECT_NE(o.out.find("capeff=0"), std::string::npos) << o.out;
  EXPECT_EQ(o.out.find("euid=0"), std::string::npos) << o.out;
  ::unlink(copy.c_str());
  ::rmdir(dir);
}

TEST_F(IsolationTest, SupervisorFdsDoNotLeak) {
  // An fd opened without O_CLOEXEC in the supervisor must not reach the sandbox.
  int leak = ::open("/etc/hostname", O_RDONLY);
  ASSERT_GE(leak, 0);
  auto o = Run(DefaultSpec(), {Hostile(), "fds"});
  EXPECT_EQ(o.result.exit_code, 1) << o.out;
  EXPECT_NE(o.out.find("extra=0"), std::string::npos) << o.out;
  ::close(leak);
}

TEST_F(IsolationTest, CpuQuotaHalvesCpuTime) {
  auto spec = DefaultSpec();
  spec.limits.cpus = 0.5;
  auto o = Run(spec, {Hostile(), "spin", "2"});
  ASSERT_EQ(o.result.reason, EndReason::kExited);
  double ratio = static_cast<double>(o.result.cpu_ms) / static_cast<double>(o.result.wall_ms);
  EXPECT_GT(ratio, 0.3) << o.result.cpu_ms << " / " << o.result.wall_ms;
  EXPECT_LT(ratio, 0.65) << o.result.cpu_ms << " / " << o.result.wall_ms;
}

TEST_F(IsolationTest, SandboxDiesWithItsSupervisor) {
  std::string name = fmt::format("sbxo{}", ::getpid() % 100000);
  isolate::SandboxSpec spec = DefaultSpec();
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  pid_t supervisor = ::fork();
  ASSERT_GE(supervisor, 0);
  if (supervisor == 0) {
    // A supervisor that starts a sandbox running a daemon, and is then killed without warning.
    auto sb = isolate::Sandbox::Create(spec, *driver_);
    if (!sb.ok()) ::_exit(1);
    pid_t init = (*sb)->init_pid();
    if (::write(p[1], &init, sizeof init) != sizeof init) ::_exit(1);
    isolate::ProcessSpec ps;
    ps.argv = {Hostile(), "daemon", name};
    (void)(*sb)->Run(ps, nullptr);
    ::_exit(0);
  }
  ::close(p[1]);
  pid_t init = 0;
  ASSERT_EQ(::read(p[0], &init, sizeof init), static_cast<ssize_t>(sizeof init));
  ::close(p[0]);
  UniqueFd init_fd(sys::PidfdOpen(init));
  ASSERT_TRUE(init_fd.valid());
  ASSERT_EQ(::kill(supervisor, SIGKILL), 0);
  int status;
  ASSERT_EQ(::waitpid(supervisor, &status, 0), supervisor);
  // The init notices (PR_SET_PDEATHSIG) and takes every process of the sandbox with it.
  struct pollfd pfd = {init_fd.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 10'000), 1) << "the sandbox outlived its supervisor";
  EXPECT_FALSE(ProcessNamed(name));
  // The dead supervisor could not remove its cgroup; the test does.
  const auto& host = driver_->host();
  std::vector<std::string> dirs;
  for (const auto& [ctrl, mount] : host.v1_mounts) dirs.push_back(mount + "/" + parent_ + "/" + spec.id);
  if (!host.unified_mount.empty()) dirs.push_back(host.unified_mount + "/" + parent_ + "/" + spec.id);
  for (const auto& d : dirs) {
    for (int i = 0; i < 100 && ::rmdir(d.c_str()) < 0 && errno == EBUSY; ++i) {
      struct pollfd none = {-1, 0, 0};
      ::poll(&none, 0, 10);  // v1 directories stay busy for a moment after their last task
    }
  }
}

TEST_F(IsolationTest, OutputBeyondTheLimitIsTruncatedAndFlagged) {
  auto sb = Create(DefaultSpec());
  ASSERT_TRUE(sb);
  isolate::ProcessSpec p;
  p.argv = {Hostile(), "print", "1000000"};
  p.output_limit_bytes = 1000;
  std::string out;
  auto r = sb->Run(p, [&](int, std::string_view d) { out += d; });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->reason, EndReason::kExited);
  EXPECT_EQ(out.size(), 1000u);
  EXPECT_EQ(r->stdout_bytes, 1000000u);
  EXPECT_TRUE(r->output_truncated);
}

TEST_F(IsolationTest, ExtraBindsAndTmpfs) {
  char dir[] = "/tmp/sbx-bind-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  ASSERT_EQ(::chmod(dir, 0777), 0);
  auto spec = DefaultSpec();
  spec.binds.push_back({dir, "/ro", false});
  spec.binds.push_back({dir, "/rw", true});
  spec.tmpfs.push_back({"/scratch", 1 << 20, 01777});
  auto o = Run(spec, {"/bin/sh", "-c",
                      Hostile() + " write /ro/a; " + Hostile() + " write /rw/b; " + Hostile() +
                          " write /scratch/c"});
  EXPECT_NE(o.out.find("DENIED errno=30"), std::string::npos) << o.out;  // EROFS
  EXPECT_NE(o.out.find("OK /rw/b"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("OK /scratch/c"), std::string::npos) << o.out;
  struct stat st;
  EXPECT_EQ(::stat((std::string(dir) + "/b").c_str(), &st), 0);
  ::unlink((std::string(dir) + "/b").c_str());
  ::rmdir(dir);
}

// A bind's source is opened once, by the parent, as a detached mount tree: a path swapped after
// that (here a directory renamed away and another put in its place) changes nothing, and the
// tree is private (a mount made under it in the sandbox's namespace stays there).
TEST_F(IsolationTest, BindSourceSwappedAfterItWasOpenedIsNotWhatIsMounted) {
  char dir[] = "/tmp/sbx-swap-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  // The test's own shared mount, as / is on systemd hosts: a clone of it that stayed shared
  // would carry mounts back here.
  ASSERT_EQ(::mount("sbx-swap", dir, "tmpfs", 0, "size=1m"), 0) << strerror(errno);
  ASSERT_EQ(::mount(nullptr, dir, nullptr, MS_SHARED, nullptr), 0) << strerror(errno);
  const std::string src = std::string(dir) + "/src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  std::ofstream(src + "/planned") << "planned\n";
  auto spec = DefaultSpec();
  spec.binds.push_back({src, "/data", false});
  auto ops = isolate::PlanMounts(spec, std::string(dir) + "/stage");
  ASSERT_TRUE(ops.ok()) << ops.error().ToString();
  auto trees = isolate::OpenBindSources(&*ops);
  ASSERT_TRUE(trees.ok()) << trees.error().ToString();
  int data_tree = -1;
  for (const auto& op : *ops) {
    if (op.kind == isolate::internal::MountOp::Kind::kBind) {
      EXPECT_GE(op.source_fd, 0) << op.source;
      if (op.target == "data") data_tree = op.source_fd;
    }
  }
  ASSERT_GE(data_tree, 0);
  // The swap, after the source was opened.
  ASSERT_EQ(::rename(src.c_str(), (src + ".planned").c_str()), 0);
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  std::ofstream(src + "/swapped") << "swapped\n";
  const std::string stage = std::string(dir) + "/stage";
  ASSERT_EQ(::mkdir(stage.c_str(), 0755), 0);

  int mounted[2], checked[2];
  ASSERT_EQ(::pipe2(mounted, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(checked, O_CLOEXEC), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::unshare(CLONE_NEWNS) < 0) ::_exit(10);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) ::_exit(11);
    if (::mount("stage", stage.c_str(), "tmpfs", 0, "size=64k") < 0) ::_exit(12);
    const std::string at = stage + "/data";
    if (::mkdir(at.c_str(), 0755) < 0) ::_exit(13);
    int target = ::open(at.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (::syscall(SYS_move_mount, data_tree, "", target, "",
                  MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
      ::_exit(14);
    }
    struct stat st;
    if (::stat((at + "/planned").c_str(), &st) < 0) ::_exit(1);
    if (::stat((at + "/swapped").c_str(), &st) == 0) ::_exit(2);
    if (::open((at + "/new").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644) >= 0 || errno != EROFS) {
      ::_exit(3);
    }
    // A mount on the bind, in this namespace only; the parent looks for it while we live.
    if (::mount("sbx-swap-probe", at.c_str(), "tmpfs", 0, "size=64k") < 0) ::_exit(15);
    char c = 'm';
    if (::write(mounted[1], &c, 1) != 1 || ::read(checked[0], &c, 1) != 1) ::_exit(16);
    ::_exit(0);
  }
  ::close(mounted[1]);
  ::close(checked[0]);
  char c = 0;
  bool probe_here = false;
  if (::read(mounted[0], &c, 1) == 1) {
    auto info = ReadFile("/proc/self/mountinfo", 16 << 20);
    ASSERT_TRUE(info.ok());
    probe_here = info->find("sbx-swap-probe") != std::string::npos;
  }
  (void)!::write(checked[1], "c", 1);
  ::close(mounted[0]);
  ::close(checked[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: the planned file is missing, 2: the swapped-in "
                                       "directory was mounted, 3: the bind is writable";
  EXPECT_FALSE(probe_here) << "a mount made on the bind inside propagated to the host";
  struct stat st;
  EXPECT_EQ(::stat((src + ".planned/planned").c_str(), &st), 0);  // the host is unchanged
  trees->clear();
  EXPECT_EQ(::umount2(dir, MNT_DETACH), 0);
  std::filesystem::remove_all(dir);
}

// A symlink put in a source's place between planning and opening is refused, not followed.
TEST_F(IsolationTest, BindSourceTurnedSymlinkBeforeItIsOpenedIsRefused) {
  char dir[] = "/tmp/sbx-swap-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string src = std::string(dir) + "/src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  auto spec = DefaultSpec();
  spec.binds.push_back({src, "/data", false});
  auto ops = isolate::PlanMounts(spec, std::string(dir) + "/stage");
  ASSERT_TRUE(ops.ok()) << ops.error().ToString();
  ASSERT_EQ(::rmdir(src.c_str()), 0);
  ASSERT_EQ(::symlink("/etc", src.c_str()), 0);
  auto trees = isolate::OpenBindSources(&*ops);
  ASSERT_FALSE(trees.ok());
  EXPECT_EQ(trees.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(trees.error().message.find(src), std::string::npos) << trees.error().message;
  std::filesystem::remove_all(dir);
}

TEST_F(IsolationTest, KillingInitFromInsideIsIgnored) {
  auto o = Run(DefaultSpec(), {Hostile(), "kill-init"});
  EXPECT_EQ(o.result.reason, EndReason::kExited);
}

}  // namespace
}  // namespace sbx::testing
