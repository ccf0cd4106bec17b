// InspectProject on real trees built in a temporary directory, and plans made from them end to
// end. No privileges needed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "supervisor/plan/planner.h"
#include "supervisor/plan/project_summary.h"

namespace sbx::supervisor::plan {
namespace {

namespace fs = std::filesystem;
using Argvs = std::vector<std::vector<std::string>>;

// A directory under /tmp, removed at the end of the test.
class TempTree {
 public:
  TempTree() {
    char tmpl[] = "/tmp/sbx-plan-XXXXXX";
    const char* made = ::mkdtemp(tmpl);
    EXPECT_NE(made, nullptr);
    root_ = made ? made : "";
  }
  ~TempTree() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  const fs::path& root() const { return root_; }

  void Write(const std::string& rel, const std::string& content) {
    fs::path p = root_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
  }
  void Mkdir(const std::string& rel) { fs::create_directories(root_ / rel); }

  UniqueFd Open() const {
    UniqueFd fd(::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    EXPECT_TRUE(fd.valid());
    return fd;
  }

  ProjectSummary Inspect() const {
    UniqueFd fd = Open();
    auto r = InspectProject(fd.get());
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    return r.ok() ? std::move(*r) : ProjectSummary{};
  }

 private:
  fs::path root_;
};

bool Has(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

bool NoteMentions(const ProjectSummary& s, std::string_view what) {
  return std::any_of(s.notes.begin(), s.notes.end(),
                     [&](const std::string& n) { return n.find(what) != std::string::npos; });
}

Argvs ArgvsOf(const Plan& plan) {
  Argvs out;
  for (const PlannedStep& s : plan.steps) out.push_back(s.argv);
  return out;
}

Argvs PlanArgvs(const TempTree& tree, std::string_view intent) {
  auto plan = PlanFromIntent(intent, tree.Inspect());
  EXPECT_TRUE(plan.ok()) << intent << ": " << plan.error().ToString();
  return plan.ok() ? ArgvsOf(*plan) : Argvs{};
}

constexpr char kPackageJson[] = R"({
  "name": "demo",
  "scripts": {"test": "jest", "lint": "eslint .", "build": "tsc -p .", "typecheck": "tsc --noEmit"},
  "devDependencies": {"typescript": "^5.0.0"}
})";

TEST(PlanInspect, EmptyTreeHasNoKinds) {
  TempTree t;
  ProjectSummary s = t.Inspect();
  EXPECT_TRUE(s.kinds.empty());
  EXPECT_TRUE(s.files_seen.empty());
  auto plan = PlanFromIntent("run the tests", s);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().code, ErrorCode::kNotFound);
  EXPECT_NE(plan.error().message.find("package.json"), std::string::npos);
}

TEST(PlanInspect, NotADirectoryIsInvalidArgument) {
  TempTree t;
  t.Write("file.txt", "x");
  UniqueFd fd(::open((t.root() / "file.txt").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  auto r = InspectProject(fd.get());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  auto bad = InspectProject(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
}

TEST(PlanInspect, NodeWithNpmLockfile) {
  TempTree t;
  t.Write("package.json", kPackageJson);
  t.Write("package-lock.json", "{}");
  t.Write("tsconfig.json", "{}");
  ProjectSummary s = t.Inspect();
  ASSERT_EQ(s.kinds, std::vector<std::string>{"node"});
  ASSERT_TRUE(s.node);
  EXPECT_EQ(s.node->package_manager, "npm");
  EXPECT_EQ(s.node->package_manager_source, "package-lock.json");
  EXPECT_EQ(s.node->scripts, (std::vector<std::string>{"build", "lint", "test", "typecheck"}));
  EXPECT_TRUE(s.node->typescript);
  EXPECT_TRUE(s.node->tsconfig);
  EXPECT_FALSE(s.node->test_script_placeholder);
  EXPECT_TRUE(Has(s.files_seen, "package.json"));
  EXPECT_TRUE(Has(s.files_seen, "package-lock.json"));
  EXPECT_EQ(PlanArgvs(t, "run the tests"), (Argvs{{"npm", "test"}}));
  EXPECT_EQ(PlanArgvs(t, "lint, build and type-check"),
            (Argvs{{"npm", "run", "build"}, {"npm", "run", "lint"}, {"npm", "run", "typecheck"}}));
}

TEST(PlanInspect, PackageManagerFromLockfile) {
  for (auto [lock, pm] : {std::pair{"pnpm-lock.yaml", "pnpm"}, std::pair{"yarn.lock", "yarn"}}) {
    TempTree t;
    t.Write("package.json", kPackageJson);
    t.Write(lock, "");
    ProjectSummary s = t.Inspect();
    ASSERT_TRUE(s.node) << lock;
    EXPECT_EQ(s.node->package_manager, pm);
    EXPECT_EQ(PlanArgvs(t, "test"), (Argvs{{pm, "test"}})) << lock;
    EXPECT_EQ(PlanArgvs(t, "lint"), (Argvs{{pm, "run", "lint"}})) << lock;
  }
  TempTree none;
  none.Write("package.json", kPackageJson);
  ProjectSummary s = none.Inspect();
  ASSERT_TRUE(s.node);
  EXPECT_EQ(s.node->package_manager, "npm");
  EXPECT_EQ(s.node->package_manager_source, "default");
}

TEST(PlanInspect, SeveralLockfilesAreNoted) {
  TempTree t;
  t.Write("package.json", kPackageJson);
  t.Write("yarn.lock", "");
  t.Write("package-lock.json", "{}");
  ProjectSummary s = t.Inspect();
  ASSERT_TRUE(s.node);
  EXPECT_EQ(s.node->package_manager, "npm");
  EXPECT_TRUE(NoteMentions(s, "several lockfiles"));
}

TEST(PlanInspect, NpmPlaceholderTestScriptCountsAsNone) {
  TempTree t;
  t.Write("package.json",
          R"({"scripts": {"test": "echo \"Error: no test specified\" && exit 1"}})");
  ProjectSummary s = t.Inspect();
  ASSERT_TRUE(s.node);
  EXPECT_TRUE(s.node->test_script_placeholder);
  auto plan = PlanFromIntent("run the tests", s);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().code, ErrorCode::kNotFound);
  EXPECT_NE(plan.error().message.find("placeholder"), std::string::npos) << plan.error().message;
}

TEST(PlanInspect, TypescriptWithoutScriptUsesTsc) {
  TempTree t;
  t.Write("package.json",
          R"({"scripts": {"test": "vitest"}, "devDependencies": {"typescript": "5"}})");
  t.Write("tsconfig.json", "{}");
  EXPECT_EQ(PlanArgvs(t, "类型检查"), (Argvs{{"npx", "tsc", "--noEmit"}}));
}

TEST(PlanInspect, SymlinkedPackageJsonIsNotRead) {
  TempTree outside;
  outside.Write("package.json", R"({"scripts": {"test": "steal-secrets", "evil": "x"}})");
  TempTree t;
  fs::create_symlink(outside.root() / "package.json", t.root() / "package.json");
  ProjectSummary s = t.Inspect();
  EXPECT_FALSE(s.node);
  EXPECT_FALSE(Has(s.kinds, "node"));
  EXPECT_FALSE(Has(s.files_seen, "package.json"));
  EXPECT_TRUE(NoteMentions(s, "package.json is a symbolic link"));
  std::string dumped = SummaryToJson(s).dump();
  EXPECT_EQ(dumped.find("steal-secrets"), std::string::npos);
  EXPECT_EQ(dumped.find("evil"), std::string::npos);
}

TEST(PlanInspect, SymlinkedDirectoryIsNotEntered) {
  TempTree outside;
  outside.Write("conftest.py", "");
  outside.Write("dev.txt", "mypy\n");
  TempTree t;
  t.Write("pyproject.toml", "[project]\nname = \"x\"\n");
  fs::create_directory_symlink(outside.root(), t.root() / "tests");
  fs::create_directory_symlink(outside.root(), t.root() / "requirements");
  ProjectSummary s = t.Inspect();
  ASSERT_TRUE(s.python);
  EXPECT_FALSE(s.python->tests_dir);
  EXPECT_EQ(s.python->tools.count("pytest"), 0u);
  EXPECT_EQ(s.python->tools.count("mypy"), 0u);
  EXPECT_TRUE(NoteMentions(s, "tests/conftest.py is a symbolic link or is reached through one"));
}

TEST(PlanInspect, OversizedPackageJsonIsIgnoredAndNoted) {
  TempTree t;
  std::string big = R"({"scripts": {"test": "jest"}, "pad": ")" + std::string(2 << 20, 'a') + "\"}";
  t.Write("package.json", big);
  ProjectSummary s = t.Inspect();
  ASSERT_TRUE(s.node);  // the project is still a Node project
  EXPECT_FALSE(s.node->parsed);
  EXPECT_TRUE(s.node->scripts.empty());
  EXPECT_TRUE(NoteMentions(s, "over the 1048576-byte limit"));
  EXPECT_FALSE(Has(s.files_seen, "package.json"));
  auto plan = PlanFromIntent("run the tests", s);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().code, ErrorCode::kNotFound);
}

