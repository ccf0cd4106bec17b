// ParsePlannerAnswer: an external planner's JSON, validated like any client input.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "supervisor/plan/planner.h"

namespace sbx::supervisor::plan {
namespace {

using nlohmann::json;

json Step(std::string name, json argv, std::string why = "because") {
  return {{"name", std::move(name)}, {"argv", std::move(argv)}, {"why", std::move(why)}};
}

std::string Answer(json steps) { return json{{"steps", std::move(steps)}}.dump(); }

// The error message for an answer that must be refused.
std::string Refused(std::string_view text) {
  auto r = ParsePlannerAnswer(text);
  EXPECT_FALSE(r.ok()) << text.substr(0, 200) << " was accepted";
  if (r.ok()) return "";
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << r.error().message;
  return r.error().message;
}

TEST(PlanAnswer, AcceptsAWellFormedAnswer) {
  auto r = ParsePlannerAnswer(R"({"steps": [
      {"name": "deps", "argv": ["npm", "ci"], "why": "install the locked dependencies"},
      {"name": "unit-tests.v2", "argv": ["npm", "test", "--", "--grep", "数据库"]},
      {"name": "0_lint", "argv": ["npx", "eslint", "."], "why": ""}]})");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0], (PlannedStep{"deps", {"npm", "ci"}, "install the locked dependencies"}));
  EXPECT_EQ((*r)[1].argv.back(), "数据库");
  EXPECT_EQ((*r)[1].why, "");
  EXPECT_EQ((*r)[2].name, "0_lint");
}

TEST(PlanAnswer, RefusesGarbage) {
  EXPECT_NE(Refused("").find("not valid JSON"), std::string::npos);
  EXPECT_NE(Refused("run npm test please").find("not valid JSON"), std::string::npos);
  EXPECT_NE(Refused("{\"steps\": [").find("not valid JSON"), std::string::npos);
  EXPECT_NE(Refused("\xff\xfe{}").find("not valid UTF-8"), std::string::npos);
  EXPECT_NE(Refused("[]").find("not a JSON object"), std::string::npos);
  EXPECT_NE(Refused("\"steps\"").find("not a JSON object"), std::string::npos);
  EXPECT_NE(Refused("{}").find("steps: missing"), std::string::npos);
  EXPECT_NE(Refused(std::string(300, '[') + std::string(300, ']')).find("nested deeper"),
            std::string::npos);
  // Two documents, or trailing garbage.
  EXPECT_NE(Refused(Answer({Step("a", {"x"})}) + " {}").find("not valid JSON"), std::string::npos);
}

TEST(PlanAnswer, RefusesWrongTypes) {
  EXPECT_EQ(Refused(R"({"steps": {}})"), "steps: not an array");
  EXPECT_EQ(Refused(R"({"steps": ["npm test"]})"), "steps[0]: not an object");
  EXPECT_EQ(Refused(R"({"steps": [{"name": 1, "argv": ["x"]}]})"), "steps[0].name: not a string");
  EXPECT_EQ(Refused(R"({"steps": [{"name": "a", "argv": "npm test"}]})"),
            "steps[0].argv: not an array of strings");
  EXPECT_EQ(Refused(R"({"steps": [{"name": "a", "argv": ["npm", 1]}]})"),
            "steps[0].argv[1]: not a string");
  EXPECT_EQ(Refused(R"({"steps": [{"name": "a", "argv": ["x"], "why": null}]})"),
            "steps[0].why: not a string");
  EXPECT_EQ(Refused(R"({"steps": [{"argv": ["x"]}]})"), "steps[0].name: missing");
  EXPECT_EQ(Refused(R"({"steps": [{"name": "a"}]})"), "steps[0].argv: missing");
}

TEST(PlanAnswer, RefusesExtraFields) {
  EXPECT_NE(Refused(R"({"steps": [{"name": "a", "argv": ["x"]}], "shell": true})")
                .find("answer.shell: unknown field"),
            std::string::npos);
  EXPECT_NE(Refused(R"({"steps": [{"name": "a", "argv": ["x"], "env": {"LD_PRELOAD": "x"}}]})")
                .find("steps[0].env: unknown field"),
            std::string::npos);
}

