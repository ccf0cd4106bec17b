// Profile -> BPF with libseccomp, following what Docker (moby profiles/seccomp) and runc
// (libcontainer/seccomp/patchbpf and seccomp_linux.go) do with the same JSON, so a Docker profile
// behaves the same here.
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>

#include "base/syscalls.h"
#include "base/unique_fd.h"
#include "seccomp/internal.h"
#include "seccomp/seccomp.h"

namespace sbx::seccomp {
namespace {

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using ScmpCtx = std::unique_ptr<void, CtxDeleter>;

std::string RulePath(size_t i) { return fmt::format("syscalls[{}]", i); }

// errnoRet defaults to EPERM for both ERRNO and TRACE, as in runc.
Result<uint32_t> ActionValueAt(const std::string& action, std::optional<unsigned> ret,
                               std::string_view path) {
  if (action == "SCMP_ACT_ALLOW") return SCMP_ACT_ALLOW;
  if (action == "SCMP_ACT_ERRNO") return SCMP_ACT_ERRNO(ret.value_or(EPERM));
  if (action == "SCMP_ACT_KILL" || action == "SCMP_ACT_KILL_THREAD") return SCMP_ACT_KILL_THREAD;
  if (action == "SCMP_ACT_KILL_PROCESS") return SCMP_ACT_KILL_PROCESS;
  if (action == "SCMP_ACT_TRAP") return SCMP_ACT_TRAP;
  if (action == "SCMP_ACT_TRACE") return SCMP_ACT_TRACE(ret.value_or(EPERM));
  if (action == "SCMP_ACT_LOG") return SCMP_ACT_LOG;
  if (action == "SCMP_ACT_NOTIFY") {
    return MakeError(ErrorCode::kUnavailable,
                     "{}: SCMP_ACT_NOTIFY needs a notification listener; used by `sandboxd "
                     "seccomp learn`",
                     path);
  }
  return MakeError(ErrorCode::kInvalidArgument, "{}: unknown action \"{}\"", path, action);
}

Result<scmp_compare> OpValue(const std::string& op, std::string_view path) {
  if (op == "SCMP_CMP_NE") return SCMP_CMP_NE;
  if (op == "SCMP_CMP_LT") return SCMP_CMP_LT;
  if (op == "SCMP_CMP_LE") return SCMP_CMP_LE;
  if (op == "SCMP_CMP_EQ") return SCMP_CMP_EQ;
  if (op == "SCMP_CMP_GE") return SCMP_CMP_GE;
  if (op == "SCMP_CMP_GT") return SCMP_CMP_GT;
  if (op == "SCMP_CMP_MASKED_EQ") return SCMP_CMP_MASKED_EQ;
  return MakeError(ErrorCode::kInvalidArgument, "{}: unknown operator \"{}\"", path, op);
}

bool Has(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

struct Env {
  const internal::ArchInfo* native = nullptr;
  internal::KernelVersion kernel;
  const std::vector<std::string>* caps = nullptr;
  bool notify_errors = false;

  bool NativeIsAny(const std::vector<std::string>& arches) const {
    for (std::string_view alias : native->aliases) {
      if (Has(arches, alias)) return true;
    }
    return false;
  }
  bool KernelAtLeast(const std::string& min) const {
    auto v = internal::ParseMinKernel(min);
    return v.has_value() && kernel >= *v;
  }
};

// Same order and semantics as moby's setupSeccomp: excludes first, any match excludes; then
// includes, every listed cap is required, the native arch must be listed.
bool RuleApplies(const SyscallRule& rule, const Env& env) {
  const Filter& ex = rule.excludes;
  if (!ex.arches.empty() && env.NativeIsAny(ex.arches)) return false;
  for (const std::string& cap : ex.caps) {
    if (Has(*env.caps, cap)) return false;
  }
  if (!ex.min_kernel.empty() && env.KernelAtLeast(ex.min_kernel)) return false;

  const Filter& in = rule.includes;
  if (!in.arches.empty() && !env.NativeIsAny(in.arches)) return false;
  for (const std::string& cap : in.caps) {
    if (!Has(*env.caps, cap)) return false;
  }
  if (!in.min_kernel.empty() && !env.KernelAtLeast(in.min_kernel)) return false;
  return true;
}

Result<internal::KernelVersion> KernelVersionFor(const CompileOptions& options) {
  if (!options.kernel_version.empty()) {
    auto v = internal::ParseKernelRelease(options.kernel_version);
    if (!v) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "kernel_version \"{}\" is not a kernel version; write \"6.1\" or leave it "
                       "empty for the running kernel",
                       options.kernel_version);
    }
    return *v;
  }
  struct utsname u;
  if (uname(&u) != 0) return ErrnoError("uname");
  auto v = internal::ParseKernelRelease(u.release);
  if (!v) {
    return MakeError(ErrorCode::kInternal,
                     "cannot read the kernel version from uname release \"{}\"; set "
                     "CompileOptions::kernel_version",
                     u.release);
  }
  return *v;
}

// Docker: with an archMap, the entry for the native arch and its sub-architectures; otherwise the
// architectures list. The native arch is always in the filter (seccomp_init adds it).
Status AddArches(void* ctx, const Profile& profile, const internal::ArchInfo& native) {
  std::vector<std::string> names;
  if (!profile.arch_map.empty()) {
    for (const ArchMapEntry& e : profile.arch_map) {
      if (e.architecture != native.scmp_name) continue;
      names.push_back(e.architecture);
      names.insert(names.end(), e.sub_architectures.begin(), e.sub_architectures.end());
    }
  } else {
    names = profile.architectures;
  }
  for (const std::string& name : names) {
    const internal::ArchInfo* arch = internal::FindArchByScmpName(name);
    // An arch this libseccomp cannot encode is left out: syscalls made with that ABI then hit
    // the bad-arch action (kill), which is stricter than allowing them.
    if (arch == nullptr || arch->token == 0 || arch->token == native.token) continue;
    int rc = seccomp_arch_add(ctx, arch->token);
    if (rc < 0 && rc != -EEXIST) return ErrnoValueError(-rc, "seccomp_arch_add {}", name);
  }
  return Ok();
}

bool SharesArgIndex(const std::vector<ArgCmp>& args) {
  unsigned counts[6] = {};
  for (const ArgCmp& a : args) {
    if (a.index < 6 && ++counts[a.index] > 1) return true;
  }
  return false;
}

// What was added per syscall number, to catch rules libseccomp would drop without a word
// (db.c, db_col_rule_add): an unconditional rule replaces every conditional rule for the same
// syscall, so "allow ioctl" plus "EPERM for ioctl(TIOCSTI)" silently allows TIOCSTI; those are
// refused. Of two unconditional rules the first stands and the second is dropped: runc, crun and
// Podman load profiles that way (containers/common's own profile allows setns and then, without
// CAP_SYS_ADMIN, answers it EPERM), so the same happens here, said in Program::shadowed.
struct Added {
  std::optional<uint32_t> unconditional;
  size_t unconditional_rule = 0;
  std::vector<std::pair<uint32_t, size_t>> conditional;  // action, rule index
};

// Whether the rule should be added for this syscall: false when an earlier unconditional rule
// already decides it (a note then goes to `shadowed`).
Result<bool> CheckShadowing(Added* added, bool unconditional, uint32_t action, size_t i,
                            const std::string& name, std::vector<std::string>* shadowed) {
  if (unconditional) {
    if (added->unconditional && *added->unconditional != action) {
      shadowed->push_back(fmt::format(
          "{} ({}): {} already gives {} {} with no argument conditions; the first rule holds, as "
          "in libseccomp (runc, crun, Podman), so this rule's {} does not apply",
          RulePath(i), name, RulePath(added->unconditional_rule), name,
          ActionName(*added->unconditional), ActionName(action)));
      return false;
    }
    for (const auto& [a, j] : added->conditional) {
      if (a != action) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "{} ({}): this rule has no argument conditions, so libseccomp would drop "
                         "the conditional rule {} for {} and its different action; remove {} "
                         "from one of them or give this rule conditions",
                         RulePath(i), name, RulePath(j), name, name);
      }
    }
    added->unconditional = action;
    added->unconditional_rule = i;
  } else {
    if (added->unconditional && *added->unconditional != action) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "{} ({}): {} matches {} with no argument conditions, so libseccomp would "
                       "drop this conditional rule and its different action; remove {} from one "
                       "of them or give that rule conditions",
                       RulePath(i), name, RulePath(added->unconditional_rule), name, name);
    }
    added->conditional.emplace_back(action, i);
  }
  return true;
}

