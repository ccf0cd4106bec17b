// Projects and their plans, as the store keeps them (store.h, "Projects and plans").
//
// A project is a host directory (root_path, under the daemon's workspace roots) or a repository
// (repo), with the defaults its runs inherit (limits, workspace mode, labels) and the API keys
// that may use it (members). A plan is an immutable answer to an intent for one project: ordered
// steps with their policy decisions, the limits and workspace they will get, and a hash over all
// of it.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace sbx::store {

struct ProjectRecord {
  std::string id;  // "prj_" + 20 base32 characters; empty in CreateProject: one is made
  std::string name;  // unique; [a-z0-9][a-z0-9_.-]{0,63}
  std::string created_by;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
  int64_t version = 1;  // 1 when created, +1 with each update
  std::string root_path;  // "" when the project is a repository only
  std::string repo;       // "" when none
  // What its runs inherit, as the API sends it (limits: cpus, memory_bytes, pids, timeout_s,
  // output_bytes; workspace_mode: "ro" or "cow").
  nlohmann::json default_limits = nlohmann::json::object();
  std::string default_workspace_mode = "ro";
  std::map<std::string, std::string> labels;
  std::vector<std::string> members;  // API key names that may use it; sorted, unique
  bool operator==(const ProjectRecord&) const = default;
};

struct ProjectFilter {
  std::optional<std::string> member;  // only projects this key is a member of
  std::string cursor;                 // next_cursor of the previous page; empty: the first
  int limit = 50;                     // 1..1000
};

struct ProjectPage {
  std::vector<ProjectRecord> projects;  // oldest first
  std::string next_cursor;              // empty when this is the last page
};

struct PlanRecord {
  std::string id;  // "pln_" + 20 base32 characters; empty in CreatePlan: one is made
  std::string project_id;
  std::string created_by;
  int64_t created_at_ms = 0;
  std::string sha256;  // of `plan` (canonical JSON text)
  nlohmann::json plan;  // the whole plan as the API shows it (steps, decisions, limits, …)
  bool operator==(const PlanRecord&) const = default;
};

// "prj_…" and "pln_…", 100 bits from getrandom(2) each.
std::string NewProjectId();
std::string NewPlanId();

}  // namespace sbx::store
