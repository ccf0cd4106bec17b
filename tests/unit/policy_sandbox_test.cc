// The command policy's sandboxes section: which long-lived sandboxes start without a reviewer.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "supervisor/policy/command_policy.h"
#include "supervisor/policy/decision_json.h"

namespace sbx::policy {
namespace {

std::shared_ptr<const CommandPolicy> Load(std::string_view yaml) {
  auto p = CommandPolicy::LoadText(yaml, "test.yaml");
  EXPECT_TRUE(p.ok()) << p.error().ToString();
  return p.ok() ? *p : nullptr;
}

std::string Dump(const Decision& d) { return ToJson(d).dump(); }

std::vector<std::string> Messages(const Decision& d, ReasonCode code) {
  std::vector<std::string> out;
  for (const Reason& r : d.reasons) {
    if (r.code == code) out.push_back(r.message);
  }
  return out;
}

// The service's default shape (supervisor/review/limits.h; the lifetime and idle timeout of the
// config's sandboxes: section, supervisor/service/config.h), no workspace, the native backend.
SandboxShape DefaultShape() {
  SandboxShape s;
  s.cpus = 1;
  s.memory_bytes = 512ll << 20;
  s.pids = 256;
  s.timeout_s = 3600;       // sandboxes.default_timeout_s
  s.idle_timeout_s = 600;   // sandboxes.default_idle_timeout_s
  s.network = "none";
  s.backend = "native";
  return s;
}

// Line 2 is the section, line 3 allow_within.
constexpr char kBounded[] = R"(rules: {"*": review}
sandboxes:
  allow_within:
    cpus: 1
    memory: 1GiB
    pids: 256
    timeout_s: 3600
    idle_timeout_s: 3600
    workspace: [none, ro, cow]
    backends: [native, docker]
    images: ["busybox*", "alpine:3.*"]
)";

TEST(PolicySandbox, WithinEveryBoundIsAllowed) {
  auto p = Load(kBounded);
  ASSERT_TRUE(p);
  for (const char* mode : {"", "ro", "cow"}) {
    SandboxShape s = DefaultShape();
    s.workspace_mode = mode;
    Decision d = p->EvaluateSandbox(s);
    EXPECT_EQ(d.action, Action::kAllow) << mode << ": " << Dump(d);
    EXPECT_EQ(d.risk, Risk::kLow);
    EXPECT_TRUE(d.reasons.empty()) << Dump(d);
    ASSERT_TRUE(d.rule);
    EXPECT_EQ(d.rule->file, "test.yaml");
    EXPECT_EQ(d.rule->line, 2);
    EXPECT_EQ(d.rule->pattern, "sandboxes.allow_within");
    EXPECT_TRUE(d.rule_set.empty());
    EXPECT_FALSE(d.step);
  }
  // Exactly at every bound is within.
  SandboxShape s;
  s.cpus = 1;
  s.memory_bytes = 1ll << 30;
  s.pids = 256;
  s.timeout_s = 3600;
  s.idle_timeout_s = 3600;
  s.network = "none";
  s.backend = "docker";
  s.image = "busybox:1.36";
  Decision d = p->EvaluateSandbox(s);
  EXPECT_EQ(d.action, Action::kAllow) << Dump(d);
  s.image = "alpine:3.20";
  EXPECT_EQ(p->EvaluateSandbox(s).action, Action::kAllow);
}

TEST(PolicySandbox, EachBoundExceededIsReviewedAndNamed) {
  auto p = Load(kBounded);
  ASSERT_TRUE(p);
  struct Case {
    void (*change)(SandboxShape&);
    const char* reason;
  };
  const Case cases[] = {
      {[](SandboxShape& s) { s.cpus = 2; }, "cpus 2 above allow_within.cpus 1"},
      {[](SandboxShape& s) { s.cpus = 1.5; }, "cpus 1.5 above allow_within.cpus 1"},
      {[](SandboxShape& s) { s.memory_bytes = 2ll << 30; },
       "memory 2 GiB above allow_within.memory 1 GiB"},
      {[](SandboxShape& s) { s.memory_bytes = (1ll << 30) + (1 << 20); },
       "memory 1025 MiB above allow_within.memory 1 GiB"},
      {[](SandboxShape& s) { s.pids = 257; }, "pids 257 above allow_within.pids 256"},
      {[](SandboxShape& s) { s.timeout_s = 7200; },
       "timeout_s 7200 above allow_within.timeout_s 3600"},
      {[](SandboxShape& s) { s.idle_timeout_s = 3601; },
       "idle_timeout_s 3601 above allow_within.idle_timeout_s 3600"},
      // 0 means no limit, which no bound admits.
      {[](SandboxShape& s) { s.memory_bytes = 0; },
       "memory unlimited above allow_within.memory 1 GiB"},
      {[](SandboxShape& s) { s.idle_timeout_s = 0; },
       "idle_timeout_s none above allow_within.idle_timeout_s 3600"},
      {[](SandboxShape& s) { s.workspace_mode = "rw"; },
       "workspace rw not in allow_within.workspace [none, ro, cow]"},
      {[](SandboxShape& s) { s.backend = "firecracker"; },
       "backend firecracker not in allow_within.backends [native, docker]"},
      {[](SandboxShape& s) {
         s.backend = "docker";
         s.image = "ubuntu:24.04";
       },
       "image ubuntu:24.04 matches none of allow_within.images [busybox*, alpine:3.*]"},
      {[](SandboxShape& s) { s.network = "host"; }, "network host"},
  };
  for (const Case& c : cases) {
    SandboxShape s = DefaultShape();
    c.change(s);
    Decision d = p->EvaluateSandbox(s);
    EXPECT_EQ(d.action, Action::kReview) << c.reason << ": " << Dump(d);
    EXPECT_EQ(d.risk, Risk::kMedium);
    const auto messages = Messages(d, ReasonCode::kSandboxBound);
    ASSERT_EQ(messages.size(), 1u) << Dump(d);
    EXPECT_TRUE(messages[0].starts_with(c.reason)) << messages[0];
    ASSERT_TRUE(d.rule);
    EXPECT_EQ(d.rule->line, 2);
    EXPECT_EQ(d.rule->pattern, "sandboxes.otherwise");
  }
}

TEST(PolicySandbox, EveryBoundExceededIsNamed) {
  auto p = Load(kBounded);
  ASSERT_TRUE(p);
  SandboxShape s = DefaultShape();
  s.cpus = 4;
  s.memory_bytes = 8ll << 30;
  s.pids = 4096;
  s.workspace_mode = "rw";
  Decision d = p->EvaluateSandbox(s);
  EXPECT_EQ(d.action, Action::kReview);
  EXPECT_EQ(Messages(d, ReasonCode::kSandboxBound),
            (std::vector<std::string>{
                "cpus 4 above allow_within.cpus 1", "memory 8 GiB above allow_within.memory 1 GiB",
                "pids 4096 above allow_within.pids 256",
                "workspace rw not in allow_within.workspace [none, ro, cow]"}));
  // The audit line describes the shape.
  EXPECT_EQ(d.command,
            "sandbox native cpus=4 memory=8 GiB pids=4096 timeout_s=3600 idle_timeout_s=600 "
            "network=none workspace=rw");
}

TEST(PolicySandbox, BoundsLeftOutDoNotLimit) {
  auto p = Load("sandboxes:\n  allow_within:\n    memory: 512MiB\n");
  ASSERT_TRUE(p);
  SandboxShape s = DefaultShape();
  s.cpus = 16;
  s.pids = 100000;
  s.workspace_mode = "rw";
  s.backend = "docker";
  s.image = "anything:latest";
  EXPECT_EQ(p->EvaluateSandbox(s).action, Action::kAllow);
  s.memory_bytes = 513ll << 20;
  EXPECT_EQ(p->EvaluateSandbox(s).action, Action::kReview);
}

TEST(PolicySandbox, OtherwiseDenyRefusesWithHighRisk) {
  auto p = Load(R"(
sandboxes:
  allow_within: {cpus: 1, memory: 536870912}
  otherwise: deny
)");
  ASSERT_TRUE(p);
  SandboxShape s = DefaultShape();
  EXPECT_EQ(p->EvaluateSandbox(s).action, Action::kAllow);
  s.memory_bytes = 1ll << 30;
  Decision d = p->EvaluateSandbox(s);
  EXPECT_EQ(d.action, Action::kDeny) << Dump(d);
  EXPECT_EQ(d.risk, Risk::kHigh);
  EXPECT_EQ(Messages(d, ReasonCode::kSandboxBound),
            std::vector<std::string>{"memory 1 GiB above allow_within.memory 512 MiB"});
  ASSERT_TRUE(d.rule);
  EXPECT_EQ(d.rule->line, 2);
  EXPECT_EQ(d.rule->pattern, "sandboxes.otherwise");
}

TEST(PolicySandbox, WithoutASectionEverySandboxIsReviewed) {
  auto p = Load("rules:\n  \"*\": allow\n");
  ASSERT_TRUE(p);
  Decision d = p->EvaluateSandbox(DefaultShape());
  EXPECT_EQ(d.action, Action::kReview) << Dump(d);
  EXPECT_EQ(d.risk, Risk::kMedium);
  EXPECT_FALSE(d.rule);
  const auto messages = Messages(d, ReasonCode::kNoSandboxRule);
  ASSERT_EQ(messages.size(), 1u) << Dump(d);
  EXPECT_NE(messages[0].find("no sandboxes section"), std::string::npos) << messages[0];

  // An empty policy too.
  auto empty = Load("");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->EvaluateSandbox(DefaultShape()).action, Action::kReview);

