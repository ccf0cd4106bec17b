// Compile(): profiles -> BPF, checked by running the BPF on syscalls with Evaluate() (nothing is
// installed in this process).
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "base/fs.h"
#include "seccomp/seccomp.h"
#include "seccomp/simulate.h"

namespace sbx::seccomp {
namespace {

constexpr uint32_t kAllow = SECCOMP_RET_ALLOW;
constexpr uint32_t Errno(int e) { return SECCOMP_RET_ERRNO | static_cast<uint32_t>(e); }
constexpr uint64_t kNsFlags = 0x7E020000;

bool NativeIsX8664() { return NativeAuditArch() == AUDIT_ARCH_X86_64; }

Profile Parse(std::string_view json) {
  auto p = ParseProfile(json, "test");
  EXPECT_TRUE(p.ok()) << p.error().ToString();
  return p.ok() ? std::move(p).value() : Profile{};
}

Program MustCompile(const Profile& profile, const CompileOptions& options = {}) {
  auto p = Compile(profile, options);
  EXPECT_TRUE(p.ok()) << p.error().ToString();
  return p.ok() ? std::move(p).value() : Program{};
}

// The filter's answer for a native syscall.
uint32_t Verdict(const Program& p, int nr, std::initializer_list<uint64_t> args = {},
                 uint32_t arch = NativeAuditArch()) {
  auto r = Evaluate(p, MakeSeccompData(nr, args, arch));
  EXPECT_TRUE(r.ok()) << r.error().ToString();
  return r.ok() ? *r : 0xdeadbeef;
}

uint32_t VerdictNamed(const Program& p, const std::string& name,
                      std::initializer_list<uint64_t> args = {}) {
  auto nr = NativeSyscallNumber(name);
  EXPECT_TRUE(nr.has_value()) << name;
  return nr ? Verdict(p, *nr, args) : 0xdeadbeef;
}

const Profile& Docker() {
  static const Profile profile = [] {
    auto p = LoadProfileFile(std::string(SBX_SOURCE_DIR) +
                             "/tests/testdata/seccomp/docker-default.json");
    EXPECT_TRUE(p.ok()) << p.error().ToString();
    return p.ok() ? std::move(p).value() : Profile{};
  }();
  return profile;
}

TEST(SeccompCompileTest, DockerDefaultCompilesUnchanged) {
  Program p = MustCompile(Docker());
  EXPECT_EQ(p.profile_name, "docker-default");
  EXPECT_GT(p.insns.size(), 100u);
  EXPECT_LE(p.insns.size(), static_cast<size_t>(BPF_MAXINSNS));
  EXPECT_EQ(Verdict(p, SYS_getpid), kAllow);
  EXPECT_EQ(Verdict(p, SYS_read), kAllow);
  EXPECT_EQ(Verdict(p, SYS_mount), Errno(EPERM));
  EXPECT_EQ(Verdict(p, SYS_unshare, {CLONE_NEWNS}), Errno(EPERM));
  EXPECT_EQ(Verdict(p, SYS_clone3), Errno(ENOSYS));
  EXPECT_EQ(Verdict(p, SYS_clone, {SIGCHLD}), kAllow);
  EXPECT_EQ(Verdict(p, SYS_clone, {CLONE_NEWUSER | SIGCHLD}), Errno(EPERM));
  EXPECT_EQ(Verdict(p, SYS_socket, {2}), kAllow);  // AF_INET
  EXPECT_EQ(Verdict(p, SYS_socket, {39}), kAllow);
  EXPECT_EQ(Verdict(p, SYS_socket, {40}), Errno(EPERM));  // AF_VSOCK
  EXPECT_EQ(Verdict(p, SYS_personality, {0xffffffff}), kAllow);
  EXPECT_EQ(Verdict(p, SYS_personality, {0x0040000}), Errno(EPERM));  // ADDR_NO_RANDOMIZE
  EXPECT_EQ(Verdict(p, 1000), Errno(EPERM));
  // Names this libseccomp does not know are skipped, not fatal.
  for (const std::string& name : p.skipped_syscalls) {
    EXPECT_FALSE(NativeSyscallNumber(name).has_value()) << name;
  }
}

// containers/common's profile (Podman, Buildah, CRI-O): its errnos are given by name as well.
const Profile& Podman() {
  static const Profile profile = [] {
    auto p = LoadProfileFile(std::string(SBX_SOURCE_DIR) +
                             "/tests/testdata/seccomp/podman-default.json");
    EXPECT_TRUE(p.ok()) << p.error().ToString();
    return p.ok() ? std::move(p).value() : Profile{};
  }();
  return profile;
}

// Without CAP_SYS_ADMIN the profile contradicts itself: syscalls[1] allows setns outright and
// syscalls[16] (excludes CAP_SYS_ADMIN) answers it EPERM. libseccomp keeps the first action
// without a word, so under Podman setns is allowed; here too, and the dropped rule is named.
TEST(SeccompCompileTest, PodmanDefaultWithoutCapSysAdminLoadsAsUnderPodman) {
  ASSERT_FALSE(Podman().syscalls.empty());
  Program p = MustCompile(Podman());
  EXPECT_EQ(Verdict(p, SYS_setns), kAllow);
  EXPECT_EQ(Verdict(p, SYS_getpid), kAllow);
  EXPECT_EQ(Verdict(p, SYS_perf_event_open), Errno(EPERM));  // syscalls[16]; 38 and 39 need caps
  EXPECT_EQ(Verdict(p, SYS_sethostname), Errno(EPERM));
  ASSERT_EQ(p.shadowed.size(), 1u);
  EXPECT_NE(p.shadowed[0].find("syscalls[16] (setns): syscalls[1] already gives setns "
                               "SCMP_ACT_ALLOW"),
            std::string::npos)
      << p.shadowed[0];
  EXPECT_NE(p.shadowed[0].find("SCMP_ACT_ERRNO(1) does not apply"), std::string::npos)
      << p.shadowed[0];
}

TEST(SeccompCompileTest, PodmanDefaultCompilesWithCapSysAdmin) {
  CompileOptions admin;
  admin.caps = {"CAP_SYS_ADMIN"};
  Program p = MustCompile(Podman(), admin);
  EXPECT_EQ(p.profile_name, "podman-default");
  EXPECT_GT(p.insns.size(), 100u);
  EXPECT_LE(p.insns.size(), static_cast<size_t>(BPF_MAXINSNS));
  EXPECT_EQ(Verdict(p, SYS_getpid), kAllow);
  EXPECT_EQ(Verdict(p, SYS_setns), kAllow);
  EXPECT_EQ(Verdict(p, 1000), Errno(ENOSYS));                    // "defaultErrno": "ENOSYS"
  EXPECT_EQ(Verdict(p, SYS_kexec_load), Errno(EPERM));           // "errno": "EPERM"
  EXPECT_EQ(Verdict(p, SYS_open_by_handle_at), Errno(EPERM));    // without CAP_DAC_READ_SEARCH
  EXPECT_EQ(Verdict(p, SYS_socket, {16, 3, 9}), Errno(EINVAL));  // AF_NETLINK, NETLINK_AUDIT
  EXPECT_EQ(Verdict(p, SYS_socket, {16, 3, 0}), kAllow);
  EXPECT_EQ(Verdict(p, SYS_socket, {2, 1, 0}), kAllow);  // AF_INET
  EXPECT_EQ(Verdict(p, SYS_personality, {0}), kAllow);
  EXPECT_EQ(Verdict(p, SYS_personality, {0x0040000}), Errno(ENOSYS));  // ADDR_NO_RANDOMIZE
  // Podman leaves mount and unshare to capabilities and user namespaces; Docker does not.
  EXPECT_EQ(Verdict(p, SYS_mount), kAllow);
  EXPECT_EQ(Verdict(p, SYS_unshare, {CLONE_NEWNS}), kAllow);

  admin.caps.push_back("CAP_AUDIT_WRITE");
  Program with_audit = MustCompile(Podman(), admin);
  EXPECT_EQ(Verdict(with_audit, SYS_socket, {16, 3, 9}), kAllow);
}

TEST(SeccompCompileTest, DockerArchMapAddsSubArchitectures) {
  if (!NativeIsX8664()) GTEST_SKIP() << "x86_64-specific syscall numbers";
  Program p = MustCompile(Docker());
  EXPECT_EQ(Verdict(p, 20, {}, AUDIT_ARCH_I386), kAllow);        // i386 getpid
  EXPECT_EQ(Verdict(p, 21, {}, AUDIT_ARCH_I386), Errno(EPERM));  // i386 mount
  EXPECT_EQ(Verdict(p, 102, {1}, AUDIT_ARCH_I386), kAllow);      // i386 socketcall (multiplexed)
  EXPECT_EQ(Verdict(p, 39 | 0x40000000), kAllow);                // x32 getpid
  EXPECT_EQ(Verdict(p, 165 | 0x40000000), Errno(EPERM));         // x32 mount
  EXPECT_EQ(Verdict(p, 20, {}, AUDIT_ARCH_ARM), SECCOMP_RET_KILL_PROCESS);  // not in the map
  EXPECT_EQ(Verdict(p, SYS_arch_prctl), kAllow);  // includes.arches ["amd64", "x32"]
  EXPECT_EQ(Verdict(p, SYS_modify_ldt), kAllow);
}

TEST(SeccompCompileTest, ArchitecturesList) {
  if (!NativeIsX8664()) GTEST_SKIP() << "x86_64-specific syscall numbers";
  Program native_only = MustCompile(Parse(R"({"defaultAction": "SCMP_ACT_ALLOW"})"));
  EXPECT_EQ(Verdict(native_only, SYS_getpid), kAllow);
  EXPECT_EQ(Verdict(native_only, 20, {}, AUDIT_ARCH_I386), SECCOMP_RET_KILL_PROCESS);

  // SCMP_ARCH_LOONGARCH64 is unknown to libseccomp 2.5.4 and is left out without failing.
  Program with_x86 = MustCompile(Parse(R"({"defaultAction": "SCMP_ACT_ALLOW",
      "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_AARCH64"]})"));
  EXPECT_EQ(Verdict(with_x86, 20, {}, AUDIT_ARCH_I386), kAllow);
  EXPECT_EQ(Verdict(with_x86, 172, {}, AUDIT_ARCH_AARCH64), kAllow);
  EXPECT_EQ(Verdict(with_x86, 20, {}, AUDIT_ARCH_ARM), SECCOMP_RET_KILL_PROCESS);

