#include "supervisor/plan/planner.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>

namespace sbx::supervisor::plan {
namespace {

using Argv = std::vector<std::string>;

// Within a kind, goals are planned in this order: a build before what may need it.
constexpr std::array<std::string_view, 4> kStepGoalOrder = {"build", "test", "lint", "typecheck"};

bool Contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

class Planner {
 public:
  explicit Planner(const Intent& intent) : intent_(intent) {}

  bool Asked(std::string_view goal) const { return Contains(intent_.goals, goal); }
  bool Declined(std::string_view goal) const { return Contains(intent_.declined, goal); }

  // Plans `argv` for `goal` as step `name`, unless the same argv is planned already (then that
  // step serves the goal too).
  void Add(std::string_view goal, std::string name, Argv argv, std::string why) {
    auto same = std::find_if(steps_.begin(), steps_.end(),
                             [&](const PlannedStep& s) { return s.argv == argv; });
    std::string step_name = same != steps_.end() ? same->name : name;
    if (same == steps_.end()) {
      steps_.push_back({std::move(name), std::move(argv), std::move(why)});
    }
    auto& names = planned_[std::string(goal)];
    if (!Contains(names, step_name)) names.push_back(step_name);
  }

  // Nothing for `goal` in one kind: what was looked for.
  void Missing(std::string_view goal, std::string looked_for) {
    missing_[std::string(goal)].push_back(std::move(looked_for));
  }

  std::vector<PlannedStep>& steps() { return steps_; }
  const std::map<std::string, std::vector<std::string>>& planned() const { return planned_; }
  const std::map<std::string, std::vector<std::string>>& missing() const { return missing_; }