  // A section without allow_within approves nothing.
  auto only = Load("sandboxes:\n  otherwise: deny\n");
  ASSERT_TRUE(only);
  d = only->EvaluateSandbox(DefaultShape());
  EXPECT_EQ(d.action, Action::kDeny) << Dump(d);
  EXPECT_EQ(Messages(d, ReasonCode::kNoSandboxRule).size(), 1u) << Dump(d);
}

constexpr char kWithSets[] = R"(sandboxes:
  allow_within: {cpus: 1, memory: 512MiB}
rule_sets:
  ci:
    select: {api_keys: [ci-bot]}
    sandboxes:
      allow_within: {cpus: 4, memory: 8GiB}
      otherwise: deny
  infra:
    select: {api_keys: [ops], labels: {team: infra}}
    rules: {"make *": allow}
)";

TEST(PolicySandbox, ARuleSetsSectionReplacesTheTopLevelOne) {
  auto p = Load(kWithSets);
  ASSERT_TRUE(p);
  SandboxShape s = DefaultShape();
  s.cpus = 4;
  s.memory_bytes = 8ll << 30;

  Decision d = p->EvaluateSandbox(s);  // no key: the top-level section
  EXPECT_EQ(d.action, Action::kReview) << Dump(d);
  EXPECT_TRUE(d.rule_set.empty());

  s.api_key_name = "ci-bot";
  d = p->EvaluateSandbox(s);
  EXPECT_EQ(d.action, Action::kAllow) << Dump(d);
  EXPECT_EQ(d.rule_set, "ci");
  ASSERT_TRUE(d.rule);
  EXPECT_EQ(d.rule->line, 6);

  s.cpus = 8;
  d = p->EvaluateSandbox(s);
  EXPECT_EQ(d.action, Action::kDeny) << Dump(d);  // the set's otherwise
  EXPECT_EQ(Messages(d, ReasonCode::kSandboxBound),
            std::vector<std::string>{"cpus 8 above allow_within.cpus 4"});

  // A selected set without its own section uses the top-level one.
  s = DefaultShape();
  s.api_key_name = "ops";
  s.labels = {{"team", "infra"}};
  d = p->EvaluateSandbox(s);
  EXPECT_EQ(d.action, Action::kAllow) << Dump(d);
  EXPECT_EQ(d.rule_set, "infra");
  EXPECT_EQ(d.rule->line, 1);
  s.pids = 100000;  // no pids bound at the top level
  EXPECT_EQ(p->EvaluateSandbox(s).action, Action::kAllow);
  s.memory_bytes = 1ll << 30;
  EXPECT_EQ(p->EvaluateSandbox(s).action, Action::kReview);
}

