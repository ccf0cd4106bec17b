// The readers of single project files behind InspectProject: each takes a file's text (already
// read, at most kMaxProjectFileBytes, valid UTF-8) and fills in what it understood. Pure
// functions: no I/O, no exceptions; a file they cannot understand is a note, never an error. Each
// reads conservatively: what it is not sure of, it leaves out. Every string they record is cut
// from the text at ASCII delimiters (or is their own), so it is valid UTF-8 when the text is.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "supervisor/plan/project_summary.h"

namespace sbx::supervisor::plan::internal {

// package.json: scripts, typescript in (dev)dependencies, the packageManager field (returned in
// *package_manager as "npm"/"pnpm"/"yarn", else left alone). Sets node->parsed when the text is
// a JSON object. Not JSON, or not an object: a note, nothing else filled in.
void ReadPackageJson(std::string_view text, NodeProject* node, std::string* package_manager,
                     std::vector<std::string>* notes);

// pyproject.toml, read as a subset of TOML line by line: table headers ([tool.X] recorded in
// python->tool_sections; [tool.pytest.ini_options], [tool.mypy], [tool.ruff], [tool.tox],
// [tool.flake8] as tools) and the requirement names in [project] dependencies,
// [project.optional-dependencies], [dependency-groups] and Poetry's dependency tables. A line
// it cannot read as TOML stops the reading there, with a note; what came before is kept.
void ReadPyproject(std::string_view text, PythonProject* python, std::vector<std::string>* notes);

// setup.cfg, tox.ini and pytest.ini (INI files): the section names that configure tools
// ([tool:pytest] / [pytest], [mypy] / [mypy-*], [flake8], [tox] / [testenv*]).
void ReadIniFile(std::string_view file_name, std::string_view text, PythonProject* python);

// A requirements file: the names of required packages that are tools (pytest, tox, ruff,
// flake8, mypy). Options (-r, -e, --index-url) are skipped and not followed.
void ReadRequirements(std::string_view file_name, std::string_view text, PythonProject* python);

// The top-level CMakeLists.txt: enable_testing(), include(CTest), add_test( outside comments and
// quoted strings, case-insensitively.
void ReadCMakeLists(std::string_view text, CMakeProject* cmake);

// A makefile's explicit rule targets (see MakeProject::targets). Recipe lines, comments,
// variable assignments, target-specific variables, continuation lines and define blocks are
// skipped.
void ReadMakefile(std::string_view text, MakeProject* make);

// Cargo.toml: a [workspace] table.
void ReadCargoToml(std::string_view text, CargoProject* cargo);

// go.mod: the module path.
void ReadGoMod(std::string_view text, GoProject* go);

// The name of a Python requirement ("pytest>=7; python_version>'3'" -> "pytest"), lowercased,
// '_' as '-'; empty when the text does not start with a name.
std::string RequirementName(std::string_view requirement);

}  // namespace sbx::supervisor::plan::internal