  // An archMap without an entry for the native arch gives the native arch only.
  Program foreign_map = MustCompile(Parse(R"({"defaultAction": "SCMP_ACT_ALLOW",
      "archMap": [{"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}]})"));
  EXPECT_EQ(Verdict(foreign_map, SYS_getpid), kAllow);
  EXPECT_EQ(Verdict(foreign_map, 20, {}, AUDIT_ARCH_ARM), SECCOMP_RET_KILL_PROCESS);
}

TEST(SeccompCompileTest, SyscallMissingOnNativeArchDoesNotFail) {
  // chown32 exists on x86 only; stime on x86 but not x86_64; fine with or without x86.
  const char* rules = R"("syscalls": [{"names": ["chown32", "stime", "getpid"],
                                       "action": "SCMP_ACT_ERRNO", "errnoRet": 13}])";
  for (const char* arches : {"", R"("architectures": ["SCMP_ARCH_X86"],)"}) {
    Program p = MustCompile(
        Parse(fmt::format(R"({{"defaultAction": "SCMP_ACT_ALLOW", {} {}}})", arches, rules)));
    EXPECT_EQ(Verdict(p, SYS_getpid), Errno(EACCES)) << arches;
    EXPECT_TRUE(p.skipped_syscalls.empty());
  }
}

