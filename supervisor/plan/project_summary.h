// What the built-in planner learns about a project tree: which tooling it uses (Python, Node,
// CMake, Make, Cargo, Go) and, per kind, what it offers (scripts, targets, configured tools).
//
// InspectProject reads a short, fixed list of well-known files (below) and never executes
// anything. Every file is opened from the project's directory fd with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) and
// O_NOFOLLOW | O_NONBLOCK, so a symlink anywhere in a path is not followed (the file counts as
// absent and a note says so), a FIFO or device cannot block or be read, and nothing outside the
// tree is reached. Only regular files are read, each at most kMaxProjectFileBytes; a bigger one
// is ignored and noted. A file that cannot be parsed (a malformed package.json or
// pyproject.toml) is noted, and inspection goes on with what is known.
//
// No privileges are needed beyond read access to the tree.
#pragma once

#include <cstddef>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace sbx::supervisor::plan {

// Files bigger than this are not read (and noted).
inline constexpr size_t kMaxProjectFileBytes = 1 << 20;

// Python: any of pyproject.toml, setup.py, setup.cfg, tox.ini, pytest.ini or a requirements file.
struct PythonProject {
  // The Python project files present, in the order they are looked for.
  std::vector<std::string> files;
  // Tools the project configures or requires: "pytest", "tox", "ruff", "flake8", "mypy", each
  // mapped to the first evidence seen ("pyproject.toml [tool.pytest.ini_options]", "tox.ini",
  // "requirements-dev.txt", "tests/ directory"...).
  std::map<std::string, std::string> tools;
  // The [tool.X] tables of pyproject.toml (X only, sorted, at most 64).
  std::vector<std::string> tool_sections;
  bool tests_dir = false;  // a tests/ or test/ directory
};

// Node: package.json.
struct NodeProject {
  std::string package_manager = "npm";  // "npm" | "pnpm" | "yarn"
  // Where package_manager came from: "package-lock.json", "pnpm-lock.yaml", "yarn.lock",
  // "package.json packageManager", or "default".
  std::string package_manager_source = "default";
  std::vector<std::string> scripts;  // names of package.json's "scripts", sorted
  // The "test" script is npm's placeholder (echo "Error: no test specified" && exit 1).
  bool test_script_placeholder = false;
  bool typescript = false;  // "typescript" in dependencies or devDependencies
  bool tsconfig = false;    // tsconfig.json present
  bool parsed = false;      // package.json was read and understood
};

// CMake: CMakeLists.txt at the top.
struct CMakeProject {
  // enable_testing() or include(CTest) in the top-level CMakeLists.txt: ctest finds tests.
  bool testing_enabled = false;
  bool add_test_seen = false;  // add_test( in the top-level CMakeLists.txt
};

// Make: GNUmakefile, makefile or Makefile (the first present, as make picks it).
struct MakeProject {
  std::string makefile;
  // Explicit targets of rule lines, in file order (the first is make's default goal), without
  // special (.PHONY), pattern (%) or variable ($) targets; at most 256.
  std::vector<std::string> targets;
  // make's default goal (what a bare `make` builds): the first target of the first rule, or
  // .DEFAULT_GOAL; empty when it is not a plain name (a variable, a pattern) or not known.
  std::string default_goal;
};

// Cargo: Cargo.toml.
struct CargoProject {
  bool workspace = false;  // a [workspace] table
};

// Go: go.mod.
struct GoProject {
  std::string module;  // the module path of go.mod's "module" line, when found
};

struct ProjectSummary {
  // The kinds found, in the fixed order "python", "node", "cmake", "make", "cargo", "go".
  std::vector<std::string> kinds;
  std::optional<PythonProject> python;
  std::optional<NodeProject> node;
  std::optional<CMakeProject> cmake;
  std::optional<MakeProject> make;
  std::optional<CargoProject> cargo;
  std::optional<GoProject> go;
  // The files read or found (lockfiles, markers), relative, in the order they were looked at.
  std::vector<std::string> files_seen;
  // What was skipped or not understood: "package.json: not valid JSON (...); its scripts are
  // unknown", "package.json: 2097152 bytes, over the 1048576-byte limit; ignored", "package.json
  // is a symbolic link; not followed".
  std::vector<std::string> notes;
};

// Inspects the tree below `dir_fd` (an O_PATH or O_RDONLY directory fd; not closed). The files
// looked at, relative to it: package.json, package-lock.json, pnpm-lock.yaml, yarn.lock,
// tsconfig.json; pyproject.toml, setup.py, setup.cfg, tox.ini, pytest.ini, requirements.txt,
// requirements-dev.txt, requirements-test.txt, requirements_dev.txt, requirements_test.txt,
// dev-requirements.txt, test-requirements.txt, requirements/dev.txt, requirements/test.txt,
// conftest.py, tests/conftest.py, mypy.ini, .mypy.ini, .flake8, ruff.toml, .ruff.toml, the
// directories tests/ and test/; CMakeLists.txt; GNUmakefile, makefile, Makefile; Cargo.toml;
// go.mod. Lockfiles and markers are only checked to exist (as regular files).
//
// Errors: kInvalidArgument when `dir_fd` is not a directory; kUnavailable when openat2(2) is
// missing (Linux < 5.6, or refused by a seccomp filter); kInternal for another failure of
// fstat. A file that cannot be opened or read (EACCES, EIO...) is noted, not an error.
// Deterministic: the same tree gives the same summary.
Result<ProjectSummary> InspectProject(int dir_fd);

// The summary as JSON, as sent to external planners:
// {"kinds": [...], "python": {...}, "node": {...}, ..., "files_seen": [...], "notes": [...]};
// a kind's object is present only when the kind was found.
nlohmann::json SummaryToJson(const ProjectSummary& summary);

}  // namespace sbx::supervisor::plan
