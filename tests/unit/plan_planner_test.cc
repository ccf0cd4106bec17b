// PlanFromIntent over summaries built in the test: the mapping from goals to each kind's steps,
// ordering, de-duplication, declined goals and the errors.
#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <string>
#include <vector>

#include "supervisor/plan/planner.h"

namespace sbx::supervisor::plan {
namespace {

using Argv = std::vector<std::string>;
using Names = std::vector<std::string>;

ProjectSummary Python(std::map<std::string, std::string> tools) {
  ProjectSummary s;
  s.kinds = {"python"};
  s.python = PythonProject{};
  s.python->files = {"pyproject.toml"};
  s.python->tools = std::move(tools);
  return s;
}

ProjectSummary Node(std::vector<std::string> scripts, std::string pm = "npm") {
  ProjectSummary s;
  s.kinds = {"node"};
  s.node = NodeProject{};
  s.node->package_manager = pm;
  s.node->package_manager_source = "default";
  s.node->scripts = std::move(scripts);
  s.node->parsed = true;
  return s;
}

ProjectSummary Make(std::vector<std::string> targets, std::string default_goal = "") {
  ProjectSummary s;
  s.kinds = {"make"};
  s.make = MakeProject{"Makefile", std::move(targets), std::move(default_goal)};
  return s;
}

Plan MustPlan(std::string_view intent, const ProjectSummary& s) {
  auto r = PlanFromIntent(intent, s);
  EXPECT_TRUE(r.ok()) << intent << ": " << r.error().ToString();
  return r.ok() ? std::move(*r) : Plan{};
}

Names NamesOf(const Plan& p) {
  Names out;
  for (const auto& s : p.steps) out.push_back(s.name);
  return out;
}

Error PlanError(std::string_view intent, const ProjectSummary& s) {
  auto r = PlanFromIntent(intent, s);
  EXPECT_FALSE(r.ok()) << intent << " was planned: " << (r.ok() ? r->summary : "");
  return r.ok() ? Error{} : r.error();
}

TEST(PlanPlanner, PythonPrefersPytestOverTox) {
  Plan p = MustPlan("run the tests", Python({{"pytest", "pytest.ini"}, {"tox", "tox.ini [tox]"}}));
  ASSERT_EQ(p.steps.size(), 1u);
  EXPECT_EQ(p.steps[0].name, "python-test");
  EXPECT_EQ(p.steps[0].argv, (Argv{"python3", "-m", "pytest", "-q"}));
  EXPECT_NE(p.steps[0].why.find("pytest.ini"), std::string::npos);
  Plan tox = MustPlan("run the tests", Python({{"tox", "tox.ini [tox]"}}));
  ASSERT_EQ(tox.steps.size(), 1u);
  EXPECT_EQ(tox.steps[0].argv, (Argv{"tox"}));
}

TEST(PlanPlanner, PythonLintPrefersRuff) {
  Plan p = MustPlan("lint", Python({{"ruff", "ruff.toml"}, {"flake8", ".flake8"}}));
  ASSERT_EQ(p.steps.size(), 1u);
  EXPECT_EQ(p.steps[0].argv, (Argv{"ruff", "check", "."}));
  Plan f = MustPlan("lint", Python({{"flake8", ".flake8"}}));
  ASSERT_EQ(f.steps.size(), 1u);
  EXPECT_EQ(f.steps[0].argv, (Argv{"flake8", "."}));
  Plan m = MustPlan("typecheck", Python({{"mypy", "mypy.ini"}}));
  ASSERT_EQ(m.steps.size(), 1u);
  EXPECT_EQ(m.steps[0].argv, (Argv{"mypy", "."}));
}

TEST(PlanPlanner, PythonWithoutToolsSaysWhatItLookedFor) {
  Error e = PlanError("lint and type-check", Python({}));
  EXPECT_EQ(e.code, ErrorCode::kNotFound);
  EXPECT_TRUE(e.message.starts_with("no plan for this intent: ")) << e.message;
  EXPECT_NE(e.message.find("ruff or flake8"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("mypy"), std::string::npos) << e.message;
  EXPECT_EQ(PlanError("build", Python({{"pytest", "x"}})).code, ErrorCode::kNotFound);
}

TEST(PlanPlanner, NodeScripts) {
  ProjectSummary s = Node({"build", "lint", "test", "type-check"}, "yarn");
  Plan p = MustPlan("test, lint, build, typecheck", s);
  EXPECT_EQ(NamesOf(p), (Names{"node-build", "node-test", "node-lint", "node-typecheck"}));
  EXPECT_EQ(p.steps[0].argv, (Argv{"yarn", "run", "build"}));
  EXPECT_EQ(p.steps[1].argv, (Argv{"yarn", "test"}));
  EXPECT_EQ(p.steps[3].argv, (Argv{"yarn", "run", "type-check"}));
  // No build step is added before `npm test`: it builds what it needs.
  EXPECT_EQ(NamesOf(MustPlan("run the tests", s)), (Names{"node-test"}));
}

TEST(PlanPlanner, NodeTypecheckFallsBackToTsc) {
  ProjectSummary s = Node({"test"});
  EXPECT_EQ(PlanError("typecheck", s).code, ErrorCode::kNotFound);
  s.node->tsconfig = true;
  EXPECT_EQ(PlanError("typecheck", s).code, ErrorCode::kNotFound);  // typescript not a dependency
  s.node->typescript = true;
  Plan p = MustPlan("typecheck", s);
  ASSERT_EQ(p.steps.size(), 1u);
  EXPECT_EQ(p.steps[0].argv, (Argv{"npx", "tsc", "--noEmit"}));
}

TEST(PlanPlanner, CMakeBuildBeforeTestsOnce) {
  ProjectSummary s;
  s.kinds = {"cmake"};
  s.cmake = CMakeProject{true, true};
  Plan p = MustPlan("build and test", s);
  EXPECT_EQ(NamesOf(p), (Names{"cmake-configure", "cmake-build", "cmake-test"}));
  // Tests need the build; declining the build leaves nothing to plan.
  Error e = PlanError("don't build, just run the tests", s);
  EXPECT_EQ(e.code, ErrorCode::kNotFound);
  EXPECT_NE(e.message.find("needs a build"), std::string::npos) << e.message;
}

TEST(PlanPlanner, MakeTargetsAndDefaultGoal) {
  EXPECT_EQ(MustPlan("test", Make({"all", "test", "check"})).steps[0].argv, (Argv{"make", "test"}));
  EXPECT_EQ(MustPlan("test", Make({"check"})).steps[0].argv, (Argv{"make", "check"}));
  EXPECT_EQ(MustPlan("build", Make({"build", "all"})).steps[0].argv, (Argv{"make", "build"}));
  EXPECT_EQ(MustPlan("build", Make({"prog", "clean"}, "prog")).steps[0].argv, (Argv{"make"}));
  // A default goal that is not a build, or is not known: no bare `make`.
  EXPECT_EQ(PlanError("build", Make({"help", "clean"}, "help")).code, ErrorCode::kNotFound);
  EXPECT_EQ(PlanError("build", Make({"prog"}, "")).code, ErrorCode::kNotFound);
  EXPECT_EQ(PlanError("lint", Make({"all"})).code, ErrorCode::kNotFound);
  EXPECT_EQ(MustPlan("type-check", Make({"type-check"})).steps[0].argv,
            (Argv{"make", "type-check"}));
}

TEST(PlanPlanner, GoVetServesLintAndTypecheckOnce) {
  ProjectSummary s;
  s.kinds = {"go"};
  s.go = GoProject{"example.com/x"};
  Plan p = MustPlan("lint and typecheck", s);
  ASSERT_EQ(p.steps.size(), 1u);
  EXPECT_EQ(p.steps[0].name, "go-lint");
  EXPECT_EQ(p.steps[0].argv, (Argv{"go", "vet", "./..."}));
  EXPECT_NE(p.summary.find("typecheck: go-lint"), std::string::npos) << p.summary;
}

TEST(PlanPlanner, EveryKindInFixedOrderWithUniqueNames) {
  ProjectSummary s;
  s.kinds = {"python", "node", "cmake", "make", "cargo", "go"};
  s.python = PythonProject{};
  s.python->tools = {{"pytest", "x"}, {"ruff", "x"}, {"mypy", "x"}};
  s.node = Node({"build", "lint", "test", "typecheck"}).node;
  s.cmake = CMakeProject{true, true};
  s.make = MakeProject{"Makefile", {"all", "test", "lint", "typecheck"}, "all"};
  s.cargo = CargoProject{};
  s.go = GoProject{};
  Plan p = MustPlan("build, test, lint and typecheck, and a report", s);
  EXPECT_EQ(
      NamesOf(p),
      (Names{"python-test", "python-lint",    "python-typecheck", "node-build",     "node-test",
             "node-lint",   "node-typecheck", "cmake-configure",  "cmake-build",    "cmake-test",
             "make-build",  "make-test",      "make-lint",        "make-typecheck", "cargo-build",
             "cargo-test",  "cargo-lint",     "cargo-typecheck",  "go-build",       "go-test",
             "go-lint"}));
  std::set<std::string> names;
  std::regex name_re("[a-z0-9][a-z0-9_.-]{0,63}");
  for (const auto& step : p.steps) {
    EXPECT_TRUE(names.insert(step.name).second) << step.name;
    EXPECT_TRUE(std::regex_match(step.name, name_re)) << step.name;
    EXPECT_FALSE(step.argv.empty());
    EXPECT_FALSE(step.why.empty()) << step.name;
  }
  EXPECT_EQ(p.goals, (Names{"test", "lint", "build", "typecheck", "report"}));
  EXPECT_TRUE(p.report);
  EXPECT_NE(p.summary.find("report.md"), std::string::npos) << p.summary;
}

TEST(PlanPlanner, SummarySaysWhatIsMissingAndDeclined) {
  ProjectSummary s = Python({{"pytest", "pytest.ini"}});
  Plan p = MustPlan("run the tests and lint, no build", s);
  EXPECT_EQ(NamesOf(p), (Names{"python-test"}));
  EXPECT_EQ(p.goals, (Names{"test", "lint"}));
  EXPECT_FALSE(p.report);
  EXPECT_NE(p.summary.find("lint: nothing found (looked for python: ruff or flake8"), std::string::npos) << p.summary;
  EXPECT_NE(p.summary.find("Declined, not planned: build"), std::string::npos) << p.summary;
  EXPECT_EQ(p.summary.find("report.md"), std::string::npos) << p.summary;
}

TEST(PlanPlanner, NegatedTestsAreNotPlanned) {
  ProjectSummary s;
  s.kinds = {"cargo"};
  s.cargo = CargoProject{};
  Plan p = MustPlan("don't run the tests, just build", s);
  EXPECT_EQ(NamesOf(p), (Names{"cargo-build"}));
  Plan zh = MustPlan("不要运行测试，只构建", s);
  EXPECT_EQ(NamesOf(zh), (Names{"cargo-build"}));
}

TEST(PlanPlanner, IntentErrorsPassThrough) {
  ProjectSummary s;
  s.kinds = {"cargo"};
  s.cargo = CargoProject{};
  EXPECT_EQ(PlanError("", s).code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(PlanError(std::string(5000, 'a'), s).code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(PlanError("test \xfe", s).code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(PlanError("deploy to production", s).code, ErrorCode::kNotFound);
  EXPECT_EQ(PlanError("删除所有文件", s).code, ErrorCode::kNotFound);
  EXPECT_EQ(PlanError("写一首诗", s).code, ErrorCode::kNotFound);
}

TEST(PlanPlanner, UnreadablePackageJsonIsNamed) {
  ProjectSummary s = Node({});
  s.node->parsed = false;
  Error e = PlanError("run the tests", s);
  EXPECT_NE(e.message.find("package.json could not be read"), std::string::npos) << e.message;
}

}  // namespace
}  // namespace sbx::supervisor::plan