TEST(SeccompCompileTest, UnknownSyscallNamesAreSkipped) {
  Program p = MustCompile(Parse(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
      {"names": ["getpid", "no_such_syscall_xyz"], "action": "SCMP_ACT_ALLOW"}]})"));
  EXPECT_EQ(Verdict(p, SYS_getpid), kAllow);
  EXPECT_EQ(p.skipped_syscalls, std::vector<std::string>{"no_such_syscall_xyz"});
}

TEST(SeccompCompileTest, CapsFilterRules) {
  Program none = MustCompile(Docker());
  CompileOptions admin;
  admin.caps = {"CAP_SYS_ADMIN"};
  Program with_admin = MustCompile(Docker(), admin);
  for (int nr : {SYS_mount, SYS_umount2, SYS_unshare, SYS_setns, SYS_fsopen, SYS_move_mount}) {
    EXPECT_EQ(Verdict(none, nr), Errno(EPERM)) << nr;
    EXPECT_EQ(Verdict(with_admin, nr), kAllow) << nr;
  }
  // excludes.caps: the clone3 ENOSYS rule and the clone flag mask go away with CAP_SYS_ADMIN.
  EXPECT_EQ(Verdict(with_admin, SYS_clone3), kAllow);
  EXPECT_EQ(Verdict(with_admin, SYS_clone, {CLONE_NEWUSER | SIGCHLD}), kAllow);
  // Other caps-gated rules stay off.
  EXPECT_EQ(Verdict(with_admin, SYS_reboot), Errno(EPERM));
  EXPECT_EQ(Verdict(with_admin, SYS_kcmp), Errno(EPERM));

  CompileOptions ptrace_caps;
  ptrace_caps.caps = {"CAP_SYS_PTRACE", "CAP_SYS_BOOT"};
  Program with_ptrace = MustCompile(Docker(), ptrace_caps);
  EXPECT_EQ(Verdict(with_ptrace, SYS_kcmp), kAllow);
  EXPECT_EQ(Verdict(with_ptrace, SYS_reboot), kAllow);
  EXPECT_EQ(Verdict(with_ptrace, SYS_mount), Errno(EPERM));
}