TEST(PolicySandbox, DecisionJsonEncodesIt) {
  auto p = Load(kBounded);
  ASSERT_TRUE(p);
  SandboxShape s = DefaultShape();
  s.memory_bytes = 2ll << 30;
  const nlohmann::json j = ToJson(p->EvaluateSandbox(s));
  EXPECT_EQ(j["decision"], "review");
  EXPECT_EQ(j["risk"], "medium");
  ASSERT_EQ(j["reasons"].size(), 1u);
  EXPECT_EQ(j["reasons"][0]["code"], "sandbox_bound");
  EXPECT_EQ(j["reasons"][0]["message"], "memory 2 GiB above allow_within.memory 1 GiB");
  EXPECT_EQ(j["rule"]["file"], "test.yaml");
  EXPECT_EQ(j["rule"]["line"], 2);
  EXPECT_EQ(j["rule"]["pattern"], "sandboxes.otherwise");
  EXPECT_TRUE(j["rule_set"].is_null());
  EXPECT_TRUE(j["step"].is_null());
  EXPECT_TRUE(j["command"].get<std::string>().starts_with("sandbox native ")) << j.dump();

  auto none = Load("rules: {}\n");
  ASSERT_TRUE(none);
  const nlohmann::json k = ToJson(none->EvaluateSandbox(DefaultShape()));
  EXPECT_EQ(k["reasons"][0]["code"], "no_sandbox_rule");
  EXPECT_TRUE(k["rule"].is_null());
}

