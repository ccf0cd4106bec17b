// Projects, and plans from intent: the service side of /v1/projects.
//
// A project is a host directory under the daemon's workspace roots (or a repository), with the
// defaults its runs inherit and the API keys that may use it. Admins create, change and delete
// projects; reviewers and admins see every project; a submitter sees only the projects it is a
// member of, and learns nothing of the others (not found, as for a project that does not exist).
//
// A plan answers an intent ("run the tests and give me a report", "运行测试并生成报告") for one
// project: the built-in planner (supervisor/plan/) reads the project's tree and maps the intent
// to ordered steps; each step gets the command policy's decision, and the plan the limits,
// workspace and labels its run will have. A plan is immutable and carries the sha256 of all of
// it. RunPlan submits it as a run of the project, which goes to the review gate like any run.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "supervisor/events/audit.h"
#include "supervisor/events/event_bus.h"
#include "supervisor/review/limits.h"
#include "supervisor/review/review.h"
#include "supervisor/store/store.h"

namespace sbx::supervisor {

// A pluggable planner (sandboxd.yaml `planners:`): it gets {"intent_text", "project": {id, name,
// root_path}, "summary": the built-in planner's reading of the directory} as JSON and answers
// {"steps": [{"name", "argv", "why"}]} (plan::ParsePlannerAnswer), within timeout_s.
//   url: http://HOST:PORT/PATH, POSTed the input; the answer is the 200 response's body.
//   command: an absolute argv, run as a run of the project (no network, the directory read-only
//   at /workspace, the input on stdin, the answer on stdout), started without a reviewer.
struct PlannerConfig {
  std::string name;
  std::string url;
  std::vector<std::string> command;
  int64_t timeout_s = 30;
};
// kInvalidArgument naming what is wrong with one.
Status CheckPlannerConfig(const PlannerConfig& planner);

struct ProjectOptions {
  std::string data_dir;  // a project's directory may not overlap it
  ServiceLimits limits;  // workspace roots, and the maxima its default limits must keep within
  std::vector<PlannerConfig> planners;
  // This node's name: a planner command runs here (its answer is read from this node's data
  // directory), by node_selector {node: NAME}.
  std::string node;
};

// A project's fields as a client sends them: unset ones are left as they are (PATCH) or take
// their defaults (POST).
struct ProjectInput {
  std::optional<std::string> name;
  std::optional<std::string> root_path;  // "" removes it (PATCH)
  std::optional<std::string> repo;       // "" removes it (PATCH)
  std::optional<store::Limits> default_limits;
  std::optional<std::string> default_workspace_mode;  // "ro" or "cow"
  std::optional<std::map<std::string, std::string>> labels;
  std::optional<std::vector<std::string>> members;
};

// At most this many bytes of intent.
inline constexpr size_t kMaxIntentBytes = 4096;

class Projects {
 public:
  Projects(store::Store& store, EventBus& events, Review& review, ProjectOptions options);

  // Admin only (kPermissionDenied). kInvalidArgument for a malformed name ([a-z0-9][a-z0-9_.-]
  // {0,63}), neither root_path nor repo, a mode other than ro/cow, limits past the maxima;
  // root_path is resolved as a workspace is (kPermissionDenied outside the roots or through a
  // symlink, kNotFound when missing) and stored canonical; kAlreadyExists for a taken name.
  Result<store::ProjectRecord> Create(const ProjectInput& input, const Principal& who);
  // By id or name; kNotFound for a project the caller may not see.
  Result<store::ProjectRecord> Get(std::string_view id_or_name, const Principal& who);
  // The caller's projects (every project for reviewers and admins).
  Result<store::ProjectPage> List(store::ProjectFilter filter, const Principal& who);
  // Admin only. `expected_version` 0: whatever the version is; else kFailedPrecondition when
  // the project changed since.
  Result<store::ProjectRecord> Update(std::string_view id_or_name, int64_t expected_version,
                                      const ProjectInput& patch, const Principal& who);
  Status Delete(std::string_view id_or_name, const Principal& who);

  // Plans `intent_text` for the project with `planner` ("" or "builtin": the built-in planner,
  // else a configured one) and stores the plan. kNotFound "no plan for this intent: …" when the
  // built-in planner has none (an intent it does not understand, or tooling the project lacks),
  // or for an unknown planner; kFailedPrecondition for a project without a root_path, an
  // external planner's answer that is not a plan (the message says what is wrong with it), and
  // a plan with a step the command policy denies; kUnavailable for a planner that did not
  // answer; kInvalidArgument for an empty or oversized intent.
  Result<store::PlanRecord> MakePlan(std::string_view project, std::string_view intent_text,
                                     const Principal& who, std::string_view planner = "");
  // kNotFound for a plan of a project the caller may not see.
  Result<store::PlanRecord> GetPlan(std::string_view plan_id, const Principal& who);
  Result<std::vector<store::PlanRecord>> ListPlans(std::string_view project, int limit,
                                                   const Principal& who);
  // Submits `request` as a run of the project: limits it leaves unset take the project's
  // defaults, no workspace takes the project's directory in its default mode, and the
  // project's labels come under the request's own. Then as Review::Submit.
  Result<store::CreateRunResult> SubmitRun(std::string_view project, store::RunRequest request,
                                           const Principal& who,
                                           const nlohmann::json* decided = nullptr);
  // Starts an allowlisted job (Review::jobs()): its argv with `params` filled in
  // (policy::InstantiateJob), its limits, its workspace or project; its run waits for a
  // reviewer or not as the job says (jobs.yaml is the policy of its runs). kNotFound for no such
  // job; kPermissionDenied for a key the job does not list (admins may start any);
  // kInvalidArgument for parameters the job refuses.
  // With `sha`, the job runs on that commit of its project's repo, read-only (a pinned
  // checkout).
  Result<store::CreateRunResult> SubmitJob(std::string_view job_name,
                                           const nlohmann::json& params,
                                           std::optional<std::string> idempotency_key,
                                           const Principal& who, const std::string& sha = "");
  // Submits the plan as a run of its project (Review::Submit: the policy decides, the gate
  // waits for a reviewer). kInvalidArgument when the plan is another project's.
  Result<store::CreateRunResult> RunPlan(std::string_view project, std::string_view plan_id,
                                         std::optional<std::string> idempotency_key,
                                         const Principal& who);

 private:
  Result<store::ProjectRecord> Visible(std::string_view id_or_name, const Principal& who);
  // An external planner's answer text (external_planner.cc).
  Result<std::string> AskPlanner(const PlannerConfig& planner, const store::ProjectRecord& project,
                                 const nlohmann::json& input, const Principal& who);
  Status Check(store::ProjectRecord& p);

  store::Store& store_;
  EventBus& events_;
  Review& review_;
  ProjectOptions options_;
};

// The plan document's sha256: over its canonical JSON text (keys sorted), which holds
// everything that decides what its run will do.
std::string PlanDocumentSha256(const nlohmann::json& plan);

// A project's default limits as stored and shown (store::LimitsToJson) read back; a field of
// another type is left unset.
store::Limits ProjectLimitsFromJson(const nlohmann::json& j);

}  // namespace sbx::supervisor