TEST(SeccompCompileTest, IncludesNeedEveryCapExcludesAnyCap) {
  Profile p = Parse(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
      {"names": ["getpid"], "action": "SCMP_ACT_ALLOW",
       "includes": {"caps": ["CAP_A", "CAP_B"]}},
      {"names": ["getppid"], "action": "SCMP_ACT_ALLOW",
       "excludes": {"caps": ["CAP_A", "CAP_B"]}}]})");
  CompileOptions a;
  a.caps = {"CAP_A"};
  CompileOptions ab;
  ab.caps = {"CAP_B", "CAP_A"};
  EXPECT_EQ(Verdict(MustCompile(p), SYS_getpid), Errno(EPERM));
  EXPECT_EQ(Verdict(MustCompile(p, a), SYS_getpid), Errno(EPERM));
  EXPECT_EQ(Verdict(MustCompile(p, ab), SYS_getpid), kAllow);
  EXPECT_EQ(Verdict(MustCompile(p), SYS_getppid), kAllow);
  EXPECT_EQ(Verdict(MustCompile(p, a), SYS_getppid), Errno(EPERM));
}

TEST(SeccompCompileTest, ArchFilters) {
  if (!NativeIsX8664()) GTEST_SKIP() << "checks the x86_64 spellings";
  Profile p = Parse(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
      {"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
      {"names": ["getppid"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["x86_64"]}},
      {"names": ["gettid"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64", "x86"]}},
      {"names": ["getuid"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["x86_64"]}},
      {"names": ["getgid"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["s390x"]}}]})");
  Program prog = MustCompile(p);
  EXPECT_EQ(Verdict(prog, SYS_getpid), kAllow);
  EXPECT_EQ(Verdict(prog, SYS_getppid), kAllow);
  EXPECT_EQ(Verdict(prog, SYS_gettid), Errno(EPERM));
  EXPECT_EQ(Verdict(prog, SYS_getuid), Errno(EPERM));
  EXPECT_EQ(Verdict(prog, SYS_getgid), kAllow);
}

TEST(SeccompCompileTest, MinKernel) {
  CompileOptions old_kernel;
  old_kernel.kernel_version = "4.7";
  CompileOptions new_kernel;
  new_kernel.kernel_version = "4.8";
  // Docker allows ptrace from 4.8 on.
  EXPECT_EQ(Verdict(MustCompile(Docker(), old_kernel), SYS_ptrace), Errno(EPERM));
  EXPECT_EQ(Verdict(MustCompile(Docker(), new_kernel), SYS_ptrace), kAllow);
  EXPECT_EQ(Verdict(MustCompile(Docker()), SYS_ptrace), kAllow);  // the running kernel (uname)

  Profile p = Parse(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
      {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "excludes": {"minKernel": "5.10"}},
      {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "5.10.3"}}]})");
  for (auto [version, pid, ppid] :
       {std::tuple{"5.9", Errno(EPERM), kAllow}, std::tuple{"5.10", kAllow, kAllow},
        std::tuple{"5.10.3-1-amd64", kAllow, Errno(EPERM)},
        std::tuple{"6.1", kAllow, Errno(EPERM)}}) {
    CompileOptions o;
    o.kernel_version = version;
    Program prog = MustCompile(p, o);
    EXPECT_EQ(Verdict(prog, SYS_getpid), pid) << version;
    EXPECT_EQ(Verdict(prog, SYS_getppid), ppid) << version;
  }

  CompileOptions bad;
  bad.kernel_version = "six";
  auto r = Compile(p, bad);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("kernel_version \"six\""), std::string::npos);
}

TEST(SeccompCompileTest, SameIndexArgsAreOred) {
  Program p = MustCompile(Parse(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
      {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
        {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]})"));
  EXPECT_EQ(Verdict(p, SYS_personality, {0}), kAllow);
  EXPECT_EQ(Verdict(p, SYS_personality, {8}), kAllow);
  EXPECT_EQ(Verdict(p, SYS_personality, {1}), Errno(EPERM));
}

TEST(SeccompCompileTest, DistinctIndexArgsAreAnded) {
  Program p = MustCompile(Parse(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
      {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
        {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]}]})"));
  EXPECT_EQ(Verdict(p, SYS_kill, {1, 15}), kAllow);
  EXPECT_EQ(Verdict(p, SYS_kill, {1, 9}), Errno(EPERM));
  EXPECT_EQ(Verdict(p, SYS_kill, {2, 15}), Errno(EPERM));
}