TEST(PlanAnswer, RefusesDuplicateKeys) {
  EXPECT_NE(Refused(R"({"steps": [{"name": "a", "argv": ["x"]}], "steps": []})")
                .find("the key \"steps\" appears twice"),
            std::string::npos);
  std::string m = Refused(
      R"({"steps": [{"name": "a", "argv": ["ls"]}, {"name": "b", "argv": ["ls"], "argv": ["rm", "-rf", "/"]}]})");
  EXPECT_NE(m.find("steps[1]: the key \"argv\" appears twice"), std::string::npos) << m;
}

TEST(PlanAnswer, RefusesStepCounts) {
  EXPECT_NE(Refused(Answer(json::array())).find("0 steps; 1 to 32"), std::string::npos);
  json steps = json::array();
  for (int i = 0; i < 33; ++i) steps.push_back(Step(fmt::format("s{}", i), {"true"}));
  EXPECT_NE(Refused(Answer(steps)).find("33 steps; 1 to 32"), std::string::npos);
  steps.erase(steps.begin());
  EXPECT_TRUE(ParsePlannerAnswer(Answer(steps)).ok());
}

TEST(PlanAnswer, RefusesBadNames) {
  for (std::string name : std::vector<std::string>{"", "Upper", "-lead", ".lead", "has space",
                                                   "a/b", "ünicode", std::string(65, 'a')}) {
    std::string m = Refused(Answer({Step(name, {"true"})}));
    EXPECT_NE(m.find("steps[0].name:"), std::string::npos) << name << ": " << m;
  }
  EXPECT_TRUE(ParsePlannerAnswer(Answer({Step(std::string(64, 'a'), {"true"})})).ok());
  EXPECT_EQ(Refused(Answer({Step("a", {"x"}), Step("b", {"y"}), Step("a", {"z"})})),
            "steps[2].name: \"a\" is already the name of steps[0]");
}

TEST(PlanAnswer, RefusesBadArgv) {
  EXPECT_EQ(Refused(Answer({Step("a", json::array())})),
            "steps[0].argv: 0 entries; 1 to 256 are allowed");
  json many = json::array();
  for (int i = 0; i < 257; ++i) many.push_back("x");
  EXPECT_EQ(Refused(Answer({Step("a", many)})), "steps[0].argv: 257 entries; 1 to 256 are allowed");
  many.erase(many.begin());
  EXPECT_TRUE(ParsePlannerAnswer(Answer({Step("a", many)})).ok());
  EXPECT_EQ(Refused(Answer({Step("a", {"echo", ""})})), "steps[0].argv[1]: empty");
  EXPECT_EQ(Refused(Answer({Step("a", {"echo", std::string(4097, 'x')})})),
            "steps[0].argv[1]: 4097 bytes, more than 4096");
  EXPECT_TRUE(ParsePlannerAnswer(Answer({Step("a", {"echo", std::string(4096, 'x')})})).ok());
  // A NUL, written as JSON's \u0000 escape.
  EXPECT_EQ(Refused(R"({"steps": [{"name": "a", "argv": ["cat", "/etc/passwd\u0000.txt"]}]})"),
            "steps[0].argv[1]: contains NUL");
  // A lone surrogate escape is not a character.
  EXPECT_NE(Refused(R"({"steps": [{"name": "a", "argv": ["\ud800"]}]})").find("not valid JSON"),
            std::string::npos);
}

TEST(PlanAnswer, RefusesLongWhyAndLongAnswer) {
  EXPECT_EQ(Refused(Answer({Step("a", {"x"}, std::string(1025, 'w'))})),
            "steps[0].why: 1025 bytes, more than 1024");
  EXPECT_TRUE(ParsePlannerAnswer(Answer({Step("a", {"x"}, std::string(1024, 'w'))})).ok());
  std::string padded = Answer({Step("a", {"x"})});
  padded.insert(1, std::string(kMaxAnswerBytes, ' '));
  EXPECT_NE(Refused(padded).find("more than 262144"), std::string::npos);
}

}  // namespace
}  // namespace sbx::supervisor::plan
