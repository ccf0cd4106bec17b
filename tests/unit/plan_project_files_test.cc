// The single-file readers behind InspectProject, on text: what they take and what they leave.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "supervisor/plan/project_files.h"

namespace sbx::supervisor::plan::internal {
namespace {

using Strings = std::vector<std::string>;

MakeProject Make(std::string_view text) {
  MakeProject m;
  ReadMakefile(text, &m);
  return m;
}

TEST(PlanProjectFiles, MakefileTargetsConservatively) {
  MakeProject m = Make(R"(# a comment: with a colon
PREFIX ?= /usr/local
CFLAGS := -O2
VAR = a:b
export PATH := $(PATH):/opt
.PHONY: all test
define RECIPE
fake: target
endef
all: prog lib
prog: main.o
	$(CC) -o $@ $^ # test: not a rule
%.o: %.c
	$(CC) -c $<
$(BIN): x
test check:: all
test: CFLAGS += -g
lint: ; ruff check .
LONG = a \
  b: c
install:
)");
  EXPECT_EQ(m.targets, (Strings{"all", "prog", "test", "check", "lint", "install"}));
  EXPECT_EQ(m.default_goal, "all");
}

TEST(PlanProjectFiles, MakefileDefaultGoal) {
  EXPECT_EQ(Make("$(BIN): main.o\nclean:\n").default_goal, "");
  EXPECT_EQ(Make(".PHONY: x\nprog:\nclean:\n").default_goal, "prog");
  EXPECT_EQ(Make("all:\n.DEFAULT_GOAL := help\nhelp:\n").default_goal, "help");
  EXPECT_EQ(Make(".DEFAULT_GOAL = build\nclean:\nbuild:\n").default_goal, "build");
  EXPECT_EQ(Make("").default_goal, "");
}

TEST(PlanProjectFiles, PyprojectDependencies) {
  PythonProject py;
  Strings notes;
  ReadPyproject(R"(
[project]
name = "x"  # a comment with [brackets]
description = """
a multi-line string with = and [tool.mypy] inside
"""
dependencies = [
  "requests",  # pytest in a comment is not a dependency
  'Flake8 >= 6',
]

[tool.poetry.group.dev.dependencies]
pytest = "^7"

[dependency-groups]
lint = ["ruff>=0.4"]

[[tool.mypy.overrides]]
module = "x.*"
)",
                &py, &notes);
  EXPECT_TRUE(notes.empty()) << notes.front();
  EXPECT_EQ(py.tools.at("flake8"), "pyproject.toml [project]");
  EXPECT_EQ(py.tools.at("pytest"), "pyproject.toml [tool.poetry.group.dev.dependencies]");
  EXPECT_EQ(py.tools.at("ruff"), "pyproject.toml [dependency-groups]");
  EXPECT_EQ(py.tools.at("mypy"), "pyproject.toml [tool.mypy.overrides]");
  EXPECT_EQ(py.tool_sections, (Strings{"mypy", "poetry"}));
}

TEST(PlanProjectFiles, PyprojectErrorsAreNotes) {
  for (std::string_view text :
       {"[tool.ruff\n", "just words\n", "name = \"unterminated\n", "deps = [\n\"a\",\n", "x = ]\n",
        "doc = '''\nnever closed\n", "[]\n"}) {
    PythonProject py;
    Strings notes;
    ReadPyproject(text, &py, &notes);
    ASSERT_EQ(notes.size(), 1u) << text;
    EXPECT_NE(notes[0].find("not valid TOML"), std::string::npos) << notes[0];
    EXPECT_TRUE(py.tools.empty()) << text;
  }
}

TEST(PlanProjectFiles, IniSections) {
  PythonProject py;
  ReadIniFile("tox.ini", "[tox]\n[testenv:lint]\n[flake8]\nmax-line-length = 100\n[pytest]\n", &py);
  EXPECT_EQ(py.tools.at("tox"), "tox.ini [tox]");
  EXPECT_EQ(py.tools.at("flake8"), "tox.ini [flake8]");
  EXPECT_EQ(py.tools.at("pytest"), "tox.ini [pytest]");
  PythonProject cfg;
  ReadIniFile("setup.cfg", "[pytest]\n[tox]\n[mypy-numpy.*]\n", &cfg);
  // setup.cfg's pytest section is [tool:pytest]; [tox] there configures nothing.
  EXPECT_EQ(cfg.tools.count("pytest"), 0u);
  EXPECT_EQ(cfg.tools.count("tox"), 0u);
  EXPECT_EQ(cfg.tools.at("mypy"), "setup.cfg [mypy-numpy.*]");
}

TEST(PlanProjectFiles, RequirementNames) {
  EXPECT_EQ(RequirementName("pytest>=7; python_version > '3.8'"), "pytest");
  EXPECT_EQ(RequirementName("  Flake8[extra]==6"), "flake8");
  EXPECT_EQ(RequirementName("typing_extensions"), "typing-extensions");
  EXPECT_EQ(RequirementName("pytest-cov"), "pytest-cov");
  EXPECT_EQ(RequirementName(">=1"), "");
  PythonProject py;
  ReadRequirements("requirements.txt", "pytest-cov\n-e .\n--index-url https://x/mypy\n", &py);
  EXPECT_TRUE(py.tools.empty());
}

TEST(PlanProjectFiles, CMakeTesting) {
  auto read = [](std::string_view text) {
    CMakeProject c;
    ReadCMakeLists(text, &c);
    return c;
  };
  EXPECT_TRUE(read("project(x)\nENABLE_TESTING ()\n").testing_enabled);
  EXPECT_TRUE(read("project(x)\ninclude(CTest)\n").testing_enabled);
  EXPECT_TRUE(read("if(X)\n  include( CTest )\nendif()").testing_enabled);
  EXPECT_FALSE(read("# enable_testing()\n#[[\nenable_testing()\n]]\n").testing_enabled);
  EXPECT_FALSE(read("message(\"enable_testing()\")\n").testing_enabled);
  EXPECT_FALSE(read("my_enable_testing()\n").testing_enabled);
  CMakeProject only_add = read("add_test(NAME t COMMAND t)\n");
  EXPECT_FALSE(only_add.testing_enabled);
  EXPECT_TRUE(only_add.add_test_seen);
}

TEST(PlanProjectFiles, PackageJson) {
  NodeProject node;
  std::string pm;
  Strings notes;
  ReadPackageJson(
      R"({"scripts": {"test": "jest", "weird": 5}, "dependencies": {"typescript": "5"},
          "packageManager": "pnpm@9.1.0"})",
      &node, &pm, &notes);
  EXPECT_TRUE(node.parsed);
  EXPECT_EQ(node.scripts, (Strings{"test"}));
  EXPECT_TRUE(node.typescript);
  EXPECT_EQ(pm, "pnpm");
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("\"weird\" is not a string"), std::string::npos);

  NodeProject arr;
  Strings arr_notes;
  ReadPackageJson("[1, 2]", &arr, &pm, &arr_notes);
  EXPECT_FALSE(arr.parsed);
  ASSERT_EQ(arr_notes.size(), 1u);
  EXPECT_NE(arr_notes[0].find("not a JSON object"), std::string::npos);
}