TEST(SeccompCompileTest, Operators) {
  Program p = MustCompile(Parse(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
      {"names": ["setuid"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_NE"}]},
      {"names": ["setgid"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_LT"}]},
      {"names": ["setfsuid"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_LE"}]},
      {"names": ["setfsgid"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_GE"}]},
      {"names": ["umask"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_GT"}]},
      {"names": ["dup"], "action": "SCMP_ACT_ALLOW",
       "args": [{"index": 0, "value": 4294967295, "valueTwo": 3, "op": "SCMP_CMP_MASKED_EQ"}]}]})"));
  struct Case {
    int nr;
    uint64_t arg;
    bool allowed;
  };
  for (Case c : std::initializer_list<Case>{{SYS_setuid, 4, true},
                                            {SYS_setuid, 5, false},
                                            {SYS_setgid, 4, true},
                                            {SYS_setgid, 5, false},
                                            {SYS_setfsuid, 5, true},
                                            {SYS_setfsuid, 6, false},
                                            {SYS_setfsgid, 5, true},
                                            {SYS_setfsgid, 4, false},
                                            {SYS_umask, 6, true},
                                            {SYS_umask, 5, false},
                                            {SYS_umask, 1ull << 40, true},
                                            // MASKED_EQ: value is the mask, valueTwo the datum.
                                            {SYS_dup, 3, true},
                                            {SYS_dup, 0x500000003ull, true},
                                            {SYS_dup, 4, false}}) {
    EXPECT_EQ(Verdict(p, c.nr, {c.arg}), c.allowed ? kAllow : Errno(EPERM)) << c.nr << " " << c.arg;
  }
}

TEST(SeccompCompileTest, Actions) {
  Program p = MustCompile(Parse(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
      {"names": ["getpid"], "action": "SCMP_ACT_KILL"},
      {"names": ["getppid"], "action": "SCMP_ACT_KILL_THREAD"},
      {"names": ["gettid"], "action": "SCMP_ACT_KILL_PROCESS"},
      {"names": ["getuid"], "action": "SCMP_ACT_TRAP"},
      {"names": ["getgid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
      {"names": ["geteuid"], "action": "SCMP_ACT_TRACE"},
      {"names": ["getegid"], "action": "SCMP_ACT_LOG"},
      {"names": ["getpgrp"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
      {"names": ["getsid"], "action": "SCMP_ACT_ALLOW"}]})"));
  EXPECT_EQ(Verdict(p, SYS_getpid), SECCOMP_RET_KILL_THREAD);
  EXPECT_EQ(Verdict(p, SYS_getppid), SECCOMP_RET_KILL_THREAD);
  EXPECT_EQ(Verdict(p, SYS_gettid), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(Verdict(p, SYS_getuid), SECCOMP_RET_TRAP);
  EXPECT_EQ(Verdict(p, SYS_getgid), SECCOMP_RET_TRACE | 7);
  EXPECT_EQ(Verdict(p, SYS_geteuid), SECCOMP_RET_TRACE | EPERM);
  EXPECT_EQ(Verdict(p, SYS_getegid), SECCOMP_RET_LOG);
  EXPECT_EQ(Verdict(p, SYS_getpgrp), Errno(EACCES));
  EXPECT_EQ(Verdict(p, SYS_getsid), kAllow);
  EXPECT_EQ(Verdict(p, SYS_read), Errno(EPERM));  // ERRNO without defaultErrnoRet: EPERM

  Program enosys =
      MustCompile(Parse(R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38})"));
  EXPECT_EQ(Verdict(enosys, SYS_read), Errno(ENOSYS));
}

TEST(SeccompCompileTest, RulesWithTheDefaultActionAreSkipped) {
  Program p = MustCompile(Parse(R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
      "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                   {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}]})"));
  EXPECT_EQ(Verdict(p, SYS_getpid), Errno(ENOSYS));
  EXPECT_EQ(Verdict(p, SYS_getppid), Errno(EPERM));
  Program allow = MustCompile(Parse(
      R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]})"));
  EXPECT_EQ(Verdict(allow, SYS_getpid), kAllow);
}

TEST(SeccompCompileTest, NotifyIsUnavailable) {
  for (
      const char* json :
      {R"({"defaultAction": "SCMP_ACT_NOTIFY"})",
       R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
               {"names": ["openat"], "action": "SCMP_ACT_NOTIFY"}]})"}) {
    auto r = Compile(Parse(json));
    ASSERT_FALSE(r.ok()) << json;
    EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
    EXPECT_NE(r.error().message.find("SCMP_ACT_NOTIFY needs a notification listener; used by "
                                     "`sandboxd seccomp learn`"),
              std::string::npos)
        << r.error().message;
  }
  auto r = Compile(Parse(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
      {"names": ["openat"], "action": "SCMP_ACT_NOTIFY"}]})"));
  EXPECT_NE(r.error().message.find("syscalls[0].action"), std::string::npos);
  // A NOTIFY rule that does not apply is not an error.
  EXPECT_TRUE(Compile(Parse(R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
      {"names": ["openat"], "action": "SCMP_ACT_NOTIFY", "includes": {"caps": ["CAP_X"]}}]})"))
                  .ok());
}

TEST(SeccompCompileTest, RefusesRulesLibseccompWouldDrop) {
  // An unconditional rule replaces every conditional rule for the same syscall in libseccomp, so
  // "deny ioctl(TIOCSTI)" next to "allow ioctl" would silently allow TIOCSTI.
  const char* deny = R"({"names": ["ioctl"], "action": "SCMP_ACT_ERRNO",
      "args": [{"index": 1, "value": 4294967295, "valueTwo": 21522, "op": "SCMP_CMP_MASKED_EQ"}]})";
  const char* allow = R"({"names": ["ioctl"], "action": "SCMP_ACT_ALLOW"})";
  for (auto [first, second] : {std::pair{allow, deny}, std::pair{deny, allow}}) {
    auto r = Compile(Parse(fmt::format(
        R"({{"defaultAction": "SCMP_ACT_KILL", "syscalls": [{}, {}]}})", first, second)));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message.find("syscalls[1] (ioctl)"), std::string::npos)
        << r.error().message;
  }
}

// Of two unconditional rules with different actions for one syscall, libseccomp keeps the first
// without a word (db.c: "existing filter is at least as large"); runc, crun and Podman load
// profiles through it, and Compile must give what they give.
TEST(SeccompCompileTest, FirstOfTwoUnconditionalRulesHoldsAsInLibseccomp) {
  for (auto [first, second] : {std::pair{"SCMP_ACT_ALLOW", "SCMP_ACT_LOG"},
                               std::pair{"SCMP_ACT_LOG", "SCMP_ACT_ALLOW"},
                               std::pair{"SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW"}}) {
    Program p = MustCompile(Parse(fmt::format(R"({{"defaultAction": "SCMP_ACT_KILL", "syscalls": [
        {{"names": ["getpid"], "action": "{}"}}, {{"names": ["getpid"], "action": "{}"}}]}})",
                                              first, second)));
    auto want = ActionValue(first, std::nullopt);
    ASSERT_TRUE(want.ok());
    EXPECT_EQ(Verdict(p, SYS_getpid), *want) << first << " then " << second;
    ASSERT_EQ(p.shadowed.size(), 1u);
    EXPECT_NE(p.shadowed[0].find("syscalls[1] (getpid): syscalls[0] already gives getpid"),
              std::string::npos)
        << p.shadowed[0];

    // libseccomp itself, given both rules, agrees (and says nothing).
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_THREAD);
    ASSERT_NE(ctx, nullptr);
    auto second_value = ActionValue(second, std::nullopt);
    ASSERT_TRUE(second_value.ok());
    EXPECT_EQ(seccomp_rule_add(ctx, *want, SYS_getpid, 0), 0);
    EXPECT_EQ(seccomp_rule_add(ctx, *second_value, SYS_getpid, 0), 0);
    int fd = memfd_create("bpf", MFD_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(seccomp_export_bpf(ctx, fd), 0);
    seccomp_release(ctx);
    off_t size = lseek(fd, 0, SEEK_END);
    Program raw;
    raw.insns.resize(static_cast<size_t>(size) / sizeof(sock_filter));
    ASSERT_EQ(pread(fd, raw.insns.data(), static_cast<size_t>(size), 0), size);
    close(fd);
    EXPECT_EQ(Verdict(raw, SYS_getpid), *want) << first << " then " << second;
  }
  // The same action twice, or conditional rules under an unconditional one with the same action,
  // are fine and drop nothing worth a word.
  Program same = MustCompile(Parse(R"({"defaultAction": "SCMP_ACT_KILL", "syscalls": [
      {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
      {"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
      {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]})"));
  EXPECT_TRUE(same.shadowed.empty());
}

TEST(SeccompCompileTest, RefusesProgramsOverTheKernelLimit) {
  std::string args;
  for (uint64_t i = 1; i <= 2100; ++i) {
    if (i > 1) args += ",";
    args += fmt::format(R"({{"index": 0, "value": {}, "op": "SCMP_CMP_EQ"}})", (i << 32) | i);
  }
  auto r = Compile(Parse(fmt::format(
      R"({{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{{"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [{}]}}]}})",
      args)));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("BPF_MAXINSNS"), std::string::npos) << r.error().message;
}

