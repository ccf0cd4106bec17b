#include "supervisor/policy/command_policy.h"

#include <algorithm>
#include <cerrno>

#include "base/fs.h"
#include "supervisor/policy/policy_yaml.h"
#include "supervisor/policy/program.h"
#include "supervisor/policy/protections.h"
#include "supervisor/policy/risk.h"
#include "supervisor/policy/shell_words.h"

namespace sbx::policy {

namespace internal {
// Generated from policies/commands.yaml by supervisor/policy/embed_text.cmake.
extern const char kBuiltinCommandsYaml[];
extern const std::size_t kBuiltinCommandsYamlSize;
}  // namespace internal

namespace {

constexpr char kDestructive[] = "destructive";

bool Stricter(Action a, Action b) { return static_cast<int>(a) > static_cast<int>(b); }

// /usr/bin/git, not ./git, /tmp/git or /usr/bin/../../tmp/git: only a program installed in a
// system directory may be matched by its name, so a file in the workspace cannot pass for an
// allowed tool.
bool IsSystemProgramPath(std::string_view path) {
  static constexpr std::string_view kDirs[] = {"/bin/",      "/sbin/",          "/usr/bin/",
                                               "/usr/sbin/", "/usr/local/bin/", "/usr/local/sbin/"};
  for (std::string_view dir : kDirs) {
    if (path.size() > dir.size() && path.starts_with(dir) &&
        path.find('/', dir.size()) == std::string_view::npos && path.substr(dir.size()) != "." &&
        path.substr(dir.size()) != "..") {
      return true;
    }
  }
  return false;
}

std::string Joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

}  // namespace

std::string_view ActionName(Action a) {
  switch (a) {
    case Action::kAllow:
      return "allow";
    case Action::kReview:
      return "review";
    case Action::kDeny:
      return "deny";
  }
  return "deny";
}

std::string_view RiskName(Risk r) {
  switch (r) {
    case Risk::kLow:
      return "low";
    case Risk::kMedium:
      return "medium";
    case Risk::kHigh:
      return "high";
  }
  return "high";
}

std::string_view ReasonCodeName(ReasonCode c) {
  switch (c) {
    case ReasonCode::kDestructive:
      return "destructive";
    case ReasonCode::kDestructiveVerb:
      return "destructive_verb";
    case ReasonCode::kPrivilege:
      return "privilege";
    case ReasonCode::kNetwork:
      return "network";
    case ReasonCode::kRunsCode:
      return "runs_code";
    case ReasonCode::kWritesWorkspace:
      return "writes_workspace";
    case ReasonCode::kUnknownProgram:
      return "unknown_program";
    case ReasonCode::kNeedsShell:
      return "needs_shell";
    case ReasonCode::kUnparsable:
      return "unparsable";
    case ReasonCode::kNoRule:
      return "no_rule";
    case ReasonCode::kEmptyCommand:
      return "empty_command";
  }
  return "unknown";
}

Risk RiskOf(ReasonCode c) {
  switch (c) {
    case ReasonCode::kDestructive:
    case ReasonCode::kDestructiveVerb:
    case ReasonCode::kPrivilege:
    case ReasonCode::kNetwork:
      return Risk::kHigh;
    case ReasonCode::kRunsCode:
    case ReasonCode::kWritesWorkspace:
    case ReasonCode::kUnknownProgram:
    case ReasonCode::kNeedsShell:
    case ReasonCode::kUnparsable:
      return Risk::kMedium;
    case ReasonCode::kNoRule:
    case ReasonCode::kEmptyCommand:
      return Risk::kLow;
  }
  return Risk::kHigh;
}

std::string_view BuiltinPolicyText() {
  return {internal::kBuiltinCommandsYaml, internal::kBuiltinCommandsYamlSize};
}

// The running verdict over all steps and commands: the first command to reach the strictest
// action so far names the rule, protection and command behind it.
struct CommandPolicy::Judgement {
  bool any = false;
  Action action = Action::kDeny;
  std::vector<Reason> reasons;
  std::optional<RuleRef> rule;
  std::string protection;
  std::string command;
  size_t step = 0;

