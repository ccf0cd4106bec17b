// The command policy: decides, before a run is queued, whether its commands are approved
// automatically (allow), wait for a reviewer (review) or are refused (deny), and how risky they
// look.
//
// Policy file (policies/commands.yaml is the shipped default and documents every key):
//
//   shell: deny                 # deny (default) | allow
//   protections:
//     destructive: on           # on (default) | off
//   rules:                      # pattern: action, in the order written
//     "*": review
//     "git *": allow
//     "sudo *": deny
//   rule_sets:                  # optional; see "Which rules apply" below
//     ci:
//       select: {api_keys: [ci-bot], labels: {team: infra}}
//       inherit: true           # true (default): the top-level rules come first
//       shell: allow            # optional; the top-level setting otherwise
//       rules:
//         "make *": allow
//
// Matching: each rule's pattern is a glob (glob.h) over the command line: the words joined by
// single spaces, a word holding blanks, quotes or shell operator characters written in single
// quotes (JoinWords() in shell_words.h); NAME=value words before a command are part of it,
// redirections are not. A program written as a path in a system directory (/bin, /sbin, /usr/bin,
// /usr/sbin, /usr/local/bin, /usr/local/sbin) is tried both as written and by its name:
// "/usr/bin/git status" matches "git *" and "/usr/bin/git *". Any other path is tried only as
// written, so "./git" or "/tmp/git" cannot pass for an allowed "git". Rules are tried in order
// and the LAST matching rule decides (the Flashduty Runner convention: put "*" first, exceptions
// after). When no rule matches, the command is denied, so an empty policy denies everything.
//
// Which rules apply: the first rule set, in file order, whose `select` matches the run; else the
// top-level rules. `select` matches when every criterion given holds: `api_keys` lists the
// submitting key's name, and `labels` are all present on the run with equal values. `api_keys`
// is required: a submitter picks its run's labels, so labels alone would let any key opt into a
// set; they only narrow one. With `inherit: true` (the default) the set's rules are appended to the
// top-level rules, so they win over them; start a set with "*": deny, or set inherit: false, to
// leave the top-level rules out.
//
// Judging: every step of a run is judged (argv steps as given, word by word; a `command` string
// split by POSIX shell rules with SplitShell(), never by running a shell), and the strictest
// decision wins (deny > review > allow). A command string that needs a shell (operators, pipes,
// redirections, substitutions, variables, globs … see shell_words.h) is denied with reason
// needs_shell unless the rule set's `shell` is allow; then each of its simple commands, those
// inside $(…) included, is judged on its own and the strictest wins.
//
// Protections are checks no rule can override. `destructive` (on unless the file says
// `protections: {destructive: off}`) denies, in argv steps, command strings and the strings given
// to sh -c, su -c, eval, env -S, flock -c and watch, looking through sudo, doas, env, nice,
// timeout, xargs, busybox …:
//   - rm -r / -R / --recursive on /, /*, ~, $HOME, a top-level system directory (/etc, /usr …)
//     or what is in one, or a path that is one of those when a variable in it is empty ($DIR/,
//     /$X); relative paths count from a cd earlier in the line (cd / && rm -rf *); any rm
//     --no-preserve-root
//   - mkfs, mkfs.*, mke2fs, wipefs; shred of /dev/…; dd of=/dev/…, cp/mv/install/tee onto
//     /dev/… and redirections into /dev/… (but not /dev/null and the like)
//   - chmod, chown, chgrp -R on those same paths
//   - find on those paths with -delete or -exec rm
//   - a function that calls itself (the fork bomb :(){ :|:& };:)
//   - a download (curl, wget, fetch, aria2c, http) piped into, or substituted into, an
//     interpreter that runs it (curl … | sh, wget -O- … | sudo bash, sh -c "$(curl …)",
//     bash <(curl …))
//   - a shell string it cannot split (so nothing hides behind unsupported syntax)
// Protections look at commands, not at programs' own languages: python -c, awk system() and
// make recipes are not inspected. They are a backstop, not a sandbox.
//
// IMPORTANT: `shell: allow` hands command strings to a shell, and `protections: {destructive:
// off}` lets the rules alone decide about the commands above; both weaken what a policy can
// guarantee.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "supervisor/policy/glob.h"

