// seccomp profiles in the Docker/OCI JSON format, compiled to BPF with libseccomp.
//
// profile (JSON text) -> ParseProfile -> Profile (plain data) -> Compile -> Program (BPF).
// Compile() runs in the parent; InstallProgram() is async-signal-safe and runs in the child right
// before execve, after no_new_privs is set.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace sbx::seccomp {

// One argument comparison: args[].{index,value,valueTwo,op}.
struct ArgCmp {
  unsigned index = 0;
  uint64_t value = 0;
  uint64_t value_two = 0;
  std::string op;  // "SCMP_CMP_EQ", "SCMP_CMP_MASKED_EQ", …
};

struct Filter {  // includes / excludes
  std::vector<std::string> caps;
  std::vector<std::string> arches;
  std::string min_kernel;  // "5.8", "" when absent
};

struct SyscallRule {
  std::vector<std::string> names;
  std::string action;              // "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", …
  std::optional<unsigned> errno_ret;
  std::vector<ArgCmp> args;
  Filter includes;
  Filter excludes;
  std::string comment;
};

struct ArchMapEntry {
  std::string architecture;
  std::vector<std::string> sub_architectures;
};

struct Profile {
  std::string name;  // file stem, or "default" for the builtin
  std::string default_action;
  std::optional<unsigned> default_errno_ret;
  std::vector<std::string> architectures;
  std::vector<ArchMapEntry> arch_map;
  std::vector<SyscallRule> syscalls;
};

// Parses and validates the JSON document. Errors name the JSON path ("syscalls[3].action") and
// what to do. Never throws. Stricter than Docker: unknown fields, errnoRet on actions other than
// ERRNO/TRACE, and non-empty "flags"/"listenerPath"/"listenerMetadata" are errors; null counts as
// absent. Documents over 4 MiB are refused. Also reads the containers/common profiles (Podman,
// Buildah, CRI-O): "defaultErrno" and "errno" name the errno ("ENOSYS") and set
// default_errno_ret / errno_ret; an unknown name, or a name and a number that disagree, is an
// error.
Result<Profile> ParseProfile(std::string_view json, std::string name);
Result<Profile> LoadProfileFile(const std::string& path);
// The builtin default profile (policies/seccomp/default.json, embedded at build time): Docker's
// allowlist without capabilities, ENOSYS for anything unlisted, EPERM for dangerous calls.
// Should the embedded text ever fail to parse (a build bug the unit tests catch), this returns a
// profile that kills on every syscall rather than none.
const Profile& DefaultProfile();
std::string_view DefaultProfileJson();

struct CompileOptions {
  // Capabilities the sandboxed process keeps ("CAP_SYS_ADMIN"…), for includes/excludes.caps.
  std::vector<std::string> caps;
  // Kernel version for minKernel ("6.1"); empty means the running kernel's (uname).
  std::string kernel_version;
  // Error actions (SCMP_ACT_ERRNO rules, and an SCMP_ACT_ERRNO default) compile to
  // SECCOMP_RET_USER_NOTIF so that the sandbox's supervisor can name and count each denial; it
  // answers every notification with the errno that Program::answers gives (see NotifyMode).
  // KILL, TRAP, TRACE and LOG stay as they are. Requires Linux 5.5 at run time.
  bool notify_errors = false;
};

// What the listener of a notifying program does with each notification.
enum class NotifyMode {
  kNone,     // the program never notifies; no listener
  kDeny,     // answer with the profile's errno and count the denial (CompileOptions::notify_errors)
  kLearn,    // record the syscall and let it run (`sandboxd seccomp learn`).
             // IMPORTANT: weakens isolation: every syscall the profile denies is allowed.
};

// An immutable compiled filter for the native architecture (plus its sub-architectures).
struct Program {
  std::string profile_name;
  std::vector<sock_filter> insns;
  // Syscall names in applicable rules that this libseccomp does not know (newer than it); their
  // rules were left out, so those syscalls get the default action. For logging.
  std::vector<std::string> skipped_syscalls;
  // Rules left out because an earlier rule without argument conditions already gives the same
  // syscall another action (libseccomp keeps the first, as runc, crun and Podman do): one line
  // each, naming both rules. For warnings.
  std::vector<std::string> shadowed;
  // kDeny or kLearn when insns may return SECCOMP_RET_USER_NOTIF. `answers` is then the same
  // profile compiled without notify_errors: the listener runs it (Evaluate) on each notification's
  // seccomp_data to find the errno the profile gives.
  NotifyMode notify = NotifyMode::kNone;
  std::vector<sock_filter> answers;
};

// Architectures: with an archMap, the entry for the native arch plus its subArchitectures;
// otherwise the architectures list; the native arch always. Syscalls from any other ABI kill the
// process. Rules whose includes/excludes do not match options are skipped, as are rules whose
// action equals the default action. Rules with several conditions on one argument index are
// split into one rule per condition (OR), as runc does.
// Syscall names unknown to libseccomp are skipped (listed in Program::skipped_syscalls).
// Of two rules without argument conditions that give one syscall different actions, the first
// holds and the second is listed in Program::shadowed, as libseccomp (and so runc, crun and
// Podman) would load them.
// Fails with kUnavailable for SCMP_ACT_NOTIFY; kInvalidArgument when libseccomp refuses a rule,
// when a conditional rule would be silently dropped (an unconditional rule and a conditional
// rule with different actions for one syscall), or when the program exceeds the kernel's 4096
// instructions.
Result<Program> Compile(const Profile& profile, const CompileOptions& options = {});

// "libseccomp 2.5.4": the compiler's version, part of any cache key for compiled programs.
std::string CompilerVersion();

// Child side, async-signal-safe: seccomp(SECCOMP_SET_MODE_FILTER). Returns 0 or -errno; for a
// program with notify != kNone it installs with SECCOMP_FILTER_FLAG_NEW_LISTENER and returns the
// listener fd (>= 0, O_CLOEXEC). Requires no_new_privs (or CAP_SYS_ADMIN).
int InstallProgram(const Program& program);

// Whether this kernel runs notifying programs: SECCOMP_RET_USER_NOTIF with
// SECCOMP_USER_NOTIF_FLAG_CONTINUE (Linux 5.5). Callers compile with notify_errors only then.
bool NotifySupported();

// "ptrace" for a syscall number of the ABI `audit_arch` (seccomp_data.arch); "syscall_N" when
// libseccomp has no name for it.
std::string SyscallName(uint32_t audit_arch, int nr);

// "SCMP_ACT_ERRNO(1)", "SCMP_ACT_ALLOW", "SCMP_ACT_NOTIFY" … for a SECCOMP_RET_* value.
std::string ActionName(uint32_t ret);
// The SECCOMP_RET_* value of a profile action, as Compile would use it (errnoRet defaults to
// EPERM); kInvalidArgument for an unknown action.
Result<uint32_t> ActionValue(const std::string& action, std::optional<unsigned> errno_ret);

}  // namespace sbx::seccomp