TEST(PolicySandbox, CommandsAreJudgedAsBefore) {
  auto p = Load(kWithSets);
  ASSERT_TRUE(p);
  CommandInput in;
  in.argvs = {{"make", "all"}};
  in.api_key_name = "ops";
  in.labels = {{"team", "infra"}};
  Decision d = p->Evaluate(in);
  EXPECT_EQ(d.action, Action::kAllow) << Dump(d);
  EXPECT_EQ(d.rule_set, "infra");
}

TEST(PolicySandbox, TheShippedDefaultApprovesTheDefaultShape) {
  auto p = CommandPolicy::Builtin();
  Decision d = p->EvaluateSandbox(DefaultShape());
  EXPECT_EQ(d.action, Action::kAllow) << Dump(d);
  ASSERT_TRUE(d.rule);
  EXPECT_EQ(d.rule->file, "builtin:commands.yaml");
  for (const char* mode : {"ro", "cow"}) {
    SandboxShape s = DefaultShape();
    s.workspace_mode = mode;
    EXPECT_EQ(p->EvaluateSandbox(s).action, Action::kAllow) << mode;
  }
  SandboxShape docker = DefaultShape();
  docker.backend = "docker";
  docker.image = "busybox:1.36";
  EXPECT_EQ(p->EvaluateSandbox(docker).action, Action::kAllow);

  // Larger than the defaults, or a writable workspace: a reviewer decides.
  SandboxShape big = DefaultShape();
  big.memory_bytes = 1ll << 30;
  d = p->EvaluateSandbox(big);
  EXPECT_EQ(d.action, Action::kReview) << Dump(d);
  EXPECT_EQ(Messages(d, ReasonCode::kSandboxBound),
            std::vector<std::string>{"memory 1 GiB above allow_within.memory 512 MiB"});
  SandboxShape rw = DefaultShape();
  rw.workspace_mode = "rw";
  EXPECT_EQ(p->EvaluateSandbox(rw).action, Action::kReview);
  SandboxShape longer = DefaultShape();
  longer.timeout_s = 3601;
  EXPECT_EQ(p->EvaluateSandbox(longer).action, Action::kReview);
}

// The error starts with "test.yaml:<line>:" and contains `what`.
void ExpectError(std::string_view yaml, int line, std::string_view what) {
  auto p = CommandPolicy::LoadText(yaml, "test.yaml");
  ASSERT_FALSE(p.ok()) << "loaded:\n" << yaml;
  EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument);
  const std::string& e = p.error().message;
  const std::string where = "test.yaml:" + std::to_string(line) + ":";
  EXPECT_TRUE(e.starts_with(where)) << "want " << where << " in: " << e;
  EXPECT_NE(e.find(what), std::string::npos) << "want '" << what << "' in: " << e;
}