TEST(SeccompCompileTest, InstallRejectsEmptyProgram) {
  // Returns before any syscall: safe to call in the test process.
  EXPECT_EQ(InstallProgram(Program{}), -EINVAL);
}

TEST(SeccompCompileTest, EvaluateRejectsBrokenPrograms) {
  EXPECT_FALSE(Evaluate(Program{}, MakeSeccompData(0)).ok());
  Program no_return;
  no_return.insns = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0)};
  EXPECT_FALSE(Evaluate(no_return, MakeSeccompData(0)).ok());
  Program out_of_data;
  out_of_data.insns = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 64), BPF_STMT(BPF_RET | BPF_K, 0)};
  EXPECT_FALSE(Evaluate(out_of_data, MakeSeccompData(0)).ok());
}

// --- The builtin default profile ---

TEST(SeccompDefaultProfileTest, EmbeddedTextMatchesPoliciesFile) {
  auto text = ReadFile(std::string(SBX_SOURCE_DIR) + "/policies/seccomp/default.json", 4 << 20);
  ASSERT_TRUE(text.ok()) << text.error().ToString();
  EXPECT_EQ(DefaultProfileJson(), *text);
  auto parsed = ParseProfile(DefaultProfileJson(), "default");
  ASSERT_TRUE(parsed.ok()) << parsed.error().ToString();
  EXPECT_EQ(DefaultProfile().name, "default");
  EXPECT_EQ(DefaultProfile().default_action, "SCMP_ACT_ERRNO");
  EXPECT_EQ(DefaultProfile().default_errno_ret, 38u);
  EXPECT_EQ(DefaultProfile().syscalls.size(), parsed->syscalls.size());
  for (const SyscallRule& r : DefaultProfile().syscalls) {
    EXPECT_FALSE(r.comment.empty()) << r.names.front();
  }
}