TEST(PlanInspect, MalformedPackageJsonIsNotedAndPlanningGoesOn) {
  TempTree t;
  t.Write("package.json", R"({"scripts": {"test": "jest",)");
  t.Write("Cargo.toml", "[package]\nname = \"x\"\n");
  ProjectSummary s = t.Inspect();
  ASSERT_TRUE(s.node);
  EXPECT_FALSE(s.node->parsed);
  EXPECT_TRUE(NoteMentions(s, "package.json: not valid JSON"));
  EXPECT_EQ(PlanArgvs(t, "run the tests"), (Argvs{{"cargo", "test"}}));
}

TEST(PlanInspect, FifoIsNotOpenedForReading) {
  TempTree t;
  ASSERT_EQ(::mkfifo((t.root() / "package.json").c_str(), 0600), 0);
  ProjectSummary s = t.Inspect();  // would block on open without O_NONBLOCK
  EXPECT_TRUE(NoteMentions(s, "package.json: not a regular file"));
  ASSERT_TRUE(s.node);
  EXPECT_FALSE(s.node->parsed);
}

TEST(PlanInspect, NonUtf8FilesAreIgnoredAndTheSummaryStaysJson) {
  TempTree t;
  t.Write("pyproject.toml", "[tool.ruff\xff]\n");
  t.Write("setup.cfg", "[mypy-\xfe]\n");
  t.Write("Makefile", "test:\n\techo \xff\n");
  ProjectSummary s = t.Inspect();
  ASSERT_TRUE(s.python);  // still a Python project, its files unread
  EXPECT_TRUE(s.python->tools.empty());
  EXPECT_TRUE(NoteMentions(s, "pyproject.toml: not valid UTF-8; ignored"));
  EXPECT_TRUE(NoteMentions(s, "setup.cfg: not valid UTF-8; ignored"));
  EXPECT_FALSE(s.make);
  EXPECT_NO_THROW(SummaryToJson(s).dump());
}