  void Verdict(Action a, const RuleRef* r, std::string_view prot, std::string cmd, size_t at) {
    if (any && !Stricter(a, action)) return;
    any = true;
    action = a;
    rule = r ? std::optional<RuleRef>(*r) : std::nullopt;
    protection = std::string(prot);
    command = std::move(cmd);
    step = at;
  }
};

Result<std::shared_ptr<const CommandPolicy>> CommandPolicy::LoadText(std::string_view yaml,
                                                                     std::string source) {
  auto spec = internal::ParsePolicyYaml(yaml, source);
  if (!spec.ok()) return std::move(spec).error();

  std::shared_ptr<CommandPolicy> p(new CommandPolicy());
  p->source_ = source;
  p->shell_ = spec->shell;
  p->destructive_protection_ = spec->destructive_protection;

  auto compile = [&](const std::vector<internal::RuleSpec>& in, std::vector<Rule>& out) -> Status {
    for (const internal::RuleSpec& r : in) {
      auto glob = Glob::Compile(r.pattern);
      if (!glob.ok()) {
        Error e = MakeError(ErrorCode::kInvalidArgument, "{}:{}: {}", source, r.line,
                            glob.error().message);
        e.context = source;
        return e;
      }
      out.push_back({std::move(*glob), r.action, RuleRef{source, r.line, r.pattern}});
    }
    return Ok();
  };

  p->top_.shell = spec->shell;
  SBX_TRY(compile(spec->rules, p->top_.rules));
  for (internal::RuleSetSpec& s : spec->rule_sets) {
    RuleSet set;
    set.name = std::move(s.name);
    set.api_keys = std::move(s.api_keys);
    set.labels = std::move(s.labels);
    set.shell = s.shell.value_or(spec->shell);
    if (s.inherit) set.rules = p->top_.rules;
    SBX_TRY(compile(s.rules, set.rules));
    p->sets_.push_back(std::move(set));
  }
  return std::shared_ptr<const CommandPolicy>(std::move(p));
}

Result<std::shared_ptr<const CommandPolicy>> CommandPolicy::LoadDir(const std::string& dir) {
  const std::string path = dir + "/commands.yaml";
  auto text = ReadFile(path, internal::kMaxPolicyBytes);
  if (!text.ok()) {
    Error e = std::move(text).error();
    if (e.code == ErrorCode::kNotFound) {
      e.message = fmt::format(
          "{}: no command policy there; install policies/commands.yaml as that file, or point "
          "policy_dir elsewhere",
          path);
    } else if (e.code == ErrorCode::kInvalidArgument) {
      e.message = fmt::format(
          "{}: more than {} bytes, the most a policy file may hold; use "
          "broader patterns",
          path, internal::kMaxPolicyBytes);
    }
    e.context = path;
    return e;
  }
  return LoadText(*text, path);
}

std::shared_ptr<const CommandPolicy> CommandPolicy::Builtin() {
  static const std::shared_ptr<const CommandPolicy> policy = [] {
    auto p = LoadText(BuiltinPolicyText(), "builtin:commands.yaml");
    if (p.ok()) return std::move(*p);
    // The embedded text is loaded by the unit tests, so this does not happen in a tested build;
    // if it did, deny everything rather than run unjudged commands.
    return std::shared_ptr<const CommandPolicy>(new CommandPolicy());
  }();
  return policy;
}

const CommandPolicy::RuleSet& CommandPolicy::Select(const CommandInput& input) const {
  for (const RuleSet& s : sets_) {
    if (!s.api_keys.empty() &&
        (input.api_key_name.empty() ||
         std::find(s.api_keys.begin(), s.api_keys.end(), input.api_key_name) == s.api_keys.end())) {
      continue;
    }
    bool labels_match = true;
    for (const auto& [key, value] : s.labels) {
      auto it = input.labels.find(key);
      if (it == input.labels.end() || it->second != value) {
        labels_match = false;
        break;
      }
    }
    if (labels_match) return s;
  }
  return top_;
}

void CommandPolicy::JudgeWords(const RuleSet& set, const std::vector<std::string>& words,
                               size_t step, Judgement& j) const {
  std::string line = JoinWords(words);
  std::string base_line;
  if (!words.empty() && IsSystemProgramPath(words[0])) {
    base_line = QuoteWord(internal::Basename(words[0]));
    if (words.size() > 1) {
      base_line += ' ';
      base_line += JoinWords(words, 1);
    }
  }
  // The last matching rule decides: search from the end.
  for (auto it = set.rules.rbegin(); it != set.rules.rend(); ++it) {
    if (it->glob.Matches(line) || (!base_line.empty() && it->glob.Matches(base_line))) {
      j.Verdict(it->action, &it->where, "", std::move(line), step);
      return;
    }
  }
  internal::AddReason(
      j.reasons, ReasonCode::kNoRule,
      fmt::format("no rule matches '{}'; the policy denies what it does not name", line));
  j.Verdict(Action::kDeny, nullptr, "", std::move(line), step);
}

Decision CommandPolicy::Evaluate(const CommandInput& input) const {
  const RuleSet& set = Select(input);
  Judgement j;
  std::vector<internal::Finding> findings;
  auto protect = [&](size_t step) {
    for (internal::Finding& f : findings) {
      internal::AddReason(j.reasons, ReasonCode::kDestructive, f.message);
      j.Verdict(Action::kDeny, nullptr, kDestructive, std::move(f.command), step);
    }
  };

  size_t step = 0;
  for (const std::vector<std::string>& argv : input.argvs) {
    if (argv.empty() || argv[0].empty()) {
      internal::AddReason(j.reasons, ReasonCode::kEmptyCommand,
                          fmt::format("step {} names no program", step));
      j.Verdict(Action::kDeny, nullptr, "", JoinWords(argv), step);
    } else {
      findings.clear();
      if (destructive_protection_) internal::CheckArgv(argv, findings);
      protect(step);
      internal::ClassifyWords(argv, j.reasons);
      if (findings.empty()) JudgeWords(set, argv, step, j);
    }
    ++step;
  }

  if (input.command) {
    auto parse = SplitShell(*input.command);
    if (!parse.ok()) {
      internal::AddReason(j.reasons, ReasonCode::kUnparsable,
                          parse.error().message + "; fix the quoting or send the command as argv");
      j.Verdict(Action::kDeny, nullptr, "", *input.command, step);
    } else if (parse->commands.empty()) {
      internal::AddReason(j.reasons, ReasonCode::kEmptyCommand, "the command string runs nothing");
      j.Verdict(Action::kDeny, nullptr, "", *input.command, step);
    } else {
      findings.clear();
      if (destructive_protection_) internal::CheckShell(*parse, findings);
      protect(step);
      const bool shell_refused = parse->NeedsShell() && set.shell == ShellMode::kDeny;
      if (parse->NeedsShell()) {
        internal::AddReason(
            j.reasons, ReasonCode::kNeedsShell,
            fmt::format("needs a shell: {}{}", Joined(parse->shell_features),
                        shell_refused ? "; send the parts as separate argv steps, or ask an "
                                        "administrator for shell: allow"
                                      : ""));
      }
      if (shell_refused) j.Verdict(Action::kDeny, nullptr, "", *input.command, step);
      for (const ShellCommand& c : parse->commands) internal::ClassifyShellCommand(c, j.reasons);
      if (findings.empty() && !shell_refused) {
        for (const ShellCommand& c : parse->commands) JudgeWords(set, c.words, step, j);
      }
    }
    ++step;
  }

  if (step == 0) {
    internal::AddReason(j.reasons, ReasonCode::kEmptyCommand,
                        "nothing to run: the run has neither argv steps nor a command");
    j.Verdict(Action::kDeny, nullptr, "", "", 0);
  }

  Decision d;
  d.action = j.action;
  d.reasons = std::move(j.reasons);
  for (const Reason& r : d.reasons) d.risk = std::max(d.risk, RiskOf(r.code));
  d.rule = std::move(j.rule);
  d.protection = std::move(j.protection);
  d.rule_set = set.name;
  d.command = std::move(j.command);
  if (step > 0) d.step = j.step;
  return d;
}

}  // namespace sbx::policy
