// Installs compiled profiles for real, in forked children only: the test process itself never
// runs a filter or a hostile call. Each child reports the first failed check through its exit
// code; the parent maps it back to a message.
#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <linux/sched.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "seccomp/seccomp.h"
#include "tests/support/skip.h"

namespace sbx::seccomp {
namespace {

constexpr int kSetupNoNewPrivs = 100;
constexpr int kSetupInstall = 101;

// Runs body in a forked child after no_new_privs and the filter; returns the child's exit code
// (0..255), or 1000 + the signal that killed it.
int RunFiltered(const Program& program, int (*body)()) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(kSetupNoNewPrivs);
    if (InstallProgram(program) != 0) _exit(kSetupInstall);
    _exit(body());
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  if (WIFSIGNALED(status)) return 1000 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

// For raw syscall() results: failed with exactly want. Calls that would do something if the filter
// were missing use arguments the kernel refuses anyway (EINVAL), or only affect the child.
bool FailsWith(long r, int want) { return r == -1 && errno == want; }

void* ThreadBody(void* arg) { return arg; }

int DefaultProfileChecks() {
  if (syscall(SYS_getpid) != getpid()) return 1;
  if (!FailsWith(syscall(SYS_unshare, CLONE_NEWNS), EPERM)) return 2;
  if (!FailsWith(syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0), EPERM)) return 3;
  // The kernel itself would refuse these arguments (EINVAL), so a missing filter cannot fork.
  if (!FailsWith(syscall(SYS_clone3, nullptr, 0), ENOSYS)) return 4;
  if (!FailsWith(syscall(1000), ENOSYS)) return 5;
  if (!FailsWith(syscall(SYS_clone, CLONE_NEWUSER | CLONE_FS | SIGCHLD, 0, 0, 0, 0), EPERM))
    return 6;
  if (!FailsWith(syscall(SYS_mount, "none", "/nonexistent-sbx", "tmpfs", 0, 0), EPERM)) return 7;
  // Not in the allowlist, exists in the kernel: the profile's default answers ENOSYS.
  if (!FailsWith(syscall(SYS_get_mempolicy, 0, 0, 0, 0, 0), ENOSYS)) return 8;
  // glibc's pthread_create tries clone3 first and falls back to clone on ENOSYS.
  pthread_t t;
  if (pthread_create(&t, nullptr, ThreadBody, nullptr) != 0) return 9;
  if (pthread_join(t, nullptr) != 0) return 10;
  // fork (clone without namespace flags) still works.
  pid_t child = fork();
  if (child < 0) return 11;
  if (child == 0) _exit(42);
  int status = 0;
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 42) {
    return 12;
  }
  return 0;
}

int DockerProfileChecks() {
  if (syscall(SYS_getpid) != getpid()) return 1;
  if (!FailsWith(syscall(SYS_unshare, CLONE_NEWNS), EPERM)) return 2;
  // The kernel itself would refuse these arguments (EINVAL), so a missing filter cannot fork.
  if (!FailsWith(syscall(SYS_clone3, nullptr, 0), ENOSYS)) return 4;
  if (!FailsWith(syscall(1000), EPERM)) return 5;  // Docker's default is EPERM
  if (!FailsWith(syscall(SYS_clone, CLONE_NEWUSER | CLONE_FS | SIGCHLD, 0, 0, 0, 0), EPERM))
    return 6;
  pthread_t t;
  if (pthread_create(&t, nullptr, ThreadBody, nullptr) != 0) return 9;
  if (pthread_join(t, nullptr) != 0) return 10;
  return 0;
}

int PodmanProfileChecks() {
  if (syscall(SYS_getpid) != getpid()) return 1;
  // Podman's default is ENOSYS, named "ENOSYS" in the profile.
  if (!FailsWith(syscall(1000), ENOSYS)) return 5;
  // The kernel itself would refuse a null path (EFAULT), so a missing filter cannot swap.
  if (!FailsWith(syscall(SYS_swapon, nullptr, 0), EPERM)) return 13;
  // Without CAP_AUDIT_WRITE in the profile's view: "errno": "EINVAL". Unfiltered, the child
  // would only get a socket of its own.
  if (!FailsWith(syscall(SYS_socket, AF_NETLINK, SOCK_RAW, NETLINK_AUDIT), EINVAL)) return 14;
  // Allowed by syscalls[1], with or without CAP_SYS_ADMIN (the first rule holds, as under
  // Podman): the kernel answers the bad fd. Filtered, it would be EPERM.
  if (!FailsWith(syscall(SYS_setns, -1, 0), EBADF)) return 15;
  pthread_t t;
  if (pthread_create(&t, nullptr, ThreadBody, nullptr) != 0) return 9;
  if (pthread_join(t, nullptr) != 0) return 10;
  return 0;
}

bool HasCapSysAdmin() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) == 0) {
      return (std::stoull(line.substr(7), nullptr, 16) >> 21) & 1;  // CAP_SYS_ADMIN = 21
    }
  }
  return false;
}

