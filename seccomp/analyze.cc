#include "seccomp/analyze.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>

#include <algorithm>
#include <map>
#include <set>

#include "seccomp/internal.h"
#include "seccomp/simulate.h"

namespace sbx::seccomp {
namespace {

// The parser writes "PATH: what to do"; a finding keeps the two apart.
Finding FromError(const Error& e, Finding::Severity severity = Finding::Severity::kError) {
  Finding f;
  f.severity = severity;
  std::string_view m = e.message;
  size_t colon = m.find(": ");
  bool is_path = colon != std::string_view::npos && colon > 0 &&
                 m.substr(0, colon).find(' ') == std::string_view::npos;
  if (is_path && m.substr(0, colon) != "profile") {
    f.path = std::string(m.substr(0, colon));
    f.message = std::string(m.substr(colon + 2));
  } else {
    f.message = is_path ? std::string(m.substr(colon + 2)) : std::string(m);
  }
  if (e.sys_errno != 0) f.message += fmt::format(" ({})", std::strerror(e.sys_errno));
  return f;
}

Finding Warning(std::string path, std::string message) {
  return Finding{Finding::Severity::kWarning, std::move(path), std::move(message)};
}

Finding ErrorAt(std::string path, std::string message) {
  return Finding{Finding::Severity::kError, std::move(path), std::move(message)};
}

bool Has(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

bool Overlaps(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  for (const auto& x : a) {
    if (Has(b, x)) return true;
  }
  return false;
}

// Whether two rules' includes/excludes can never hold together: one requires a capability or
// an architecture that the other excludes.
bool MutuallyExclusive(const SyscallRule& a, const SyscallRule& b) {
  if (Overlaps(a.includes.caps, b.excludes.caps) || Overlaps(b.includes.caps, a.excludes.caps)) {
    return true;
  }
  if (Overlaps(a.includes.arches, b.excludes.arches) ||
      Overlaps(b.includes.arches, a.excludes.arches)) {
    return true;
  }
  if (!a.includes.arches.empty() && !b.includes.arches.empty() &&
      !Overlaps(a.includes.arches, b.includes.arches)) {
    return true;
  }
  auto ka = internal::ParseMinKernel(a.includes.min_kernel);
  auto kb = internal::ParseMinKernel(b.excludes.min_kernel);
  if (ka && kb && *kb <= *ka) return true;
  ka = internal::ParseMinKernel(b.includes.min_kernel);
  kb = internal::ParseMinKernel(a.excludes.min_kernel);
  return ka && kb && *kb <= *ka;
}

// The architectures a profile's filter would carry on any host: archMap entries with their
// sub-architectures, or the architectures list; the native one when neither names any.
std::vector<const internal::ArchInfo*> ProfileArches(const Profile& p) {
  std::vector<const internal::ArchInfo*> out;
  auto add = [&](const std::string& name) {
    const internal::ArchInfo* a = internal::FindArchByScmpName(name);
    if (a != nullptr && a->token != 0 && std::find(out.begin(), out.end(), a) == out.end()) {
      out.push_back(a);
    }
  };
  for (const ArchMapEntry& e : p.arch_map) {
    add(e.architecture);
    for (const auto& s : e.sub_architectures) add(s);
  }
  for (const auto& a : p.architectures) add(a);
  if (out.empty()) {
    if (const internal::ArchInfo* n = internal::FindArchByToken(seccomp_arch_native())) {
      out.push_back(n);
    }
  }
  return out;
}

bool RuleMayApplyOn(const SyscallRule& r, const internal::ArchInfo& arch) {
  auto listed = [&](const std::vector<std::string>& arches) {
    for (std::string_view alias : arch.aliases) {
      if (Has(arches, alias)) return true;
    }
    return false;
  };
  if (!r.excludes.arches.empty() && listed(r.excludes.arches)) return false;
  if (!r.includes.arches.empty() && !listed(r.includes.arches)) return false;
  return true;
}

// Names unknown everywhere get a warning each; names missing on only some of the profile's
// architectures (normal in a multi-arch profile such as Docker's) one warning per architecture.
void CheckNames(const Profile& p, std::vector<Finding>* out) {
  std::vector<const internal::ArchInfo*> arches = ProfileArches(p);
  std::map<std::string_view, std::vector<std::string>> missing;  // arch -> names
  for (size_t i = 0; i < p.syscalls.size(); ++i) {
    const SyscallRule& r = p.syscalls[i];
    for (size_t j = 0; j < r.names.size(); ++j) {
      const std::string& name = r.names[j];
      bool known_somewhere = false;
      std::vector<std::string_view> unknown;
      for (const internal::ArchInfo* a : arches) {
        // libseccomp answers names of other ABIs with pseudo numbers at or below -10000
        // (__PNR_*); -1xx and -2xx are socketcall and ipc multiplexed calls, which it rewrites.
        int nr = seccomp_syscall_resolve_name_arch(a->token, name.c_str());
        if (nr != __NR_SCMP_ERROR) known_somewhere = true;
        if (!RuleMayApplyOn(r, *a)) continue;
        if (nr == __NR_SCMP_ERROR || nr <= -10000) unknown.push_back(a->scmp_name);
      }
      if (!known_somewhere) {
        out->push_back(Warning(fmt::format("syscalls[{}].names[{}]", i, j),
                               fmt::format("\"{}\" is unknown to {} on every architecture of "
                                           "this profile: check the spelling; if it is newer "
                                           "than this libseccomp it gets the default action",
                                           name, CompilerVersion())));
        continue;
      }
      for (std::string_view a : unknown) {
        auto& v = missing[a];
        if (std::find(v.begin(), v.end(), name) == v.end()) v.push_back(name);
      }
    }
  }
  for (const auto& [arch, names] : missing) {
    std::string list;
    for (size_t k = 0; k < names.size() && k < 6; ++k) list += (k ? ", " : "") + names[k];
    if (names.size() > 6) list += fmt::format(", … ({} more)", names.size() - 6);
    out->push_back(Warning("architectures",
                           fmt::format("{} syscall name{} the rules list do not exist on {} ({}); "
                                       "there those rules do nothing",
                                       names.size(), names.size() == 1 ? "" : "s", arch, list)));
  }
}

// Two unconditional rules giving one syscall different actions: libseccomp keeps the first
// without a word, and so does Compile (Program::shadowed); a warning says so. Only pairs whose
// includes/excludes can hold together count.
void CheckContradictions(const Profile& p, std::vector<Finding>* out) {
  struct Seen {
    size_t rule;
    uint32_t action;
  };
  std::map<std::string, std::vector<Seen>> by_name;
  for (size_t i = 0; i < p.syscalls.size(); ++i) {
    const SyscallRule& r = p.syscalls[i];
    if (!r.args.empty()) continue;
    auto action = ActionValue(r.action, r.errno_ret);
    if (!action.ok()) continue;
    for (const std::string& name : r.names) {
      for (const Seen& s : by_name[name]) {
        if (s.action == *action || MutuallyExclusive(p.syscalls[s.rule], r)) continue;
        out->push_back(Warning(
            fmt::format("syscalls[{}]", i),
            fmt::format("{} is also in syscalls[{}] with no argument conditions, which gives it "
                        "{} where this rule gives {}; the first holds, as in libseccomp (runc, "
                        "crun, Podman), so where both apply this rule does nothing; remove {} "
                        "from one of the two rules to say which you mean",
                        name, s.rule, ActionName(s.action), ActionName(*action), name)));
      }
      by_name[name].push_back({i, *action});
    }
  }
}

}  // namespace

bool ValidateReport::valid() const { return errors() == 0; }

size_t ValidateReport::errors() const {
  return static_cast<size_t>(std::count_if(findings.begin(), findings.end(), [](const Finding& f) {
    return f.severity == Finding::Severity::kError;
  }));
}

bool IsPermissive(const Profile& profile) {
  return profile.default_action == "SCMP_ACT_ALLOW" || profile.default_action == "SCMP_ACT_LOG";
}

std::vector<std::string> DangerousSyscalls() {
  return {"ptrace",
          "mount",
          "umount2",
          "pivot_root",
          "unshare",
          "setns",
          "bpf",
          "kexec_load",
          "kexec_file_load",
          "init_module",
          "finit_module",
          "delete_module",
          "open_by_handle_at",
          "perf_event_open",
          "process_vm_writev",
          "keyctl",
          "add_key",
          "request_key",
          "reboot",
          "swapon",
          "swapoff",
          "iopl",
          "ioperm",
          "acct",
          "userfaultfd",
          "fsopen",
          "move_mount",
          "open_tree"};
}

ValidateReport ValidateProfile(std::string_view json, std::string name,
                               const ValidateOptions& options) {
  ValidateReport report;
  report.name = name;
  std::vector<Error> rule_errors;
  auto parsed = internal::ParseProfileCollecting(json, name, &rule_errors);
  if (!parsed.ok()) {
    report.findings.push_back(FromError(parsed.error()));
    return report;
  }
  for (const Error& e : rule_errors) report.findings.push_back(FromError(e));
  report.profile = std::move(*parsed);
  const Profile& p = *report.profile;

  std::vector<Finding> warnings;
  if (IsPermissive(p)) {
    std::string msg = fmt::format(
        "{} lets every syscall the rules do not list run; write an allowlist with "
        "SCMP_ACT_ERRNO as the default (see `sandboxd seccomp learn`)",
        p.default_action);
    if (options.allow_permissive) {
      warnings.push_back(Warning("defaultAction", msg + "; accepted with --allow-permissive"));
    } else {
      report.findings.push_back(
          ErrorAt("defaultAction", msg + ", or pass --allow-permissive to accept it"));
    }
  }
  CheckContradictions(p, &warnings);
  CheckNames(p, &warnings);

  // The rules that failed to parse are left out; what compiles is the rest.
  auto program = Compile(p, options.compile);
  if (!program.ok()) {
    Finding f = FromError(program.error());
    // Compile errors carry the profile name as context; the path is in the message.
    report.findings.push_back(std::move(f));
  } else {
    report.instructions = program->insns.size();
    for (const std::string& s : DangerousSyscalls()) {
      auto nr = NativeSyscallNumber(s);
      if (!nr) continue;
      auto ret = Evaluate(*program, MakeSeccompData(*nr));
      if (ret.ok() && ((*ret & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_ALLOW ||
                       (*ret & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_LOG)) {
        report.dangerous_allowed.push_back(s);
      }
    }
    if (!report.dangerous_allowed.empty()) {
      std::string list;
      for (const auto& s : report.dangerous_allowed) list += (list.empty() ? "" : ", ") + s;
      warnings.push_back(Warning(
          "", fmt::format("{} of {} dangerous syscalls are allowed{}: {}; deny them unless the "
                          "workload needs them",
                          report.dangerous_allowed.size(), DangerousSyscalls().size(),
                          options.compile.caps.empty() ? " without capabilities" : "", list)));
    }
  }
  for (auto& w : warnings) report.findings.push_back(std::move(w));
  return report;
}

bool ArgMatches(const ArgCmp& c, uint64_t arg) {
  if (c.op == "SCMP_CMP_NE") return arg != c.value;
  if (c.op == "SCMP_CMP_LT") return arg < c.value;
  if (c.op == "SCMP_CMP_LE") return arg <= c.value;
  if (c.op == "SCMP_CMP_EQ") return arg == c.value;
  if (c.op == "SCMP_CMP_GE") return arg >= c.value;
  if (c.op == "SCMP_CMP_GT") return arg > c.value;
  if (c.op == "SCMP_CMP_MASKED_EQ") return (arg & c.value) == c.value_two;
  return false;
}

std::string FormatCondition(const ArgCmp& c) {
  auto num = [](uint64_t v) { return v < 10 ? fmt::format("{}", v) : fmt::format("{:#x}", v); };
  std::string_view op = "?";
  if (c.op == "SCMP_CMP_NE") op = "!=";
  if (c.op == "SCMP_CMP_LT") op = "<";
  if (c.op == "SCMP_CMP_LE") op = "<=";
  if (c.op == "SCMP_CMP_EQ") op = "==";
  if (c.op == "SCMP_CMP_GE") op = ">=";
  if (c.op == "SCMP_CMP_GT") op = ">";
  if (c.op == "SCMP_CMP_MASKED_EQ") {
    return fmt::format("args[{}] & {} == {}", c.index, num(c.value), num(c.value_two));
  }
  return fmt::format("args[{}] {} {}", c.index, op, num(c.value));
}

std::string FormatConditions(const std::vector<ArgCmp>& conds) {
  if (conds.empty()) return "none";
  unsigned counts[6] = {};
  bool split = false;
  for (const ArgCmp& c : conds) {
    if (c.index < 6 && ++counts[c.index] > 1) split = true;
  }
  std::string out;
  for (const ArgCmp& c : conds)
    out += (out.empty() ? "" : split ? " || " : " && ") + FormatCondition(c);
  return out;
}

namespace {

// Compile's semantics: conditions on distinct arguments are ANDed; a rule with several
// conditions on one argument is split into one rule per condition, which ORs them.
bool ConditionsMatch(const std::vector<ArgCmp>& conds, const std::vector<uint64_t>& args) {
  if (conds.empty()) return true;
  unsigned counts[6] = {};
  bool split = false;
  for (const ArgCmp& c : conds) {
    if (c.index < 6 && ++counts[c.index] > 1) split = true;
  }
  auto one = [&](const ArgCmp& c) { return c.index < 6 && ArgMatches(c, args[c.index]); };
  if (split) return std::any_of(conds.begin(), conds.end(), one);
  return std::all_of(conds.begin(), conds.end(), one);
}

}  // namespace

Result<Explanation> Explain(const Profile& profile, const Program& program, const std::string& name,
                            const std::vector<uint64_t>& args, const CompileOptions& options) {
  auto nr = NativeSyscallNumber(name);
  if (!nr) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "\"{}\" is not a syscall of the native architecture that {} knows; check "
                     "the spelling",
                     name, CompilerVersion());
  }
  if (args.size() > 6) {
    return MakeError(ErrorCode::kInvalidArgument, "{} arguments given; syscalls have at most 6",
                     args.size());
  }
  Explanation ex;
  ex.syscall = name;
  ex.nr = *nr;
  ex.args = args;
  ex.args.resize(6, 0);
  seccomp_data d = MakeSeccompData(*nr);
  for (size_t i = 0; i < 6; ++i) d.args[i] = ex.args[i];
  const Program* eval = &program;
  Program plain;
  if (program.notify != NotifyMode::kNone) {
    plain.insns = program.answers;
    eval = &plain;
  }
  auto ret = Evaluate(*eval, d);
  if (!ret.ok()) return std::move(ret).error();
  ex.action = *ret;

  auto default_action = ActionValue(profile.default_action, profile.default_errno_ret);
  if (!default_action.ok()) return std::move(default_action).error();
  std::optional<size_t> first_match;
  std::optional<uint32_t> first_action;
  for (size_t i = 0; i < profile.syscalls.size(); ++i) {
    const SyscallRule& r = profile.syscalls[i];
    if (!Has(r.names, name)) continue;
    auto applies = internal::RuleApplies(r, options);
    if (!applies.ok()) return std::move(applies).error();
    if (!*applies) {
      ex.inapplicable_rules.push_back(i);
      continue;
    }
    if (!ConditionsMatch(r.args, ex.args)) {
      ex.unmatched_rules.push_back(i);
      continue;
    }
    auto action = ActionValue(r.action, r.errno_ret);
    if (!action.ok()) continue;
    if (!first_match) {
      first_match = i;
      first_action = *action;
    }
    if (*action == ex.action && !ex.rule_index) ex.rule_index = i;
  }
  if (ex.rule_index) {
    const SyscallRule& r = profile.syscalls[*ex.rule_index];
    ex.rule_path = fmt::format("syscalls[{}]", *ex.rule_index);
    ex.rule_names = r.names;
    ex.conditions = r.args;
    ex.comment = r.comment;
  } else if (first_match) {
    ex.agrees = false;
    ex.note = fmt::format("the rules say syscalls[{}] ({}), the compiled filter gives {}",
                          *first_match, ActionName(*first_action), ActionName(ex.action));
  } else if (ex.action != *default_action) {
    ex.agrees = false;
    ex.note = fmt::format(
        "no rule matches, so the rules say the default {}; the compiled filter "
        "gives {}",
        ActionName(*default_action), ActionName(ex.action));
  }
  return ex;
}

std::string Disassemble(const Program& program) {
  const uint32_t native = NativeAuditArch();
  std::string out;
  int loaded = -1;  // offset into seccomp_data of the last absolute load
  auto field = [](uint32_t k) -> std::string {
    if (k == 0) return "nr";
    if (k == 4) return "arch";
    if (k == 8) return "ip";
    if (k == 12) return "ip_hi";
    if (k >= 16 && k < 64)
      return fmt::format("args[{}]{}", (k - 16) / 8, (k - 16) % 8 ? "_hi" : "");
    return "?";
  };
  auto meaning = [&](uint32_t k) -> std::string {
    if (loaded == 0) {
      if (k >= 0x40000000) return " (x32 bit)";
      char* n = seccomp_syscall_resolve_num_arch(native, static_cast<int>(k));
      if (n == nullptr) return "";
      std::string s = fmt::format(" ({})", n);
      std::free(n);
      return s;
    }
    if (loaded == 4) {
      if (const internal::ArchInfo* a = internal::FindArchByToken(k)) {
        return fmt::format(" ({})", a->scmp_name);
      }
    }
    return "";
  };
  for (size_t pc = 0; pc < program.insns.size(); ++pc) {
    const sock_filter& in = program.insns[pc];
    std::string line;
    switch (BPF_CLASS(in.code)) {
      case BPF_LD:
        if (in.code == (BPF_LD | BPF_W | BPF_ABS)) {
          loaded = static_cast<int>(in.k);
          line = fmt::format("ld   [{}]  ; {}", in.k, field(in.k));
        } else if (BPF_MODE(in.code) == BPF_MEM) {
          loaded = -1;
          line = fmt::format("ld   M[{}]", in.k);
        } else {
          loaded = -1;
          line = fmt::format("ld   #{:#x}", in.k);
        }
        break;
      case BPF_LDX:
        line = fmt::format("ldx  {:#x}", in.k);
        break;
      case BPF_ST:
        line = fmt::format("st   M[{}]", in.k);
        break;
      case BPF_STX:
        line = fmt::format("stx  M[{}]", in.k);
        break;
      case BPF_ALU: {
        static const char* kOps[] = {"add", "sub", "mul", "div", "or", "and",
                                     "lsh", "rsh", "neg", "mod", "xor"};
        unsigned op = BPF_OP(in.code) >> 4;
        loaded = -1;
        line = fmt::format("{:<4} #{:#x}", op < 11 ? kOps[op] : "alu?", in.k);
        break;
      }
      case BPF_JMP: {
        if (BPF_OP(in.code) == BPF_JA) {
          line = fmt::format("ja   {}", pc + 1 + in.k);
          break;
        }
        const char* op = BPF_OP(in.code) == BPF_JEQ   ? "jeq"
                         : BPF_OP(in.code) == BPF_JGT ? "jgt"
                         : BPF_OP(in.code) == BPF_JGE ? "jge"
                                                      : "jset";
        std::string k = BPF_SRC(in.code) == BPF_X ? "x" : fmt::format("#{}", in.k);
        if (BPF_SRC(in.code) != BPF_X && loaded != 0) k = fmt::format("#{:#x}", in.k);
        line = fmt::format("{:<4} {:<12} jt {:<4} jf {}{}", op, k, pc + 1 + in.jt, pc + 1 + in.jf,
                           BPF_SRC(in.code) == BPF_X ? "" : meaning(in.k));
        break;
      }
      case BPF_RET:
        line = BPF_RVAL(in.code) == BPF_A ? "ret  a" : fmt::format("ret  {}", ActionName(in.k));
        break;
      case BPF_MISC:
        line = BPF_MISCOP(in.code) == BPF_TAX ? "tax" : "txa";
        break;
      default:
        line = fmt::format("code {:#x} k {:#x}", in.code, in.k);
    }
    out += fmt::format("{:4}: {}\n", pc, line);
  }
  return out;
}

namespace {

std::string ArchSummary(const Profile& p) {
  std::string out;
  if (!p.arch_map.empty()) {
    for (const ArchMapEntry& e : p.arch_map) {
      out += (out.empty() ? "" : ", ") + e.architecture;
      for (const auto& s : e.sub_architectures) out += "+" + s;
    }
    return out;
  }
  for (const auto& a : p.architectures) out += (out.empty() ? "" : ", ") + a;
  return out.empty() ? "(native only)" : out;
}

std::string DefaultSummary(const Profile& p) {
  auto v = ActionValue(p.default_action, p.default_errno_ret);
  return v.ok() ? ActionName(*v) : p.default_action;
}

std::vector<std::string> ArgRules(const Profile& p, const std::string& name, char side) {
  std::vector<std::string> out;
  for (size_t i = 0; i < p.syscalls.size(); ++i) {
    const SyscallRule& r = p.syscalls[i];
    if (r.args.empty() || !Has(r.names, name)) continue;
    std::string conds = FormatConditions(r.args);
    auto a = ActionValue(r.action, r.errno_ret);
    out.push_back(fmt::format("{}: syscalls[{}] {} -> {}", side, i, conds,
                              a.ok() ? ActionName(*a) : r.action));
  }
  return out;
}

const Program& Effective(const Program& p, Program* tmp) {
  if (p.notify == NotifyMode::kNone) return p;
  tmp->insns = p.answers;
  return *tmp;
}

}  // namespace

std::vector<DiffEntry> DiffProfiles(const Profile& a, const Program& pa_in, const Profile& b,
                                    const Program& pb_in) {
  Program ta, tb;
  const Program& pa = Effective(pa_in, &ta);
  const Program& pb = Effective(pb_in, &tb);
  std::vector<DiffEntry> out;
  if (DefaultSummary(a) != DefaultSummary(b)) {
    out.push_back({"defaultAction", DefaultSummary(a), DefaultSummary(b), {}});
  }
  if (ArchSummary(a) != ArchSummary(b)) {
    out.push_back({"architectures", ArchSummary(a), ArchSummary(b), {}});
  }
  const uint32_t native = NativeAuditArch();
  auto eval = [](const Program& p, const seccomp_data& d) {
    auto r = Evaluate(p, d);
    return r.ok() ? ActionName(*r) : "error: " + r.error().message;
  };
  for (int nr = 0; nr < 1024; ++nr) {
    char* raw = seccomp_syscall_resolve_num_arch(native, nr);
    if (raw == nullptr) continue;
    std::string name(raw);
    std::free(raw);
    // Argument vectors: all zero, then each compared value (and its neighbours) on its argument.
    std::vector<std::pair<std::string, seccomp_data>> probes;
    probes.emplace_back(name, MakeSeccompData(nr));
    std::set<std::pair<unsigned, uint64_t>> seen;
    for (const Profile* p : {&a, &b}) {
      for (const SyscallRule& r : p->syscalls) {
        if (r.args.empty() || !Has(r.names, name)) continue;
        for (const ArgCmp& c : r.args) {
          for (uint64_t v : {c.value, c.value_two, c.value + 1, c.value - 1}) {
            if (c.index > 5 || !seen.insert({c.index, v}).second) continue;
            seccomp_data d = MakeSeccompData(nr);
            d.args[c.index] = v;
            probes.emplace_back(fmt::format("{}(args[{}]={:#x})", name, c.index, v), d);
          }
        }
      }
    }
    for (const auto& [what, d] : probes) {
      std::string ra = eval(pa, d), rb = eval(pb, d);
      if (ra == rb) continue;
      DiffEntry e{what, ra, rb, ArgRules(a, name, 'A')};
      for (auto& s : ArgRules(b, name, 'B')) e.rules.push_back(std::move(s));
      out.push_back(std::move(e));
      break;  // one line per syscall: the first probe that differs
    }
  }
  return out;
}

}  // namespace sbx::seccomp