namespace sbx::policy {

enum class Action { kAllow, kReview, kDeny };  // in order of strictness
enum class Risk { kLow, kMedium, kHigh };
enum class ShellMode { kDeny, kAllow };

// Why a decision or a risk level was reached. The risk each code carries is in parentheses.
enum class ReasonCode {
  kDestructive,      // a protection fired (high)
  kDestructiveVerb,  // deletes or overwrites data: rm, shred, truncate, dd, git clean -f,
                     // git reset --hard, find -delete (high)
  kPrivilege,        // sudo, su, doas, pkexec, run0 (high)
  kNetwork,          // curl, wget, ssh, scp, rsync host:, git clone/fetch/pull/push,
                     // pip/npm/pnpm/yarn install, apt-get … (high)
  kRunsCode,  // interpreters and runners: python, node, sh -c, pytest, make, npm run (medium)
  kWritesWorkspace,  // cp, mv, mkdir, sed -i, git commit, an output redirection … (medium)
  kUnknownProgram,   // not one of the programs the policy library knows (medium)
  kNeedsShell,       // uses shell syntax (medium)
  kUnparsable,       // the command string cannot be split (medium)
  kNoRule,           // no rule matches (low)
  kEmptyCommand,     // nothing to run (low)
};

struct Reason {
  ReasonCode code;
  std::string message;  // for people: "curl uses the network", "needs a shell: ';' …"

  bool operator==(const Reason&) const = default;
};

// Where a rule was written.
struct RuleRef {
  std::string file;  // the source given to LoadText, the path for LoadDir
  int line = 0;      // 1-based
  std::string pattern;
};

struct Decision {
  Action action = Action::kDeny;
  Risk risk = Risk::kLow;       // the highest risk of all reasons
  std::vector<Reason> reasons;  // distinct, in the order found, across all steps
  // The rule behind the action, for the command that decided it; empty when a protection, the
  // shell check, a parse error or "no rule matches" decided.
  std::optional<RuleRef> rule;
  std::string protection;      // "destructive" when a protection decided; empty otherwise
  std::string rule_set;        // the selected rule set; empty for the top-level rules
  std::string command;         // the command line that decided (JoinWords form)
  std::optional<size_t> step;  // its index: argvs[i], or argvs.size() for `command`
};

struct CommandInput {
  // Steps given as argv, in order. Words are judged as given: nothing is split or expanded.
  std::vector<std::vector<std::string>> argvs;
  // One command line, judged after the argvs as the last step.
  std::optional<std::string> command;
  std::string api_key_name;                   // the submitting key's name
  std::map<std::string, std::string> labels;  // the run's labels
};

class CommandPolicy {
 public:
  // Reads DIR/commands.yaml (at most 1 MiB). Other files in DIR belong to other policies and
  // are not read. kNotFound when the file is missing (the caller may fall back to Builtin());
  // kInvalidArgument, with "path:line: what is wrong; what to do", for anything else: broken
  // YAML, unknown keys, unknown actions, invalid globs, wrong types. Nothing is half-loaded.
  static Result<std::shared_ptr<const CommandPolicy>> LoadDir(const std::string& dir);

  // Parses one policy document; `source` names it in errors and in Decision::rule.
  static Result<std::shared_ptr<const CommandPolicy>> LoadText(std::string_view yaml,
                                                               std::string source);

  // The shipped default (policies/commands.yaml, built into the binary), parsed once. Its
  // source is "builtin:commands.yaml".
  static std::shared_ptr<const CommandPolicy> Builtin();

  // Judges the input; never fails (a malformed input is denied with a reason). Thread-safe:
  // the object is immutable.
  Decision Evaluate(const CommandInput& input) const;

  const std::string& source() const { return source_; }
  bool destructive_protection() const { return destructive_protection_; }
  ShellMode shell() const { return shell_; }

 private:
  struct Rule {
    Glob glob;
    Action action;
    RuleRef where;
  };
  struct RuleSet {
    std::string name;  // empty for the top-level rules
    std::vector<std::string> api_keys;
    std::map<std::string, std::string> labels;
    ShellMode shell = ShellMode::kDeny;
    std::vector<Rule> rules;  // inherited rules first
  };
  struct Judgement;

  CommandPolicy() = default;
  const RuleSet& Select(const CommandInput& input) const;
  void JudgeWords(const RuleSet& set, const std::vector<std::string>& words, size_t step,
                  Judgement& j) const;

  std::string source_;
  ShellMode shell_ = ShellMode::kDeny;
  bool destructive_protection_ = true;
  RuleSet top_;
  std::vector<RuleSet> sets_;
};

std::string_view ActionName(Action a);          // "allow", "review", "deny"
std::string_view RiskName(Risk r);              // "low", "medium", "high"
std::string_view ReasonCodeName(ReasonCode c);  // "destructive", "destructive_verb", …
Risk RiskOf(ReasonCode c);

// The text of policies/commands.yaml as built into the binary.
std::string_view BuiltinPolicyText();

}  // namespace sbx::policy