TEST(PlanInspect, PythonPyprojectWithToolSections) {
  TempTree t;
  t.Write("pyproject.toml", R"([project]
name = "demo"
dependencies = ["requests>=2"]

[project.optional-dependencies]
dev = [
  "pytest>=7",
  "mypy",
]

[tool.pytest.ini_options]
addopts = "-ra"

[tool.ruff]
line-length = 100

[tool.black]
)");
  ProjectSummary s = t.Inspect();
  ASSERT_EQ(s.kinds, std::vector<std::string>{"python"});
  ASSERT_TRUE(s.python);
  EXPECT_EQ(s.python->tool_sections, (std::vector<std::string>{"black", "pytest", "ruff"}));
  EXPECT_EQ(s.python->tools.at("pytest"), "pyproject.toml [project.optional-dependencies]");
  EXPECT_EQ(s.python->tools.at("ruff"), "pyproject.toml [tool.ruff]");
  EXPECT_EQ(s.python->tools.at("mypy"), "pyproject.toml [project.optional-dependencies]");
  EXPECT_EQ(PlanArgvs(t, "run the tests, lint and type-check"),
            (Argvs{{"python3", "-m", "pytest", "-q"}, {"ruff", "check", "."}, {"mypy", "."}}));
}

TEST(PlanInspect, PythonToxOnly) {
  TempTree t;
  t.Write("tox.ini", "[tox]\nenvlist = py311\n\n[testenv]\ncommands = python -m unittest\n");
  t.Write("setup.py", "");
  ProjectSummary s = t.Inspect();
  ASSERT_TRUE(s.python);
  EXPECT_EQ(s.python->tools.count("pytest"), 0u);
  EXPECT_EQ(PlanArgvs(t, "run the tests"), (Argvs{{"tox"}}));
}

