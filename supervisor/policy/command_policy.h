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
//       sandboxes: {…}          # optional; replaces the top-level section for this set
//   sandboxes:                  # optional; see "Sandboxes" below
//     allow_within: {cpus: 1, memory: 512MiB, pids: 256, timeout_s: 600, idle_timeout_s: 600,
//                    workspace: [none, ro, cow], backends: [native], images: ["busybox*"]}
//     otherwise: review         # review (default) | deny
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
// Sandboxes: creating a long-lived sandbox (docs/sandboxes.md) is judged by EvaluateSandbox(),
// from its shape, not its commands. A sandbox within every bound `allow_within` gives is allowed;
// a bound left out does not limit (the service's maxima still do). `cpus` is a number, `memory`
// bytes with an optional KiB, MiB or GiB suffix, `pids`, `timeout_s` and `idle_timeout_s` whole
// numbers, all positive; `workspace` lists the modes allowed (none, ro, cow, rw; none is a
// sandbox without a workspace), `backends` the backends (native, docker), `images` globs (as
// above) one of which a Docker image must match. A sandbox with a network other than none is
// never within allow_within. Any other sandbox gets `otherwise` (review unless it says deny),
// with a reason naming each bound it exceeds. A policy without a sandboxes section sends every
// sandbox to review. The rule set selected (as for commands, by the creating key and the
// sandbox's labels) uses its own section when it has one and the top-level one otherwise;
// `inherit` concerns rules only.
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

#include <cstdint>
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
  kSandboxBound,     // a sandbox exceeds a bound of sandboxes.allow_within (medium)
  kNoSandboxRule,    // no sandboxes section, or one without allow_within (medium)
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

// What EvaluateSandbox() judges: a sandbox as it would be created, with the service's defaults
// filled in (ResolveLimits in supervisor/review/limits.h). A limit of 0 means none, which is above
// any bound given.
struct SandboxShape {
  double cpus = 0;
  int64_t memory_bytes = 0;
  int64_t pids = 0;
  int64_t timeout_s = 0;
  int64_t idle_timeout_s = 0;
  std::string network;         // "none"
  std::string backend;         // "native", "docker": the backend that will run it
  std::string image;           // "" for native
  std::string workspace_mode;  // "" (no workspace), "ro", "cow", "rw"
  std::string api_key_name;    // the creating key's name
  std::map<std::string, std::string> labels;
};

// How a run that waits for a reviewer is decided (the policy's `review:` section).
struct ReviewRules {
  // Distinct reviewers that must approve, by the decision's risk (low, medium, high).
  int approvals[3] = {1, 1, 1};
  // A run still waiting this long is cancelled (review_expired); 0: never.
  int64_t expire_after_s = 0;
  int ApprovalsFor(Risk risk) const { return approvals[static_cast<int>(risk)]; }
};
inline constexpr int kMaxApprovals = 5;
inline constexpr int64_t kMaxReviewExpiryS = 30LL * 24 * 3600;

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

  // Judges a sandbox's creation (see "Sandboxes" above); never fails. allow (risk low) within
  // allow_within; otherwise review (risk medium) or deny (risk high) with a kSandboxBound reason
  // per bound exceeded. `rule` names the sandboxes section's line, its pattern
  // "sandboxes.allow_within" or "sandboxes.otherwise"; no rule without a section. `command`
  // describes the shape for the audit trail. Thread-safe.
  Decision EvaluateSandbox(const SandboxShape& shape) const;

  const std::string& source() const { return source_; }
  bool destructive_protection() const { return destructive_protection_; }
  ShellMode shell() const { return shell_; }
  const ReviewRules& review() const { return review_; }

 private:
  struct Rule {
    Glob glob;
    Action action;
    RuleRef where;
  };
  // A `sandboxes:` section with its image globs compiled.
  struct Sandboxes {
    RuleRef where;  // the `sandboxes:` key; pattern "sandboxes"
    bool has_allow_within = false;
    std::optional<double> cpus;
    std::optional<int64_t> memory_bytes;
    std::optional<int64_t> pids;
    std::optional<int64_t> timeout_s;
    std::optional<int64_t> idle_timeout_s;
    std::optional<std::vector<std::string>> workspace_modes;  // "" for none
    std::optional<std::vector<std::string>> backends;
    std::vector<Glob> images;  // empty: any image
    Action otherwise = Action::kReview;
  };
  struct RuleSet {
    std::string name;  // empty for the top-level rules
    std::vector<std::string> api_keys;
    std::map<std::string, std::string> labels;
    ShellMode shell = ShellMode::kDeny;
    std::vector<Rule> rules;             // inherited rules first
    std::optional<Sandboxes> sandboxes;  // the set's own, else the top-level section
  };
  struct Judgement;

  CommandPolicy() = default;
  const RuleSet& Select(const std::string& api_key_name,
                        const std::map<std::string, std::string>& labels) const;
  void JudgeWords(const RuleSet& set, const std::vector<std::string>& words, size_t step,
                  Judgement& j) const;

  std::string source_;
  ShellMode shell_ = ShellMode::kDeny;
  bool destructive_protection_ = true;
  ReviewRules review_;
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
