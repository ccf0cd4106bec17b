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

// 1 GiB, 512 MiB, 1536 KiB, 1000 bytes: the largest unit that divides the size.
std::string FormatBytes(int64_t bytes) {
  if (bytes > 0 && bytes % (int64_t{1} << 30) == 0) return fmt::format("{} GiB", bytes >> 30);
  if (bytes > 0 && bytes % (int64_t{1} << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
  if (bytes > 0 && bytes % (int64_t{1} << 10) == 0) return fmt::format("{} KiB", bytes >> 10);
  return fmt::format("{} bytes", bytes);
}

// The audit trail's line for a sandbox: "sandbox native cpus=1 memory=512 MiB pids=256 …".
std::string DescribeSandbox(const SandboxShape& s) {
  std::string out = fmt::format(
      "sandbox {} cpus={:g} memory={} pids={} timeout_s={} idle_timeout_s={} network={} "
      "workspace={}",
      s.backend.empty() ? "(default backend)" : s.backend, s.cpus, FormatBytes(s.memory_bytes),
      s.pids, s.timeout_s, s.idle_timeout_s, s.network.empty() ? "none" : s.network,
      s.workspace_mode.empty() ? "none" : s.workspace_mode);
  if (!s.image.empty()) out += " image=" + s.image;
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
    case ReasonCode::kSandboxBound:
      return "sandbox_bound";
    case ReasonCode::kNoSandboxRule:
      return "no_sandbox_rule";
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
    case ReasonCode::kSandboxBound:
    case ReasonCode::kNoSandboxRule:
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
  p->review_ = spec->review;

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

  auto compile_sandboxes =
      [&](const std::optional<internal::SandboxesSpec>& in) -> Result<std::optional<Sandboxes>> {
    if (!in) return std::optional<Sandboxes>();
    Sandboxes out;
    out.where = RuleRef{source, in->line, "sandboxes"};
    out.has_allow_within = in->has_allow_within;
    out.cpus = in->cpus;
    out.memory_bytes = in->memory_bytes;
    out.pids = in->pids;
    out.timeout_s = in->timeout_s;
    out.idle_timeout_s = in->idle_timeout_s;
    out.workspace_modes = in->workspace_modes;
    out.backends = in->backends;
    out.otherwise = in->otherwise;
    for (const internal::RuleSpec& image : in->images) {
      auto glob = Glob::Compile(image.pattern);
      if (!glob.ok()) {
        Error e = MakeError(ErrorCode::kInvalidArgument, "{}:{}: image glob \"{}\": {}", source,
                            image.line, image.pattern, glob.error().message);
        e.context = source;
        return e;
      }
      out.images.push_back(std::move(*glob));
    }
    return std::optional<Sandboxes>(std::move(out));
  };

  p->top_.shell = spec->shell;
  SBX_TRY(compile(spec->rules, p->top_.rules));
  auto top_sandboxes = compile_sandboxes(spec->sandboxes);
  if (!top_sandboxes.ok()) return std::move(top_sandboxes).error();
  p->top_.sandboxes = std::move(*top_sandboxes);
  for (internal::RuleSetSpec& s : spec->rule_sets) {
    RuleSet set;
    set.name = std::move(s.name);
    set.api_keys = std::move(s.api_keys);
    set.labels = std::move(s.labels);
    set.shell = s.shell.value_or(spec->shell);
    if (s.inherit) set.rules = p->top_.rules;
    SBX_TRY(compile(s.rules, set.rules));
    auto sandboxes = compile_sandboxes(s.sandboxes);
    if (!sandboxes.ok()) return std::move(sandboxes).error();
    set.sandboxes = *sandboxes ? std::move(*sandboxes) : p->top_.sandboxes;
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

const CommandPolicy::RuleSet& CommandPolicy::Select(
    const std::string& api_key_name, const std::map<std::string, std::string>& labels) const {
  for (const RuleSet& s : sets_) {
    if (!s.api_keys.empty() &&
        (api_key_name.empty() ||
         std::find(s.api_keys.begin(), s.api_keys.end(), api_key_name) == s.api_keys.end())) {
      continue;
    }
    bool labels_match = true;
    for (const auto& [key, value] : s.labels) {
      auto it = labels.find(key);
      if (it == labels.end() || it->second != value) {
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
  const RuleSet& set = Select(input.api_key_name, input.labels);
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

Decision CommandPolicy::EvaluateSandbox(const SandboxShape& shape) const {
  const RuleSet& set = Select(shape.api_key_name, shape.labels);
  Decision d;
  d.rule_set = set.name;
  d.command = DescribeSandbox(shape);
  if (!set.sandboxes) {
    d.action = Action::kReview;
    d.risk = Risk::kMedium;
    d.reasons.push_back(
        {ReasonCode::kNoSandboxRule,
         "no sandboxes section in the policy allows sandboxes, so a reviewer decides; add "
         "sandboxes: {allow_within: …} to commands.yaml to approve some automatically"});
    return d;
  }
  const Sandboxes& sec = *set.sandboxes;
  if (!sec.has_allow_within) {
    d.reasons.push_back(
        {ReasonCode::kNoSandboxRule,
         fmt::format("the sandboxes section has no allow_within, so every sandbox gets "
                     "otherwise: {}",
                     ActionName(sec.otherwise))});
  }
  if (sec.has_allow_within) {
    auto above = [&](std::string_view name, std::string value, std::string bound) {
      d.reasons.push_back({ReasonCode::kSandboxBound, fmt::format("{} {} above allow_within.{} {}",
                                                                  name, value, name, bound)});
    };
    if (sec.cpus && (shape.cpus <= 0 || shape.cpus > *sec.cpus)) {
      above("cpus", shape.cpus <= 0 ? "unlimited" : fmt::format("{:g}", shape.cpus),
            fmt::format("{:g}", *sec.cpus));
    }
    if (sec.memory_bytes && (shape.memory_bytes <= 0 || shape.memory_bytes > *sec.memory_bytes)) {
      above("memory", shape.memory_bytes <= 0 ? "unlimited" : FormatBytes(shape.memory_bytes),
            FormatBytes(*sec.memory_bytes));
    }
    auto whole = [&](std::string_view name, int64_t value, const std::optional<int64_t>& bound,
                     std::string_view none) {
      if (bound && (value <= 0 || value > *bound)) {
        above(name, value <= 0 ? std::string(none) : std::to_string(value), std::to_string(*bound));
      }
    };
    whole("pids", shape.pids, sec.pids, "unlimited");
    whole("timeout_s", shape.timeout_s, sec.timeout_s, "none");
    whole("idle_timeout_s", shape.idle_timeout_s, sec.idle_timeout_s, "none");
    if (sec.workspace_modes && std::find(sec.workspace_modes->begin(), sec.workspace_modes->end(),
                                         shape.workspace_mode) == sec.workspace_modes->end()) {
      std::vector<std::string> names;
      for (const std::string& m : *sec.workspace_modes) names.push_back(m.empty() ? "none" : m);
      d.reasons.push_back({ReasonCode::kSandboxBound,
                           fmt::format("workspace {} not in allow_within.workspace [{}]",
                                       shape.workspace_mode.empty() ? "none" : shape.workspace_mode,
                                       Joined(names))});
    }
    if (sec.backends && std::find(sec.backends->begin(), sec.backends->end(), shape.backend) ==
                            sec.backends->end()) {
      d.reasons.push_back({ReasonCode::kSandboxBound,
                           fmt::format("backend {} not in allow_within.backends [{}]",
                                       shape.backend.empty() ? "(none named)" : shape.backend,
                                       Joined(*sec.backends))});
    }
    if (!sec.images.empty() && !shape.image.empty() &&
        std::none_of(sec.images.begin(), sec.images.end(),
                     [&](const Glob& g) { return g.Matches(shape.image); })) {
      std::vector<std::string> globs;
      for (const Glob& g : sec.images) globs.push_back(g.pattern());
      d.reasons.push_back({ReasonCode::kSandboxBound,
                           fmt::format("image {} matches none of allow_within.images [{}]",
                                       shape.image, Joined(globs))});
    }
    if (!shape.network.empty() && shape.network != "none") {
      d.reasons.push_back({ReasonCode::kSandboxBound,
                           fmt::format("network {}: allow_within covers sandboxes without a "
                                       "network (none) only",
                                       shape.network)});
    }
  }
  if (sec.has_allow_within && d.reasons.empty()) {
    d.action = Action::kAllow;
    d.risk = Risk::kLow;
    d.rule = RuleRef{sec.where.file, sec.where.line, "sandboxes.allow_within"};
    return d;
  }
  d.action = sec.otherwise;
  d.risk = sec.otherwise == Action::kDeny ? Risk::kHigh : Risk::kMedium;
  d.rule = RuleRef{sec.where.file, sec.where.line, "sandboxes.otherwise"};
  return d;
}

}  // namespace sbx::policy