TEST(PolicySandbox, BrokenSectionsAreRefusedWithTheLine) {
  // Unknown keys, at each level.
  ExpectError("sandboxes:\n  allow:\n    cpus: 1\n", 2, "unknown key 'allow' in sandboxes");
  ExpectError("sandboxes:\n  allow_within:\n    cpu: 1\n", 3,
              "unknown key 'cpu' in allow_within in sandboxes");
  ExpectError(
      "rule_sets:\n  ci:\n    select: {api_keys: [ci]}\n    sandboxes:\n"
      "      allow_within: {memory: 1GiB, network: none}\n",
      5, "unknown key 'network' in allow_within in the sandboxes of rule set 'ci'");
  // Sizes.
  ExpectError("sandboxes:\n  allow_within:\n    memory: 1GB\n", 3,
              "'allow_within.memory' in sandboxes must be a positive size");
  ExpectError("sandboxes:\n  allow_within:\n    memory: 1.5GiB\n", 3, "KiB, MiB or GiB");
  ExpectError("sandboxes:\n  allow_within:\n    memory: -1GiB\n", 3, "positive size");
  ExpectError("sandboxes:\n  allow_within:\n    memory: 0\n", 3, "positive size");
  ExpectError("sandboxes:\n  allow_within:\n    memory: 99999999999999GiB\n", 3, "positive size");
  ExpectError("sandboxes:\n  allow_within:\n    memory: [1GiB]\n", 3, "positive size");
  // Numbers.
  ExpectError("sandboxes:\n  allow_within:\n    pids: -1\n", 3,
              "'allow_within.pids' in sandboxes must be a positive whole number");
  ExpectError("sandboxes:\n  allow_within:\n    timeout_s: 1.5\n", 3, "positive whole number");
  ExpectError("sandboxes:\n  allow_within:\n    idle_timeout_s: 0\n", 3, "positive whole number");
  ExpectError("sandboxes:\n  allow_within:\n    cpus: -0.5\n", 3,
              "'allow_within.cpus' in sandboxes must be a positive number of CPUs");
  ExpectError("sandboxes:\n  allow_within:\n    cpus: nan\n", 3, "positive number of CPUs");
  ExpectError("sandboxes:\n  allow_within:\n    cpus: 0\n", 3, "positive number of CPUs");
  // Lists.
  ExpectError("sandboxes:\n  allow_within:\n    workspace: [none, rox]\n", 3,
              "'rox' is not one of cow, none, ro, rw");
  ExpectError("sandboxes:\n  allow_within:\n    workspace: ro\n", 3, "non-empty list");
  ExpectError("sandboxes:\n  allow_within:\n    backends: [native, vm]\n", 3,
              "'vm' is not one of docker, native");
  ExpectError("sandboxes:\n  allow_within:\n    images: []\n", 3, "non-empty list of image globs");
  ExpectError("sandboxes:\n  allow_within:\n    images:\n      - \"busybox*\"\n      - \"x[\"\n", 5,
              "image glob \"x[\"");
  // otherwise.
  ExpectError("sandboxes:\n  allow_within: {cpus: 1}\n  otherwise: allow\n", 3,
              "'otherwise' in sandboxes must be review or deny");
  ExpectError("sandboxes:\n  otherwise: maybe\n", 2, "must be review or deny");
  // Shapes.
  ExpectError("rules: {}\nsandboxes: allow\n", 2, "'sandboxes' must be a mapping");
  ExpectError("sandboxes:\n  allow_within: [cpus]\n", 2, "'allow_within' in sandboxes must be");
  ExpectError("rule_sets:\n  ci:\n    select: {api_keys: [ci]}\n    sandboxes: []\n", 4,
              "rule set 'ci': 'sandboxes' must be a mapping");
}

TEST(PolicySandbox, SizesTakeEverySuffix) {
  const struct {
    const char* text;
    int64_t bytes;
  } sizes[] = {{"536870912", 536870912}, {"524288KiB", 512ll << 20}, {"512MiB", 512ll << 20}};
  for (const auto& size : sizes) {
    auto p = Load(std::string("sandboxes:\n  allow_within:\n    memory: ") + size.text + "\n");
    ASSERT_TRUE(p) << size.text;
    SandboxShape s = DefaultShape();
    s.memory_bytes = size.bytes;
    EXPECT_EQ(p->EvaluateSandbox(s).action, Action::kAllow) << size.text;
    s.memory_bytes = size.bytes + 1;
    EXPECT_EQ(p->EvaluateSandbox(s).action, Action::kReview) << size.text;
  }
}

}  // namespace
}  // namespace sbx::policy