Status AddRule(void* ctx, const SyscallRule& rule, size_t i, uint32_t default_action,
               const Env& env, std::map<int, Added>* added, Program* program) {
  std::vector<std::string>* skipped = &program->skipped_syscalls;
  std::string path = RulePath(i);
  if (!RuleApplies(rule, env)) return Ok();
  auto action = ActionValueAt(rule.action, rule.errno_ret, fmt::format("{}.action", path));
  if (!action.ok()) return std::move(action).error();
  if (env.notify_errors && (*action & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_ERRNO) {
    *action = SCMP_ACT_NOTIFY;
  }
  // libseccomp refuses rules whose action is the default one (EACCES); they change nothing.
  if (*action == default_action) return Ok();

  std::vector<scmp_arg_cmp> conds;
  for (size_t j = 0; j < rule.args.size(); ++j) {
    const ArgCmp& a = rule.args[j];
    std::string arg_path = fmt::format("{}.args[{}]", path, j);
    if (a.index > 5) {
      return MakeError(ErrorCode::kInvalidArgument, "{}.index: {} is out of range 0..5", arg_path,
                       a.index);
    }
    auto op = OpValue(a.op, arg_path + ".op");
    if (!op.ok()) return std::move(op).error();
    conds.push_back(scmp_arg_cmp{a.index, *op, a.value, a.value_two});
  }
  // libseccomp rejects two comparisons on the same argument in one rule (EINVAL). runc then adds
  // one rule per comparison, which ORs them; profiles such as Docker's rely on that.
  bool split = SharesArgIndex(rule.args);

  for (const std::string& name : rule.names) {
    int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) {
      // Newer than this libseccomp: it cannot be named in a filter, so it falls to the default
      // action, as in runc.
      if (!Has(*skipped, name)) skipped->push_back(name);
      continue;
    }
    auto add = CheckShadowing(&(*added)[nr], conds.empty(), *action, i, name, &program->shadowed);
    if (!add.ok()) return std::move(add).error();
    if (!*add) continue;
    // seccomp_rule_add (not _exact) lets libseccomp rewrite multiplexed calls (socketcall, ipc
    // on x86) and skip arches where the syscall does not exist.
    int rc = 0;
    if (split) {
      for (const scmp_arg_cmp& c : conds) {
        rc = seccomp_rule_add_array(ctx, *action, nr, 1, &c);
        if (rc < 0) break;
      }
    } else {
      rc = seccomp_rule_add_array(ctx, *action, nr, static_cast<unsigned>(conds.size()),
                                  conds.empty() ? nullptr : conds.data());
    }
    if (rc < 0) {
      Error e = ErrnoValueError(-rc,
                                "{} ({}): libseccomp refused the rule; check it against the "
                                "other rules for {}",
                                path, name, name);
      e.code = ErrorCode::kInvalidArgument;
      return e;
    }
  }
  return Ok();
}

