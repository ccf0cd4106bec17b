// Reading a profile the way an administrator needs to before trusting it: what is wrong with it
// (ValidateProfile), what it does to one syscall and which rule decides (Explain), how two
// profiles differ (DiffProfiles), and the compiled filter itself (Disassemble).
//
// Every answer comes from the compiled program run through Evaluate (simulate.h), cross-checked
// against the rules, so it is what the kernel will do and not what the JSON seems to say.
// Pure functions: no privileges, nothing installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "seccomp/seccomp.h"

namespace sbx::seccomp {

struct Finding {
  enum class Severity { kError, kWarning };
  Severity severity = Severity::kError;
  std::string path;     // JSON path ("syscalls[3].names[1]"); "" for the whole profile
  std::string message;  // what is wrong and what to do
};

struct ValidateOptions {
  // IMPORTANT: weakens isolation. Accepts a defaultAction that allows every unlisted syscall
  // (SCMP_ACT_ALLOW or SCMP_ACT_LOG); without it such a profile is an error.
  bool allow_permissive = false;
  CompileOptions compile;  // caps and kernel the compiled size and checks assume
};

struct ValidateReport {
  std::string name;
  std::optional<Profile> profile;  // set when the JSON parsed
  std::vector<Finding> findings;   // errors first, then warnings, each in document order
  size_t instructions = 0;         // the compiled filter's length; 0 when it did not compile
  std::vector<std::string> dangerous_allowed;  // from DangerousSyscalls(), allowed with args 0

  bool valid() const;
  size_t errors() const;
};

// Collects every problem it can find instead of stopping at the first: each rule of "syscalls"
// is parsed on its own; names unknown on an architecture the rule applies to (warnings: those
// calls fall to the default action there); unconditional rules for one syscall with different
// actions that can apply together (errors: one of them is silently dropped); the compile (size,
// libseccomp's refusals); a permissive default action; dangerous syscalls that stay allowed.
ValidateReport ValidateProfile(std::string_view json, std::string name,
                               const ValidateOptions& options = {});

// defaultAction lets unlisted syscalls run (SCMP_ACT_ALLOW, SCMP_ACT_LOG).
bool IsPermissive(const Profile& profile);
// Syscalls that let a process escape or attack the host or its own sandbox (ptrace, mount, bpf,
// kexec_load, …): a profile that allows them confines little.
std::vector<std::string> DangerousSyscalls();

struct Explanation {
  std::string syscall;
  int nr = -1;                 // native number
  std::vector<uint64_t> args;  // the 6 arguments evaluated
  uint32_t action = 0;         // SECCOMP_RET_* from the compiled program
  // The deciding rule; nullopt when the default action decides.
  std::optional<size_t> rule_index;
  std::string rule_path;  // "syscalls[12]"
  std::vector<std::string> rule_names;
  std::vector<ArgCmp> conditions;
  std::string comment;
  // Rules that name the syscall but were left out for these options (includes/excludes).
  std::vector<size_t> inapplicable_rules;
  // Rules that apply and name the syscall but whose conditions these arguments do not meet.
  std::vector<size_t> unmatched_rules;
  // False when no applicable rule matching the arguments gives the program's action (a
  // libseccomp merge the rules do not show); `note` says what the rules alone would give.
  bool agrees = true;
  std::string note;
};

// `name` must be known natively; up to 6 arguments (missing ones are 0).
Result<Explanation> Explain(const Profile& profile, const Program& program, const std::string& name,
                            const std::vector<uint64_t>& args, const CompileOptions& options = {});

// One instruction per line: index, mnemonic, operand, jump targets as absolute indexes, and
// what a compared constant means (a syscall name after a load of nr, the arch, an action).
std::string Disassemble(const Program& program);

struct DiffEntry {
  std::string what;  // "defaultAction", "architectures", "ptrace", "clone(args[0]=0x7e020000)"
  std::string a;
  std::string b;
  std::vector<std::string> rules;  // the rules with argument conditions for that syscall, A: … B: …
};

// Every native syscall evaluated in both compiled programs with all-zero arguments and with the
// values the rules for it compare against; plus the default action and the architectures.
std::vector<DiffEntry> DiffProfiles(const Profile& a, const Program& pa, const Profile& b,
                                    const Program& pb);

// "SCMP_CMP_MASKED_EQ" on (arg, value, value_two), 64-bit as libseccomp compares.
bool ArgMatches(const ArgCmp& cmp, uint64_t arg);
// "args[0] & 0x7e020000 == 0", "args[1] == 4".
std::string FormatCondition(const ArgCmp& cmp);
// A rule's conditions as Compile applies them: "&&" between distinct arguments, "||" when the
// rule compares one argument several times (split into one rule per condition); "none".
std::string FormatConditions(const std::vector<ArgCmp>& conds);

}  // namespace sbx::seccomp