TEST(SeccompDefaultProfileTest, Compiles) {
  Program p = MustCompile(DefaultProfile());
  EXPECT_EQ(p.profile_name, "default");
  EXPECT_LE(p.insns.size(), static_cast<size_t>(BPF_MAXINSNS));
  // Even with every capability the builtin profile compiles (it has no caps filters).
  CompileOptions all;
  all.caps = {"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_BOOT", "CAP_SYS_MODULE"};
  std::vector<sock_filter> with_caps = MustCompile(DefaultProfile(), all).insns;
  ASSERT_EQ(with_caps.size(), p.insns.size());
  EXPECT_EQ(std::memcmp(with_caps.data(), p.insns.data(), p.insns.size() * sizeof(sock_filter)), 0);
}

TEST(SeccompDefaultProfileTest, Semantics) {
  Program p = MustCompile(DefaultProfile());
  EXPECT_EQ(Verdict(p, SYS_getpid), kAllow);
  EXPECT_EQ(Verdict(p, SYS_read), kAllow);
  EXPECT_EQ(Verdict(p, SYS_execve), kAllow);
  EXPECT_EQ(Verdict(p, SYS_adjtimex), kAllow);
  EXPECT_EQ(Verdict(p, SYS_clone3), Errno(ENOSYS));
  EXPECT_EQ(Verdict(p, 1000), Errno(ENOSYS));
  EXPECT_EQ(Verdict(p, SYS_get_mempolicy), Errno(ENOSYS));  // not listed: the default
  EXPECT_EQ(Verdict(p, SYS_clone,
                    {CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
                     CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID}),
            kAllow);  // pthread_create's fallback
  EXPECT_EQ(Verdict(p, SYS_clone, {SIGCHLD}), kAllow);
  for (uint64_t flag : {CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
                        CLONE_NEWPID, CLONE_NEWNET}) {
    EXPECT_EQ(Verdict(p, SYS_clone, {flag | SIGCHLD}), Errno(EPERM)) << flag;
    EXPECT_EQ(Verdict(p, SYS_clone, {flag | (1ull << 40)}), Errno(EPERM)) << flag;
  }
  // Socket families: an allowlist; any other answers EAFNOSUPPORT.
  for (uint64_t family : {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK}) {
    EXPECT_EQ(Verdict(p, SYS_socket, {family}), kAllow) << family;
  }
  for (uint64_t family : {0, 3, 9, 11, 15, AF_PACKET, 38, 40, 41, 45, 46, 1000}) {
    EXPECT_EQ(Verdict(p, SYS_socket, {family}), Errno(EAFNOSUPPORT)) << family;
  }
  for (uint64_t v : {0x0ull, 0x8ull, 0x20000ull, 0x20008ull, 0xffffffffull}) {
    EXPECT_EQ(Verdict(p, SYS_personality, {v}), kAllow) << v;
  }
  EXPECT_EQ(Verdict(p, SYS_personality, {0x0040000}), Errno(ENOSYS));  // ADDR_NO_RANDOMIZE
  if (NativeIsX8664()) {
    EXPECT_EQ(Verdict(p, SYS_arch_prctl), kAllow);
    // The builtin profile covers the native ABI only: a 32-bit (int 0x80) or x32 syscall, a
    // compat path Docker's profile leaves open, kills the process.
    EXPECT_EQ(Verdict(p, 21, {}, AUDIT_ARCH_I386), SECCOMP_RET_KILL_PROCESS);   // i386 mount
    EXPECT_EQ(Verdict(p, 20, {}, AUDIT_ARCH_I386), SECCOMP_RET_KILL_PROCESS);   // i386 getpid
    EXPECT_EQ(Verdict(p, SYS_getpid | 0x40000000), SECCOMP_RET_KILL_PROCESS);  // x32 getpid
  }
}