Result<std::vector<sock_filter>> ExportBpf(void* ctx) {
  UniqueFd fd(memfd_create("sbx-seccomp-bpf", MFD_CLOEXEC));
  if (!fd) return ErrnoError("memfd_create for the seccomp BPF export");
  int rc = seccomp_export_bpf(ctx, fd.get());
  if (rc < 0) return ErrnoValueError(-rc, "seccomp_export_bpf");
  off_t size = lseek(fd.get(), 0, SEEK_END);
  if (size < 0) return ErrnoError("lseek on the seccomp BPF export");
  if (size == 0 || size % sizeof(sock_filter) != 0) {
    return MakeError(ErrorCode::kInternal, "seccomp_export_bpf wrote {} bytes, not whole insns",
                     size);
  }
  std::vector<sock_filter> insns(static_cast<size_t>(size) / sizeof(sock_filter));
  auto* out = reinterpret_cast<char*>(insns.data());
  size_t done = 0;
  while (done < static_cast<size_t>(size)) {
    ssize_t n =
        pread(fd.get(), out + done, static_cast<size_t>(size) - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("read the seccomp BPF export");
    if (n == 0) return MakeError(ErrorCode::kInternal, "short read of the seccomp BPF export");
    done += static_cast<size_t>(n);
  }
  if (insns.size() > BPF_MAXINSNS) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the profile compiles to {} BPF instructions; the kernel accepts at most {} "
                     "(BPF_MAXINSNS); remove rules or argument conditions",
                     insns.size(), BPF_MAXINSNS);
  }
  return insns;
}

Result<Program> CompileOnce(const Profile& profile, const CompileOptions& options);

// The lowest syscall number of the native ABI, and every number above it, that libseccomp
// cannot name.
int FirstUnnamedSyscall(uint32_t native_token) {
  int last = -1;
  for (int nr = 0; nr < 1024; ++nr) {  // every table ends below 1024 (x86_64: ~460)
    char* name = seccomp_syscall_resolve_num_arch(native_token, nr);
    if (name == nullptr) continue;
    std::free(name);
    last = nr;
  }
  return last + 1;
}