 private:
  const Intent& intent_;
  std::vector<PlannedStep> steps_;
  std::map<std::string, std::vector<std::string>> planned_;  // goal -> step names
  std::map<std::string, std::vector<std::string>> missing_;  // goal -> "kind: looked for ..."
};

void PlanPython(const PythonProject& py, std::string_view goal, Planner& p) {
  auto tool = [&](std::string_view name) -> const std::string* {
    auto it = py.tools.find(std::string(name));
    return it == py.tools.end() ? nullptr : &it->second;
  };
  if (goal == "test") {
    if (const std::string* e = tool("pytest")) {
      p.Add(goal, "python-test", {"python3", "-m", "pytest", "-q"},
            fmt::format("pytest is configured or required ({})", *e));
    } else if (const std::string* e = tool("tox")) {
      p.Add(goal, "python-test", {"tox"}, fmt::format("tox is configured ({})", *e));
    } else {
      p.Missing(goal,
                "python: pytest (pytest.ini, [tool.pytest.ini_options], [tool:pytest], "
                "conftest.py, a tests/ directory, pytest in requirements) or tox ([tox] in "
                "tox.ini, [tool.tox])");
    }
  } else if (goal == "lint") {
    if (const std::string* e = tool("ruff")) {
      p.Add(goal, "python-lint", {"ruff", "check", "."},
            fmt::format("ruff is configured or required ({})", *e));
    } else if (const std::string* e = tool("flake8")) {
      p.Add(goal, "python-lint", {"flake8", "."},
            fmt::format("flake8 is configured or required ({})", *e));
    } else {
      p.Missing(goal,
                "python: ruff or flake8 (ruff.toml, [tool.ruff], .flake8, [flake8], either in "
                "requirements)");
    }
  } else if (goal == "typecheck") {
    if (const std::string* e = tool("mypy")) {
      p.Add(goal, "python-typecheck", {"mypy", "."},
            fmt::format("mypy is configured or required ({})", *e));
    } else {
      p.Missing(goal, "python: mypy (mypy.ini, [tool.mypy], [mypy], mypy in requirements)");
    }
  } else if (goal == "build") {
    p.Missing(goal, "python: nothing (the planner does not build Python packages)");
  }
}

void PlanNode(const NodeProject& node, std::string_view goal, Planner& p) {
  const std::string& pm = node.package_manager;
  std::string source = node.package_manager_source == "default"
                           ? "npm by default: no lockfile"
                           : fmt::format("{} from {}", pm, node.package_manager_source);
  auto has = [&](std::string_view script) { return Contains(node.scripts, script); };
  if (!node.parsed) {
    p.Missing(goal, "node: package.json could not be read (see the notes)");
    return;
  }
  if (goal == "test") {
    if (has("test") && !node.test_script_placeholder) {
      p.Add(goal, "node-test", {pm, "test"},
            fmt::format("package.json has a \"test\" script ({})", source));
    } else if (has("test")) {
      p.Missing(goal, "node: a \"test\" script (package.json's is npm's placeholder)");
    } else {
      p.Missing(goal, "node: a \"test\" script in package.json");
    }
  } else if (goal == "build" || goal == "lint") {
    if (has(goal)) {
      p.Add(goal, fmt::format("node-{}", goal), {pm, "run", std::string(goal)},
            fmt::format("package.json has a \"{}\" script ({})", goal, source));
    } else {
      p.Missing(goal, fmt::format("node: a \"{}\" script in package.json", goal));
    }
  } else if (goal == "typecheck") {
    for (std::string_view script : {"typecheck", "type-check", "tsc"}) {
      if (!has(script)) continue;
      p.Add(goal, "node-typecheck", {pm, "run", std::string(script)},
            fmt::format("package.json has a \"{}\" script ({})", script, source));
      return;
    }
    if (node.tsconfig && node.typescript) {
      p.Add(goal, "node-typecheck", {"npx", "tsc", "--noEmit"},
            "tsconfig.json exists and typescript is a dependency of package.json");
    } else {
      p.Missing(goal,
                "node: a \"typecheck\", \"type-check\" or \"tsc\" script, or tsconfig.json with "
                "typescript in devDependencies");
    }
  }
}

void PlanCMake(const CMakeProject& cmake, std::string_view goal, Planner& p) {
  auto configure_and_build = [&](std::string_view for_goal) {
    p.Add(for_goal, "cmake-configure", {"cmake", "-S", ".", "-B", "build"},
          "CMakeLists.txt: configure the project into build/");
    p.Add(for_goal, "cmake-build", {"cmake", "--build", "build"}, "CMakeLists.txt: build it");
  };
  if (goal == "build") {
    configure_and_build(goal);
  } else if (goal == "test") {
    if (!cmake.testing_enabled) {
      p.Missing(goal, "cmake: enable_testing() or include(CTest) in CMakeLists.txt");
    } else if (p.Declined("build")) {
      p.Missing(goal, "cmake: ctest needs a build, which the intent declines");
    } else {
      configure_and_build(goal);
      p.Add(goal, "cmake-test", {"ctest", "--test-dir", "build", "--output-on-failure"},
            "CMakeLists.txt enables testing; ctest runs the tests of the build");
    }
  } else {
    p.Missing(goal, fmt::format("cmake: no {} tool of its own", goal));
  }
}

void PlanMake(const MakeProject& make, std::string_view goal, Planner& p) {
  auto has = [&](std::string_view t) { return Contains(make.targets, t); };
  auto target_step = [&](std::string_view target) {
    p.Add(goal, fmt::format("make-{}", goal), {"make", std::string(target)},
          fmt::format("{} defines a \"{}\" target", make.makefile, target));
  };
  if (goal == "build") {
    // Goals a bare `make` must not be trusted to mean "build".
    static constexpr std::string_view kNotBuild[] = {
        "test",   "check",   "lint",    "clean", "distclean", "install", "uninstall", "help",
        "deploy", "release", "publish", "push",  "format",    "fmt",     "run",       "serve",
        "start",  "dev",     "watch",   "docs",  "doc",       "dist",    "upload"};
    if (has("build")) {
      target_step("build");
    } else if (has("all")) {
      target_step("all");
    } else if (!make.default_goal.empty() && std::find(std::begin(kNotBuild), std::end(kNotBuild),
                                                       make.default_goal) == std::end(kNotBuild)) {
      p.Add(goal, "make-build", {"make"},
            fmt::format("{}: the default goal \"{}\"", make.makefile, make.default_goal));
    } else {
      p.Missing(goal, fmt::format("make: a \"build\" or \"all\" target, or a default goal that "
                                  "builds, in {}",
                                  make.makefile));
    }
    return;
  }
  std::vector<std::string_view> candidates;
  if (goal == "test") candidates = {"test", "check"};
  if (goal == "lint") candidates = {"lint"};
  if (goal == "typecheck") candidates = {"typecheck", "type-check"};
  for (std::string_view t : candidates) {
    if (has(t)) {
      target_step(t);
      return;
    }
  }
  p.Missing(goal, fmt::format("make: a \"{}\" target in {}", fmt::join(candidates, "\" or \""),
                              make.makefile));
}

void PlanCargo(std::string_view goal, Planner& p) {
  if (goal == "build") p.Add(goal, "cargo-build", {"cargo", "build"}, "Cargo.toml: build");
  if (goal == "test") {
    p.Add(goal, "cargo-test", {"cargo", "test"},
          "Cargo.toml: cargo test builds and runs the tests");
  }
  if (goal == "lint") p.Add(goal, "cargo-lint", {"cargo", "clippy"}, "Cargo.toml: clippy lints");
  if (goal == "typecheck") {
    p.Add(goal, "cargo-typecheck", {"cargo", "check"}, "Cargo.toml: cargo check type-checks");
  }
}

void PlanGo(std::string_view goal, Planner& p) {
  if (goal == "build")
    p.Add(goal, "go-build", {"go", "build", "./..."}, "go.mod: build every package");
  if (goal == "test") {
    p.Add(goal, "go-test", {"go", "test", "./..."}, "go.mod: go test builds and runs the tests");
  }
  if (goal == "lint" || goal == "typecheck") {
    p.Add(goal, fmt::format("go-{}", goal), {"go", "vet", "./..."},
          "go.mod: go vet type-checks the packages and reports suspicious code");
  }
}

std::string Summarize(const Intent& intent, const ProjectSummary& project, const Planner& p,
                      size_t step_count) {
  std::string out = fmt::format("Planned {} step{} for a {} project.", step_count,
                                step_count == 1 ? "" : "s", fmt::join(project.kinds, "+"));
  for (const std::string& goal : intent.goals) {
    if (goal == "report") continue;
    auto planned = p.planned().find(goal);
    auto missing = p.missing().find(goal);
    if (planned != p.planned().end()) {
      out += fmt::format(" {}: {}", goal, fmt::join(planned->second, ", "));
      if (missing != p.missing().end()) {
        out += fmt::format(" (also looked for {})", fmt::join(missing->second, "; "));
      }
      out += ".";
    } else if (missing != p.missing().end()) {
      out += fmt::format(" {}: nothing found (looked for {}).", goal,
                         fmt::join(missing->second, "; "));
    }
  }
  if (!intent.declined.empty()) {
    out += fmt::format(" Declined, not planned: {}.", fmt::join(intent.declined, ", "));
  }
  if (Contains(intent.goals, "report")) {
    out += " Report: the run's report.md artifact is the report; no step is added for it.";
  }
  return out;
}

}  // namespace

Result<Plan> PlanFromGoals(const Intent& intent, const ProjectSummary& project) {
  if (project.kinds.empty()) {
    return MakeError(ErrorCode::kNotFound,
                     "no plan for this intent: found no project tooling the planner knows (looked "
                     "for pyproject.toml, setup.py, setup.cfg, tox.ini, pytest.ini, "
                     "requirements*.txt, package.json, CMakeLists.txt, Makefile, Cargo.toml, "
                     "go.mod)");
  }
  Planner p(intent);
  for (const std::string& kind : project.kinds) {
    for (std::string_view goal : kStepGoalOrder) {
      if (!p.Asked(goal)) continue;
      if (kind == "python" && project.python) PlanPython(*project.python, goal, p);
      if (kind == "node" && project.node) PlanNode(*project.node, goal, p);
      if (kind == "cmake" && project.cmake) PlanCMake(*project.cmake, goal, p);
      if (kind == "make" && project.make) PlanMake(*project.make, goal, p);
      if (kind == "cargo" && project.cargo) PlanCargo(goal, p);
      if (kind == "go" && project.go) PlanGo(goal, p);
    }
  }
  if (p.steps().empty()) {
    std::vector<std::string> asked, looked;
    for (const std::string& goal : intent.goals) {
      if (goal == "report") continue;
      asked.push_back(goal);
      auto it = p.missing().find(goal);
      if (it != p.missing().end()) {
        looked.push_back(fmt::format("for {}, looked for {}", goal, fmt::join(it->second, "; ")));
      }
    }
    return MakeError(ErrorCode::kNotFound,
                     "no plan for this intent: the {} project has no tooling the planner knows "
                     "for {} ({})",
                     fmt::join(project.kinds, "+"), fmt::join(asked, ", "),
                     fmt::join(looked, " | "));
  }
  Plan plan;
  plan.goals = intent.goals;
  plan.report = Contains(intent.goals, "report");
  plan.summary = Summarize(intent, project, p, p.steps().size());
  plan.steps = std::move(p.steps());
  return plan;
}

Result<Plan> PlanFromIntent(std::string_view intent_text, const ProjectSummary& project) {
  auto intent = ParseIntent(intent_text);
  if (!intent.ok()) return std::move(intent).error();
  return PlanFromGoals(*intent, project);
}

}  // namespace sbx::supervisor::plan
