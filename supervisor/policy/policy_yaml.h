// The policy file as plain data, before its globs are compiled. Internal to the policy library.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "supervisor/policy/command_policy.h"

namespace sbx::policy::internal {

inline constexpr size_t kMaxPolicyBytes = 1 << 20;

struct RuleSpec {
  std::string pattern;
  Action action = Action::kDeny;
  int line = 0;  // 1-based; 0 when unknown
};

// A `sandboxes:` section; bounds not given are unset.
struct SandboxesSpec {
  int line = 0;  // the `sandboxes:` key
  bool has_allow_within = false;
  std::optional<double> cpus;
  std::optional<int64_t> memory_bytes;
  std::optional<int64_t> pids;
  std::optional<int64_t> timeout_s;
  std::optional<int64_t> idle_timeout_s;
  std::optional<std::vector<std::string>> workspace_modes;  // "" for none
  std::optional<std::vector<std::string>> backends;
  std::vector<RuleSpec> images;  // pattern and line; action unused
  Action otherwise = Action::kReview;
};

struct RuleSetSpec {
  std::string name;
  int line = 0;
  std::vector<std::string> api_keys;
  std::map<std::string, std::string> labels;
  bool inherit = true;
  std::optional<ShellMode> shell;
  std::vector<RuleSpec> rules;
  std::optional<SandboxesSpec> sandboxes;
};

struct PolicySpec {
  ShellMode shell = ShellMode::kDeny;
  bool destructive_protection = true;
  ReviewRules review;
  std::vector<RuleSpec> rules;
  std::vector<RuleSetSpec> rule_sets;
  std::optional<SandboxesSpec> sandboxes;
};

// Parses and checks the document's shape (keys, types, action names, select criteria, sandbox
// bounds); globs
// are compiled by the caller. Errors read "source:line: what; what to do". Never throws: this
// is the one file that calls yaml-cpp, and its exceptions stop here.
Result<PolicySpec> ParsePolicyYaml(std::string_view text, const std::string& source);

}  // namespace sbx::policy::internal