// Put before a notifying program whose default action is `errno_action`: a native-ABI syscall
// number no table names (at or above `first_unnamed`, outside x86_64's x32 window) cannot have
// a rule, so the default action answers it, and it needs no name in the report. The kernel
// answers it at once instead of notifying: a program that loops over random numbers costs the
// daemon neither a round trip nor an entry in the denial list.
std::vector<sock_filter> UnnamedSyscallPrefix(uint32_t native_token, int first_unnamed,
                                              uint32_t errno_action) {
  constexpr uint32_t kX32Base = 0x40000000;  // __X32_SYSCALL_BIT
  constexpr uint32_t kX32End = kX32Base + 0x1000;
  const bool x32_window = native_token == SCMP_ARCH_X86_64;
  const auto first = static_cast<uint32_t>(first_unnamed);
  std::vector<sock_filter> p;
  // Every jump below lands on the instruction after the prefix (`rest`) or on the return.
  p.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
  const uint8_t rest_from_arch = x32_window ? 5 : 3;
  p.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, native_token, 0, rest_from_arch));
  p.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
  const uint8_t rest_from_nr = x32_window ? 3 : 1;
  p.push_back(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, first, 0, rest_from_nr));
  if (x32_window) {
    p.push_back(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, kX32Base, 0, 1));  // below it: answer
    p.push_back(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, kX32End, 0, 1));   // inside it: rest
  }
  p.push_back(BPF_STMT(BPF_RET | BPF_K, errno_action));
  return p;
}

}  // namespace

Result<Program> Compile(const Profile& profile, const CompileOptions& options) {
  if (options.notify_errors) {
    // The answers first: the same profile without notifications. It also catches every error
    // the notifying compile could meet.
    CompileOptions plain = options;
    plain.notify_errors = false;
    auto answers = Compile(profile, plain);
    if (!answers.ok()) return std::move(answers).error();
    auto notifying = CompileOnce(profile, options);
    if (!notifying.ok()) return std::move(notifying).error();
    notifying->notify = NotifyMode::kDeny;
    notifying->answers = std::move(answers->insns);
    // Errno rules notify like the default action there and are not added, so what was left out
    // is read from the answers.
    notifying->shadowed = std::move(answers->shadowed);
    return notifying;
  }
  return CompileOnce(profile, options);
}

namespace {

Result<Program> CompileOnce(const Profile& profile, const CompileOptions& options) {
  std::string ctx_name = fmt::format("seccomp profile {}", profile.name);
  auto default_action =
      ActionValueAt(profile.default_action, profile.default_errno_ret, "defaultAction");
  if (!default_action.ok()) return WithContext(std::move(default_action).error(), ctx_name);
  const uint32_t errno_default = *default_action;
  const bool notify_default =
      options.notify_errors && (*default_action & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_ERRNO;
  if (notify_default) *default_action = SCMP_ACT_NOTIFY;
  auto kernel = KernelVersionFor(options);
  if (!kernel.ok()) return WithContext(std::move(kernel).error(), ctx_name);

  Env env;
  env.native = internal::FindArchByToken(seccomp_arch_native());
  env.kernel = *kernel;
  env.caps = &options.caps;
  env.notify_errors = options.notify_errors;
  if (env.native == nullptr) {
    return MakeError(ErrorCode::kUnavailable,
                     "the native architecture (audit arch {:#x}) is not in sandboxd's table; "
                     "seccomp profiles cannot be compiled on this host",
                     seccomp_arch_native());
  }

  ScmpCtx ctx(seccomp_init(*default_action));
  if (!ctx) {
    return MakeError(ErrorCode::kUnavailable,
                     "seccomp_init({}) failed; the kernel or libseccomp does not support that "
                     "default action",
                     profile.default_action);
  }
  // A syscall made with an ABI the filter does not list (e.g. int 0x80 from a 64-bit process
  // when x86 is not listed) kills the process instead of returning the default action.
  int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc < 0) return ErrnoValueError(-rc, "seccomp_attr_set(ACT_BADARCH)");
  // The sandbox sets no_new_privs itself, before installing; libseccomp must not do it.
  rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0);
  if (rc < 0) return ErrnoValueError(-rc, "seccomp_attr_set(CTL_NNP)");
  // A binary search over syscall numbers instead of a linear list: every syscall the sandbox
  // makes walks O(log n) instructions rather than hundreds.
  rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if (rc < 0) return ErrnoValueError(-rc, "seccomp_attr_set(CTL_OPTIMIZE)");

  Status s = AddArches(ctx.get(), profile, *env.native);
  if (!s.ok()) return WithContext(std::move(s).error(), ctx_name);

