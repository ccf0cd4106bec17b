#include <nlohmann/json.hpp>

#include "supervisor/plan/project_summary.h"

namespace sbx::supervisor::plan {

// Every string here is valid UTF-8 (package.json's script names come from nlohmann's parser,
// which refuses anything else; the rest are this library's own words or ASCII names checked by
// the readers), so dump() cannot throw on them.
nlohmann::json SummaryToJson(const ProjectSummary& s) {
  using nlohmann::json;
  json j = json::object();
  j["kinds"] = s.kinds;
  if (s.python) {
    json tools = json::object();
    for (const auto& [tool, evidence] : s.python->tools) tools[tool] = evidence;
    j["python"] = {{"files", s.python->files},
                   {"tools", std::move(tools)},
                   {"tool_sections", s.python->tool_sections},
                   {"tests_dir", s.python->tests_dir}};
  }
  if (s.node) {
    j["node"] = {{"package_manager", s.node->package_manager},
                 {"package_manager_source", s.node->package_manager_source},
                 {"scripts", s.node->scripts},
                 {"test_script_placeholder", s.node->test_script_placeholder},
                 {"typescript", s.node->typescript},
                 {"tsconfig", s.node->tsconfig},
                 {"package_json_parsed", s.node->parsed}};
  }
  if (s.cmake) {
    j["cmake"] = {{"testing_enabled", s.cmake->testing_enabled},
                  {"add_test_seen", s.cmake->add_test_seen}};
  }
  if (s.make) {
    j["make"] = {{"makefile", s.make->makefile},
                 {"targets", s.make->targets},
                 {"default_goal", s.make->default_goal}};
  }
  if (s.cargo) j["cargo"] = {{"workspace", s.cargo->workspace}};
  if (s.go) j["go"] = {{"module", s.go->module}};
  j["files_seen"] = s.files_seen;
  j["notes"] = s.notes;
  return j;
}

}  // namespace sbx::supervisor::plan
