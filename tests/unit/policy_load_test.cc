#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <type_traits>

#include "supervisor/policy/command_policy.h"

namespace sbx::policy {
namespace {

static_assert(std::is_const_v<std::shared_ptr<const CommandPolicy>::element_type>,
              "a loaded policy is immutable, so a reload can swap it atomically");

std::string LoadError(std::string_view yaml) {
  auto p = CommandPolicy::LoadText(yaml, "test.yaml");
  EXPECT_FALSE(p.ok()) << "loaded:\n" << yaml;
  if (p.ok()) return "";
  EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument);
  return p.error().message;
}

// The error starts with "test.yaml:<line>:" and contains `what`.
void ExpectError(std::string_view yaml, int line, std::string_view what) {
  const std::string e = LoadError(yaml);
  const std::string where = "test.yaml:" + std::to_string(line) + ":";
  EXPECT_TRUE(e.starts_with(where)) << "want " << where << " in: " << e;
  EXPECT_NE(e.find(what), std::string::npos) << "want '" << what << "' in: " << e;
}

TEST(PolicyLoad, BrokenYamlNamesTheLine) {
  ExpectError("rules:\n  \"git *\": allow\n  - oops\n", 3, "not valid YAML");
  ExpectError("rules:\n  \"a\": allow\n  \"b\": [deny\n", 4, "not valid YAML");
  // An unquoted * is a YAML alias, not a pattern.
  ExpectError("rules:\n  *: deny\n", 2, "must be quoted");
}

TEST(PolicyLoad, UnknownKeysAreRefused) {
  ExpectError("version: 1\nrulez:\n  \"*\": deny\n", 2, "unknown key 'rulez' at the top level");
  ExpectError("protections:\n  network: off\n", 2, "unknown key 'network' in protections");
  ExpectError(R"(rule_sets:
  ci:
    select: {api_keys: [ci]}
    rule:
      "*": allow
)",
              4, "unknown key 'rule' in rule set 'ci'");
  ExpectError(R"(rule_sets:
  ci:
    select: {api_key: [ci]}
)",
              3, "unknown key 'api_key'");
}

TEST(PolicyLoad, TheReviewSectionSaysHowManyReviewersAndUntilWhen) {
  auto p = CommandPolicy::LoadText(
      "review:\n  approvals: {high: 2, medium: 1}\n  expire_after_s: 86400\n", "test.yaml");
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ((*p)->review().ApprovalsFor(Risk::kLow), 1);
  EXPECT_EQ((*p)->review().ApprovalsFor(Risk::kMedium), 1);
  EXPECT_EQ((*p)->review().ApprovalsFor(Risk::kHigh), 2);
  EXPECT_EQ((*p)->review().expire_after_s, 86400);
  auto none = CommandPolicy::LoadText("rules: {}\n", "test.yaml");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ((*none)->review().ApprovalsFor(Risk::kHigh), 1);
  EXPECT_EQ((*none)->review().expire_after_s, 0);

  ExpectError("review:\n  approvals: {high: 0}\n", 2, "review.approvals.high");
  ExpectError("review:\n  approvals: {high: 6}\n", 2, "at most 5 distinct reviewers");
  ExpectError("review:\n  approvals: {critical: 2}\n", 2, "unknown key 'critical'");
  ExpectError("review:\n  approvals: 2\n", 2, "must map a risk");
  ExpectError("review:\n  expire_after_s: -1\n", 2, "review.expire_after_s");
  ExpectError("review:\n  expire_after_s: 9999999999\n", 2, "30 days");
  ExpectError("review:\n  expires: 10\n", 2, "unknown key 'expires' in review");
  ExpectError("review: yes\n", 1, "'review' must be a mapping");
}

TEST(PolicyLoad, UnknownActionsAreRefused) {
  ExpectError("rules:\n  \"*\": deny\n  \"git *\": ask\n", 3,
              "rule \"git *\": unknown action 'ask'; use allow, review or deny");
  ExpectError("rules:\n  \"git *\": [allow]\n", 2, "must be allow, review or deny");
  ExpectError("rules:\n  \"git *\":\n", 2, "allow, review or deny");
}

TEST(PolicyLoad, InvalidGlobsNameFileAndLine) {
  ExpectError("rules:\n  \"*\": deny\n  \"rm [abc *\": allow\n", 3, "unclosed '['");
  ExpectError("rules:\n  \"x[[:digit:]]\": allow\n", 2, "[:alpha:]");
  ExpectError("rule_sets:\n  a:\n    select: {api_keys: [k], labels: {x: y}}\n    rules:\n      \"\\\\\": allow\n",
              5, "trailing");
}