  Program program;
  program.profile_name = profile.name;
  std::map<int, Added> added;
  for (size_t i = 0; i < profile.syscalls.size(); ++i) {
    Status r = AddRule(ctx.get(), profile.syscalls[i], i, *default_action, env, &added, &program);
    if (!r.ok()) return WithContext(std::move(r).error(), ctx_name);
  }

  auto insns = ExportBpf(ctx.get());
  if (!insns.ok()) return WithContext(std::move(insns).error(), ctx_name);
  if (notify_default) {
    // The native arch is the same for the life of the process.
    static const int first_unnamed = FirstUnnamedSyscall(env.native->token);
    program.insns = UnnamedSyscallPrefix(env.native->token, first_unnamed, errno_default);
    program.insns.insert(program.insns.end(), insns->begin(), insns->end());
    if (program.insns.size() > BPF_MAXINSNS) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "{}: the profile compiles to {} BPF instructions; the kernel accepts at "
                       "most {} (BPF_MAXINSNS); remove rules or argument conditions",
                       ctx_name, program.insns.size(), BPF_MAXINSNS);
    }
  } else {
    program.insns = std::move(*insns);
  }
  return program;
}

}  // namespace

namespace internal {

Result<bool> RuleApplies(const SyscallRule& rule, const CompileOptions& options) {
  auto kernel = KernelVersionFor(options);
  if (!kernel.ok()) return std::move(kernel).error();
  Env env;
  env.native = FindArchByToken(seccomp_arch_native());
  if (env.native == nullptr) {
    return MakeError(ErrorCode::kUnavailable, "the native architecture is not in sandboxd's table");
  }
  env.kernel = *kernel;
  env.caps = &options.caps;
  return sbx::seccomp::RuleApplies(rule, env);
}

}  // namespace internal

std::string CompilerVersion() {
  const scmp_version* v = seccomp_version();
  return fmt::format("libseccomp {}.{}.{}", v->major, v->minor, v->micro);
}

int InstallProgram(const Program& program) {
  if (program.insns.empty() || program.insns.size() > BPF_MAXINSNS) return -EINVAL;
  struct sock_fprog prog;
  prog.len = static_cast<unsigned short>(program.insns.size());
  prog.filter = const_cast<sock_filter*>(program.insns.data());
  unsigned flags = program.notify == NotifyMode::kNone ? 0 : SECCOMP_FILTER_FLAG_NEW_LISTENER;
  int r = sys::Seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog);
  if (r < 0) return -errno;
  return flags != 0 ? r : 0;
}

bool NotifySupported() {
  static const bool supported = [] {
    auto kernel = KernelVersionFor({});
    if (!kernel.ok() || *kernel < internal::KernelVersion{5, 5, 0}) return false;
    UniqueFd fd(::open("/proc/sys/kernel/seccomp/actions_avail", O_RDONLY | O_CLOEXEC));
    if (!fd) return true;  // no procfs: trust the version
    char buf[256] = {};
    ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
    return n <= 0 || std::strstr(buf, "user_notif") != nullptr;
  }();
  return supported;
}

Result<uint32_t> ActionValue(const std::string& action, std::optional<unsigned> errno_ret) {
  return ActionValueAt(action, errno_ret, "action");
}

std::string SyscallName(uint32_t audit_arch, int nr) {
  // libseccomp's arch tokens are the AUDIT_ARCH_* values, except x32 (the kernel reports x32
  // calls as x86_64 with bit 30 set, which libseccomp's x86_64 table does not name).
  char* name = seccomp_syscall_resolve_num_arch(audit_arch, nr);
  if (name == nullptr) return fmt::format("syscall_{}", nr);
  std::string out(name);
  std::free(name);
  return out;
}

std::string ActionName(uint32_t ret) {
  uint32_t data = ret & SECCOMP_RET_DATA;
  switch (ret & SECCOMP_RET_ACTION_FULL) {
    case SECCOMP_RET_KILL_PROCESS: return "SCMP_ACT_KILL_PROCESS";
    case SECCOMP_RET_KILL_THREAD: return "SCMP_ACT_KILL_THREAD";
    case SECCOMP_RET_TRAP: return "SCMP_ACT_TRAP";
    case SECCOMP_RET_ERRNO: return fmt::format("SCMP_ACT_ERRNO({})", data);
    case SECCOMP_RET_USER_NOTIF: return "SCMP_ACT_NOTIFY";
    case SECCOMP_RET_TRACE: return fmt::format("SCMP_ACT_TRACE({})", data);
    case SECCOMP_RET_LOG: return "SCMP_ACT_LOG";
    case SECCOMP_RET_ALLOW: return "SCMP_ACT_ALLOW";
  }
  return fmt::format("{:#x}", ret);
}

}  // namespace sbx::seccomp