const char* Describe(int code) {
  switch (code) {
    case 1:
      return "getpid did not work";
    case 2:
      return "unshare(CLONE_NEWNS) did not fail with EPERM";
    case 3:
      return "ptrace(PTRACE_TRACEME) did not fail with EPERM";
    case 4:
      return "clone3 did not fail with ENOSYS";
    case 5:
      return "syscall 1000 did not fail with the default errno";
    case 6:
      return "clone(CLONE_NEWUSER) did not fail with EPERM";
    case 7:
      return "mount did not fail with EPERM";
    case 8:
      return "get_mempolicy (not listed) did not fail with ENOSYS";
    case 9:
      return "pthread_create failed (no fallback from clone3 to clone?)";
    case 10:
      return "pthread_join failed";
    case 11:
      return "fork failed";
    case 12:
      return "forked child did not exit 42";
    case 13:
      return "swapon did not fail with EPERM";
    case 14:
      return "socket(AF_NETLINK, NETLINK_AUDIT) did not fail with EINVAL";
    case 15:
      return "setns(-1, 0) did not reach the kernel (EBADF)";
    case kSetupNoNewPrivs:
      return "prctl(PR_SET_NO_NEW_PRIVS) failed";
    case kSetupInstall:
      return "InstallProgram failed";
    default:
      return "unexpected exit";
  }
}

class SeccompFilterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A filter that allows everything tells whether this host can install filters at all.
    auto allow = ParseProfile(R"({"defaultAction": "SCMP_ACT_ALLOW"})", "allow");
    ASSERT_TRUE(allow.ok()) << allow.error().ToString();
    auto program = Compile(*allow);
    ASSERT_TRUE(program.ok()) << program.error().ToString();
    int code = RunFiltered(*program, [] { return 0; });
    if (code == kSetupInstall || code == kSetupNoNewPrivs) {
      SBX_SKIP_PRIVILEGED(std::string("this host cannot install seccomp filters: ") + Describe(code));
    }
    ASSERT_EQ(code, 0) << "allow-all filter: " << Describe(code);
  }
};

TEST_F(SeccompFilterTest, DefaultProfileInAChild) {
  auto program = Compile(DefaultProfile());
  ASSERT_TRUE(program.ok()) << program.error().ToString();
  int code = RunFiltered(*program, DefaultProfileChecks);
  EXPECT_EQ(code, 0) << Describe(code) << " (exit " << code << ")";
}

TEST_F(SeccompFilterTest, DockerProfileInAChild) {
  auto profile =
      LoadProfileFile(std::string(SBX_SOURCE_DIR) + "/tests/testdata/seccomp/docker-default.json");
  ASSERT_TRUE(profile.ok()) << profile.error().ToString();
  auto program = Compile(*profile);
  ASSERT_TRUE(program.ok()) << program.error().ToString();
  int code = RunFiltered(*program, DockerProfileChecks);
  EXPECT_EQ(code, 0) << Describe(code) << " (exit " << code << ")";
}

TEST_F(SeccompFilterTest, PodmanProfileInAChild) {
  auto profile =
      LoadProfileFile(std::string(SBX_SOURCE_DIR) + "/tests/testdata/seccomp/podman-default.json");
  ASSERT_TRUE(profile.ok()) << profile.error().ToString();
  // Without capabilities in the profile's view, where it contradicts itself over setns, and
  // with CAP_SYS_ADMIN, where it does not.
  for (std::vector<std::string> caps : {std::vector<std::string>{}, {"CAP_SYS_ADMIN"}}) {
    CompileOptions options;
    options.caps = caps;
    auto program = Compile(*profile, options);
    ASSERT_TRUE(program.ok()) << program.error().ToString();
    int code = RunFiltered(*program, PodmanProfileChecks);
    EXPECT_EQ(code, 0) << Describe(code) << " (exit " << code << ", " << caps.size() << " caps)";
  }
}

TEST_F(SeccompFilterTest, KillActionKillsTheChild) {
  auto profile = ParseProfile(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
      {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]})",
                              "kill");
  ASSERT_TRUE(profile.ok()) << profile.error().ToString();
  auto program = Compile(*profile);
  ASSERT_TRUE(program.ok()) << program.error().ToString();
  int code = RunFiltered(*program, [] { return static_cast<int>(syscall(SYS_getppid) > 0); });
  EXPECT_EQ(code, 1000 + SIGSYS);
}

TEST_F(SeccompFilterTest, InstallWithoutNoNewPrivsNeedsCapSysAdmin) {
  auto program = Compile(DefaultProfile());
  ASSERT_TRUE(program.ok()) << program.error().ToString();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int rc = InstallProgram(*program);  // no PR_SET_NO_NEW_PRIVS
    _exit(rc == 0 ? 0 : (rc == -EACCES ? 1 : 2));
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  // seccomp(2): without no_new_privs the caller needs CAP_SYS_ADMIN, else EACCES.
  EXPECT_EQ(WEXITSTATUS(status), HasCapSysAdmin() ? 0 : 1);
}

}  // namespace
}  // namespace sbx::seccomp
