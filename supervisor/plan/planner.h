// The built-in planner: from an intent and a ProjectSummary to ordered steps, each an argv (never
// a shell line) with the reason it is there. Pure: no I/O; the same summary and intent give the
// same plan. The steps are proposals: the caller decides each against its command policy and
// runs them in a sandbox; nothing here installs dependencies (a Node or Python project's own
// packages must already be in the tree or the image).
//
// The mapping, per kind, in the fixed kind order python, node, cmake, make, cargo, go; within a
// kind the goals in the order build, test, lint, typecheck:
//   python  test: `python3 -m pytest -q` when pytest is configured or required (pytest.ini,
//                 [tool.pytest.ini_options], [tool:pytest], conftest.py, a tests/ directory,
//                 pytest in requirements), else `tox` when tox is configured ([tox]/[testenv] in
//                 tox.ini, [tool.tox]); pytest is preferred because tox builds virtualenvs and
//                 installs packages. lint: `ruff check .` when ruff is configured or required,
//                 else `flake8 .` likewise. typecheck: `mypy .` likewise. build: none.
//   node    <pm> is npm, pnpm or yarn (lockfile, then package.json's packageManager, else npm).
//           test: `<pm> test` when a "test" script exists that is not npm's placeholder.
//           build, lint: `<pm> run build|lint` when the script exists. typecheck: `<pm> run X`
//           for the first of the scripts "typecheck", "type-check", "tsc", else `npx tsc
//           --noEmit` when tsconfig.json exists and typescript is a (dev)dependency.
//   cmake   build: `cmake -S . -B build`, `cmake --build build`. test: the same two, then
//           `ctest --test-dir build --output-on-failure`, only when testing is enabled and the
//           build is not declined.
//   make    build: `make build`, `make all`, else `make` when the default goal is not a
//           test/lint/clean/install-like target. test: `make test`, else `make check`. lint:
//           `make lint`. typecheck: `make typecheck` or `make type-check`. Only targets found.
//   cargo   `cargo build`, `cargo test`, `cargo clippy`, `cargo check` (typecheck).
//   go      `go build ./...`, `go test ./...`, `go vet ./...` (lint and typecheck).
// A step whose argv is already planned is not repeated. Step names are "<kind>-<what>"
// ("python-test", "cmake-configure"), unique within a plan, and match the names
// ParsePlannerAnswer accepts.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "supervisor/plan/intent.h"
#include "supervisor/plan/project_summary.h"

namespace sbx::supervisor::plan {

struct PlannedStep {
  std::string name;               // [a-z0-9][a-z0-9_.-]{0,63}, unique within a plan
  std::vector<std::string> argv;  // argv[0] is looked up in PATH by whoever runs it
  std::string why;                // one sentence for the operator

  bool operator==(const PlannedStep&) const = default;
};

struct Plan {
  std::vector<PlannedStep> steps;  // in order; at least one
  // The goals understood and asked for, in the order test, lint, build, typecheck, report.
  std::vector<std::string> goals;
  // A report was asked for. It adds no step: the run's report.md artifact is the report.
  bool report = false;
  // For the operator: what is planned per goal, what was declined, what was asked for but not
  // found in the project (and what was looked for), and where the report will be.
  std::string summary;
};

// Errors: those of ParseIntent (kInvalidArgument for an empty, oversized, non-UTF-8 intent;
// kNotFound for a refused or unrecognised one), and kNotFound "no plan for this intent: ..."
// when the project has no tooling the planner knows for the goals asked, naming what it looked
// for per kind.
Result<Plan> PlanFromIntent(std::string_view intent_text, const ProjectSummary& project);

// The same from an already parsed intent.
Result<Plan> PlanFromGoals(const Intent& intent, const ProjectSummary& project);

// Limits on an external planner's answer.
inline constexpr size_t kMaxAnswerBytes = 256 * 1024;
inline constexpr size_t kMaxAnswerSteps = 32;
inline constexpr size_t kMaxArgvEntries = 256;
inline constexpr size_t kMaxArgBytes = 4096;
inline constexpr size_t kMaxWhyBytes = 1024;

// An external planner's answer (the JSON it printed or returned), validated like any client
// input: exactly {"steps": [{"name": "...", "argv": ["..."], "why": "..."}]}. 1 to
// kMaxAnswerSteps steps; each name matches [a-z0-9][a-z0-9_.-]{0,63} and is unique; argv holds 1
// to kMaxArgvEntries strings, each 1 to kMaxArgBytes bytes of valid UTF-8 without NUL; "why" is
// optional (empty when absent), at most kMaxWhyBytes. No other field anywhere, no key twice in
// an object, the whole answer at most kMaxAnswerBytes of valid UTF-8.
//
// The steps are only well-formed: what they run is for the caller's command policy to decide.
// Errors: kInvalidArgument naming the offending field ("steps[2].argv[0]: empty").
Result<std::vector<PlannedStep>> ParsePlannerAnswer(std::string_view answer_text);

}  // namespace sbx::supervisor::plan