TEST(PlanInspect, PythonPytestIniAndTestsDirAndRequirements) {
  {
    TempTree t;
    t.Write("pytest.ini", "[pytest]\n");
    ProjectSummary s = t.Inspect();
    ASSERT_TRUE(s.python);
    EXPECT_EQ(s.python->tools.at("pytest"), "pytest.ini");
  }
  {
    TempTree t;
    t.Write("requirements.txt", "requests\n");
    t.Mkdir("tests");
    ProjectSummary s = t.Inspect();
    ASSERT_TRUE(s.python);
    EXPECT_TRUE(s.python->tests_dir);
    EXPECT_EQ(s.python->tools.at("pytest"), "tests/ directory");
  }
  {
    TempTree t;
    t.Write("requirements-dev.txt", "# tools\nflake8==6.0  # lint\n-r requirements.txt\nPyTest\n");
    ProjectSummary s = t.Inspect();
    ASSERT_TRUE(s.python);
    EXPECT_EQ(s.python->tools.at("pytest"), "requirements-dev.txt");
    EXPECT_EQ(s.python->tools.at("flake8"), "requirements-dev.txt");
    EXPECT_EQ(PlanArgvs(t, "lint"), (Argvs{{"flake8", "."}}));
  }
  {
    // requirements.txt alone: a Python project with no test tool.
    TempTree t;
    t.Write("requirements.txt", "requests\n");
    auto plan = PlanFromIntent("run the tests", t.Inspect());
    ASSERT_FALSE(plan.ok());
    EXPECT_EQ(plan.error().code, ErrorCode::kNotFound);
    EXPECT_NE(plan.error().message.find("pytest"), std::string::npos);
  }
}

TEST(PlanInspect, PythonSetupCfgAndMarkers) {
  TempTree t;
  t.Write("setup.cfg", "[metadata]\nname = x\n\n[tool:pytest]\n\n[mypy]\nstrict = True\n");
  t.Write(".flake8", "[flake8]\n");
  ProjectSummary s = t.Inspect();
  ASSERT_TRUE(s.python);
  EXPECT_EQ(s.python->tools.at("pytest"), "setup.cfg [tool:pytest]");
  EXPECT_EQ(s.python->tools.at("mypy"), "setup.cfg [mypy]");
  EXPECT_EQ(s.python->tools.at("flake8"), ".flake8");
}

TEST(PlanInspect, MalformedPyprojectIsNotedAndWhatCameBeforeKept) {
  TempTree t;
  t.Write("pyproject.toml", "[tool.mypy]\nstrict = true\n[tool.ruff\nline-length = 1\n");
  ProjectSummary s = t.Inspect();
  ASSERT_TRUE(s.python);
  EXPECT_EQ(s.python->tools.count("mypy"), 1u);
  EXPECT_EQ(s.python->tools.count("ruff"), 0u);
  EXPECT_TRUE(NoteMentions(s, "pyproject.toml line 3: not valid TOML"));
}

TEST(PlanInspect, CMakeWithAndWithoutTesting) {
  TempTree with;
  with.Write("CMakeLists.txt",
             "cmake_minimum_required(VERSION 3.20)\nproject(x)\nenable_testing()\n"
             "add_executable(t t.c)\nadd_test(NAME t COMMAND t)\n");
  ProjectSummary s = with.Inspect();
  ASSERT_TRUE(s.cmake);
  EXPECT_TRUE(s.cmake->testing_enabled);
  EXPECT_EQ(PlanArgvs(with, "run the tests"),
            (Argvs{{"cmake", "-S", ".", "-B", "build"},
                   {"cmake", "--build", "build"},
                   {"ctest", "--test-dir", "build", "--output-on-failure"}}));

  TempTree without;
  without.Write("CMakeLists.txt",
                "project(x)\n# enable_testing()\nmessage(\"enable_testing()\")\n"
                "add_executable(t t.c)\n");
  ProjectSummary w = without.Inspect();
  ASSERT_TRUE(w.cmake);
  EXPECT_FALSE(w.cmake->testing_enabled);
  auto plan = PlanFromIntent("run the tests", w);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().code, ErrorCode::kNotFound);
  EXPECT_NE(plan.error().message.find("enable_testing()"), std::string::npos);
  EXPECT_EQ(PlanArgvs(without, "构建"),
            (Argvs{{"cmake", "-S", ".", "-B", "build"}, {"cmake", "--build", "build"}}));
}

