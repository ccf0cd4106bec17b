// Operators' intents (plan::PlanFromIntent over a project of every kind the planner knows) and
// external planners' answers (plan::ParsePlannerAnswer), both from the same bytes.
#include <cstdint>
#include <string>
#include <string_view>

#include "supervisor/plan/planner.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sbx::supervisor::plan;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  static const ProjectSummary every = [] {
    ProjectSummary s;
    s.kinds = {"python", "node", "cmake", "make", "cargo", "go"};
    s.python = PythonProject{};
    s.python->files = {"pyproject.toml", "tox.ini"};
    s.python->tools = {{"pytest", "pytest.ini"}, {"ruff", "ruff.toml"}, {"mypy", "mypy.ini"}};
    s.node = NodeProject{};
    s.node->package_manager = "pnpm";
    s.node->scripts = {"test", "lint", "build", "typecheck"};
    s.node->parsed = true;
    s.cmake = CMakeProject{true, true};
    s.make = MakeProject{"Makefile", {"all", "test", "lint"}, "all"};
    s.cargo = CargoProject{};
    s.go = GoProject{"example.org/m"};
    return s;
  }();
  if (auto plan = PlanFromIntent(text, every); plan.ok()) {
    if (plan->steps.empty()) __builtin_trap();
    for (const auto& step : plan->steps) {
      if (step.argv.empty() || step.name.empty()) __builtin_trap();
    }
  }
  if (auto steps = ParsePlannerAnswer(text); steps.ok()) {
    if (steps->empty() || steps->size() > kMaxAnswerSteps) __builtin_trap();
    for (const auto& s : *steps) {
      if (s.argv.empty() || s.argv.size() > kMaxArgvEntries) __builtin_trap();
    }
  }
  return 0;
}