TEST(SeccompDefaultProfileTest, DeniesTheDangerousCallsWithEperm) {
  Program p = MustCompile(DefaultProfile());
  for (const char* name : {"mount",
                           "umount2",
                           "move_mount",
                           "open_tree",
                           "fsopen",
                           "fsconfig",
                           "fsmount",
                           "fspick",
                           "mount_setattr",
                           "pivot_root",
                           "chroot",
                           "unshare",
                           "setns",
                           "bpf",
                           "perf_event_open",
                           "keyctl",
                           "add_key",
                           "request_key",
                           "io_uring_setup",
                           "io_uring_enter",
                           "io_uring_register",
                           "kexec_load",
                           "kexec_file_load",
                           "init_module",
                           "finit_module",
                           "delete_module",
                           "reboot",
                           "swapon",
                           "swapoff",
                           "ptrace",
                           "process_vm_readv",
                           "process_vm_writev",
                           "userfaultfd",
                           "acct",
                           "quotactl",
                           "lookup_dcookie",
                           "name_to_handle_at",
                           "open_by_handle_at",
                           "syslog",
                           "settimeofday",
                           "clock_settime",
                           "clock_adjtime",
                           "vhangup",
                           "iopl",
                           "ioperm",
                           "uselib",
                           "nfsservctl",
                           "fanotify_init",
                           "sethostname",
                           "setdomainname",
                           "create_module",
                           "get_kernel_syms",
                           "query_module",
                           "kcmp",
                           "pidfd_getfd"}) {
    if (!NativeSyscallNumber(name)) continue;  // not on this arch (umount on x86_64)
    EXPECT_EQ(VerdictNamed(p, name), Errno(EPERM)) << name;
  }
}

TEST(SeccompDefaultProfileTest, UnconditionalRulesMatchTheProgram) {
  Program p = MustCompile(DefaultProfile());
  for (const SyscallRule& r : DefaultProfile().syscalls) {
    if (!r.args.empty() || !r.includes.arches.empty() || !r.excludes.arches.empty()) continue;
    uint32_t want = r.action == "SCMP_ACT_ALLOW" ? kAllow : Errno(static_cast<int>(*r.errno_ret));
    for (const std::string& name : r.names) {
      if (!NativeSyscallNumber(name)) continue;
      EXPECT_EQ(VerdictNamed(p, name), want) << name;
    }
  }
}

// Whatever the default profile allows, Docker's (without capabilities) allows too.
TEST(SeccompDefaultProfileTest, AtLeastAsStrictAsDocker) {
  Program ours = MustCompile(DefaultProfile());
  Program docker = MustCompile(Docker());
  std::vector<uint32_t> arches = {NativeAuditArch()};
  if (NativeIsX8664()) arches.push_back(AUDIT_ARCH_I386);
  int allowed = 0;
  for (uint32_t arch : arches) {
    for (int nr = 0; nr < 1024; ++nr) {
      for (uint64_t a0 : std::initializer_list<uint64_t>{0, 1, 8, 17, 38, 40, 0x40000, kNsFlags,
                                                         0x10000000 | 17, 0xffffffff}) {
        seccomp_data d = MakeSeccompData(nr, {a0, a0, 0, 0, 0, 0}, arch);
        auto o = Evaluate(ours, d);
        auto k = Evaluate(docker, d);
        ASSERT_TRUE(o.ok() && k.ok());
        if (*o != kAllow) continue;
        ++allowed;
        EXPECT_EQ(*k, kAllow) << "arch " << arch << " nr " << nr << " a0 " << a0;
      }
      int x32_nr = nr | 0x40000000;
      if (arch == AUDIT_ARCH_X86_64 && Verdict(ours, x32_nr) == kAllow) {
        EXPECT_EQ(Verdict(docker, x32_nr), kAllow) << "x32 nr " << nr;
      }
    }
  }
  EXPECT_GT(allowed, 2000);
}

}  // namespace
}  // namespace sbx::seccomp