TEST(PlanProjectFiles, PackageJsonScriptsAreBounded) {
  std::string text = R"({"scripts": {)";
  for (int i = 0; i < 300; ++i) text += fmt::format(R"("s{:03}": "x",)", i);
  text += fmt::format(R"("{}": "x"}}}})", std::string(200, 'z'));  // sorted last
  NodeProject node;
  std::string pm;
  Strings notes;
  ReadPackageJson(text, &node, &pm, &notes);
  EXPECT_EQ(node.scripts.size(), 256u);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("more than 256 scripts"), std::string::npos) << notes[0];
  NodeProject long_name;
  Strings long_notes;
  ReadPackageJson(
      fmt::format(R"({{"scripts": {{"{}": "x", "test": "t"}}}})", std::string(200, 'n')),
      &long_name, &pm, &long_notes);
  EXPECT_EQ(long_name.scripts, (Strings{"test"}));
  ASSERT_EQ(long_notes.size(), 1u);
  EXPECT_NE(long_notes[0].find("over 128 bytes"), std::string::npos);
}

TEST(PlanProjectFiles, GoModAndCargo) {
  GoProject go;
  ReadGoMod("// header\nmodule \"example.com/quoted\"\n", &go);
  EXPECT_EQ(go.module, "example.com/quoted");
  GoProject bad;
  ReadGoMod("module ex\xffmple\n", &bad);
  EXPECT_EQ(bad.module, "");
  CargoProject c;
  ReadCargoToml("[package]\nname = \"x\"\n[workspace.dependencies]\n", &c);
  EXPECT_TRUE(c.workspace);
  CargoProject p;
  ReadCargoToml("[package]\nname = \"workspace\"\n", &p);
  EXPECT_FALSE(p.workspace);
}

}  // namespace
}  // namespace sbx::supervisor::plan::internal