TEST(PlanInspect, MakeTargets) {
  TempTree t;
  t.Write("Makefile",
          "CC := gcc\n.PHONY: all check lint\nall: prog\n\tcc -o prog main.c\n"
          "check: all\n\t./prog --self-test\nlint:\n\tcppcheck .\n");
  ProjectSummary s = t.Inspect();
  ASSERT_TRUE(s.make);
  EXPECT_EQ(s.make->makefile, "Makefile");
  EXPECT_EQ(s.make->targets, (std::vector<std::string>{"all", "check", "lint"}));
  EXPECT_EQ(PlanArgvs(t, "build it, then run the tests and lint"),
            (Argvs{{"make", "all"}, {"make", "check"}, {"make", "lint"}}));
}

TEST(PlanInspect, CargoAndGo) {
  TempTree cargo;
  cargo.Write("Cargo.toml", "[workspace]\nmembers = [\"a\"]\n");
  ProjectSummary c = cargo.Inspect();
  ASSERT_TRUE(c.cargo);
  EXPECT_TRUE(c.cargo->workspace);
  EXPECT_EQ(
      PlanArgvs(cargo, "build, test, lint and typecheck"),
      (Argvs{{"cargo", "build"}, {"cargo", "test"}, {"cargo", "clippy"}, {"cargo", "check"}}));

  TempTree go;
  go.Write("go.mod", "module example.com/demo // comment\n\ngo 1.22\n");
  ProjectSummary g = go.Inspect();
  ASSERT_TRUE(g.go);
  EXPECT_EQ(g.go->module, "example.com/demo");
  EXPECT_EQ(PlanArgvs(go, "运行测试并做代码检查"),
            (Argvs{{"go", "test", "./..."}, {"go", "vet", "./..."}}));
}

TEST(PlanInspect, MixedNodeAndPythonInKindOrder) {
  TempTree t;
  t.Write("package.json", kPackageJson);
  t.Write("pnpm-lock.yaml", "");
  t.Write("pyproject.toml", "[tool.pytest.ini_options]\n");
  ProjectSummary s = t.Inspect();
  EXPECT_EQ(s.kinds, (std::vector<std::string>{"python", "node"}));
  auto plan = PlanFromIntent("run the tests and give me a report", s);
  ASSERT_TRUE(plan.ok()) << plan.error().ToString();
  ASSERT_EQ(plan->steps.size(), 2u);
  EXPECT_EQ(plan->steps[0].name, "python-test");
  EXPECT_EQ(plan->steps[1].name, "node-test");
  EXPECT_EQ(plan->steps[1].argv, (std::vector<std::string>{"pnpm", "test"}));
  EXPECT_TRUE(plan->report);
  EXPECT_EQ(plan->goals, (std::vector<std::string>{"test", "report"}));
}

TEST(PlanInspect, SummaryJson) {
  TempTree t;
  t.Write("package.json", kPackageJson);
  t.Write("Makefile", "test:\n\tnpm test\n");
  nlohmann::json j = SummaryToJson(t.Inspect());
  EXPECT_EQ(j["kinds"], nlohmann::json({"node", "make"}));
  EXPECT_EQ(j["node"]["package_manager"], "npm");
  EXPECT_EQ(j["node"]["scripts"], nlohmann::json({"build", "lint", "test", "typecheck"}));
  EXPECT_EQ(j["make"]["targets"], nlohmann::json({"test"}));
  EXPECT_FALSE(j.contains("python"));
  EXPECT_FALSE(j.contains("cmake"));
  EXPECT_TRUE(j["files_seen"].is_array());
  EXPECT_TRUE(j["notes"].is_array());
}

TEST(PlanInspect, SameTreeSamePlan) {
  TempTree t;
  t.Write("package.json", kPackageJson);
  t.Write("pyproject.toml", "[tool.pytest.ini_options]\n[tool.mypy]\n");
  t.Write("CMakeLists.txt", "enable_testing()\n");
  t.Write("Makefile", "test:\n");
  auto a = PlanFromIntent("test, lint, build and typecheck", t.Inspect());
  auto b = PlanFromIntent("test, lint, build and typecheck", t.Inspect());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->steps, b->steps);
  EXPECT_EQ(a->summary, b->summary);
}

}  // namespace
}  // namespace sbx::supervisor::plan
