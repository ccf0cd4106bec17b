// commands.yaml: the policy file's tree into a PolicySpec. yaml-cpp's exceptions stop here and in
// yaml_util.cc.
#include "supervisor/policy/policy_yaml.h"

#include "supervisor/policy/yaml_util.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdlib>
#include <optional>
#include <set>
#include <sstream>

namespace sbx::policy::internal {
namespace {

Result<ShellMode> ParseShell(const YAML::Node& n, const std::string& source) {
  if (n.IsScalar() && n.Scalar() == "allow") return ShellMode::kAllow;
  if (n.IsScalar() && n.Scalar() == "deny") return ShellMode::kDeny;
  return At(source, n, "'shell' must be allow or deny");
}

// Errors name the rule's line: a missing action has no position of its own.
Result<Action> ParseAction(const YAML::Node& n, const std::string& source, int line,
                           const std::string& pattern) {
  if (n.IsScalar()) {
    const std::string& v = n.Scalar();
    if (v == "allow") return Action::kAllow;
    if (v == "review") return Action::kReview;
    if (v == "deny") return Action::kDeny;
    return At(
        source, line,
        fmt::format("rule \"{}\": unknown action '{}'; use allow, review or deny", pattern, v));
  }
  return At(source, line,
            fmt::format("rule \"{}\": the action must be allow, review or deny", pattern));
}

Result<std::vector<RuleSpec>> ParseRules(const YAML::Node& n, const std::string& source,
                                         const std::string& where) {
  std::vector<RuleSpec> rules;
  if (n.IsNull()) return rules;
  if (!n.IsMap()) {
    return At(source, n,
              fmt::format("'rules' {} must be a mapping of pattern: action, such as "
                          "\"git *\": allow (one per line, in order)",
                          where));
  }
  std::map<std::string, int> seen;
  for (const auto& kv : n) {
    if (!kv.first.IsScalar()) {
      return At(source, kv.first, "a rule's pattern must be a string; quote it: \"git *\": allow");
    }
    RuleSpec r;
    r.pattern = kv.first.Scalar();
    r.line = LineOf(kv.first);
    if (r.pattern.empty())
      return At(source, r.line, "empty pattern; write \"*\" to match anything");
    if (r.pattern.front() == ' ' || r.pattern.back() == ' ' || r.pattern.front() == '\t' ||
        r.pattern.back() == '\t') {
      return At(source, r.line,
                fmt::format("pattern \"{}\" starts or ends with a blank and would never match; "
                            "remove the blank",
                            r.pattern));
    }
    auto [it, fresh] = seen.emplace(r.pattern, r.line);
    if (!fresh) {
      return At(source, r.line,
                fmt::format("pattern \"{}\" is listed twice (also on line {}); keep one", r.pattern,
                            it->second));
    }
    auto action = ParseAction(kv.second, source, r.line, r.pattern);
    if (!action.ok()) return std::move(action).error();
    r.action = *action;
    rules.push_back(std::move(r));
  }
  return rules;
}

Status ParseSelect(const YAML::Node& n, const std::string& source, RuleSetSpec& set) {
  const std::string where = fmt::format("in the select of rule set '{}'", set.name);
  if (!n.IsMap()) {
    return At(source, n,
              fmt::format("rule set '{}': 'select' must be a mapping such as "
                          "{{api_keys: [ci], labels: {{team: infra}}}}",
                          set.name));
  }
  SBX_TRY(CheckKeys(n, {"api_keys", "labels"}, source, where));
  if (const YAML::Node keys = n["api_keys"]) {
    if (!keys.IsSequence() || keys.size() == 0) {
      return At(
          source, keys,
          fmt::format("rule set '{}': 'api_keys' must be a non-empty list of key names", set.name));
    }
    for (const auto& k : keys) {
      if (!k.IsScalar() || k.Scalar().empty()) {
        return At(
            source, k,
            fmt::format("rule set '{}': an API key name must be a non-empty string", set.name));
      }
      set.api_keys.push_back(k.Scalar());
    }
  }
  if (const YAML::Node labels = n["labels"]) {
    if (!labels.IsMap() || labels.size() == 0) {
      return At(source, labels,
                fmt::format("rule set '{}': 'labels' must be a non-empty mapping of label: value",
                            set.name));
    }
    for (const auto& kv : labels) {
      if (!kv.first.IsScalar() || !kv.second.IsScalar()) {
        return At(source, kv.first,
                  fmt::format("rule set '{}': labels must be plain key: value strings", set.name));
      }
      set.labels[kv.first.Scalar()] = kv.second.Scalar();
    }
  }
  if (set.api_keys.empty() && set.labels.empty()) {
    return At(source, n, fmt::format("rule set '{}': 'select' needs api_keys or labels", set.name));
  }
  if (set.api_keys.empty()) {
    // A submitter chooses its run's labels: a set selected by them alone would let any key
    // opt into its rules, however permissive.
    return At(source, n,
              fmt::format("rule set '{}': labels alone select it, and any submitter can set "
                          "labels; name the api_keys it is for (labels then narrow their runs)",
                          set.name));
  }
  return Ok();
}

// A list of names out of `known`; `none` in the workspace list is stored as "".
Result<std::vector<std::string>> ParseNames(const YAML::Node& n, const std::string& source,
                                            const std::string& name, const std::string& where,
                                            const std::set<std::string>& known) {
  if (!n.IsSequence() || n.size() == 0) {
    return At(source, n,
              fmt::format("'{}' {} must be a non-empty list of: {}", name, where, Join(known)));
  }
  std::vector<std::string> out;
  for (const auto& item : n) {
    if (!item.IsScalar() || !known.count(item.Scalar())) {
      return At(source, item,
                fmt::format("'{}' {}: '{}' is not one of {}", name, where,
                            item.IsScalar() ? item.Scalar() : std::string("(a list or mapping)"),
                            Join(known)));
    }
    out.push_back(item.Scalar() == "none" ? "" : item.Scalar());
  }
  return out;
}

// `set_name` is empty for the top-level section.
Result<SandboxesSpec> ParseSandboxes(const YAML::Node& key, const YAML::Node& n,
                                     const std::string& source, const std::string& set_name) {
  const std::string where = set_name.empty()
                                ? std::string("in sandboxes")
                                : fmt::format("in the sandboxes of rule set '{}'", set_name);
  SandboxesSpec spec;
  spec.line = LineOf(key);
  if (!n.IsMap()) {
    return At(source, key,
              fmt::format("{}'sandboxes' must be a mapping with allow_within and otherwise, "
                          "such as {{allow_within: {{cpus: 1, memory: 1GiB}}, otherwise: review}}",
                          set_name.empty() ? "" : fmt::format("rule set '{}': ", set_name)));
  }
  SBX_TRY(CheckKeys(n, {"allow_within", "otherwise"}, source, where));
  if (const YAML::Node o = n["otherwise"]) {
    if (o.IsScalar() && o.Scalar() == "review") {
      spec.otherwise = Action::kReview;
    } else if (o.IsScalar() && o.Scalar() == "deny") {
      spec.otherwise = Action::kDeny;
    } else {
      return At(source, o,
                fmt::format("'otherwise' {} must be review or deny (allow is what "
                            "allow_within is for)",
                            where));
    }
  }
  const YAML::Node a = n["allow_within"];
  if (!a) return spec;
  if (!a.IsMap()) {
    return At(source, a,
              fmt::format("'allow_within' {} must be a mapping of bounds, such as {{cpus: 1, "
                          "memory: 1GiB, pids: 256}}",
                          where));
  }
  SBX_TRY(CheckKeys(
      a,
      {"cpus", "memory", "pids", "timeout_s", "idle_timeout_s", "workspace", "backends", "images"},
      source, fmt::format("in allow_within {}", where)));
  spec.has_allow_within = true;
  if (const YAML::Node v = a["cpus"]) {
    auto cpus = ParseCpus(v, source, "allow_within.cpus", where);
    if (!cpus.ok()) return std::move(cpus).error();
    spec.cpus = *cpus;
  }
  if (const YAML::Node v = a["memory"]) {
    auto bytes = ParseSize(v, source, "allow_within.memory", where);
    if (!bytes.ok()) return std::move(bytes).error();
    spec.memory_bytes = *bytes;
  }
  struct IntBound {
    const char* key;
    std::optional<int64_t>* out;
    std::string_view example;
  };
  for (const IntBound& b :
       {IntBound{"pids", &spec.pids, "256"}, IntBound{"timeout_s", &spec.timeout_s, "3600"},
        IntBound{"idle_timeout_s", &spec.idle_timeout_s, "600"}}) {
    if (const YAML::Node v = a[b.key]) {
      auto value =
          ParsePositiveInt(v, source, fmt::format("allow_within.{}", b.key), where, b.example);
      if (!value.ok()) return std::move(value).error();
      *b.out = *value;
    }
  }
  if (const YAML::Node v = a["workspace"]) {
    auto modes =
        ParseNames(v, source, "allow_within.workspace", where, {"none", "ro", "cow", "rw"});
    if (!modes.ok()) return std::move(modes).error();
    spec.workspace_modes = std::move(*modes);
  }
  if (const YAML::Node v = a["backends"]) {
    auto backends = ParseNames(v, source, "allow_within.backends", where, {"native", "docker"});
    if (!backends.ok()) return std::move(backends).error();
    spec.backends = std::move(*backends);
  }
  if (const YAML::Node v = a["images"]) {
    if (!v.IsSequence() || v.size() == 0) {
      return At(source, v,
                fmt::format("'allow_within.images' {} must be a non-empty list of image globs, "
                            "such as [\"busybox*\"]",
                            where));
    }
    for (const auto& item : v) {
      if (!item.IsScalar() || item.Scalar().empty()) {
        return At(source, item,
                  fmt::format("'allow_within.images' {}: an image glob must be a non-empty "
                              "string",
                              where));
      }
      spec.images.push_back(RuleSpec{item.Scalar(), Action::kAllow, LineOf(item)});
    }
  }
  return spec;
}

bool ValidSetName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

Result<std::vector<RuleSetSpec>> ParseRuleSets(const YAML::Node& n, const std::string& source) {
  std::vector<RuleSetSpec> sets;
  if (n.IsNull()) return sets;
  if (!n.IsMap()) {
    return At(source, n, "'rule_sets' must be a mapping of name: {select, rules}");
  }
  std::set<std::string> names;
  for (const auto& kv : n) {
    RuleSetSpec set;
    set.name = kv.first.IsScalar() ? kv.first.Scalar() : "";
    set.line = LineOf(kv.first);
    if (!ValidSetName(set.name)) {
      return At(source, kv.first,
                "a rule set's name must be 1-64 letters, digits, '_', '-' or '.'");
    }
    if (!names.insert(set.name).second) {
      return At(source, kv.first,
                fmt::format("rule set '{}' is defined twice; keep one", set.name));
    }
    const YAML::Node& body = kv.second;
    const std::string where = fmt::format("in rule set '{}'", set.name);
    if (!body.IsMap()) {
      return At(source, kv.first,
                fmt::format("rule set '{}' must be a mapping with select and rules", set.name));
    }
    SBX_TRY(CheckKeys(body, {"select", "inherit", "shell", "rules", "sandboxes"}, source, where));
    if (!body["select"]) {
      return At(source, kv.first,
                fmt::format("rule set '{}' has no 'select'; say which api_keys or labels it is "
                            "for",
                            set.name));
    }
    SBX_TRY(ParseSelect(body["select"], source, set));
    if (const YAML::Node inherit = body["inherit"]) {
      bool b = true;
      if (!inherit.IsScalar() || !YAML::convert<bool>::decode(inherit, b)) {
        return At(source, inherit,
                  fmt::format("rule set '{}': 'inherit' must be true or false", set.name));
      }
      set.inherit = b;
    }
    if (const YAML::Node shell = body["shell"]) {
      auto mode = ParseShell(shell, source);
      if (!mode.ok()) return std::move(mode).error();
      set.shell = *mode;
    }
    if (const YAML::Node rules = body["rules"]) {
      auto parsed = ParseRules(rules, source, where);
      if (!parsed.ok()) return std::move(parsed).error();
      set.rules = std::move(*parsed);
    }
    for (const auto& entry : body) {
      if (entry.first.Scalar() != "sandboxes") continue;
      auto parsed = ParseSandboxes(entry.first, entry.second, source, set.name);
      if (!parsed.ok()) return std::move(parsed).error();
      set.sandboxes = std::move(*parsed);
    }
    sets.push_back(std::move(set));
  }
  return sets;
}

// review: {approvals: {low: 1, medium: 1, high: 2}, expire_after_s: 86400}
Result<ReviewRules> ParseReview(const YAML::Node& n, const std::string& source) {
  ReviewRules r;
  if (!n.IsMap()) {
    return At(source, n,
              "'review' must be a mapping such as {approvals: {high: 2}, expire_after_s: 86400}");
  }
  SBX_TRY(CheckKeys(n, {"approvals", "expire_after_s"}, source, "in review"));
  if (const YAML::Node a = n["approvals"]) {
    if (!a.IsMap()) {
      return At(source, a,
                "'review.approvals' must map a risk to the reviewers needed, such as "
                "{low: 1, medium: 1, high: 2}");
    }
    SBX_TRY(CheckKeys(a, {"low", "medium", "high"}, source, "in review.approvals"));
    const char* names[3] = {"low", "medium", "high"};
    for (int i = 0; i < 3; ++i) {
      const YAML::Node v = a[names[i]];
      if (!v) continue;
      auto count = ParsePositiveInt(v, source, fmt::format("review.approvals.{}", names[i]), "in review",
                                    "2");
      if (!count.ok()) return std::move(count).error();
      if (*count > kMaxApprovals) {
        return At(source, v,
                  fmt::format("'review.approvals.{}' is {}; at most {} distinct reviewers can be "
                              "required",
                              names[i], *count, kMaxApprovals));
      }
      r.approvals[i] = static_cast<int>(*count);
    }
  }
  if (const YAML::Node e = n["expire_after_s"]) {
    std::optional<int64_t> v;
    if (e.IsScalar()) v = ParseDigits(e.Scalar());
    if (!v || *v > kMaxReviewExpiryS) {
      return At(source, e,
                fmt::format("'review.expire_after_s' must be a whole number of seconds from 0 "
                            "(never) to {} (30 days), such as 86400",
                            kMaxReviewExpiryS));
    }
    r.expire_after_s = *v;
  }
  return r;
}

Result<PolicySpec> ParseTree(const YAML::Node& root, const std::string& source) {
  PolicySpec spec;
  if (root.IsNull()) return spec;  // an empty file: no rules, every command denied
  if (!root.IsMap()) {
    return At(source, root,
              "a command policy must be a mapping with rules (see policies/commands.yaml)");
  }
  SBX_TRY(CheckKeys(root,
                    {"version", "shell", "protections", "rules", "rule_sets", "sandboxes", "review"},
                    source, "at the top level"));
  if (const YAML::Node v = root["version"]) {
    if (!v.IsScalar() || v.Scalar() != "1") {
      return At(source, v, "'version' must be 1, the only policy format this sandboxd reads");
    }
  }
  if (const YAML::Node shell = root["shell"]) {
    auto mode = ParseShell(shell, source);
    if (!mode.ok()) return std::move(mode).error();
    spec.shell = *mode;
  }
  if (const YAML::Node p = root["protections"]) {
    if (!p.IsMap()) {
      return At(source, p, "'protections' must be a mapping such as {destructive: on}");
    }
    SBX_TRY(CheckKeys(p, {"destructive"}, source, "in protections"));
    if (const YAML::Node d = p["destructive"]) {
      bool on = true;
      if (!d.IsScalar() || !YAML::convert<bool>::decode(d, on)) {
        return At(source, d, "'protections.destructive' must be on or off");
      }
      spec.destructive_protection = on;
    }
  }
  if (const YAML::Node r = root["review"]) {
    auto parsed = ParseReview(r, source);
    if (!parsed.ok()) return std::move(parsed).error();
    spec.review = *parsed;
  }
  if (const YAML::Node rules = root["rules"]) {
    auto parsed = ParseRules(rules, source, "at the top level");
    if (!parsed.ok()) return std::move(parsed).error();
    spec.rules = std::move(*parsed);
  }
  if (const YAML::Node sets = root["rule_sets"]) {
    auto parsed = ParseRuleSets(sets, source);
    if (!parsed.ok()) return std::move(parsed).error();
    spec.rule_sets = std::move(*parsed);
  }
  // Iterated rather than looked up, so errors can name the key's own line.
  for (const auto& entry : root) {
    if (entry.first.Scalar() != "sandboxes") continue;
    auto parsed = ParseSandboxes(entry.first, entry.second, source, "");
    if (!parsed.ok()) return std::move(parsed).error();
    spec.sandboxes = std::move(*parsed);
  }
  return spec;
}

}  // namespace

Result<PolicySpec> ParsePolicyYaml(std::string_view text, const std::string& source) {
  if (text.size() > kMaxPolicyBytes) {
    return At(source, 0,
              fmt::format("{} bytes, more than the {} a policy file may hold; split the rules "
                          "into rule sets or use broader patterns",
                          text.size(), kMaxPolicyBytes));
  }
  auto doc = LoadOneDocument(text, source, "a policy file");
  if (!doc.ok()) return std::move(doc).error();
  if (!doc->IsDefined() || doc->IsNull()) return PolicySpec{};
  try {
    return ParseTree(*doc, source);
  } catch (const YAML::Exception& e) {
    return At(source, e.mark.line >= 0 ? e.mark.line + 1 : 0,
              fmt::format("cannot be read: {} (column {})", e.msg, e.mark.column + 1));
  } catch (const std::exception& e) {
    return At(source, 0, fmt::format("cannot be read as YAML: {}", e.what()));
  }
}

}  // namespace sbx::policy::internal