TEST(PolicyLoad, WrongTypesAreRefused) {
  ExpectError("- a\n- b\n", 1, "must be a mapping");
  ExpectError("rules:\n  - \"git *\": allow\n", 2, "mapping of pattern: action");
  ExpectError("rules: allow\n", 1, "mapping of pattern: action");
  ExpectError("shell: maybe\n", 1, "'shell' must be allow or deny");
  ExpectError("shell: [allow]\n", 1, "'shell' must be allow or deny");
  ExpectError("protections: on\n", 1, "'protections' must be a mapping");
  ExpectError("protections:\n  destructive: sometimes\n", 2, "must be on or off");
  ExpectError("version: 2\n", 1, "'version' must be 1");
  ExpectError("rules:\n  ? [a, b]\n  : allow\n", 2, "pattern must be a string");
  ExpectError("rule_sets: [a]\n", 1, "'rule_sets' must be a mapping");
  ExpectError("rule_sets:\n  ci: allow\n", 2, "must be a mapping with select and rules");
  ExpectError("rule_sets:\n  ci:\n    rules: {}\n", 2, "has no 'select'");
  ExpectError("rule_sets:\n  ci:\n    select: {}\n", 3, "needs api_keys or labels");
  ExpectError("rule_sets:\n  ci:\n    select: {api_keys: ci}\n", 3, "non-empty list");
  ExpectError("rule_sets:\n  ci:\n    select: {api_keys: []}\n", 3, "non-empty list");
  ExpectError("rule_sets:\n  ci:\n    select: {labels: [a]}\n", 3, "mapping of label: value");
  ExpectError("rule_sets:\n  ci:\n    select: {labels: {a: [b]}}\n", 3, "plain key: value");
  // Labels are the submitter's to choose: they may narrow a key's rule set, never select one.
  ExpectError("rule_sets:\n  ci:\n    select: {labels: {team: infra}}\n    rules: {\"*\": allow}\n",
              3, "any submitter can set labels");
  ExpectError("rule_sets:\n  ci:\n    select: {api_keys: [x]}\n    inherit: perhaps\n", 4,
              "'inherit' must be true or false");
  ExpectError("rule_sets:\n  \"bad name\":\n    select: {api_keys: [x]}\n", 2, "a rule set's name");
}

TEST(PolicyLoad, AmbiguousDefinitionsAreRefused) {
  ExpectError("rules:\n  \"git *\": allow\n  \"ls\": allow\n  \"git *\": deny\n", 4,
              "listed twice (also on line 2)");
  ExpectError("rules:\n  \" git *\": allow\n", 2, "never match");
  ExpectError("rules:\n  \"\": allow\n", 2, "empty pattern");
  ExpectError(R"(rule_sets:
  ci:
    select: {api_keys: [a]}
  ci:
    select: {api_keys: [b]}
)",
              4, "defined twice");
  const std::string e = LoadError("rules: {}\n---\nrules: {}\n");
  EXPECT_NE(e.find("test.yaml:2: holds more than one YAML document"), std::string::npos) << e;
  // A lone ',' made yaml-cpp's LoadAll hand out empty documents without end (found by fuzzing).
  const std::string comma = LoadError(",\n");
  EXPECT_NE(comma.find("more than one YAML document"), std::string::npos) << comma;
}

TEST(PolicyLoad, AnErrorAfterValidRulesLoadsNothing) {
  auto p = CommandPolicy::LoadText("rules:\n  \"*\": allow\n  \"ls\": allow\nshell: sometimes\n",
                                   "test.yaml");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message.find("test.yaml:4:"), std::string::npos) << p.error().message;
}

TEST(PolicyLoad, HugeTextIsRefused) {
  std::string text = "rules:\n";
  while (text.size() <= (1 << 20))
    text += "  \"echo " + std::to_string(text.size()) + "\": allow\n";
  auto p = CommandPolicy::LoadText(text, "big.yaml");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message.find("big.yaml:"), std::string::npos) << p.error().message;
  EXPECT_NE(p.error().message.find("bytes"), std::string::npos) << p.error().message;
}

TEST(PolicyLoad, AcceptsTheDocumentedShape) {
  auto p = CommandPolicy::LoadText(R"(
version: 1
shell: allow
protections: {destructive: on}
rules:
  "*": review
  "git *": allow
rule_sets:
  ci:
    select:
      api_keys: [ci-bot]
      labels: {team: infra}
    inherit: false
    shell: deny
    rules:
      "make *": allow
)",
                                   "test.yaml");
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ((*p)->shell(), ShellMode::kAllow);
  EXPECT_TRUE((*p)->destructive_protection());
  EXPECT_EQ((*p)->source(), "test.yaml");
}

class PolicyLoadDir : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sbx-policy-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (const char* f : {"commands.yaml", "other.yaml"}) ::unlink((dir_ + "/" + f).c_str());
    ::rmdir(dir_.c_str());
  }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
  }
  std::string dir_;
};

TEST_F(PolicyLoadDir, ReadsCommandsYamlOnly) {
  Write("commands.yaml", "rules:\n  \"*\": deny\n  \"ls *\": allow\n");
  Write("other.yaml", "this: [is not: a command policy\n");
  auto p = CommandPolicy::LoadDir(dir_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ((*p)->source(), dir_ + "/commands.yaml");
  CommandInput in;
  in.argvs = {{"ls"}};
  Decision d = (*p)->Evaluate(in);
  EXPECT_EQ(d.action, Action::kAllow);
  ASSERT_TRUE(d.rule);
  EXPECT_EQ(d.rule->file, dir_ + "/commands.yaml");
  EXPECT_EQ(d.rule->line, 3);
}

TEST_F(PolicyLoadDir, ErrorsNameThePath) {
  Write("commands.yaml", "rules:\n  \"*\": maybe\n");
  auto p = CommandPolicy::LoadDir(dir_);
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(p.error().message.starts_with(dir_ + "/commands.yaml:2:")) << p.error().message;
}

TEST_F(PolicyLoadDir, MissingFileIsNotFound) {
  auto p = CommandPolicy::LoadDir(dir_);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kNotFound);
  EXPECT_NE(p.error().message.find("commands.yaml"), std::string::npos) << p.error().message;
}

TEST_F(PolicyLoadDir, HugeFileIsRefused) {
  Write("commands.yaml", "# " + std::string((1 << 20) + 10, 'x') + "\n");
  auto p = CommandPolicy::LoadDir(dir_);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(p.error().message.find("more than 1048576 bytes"), std::string::npos)
      << p.error().message;
}

}  // namespace
}  // namespace sbx::policy
