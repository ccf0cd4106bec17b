// The /v1 API of `sandboxd serve`: thin handlers that decode a DTO, call the run manager or the
// store, and encode the answer.
#pragma once

#include <string>

#include "api/http/router.h"
#include "cgroup/cgroup.h"
#include "supervisor/service/config.h"
#include "supervisor/service/run_manager.h"
#include "supervisor/store/store.h"

namespace sbx::api {

struct RouteContext {
  supervisor::RunManager* runs = nullptr;
  store::Store* store = nullptr;
  const supervisor::ServiceConfig* config = nullptr;
  const cgroup::HostInfo* host = nullptr;
};

// Adds every route (healthz, info, runs, review verbs, logs, events, audit, changes) to
// `router`.
Status AddRunRoutes(Router& router, const RouteContext& ctx);
// /v1/projects…, /v1/plans/{id} (project_routes.cc).
Status AddProjectRoutes(Router& router, const RouteContext& ctx);
// GET /v1/jobs, POST /v1/jobs/{name}/runs (job_routes.cc).
Status AddJobRoutes(Router& router, const RouteContext& ctx);
// GET /v1/runs/{id}/changes and POST /v1/runs/{id}:apply (change_routes.cc).
Status AddChangeRoutes(Router& router, const RouteContext& ctx);
// GET /v1/nodes, POST /v1/nodes/{name}:drain and :resume (node_routes.cc).
Status AddNodeRoutes(Router& router, const RouteContext& ctx);
// GET /v1/runners (a runner's link), POST /v1/runners, GET and DELETE /v1/runners/{name}
// (runner_routes.cc).
Status AddRunnerRoutes(Router& router, const RouteContext& ctx);
// A node's state as the API shows it: "lost" already when its last beat is older than
// node_timeout, before another node declares it.
const char* NodeStateShown(const store::NodeRecord& node, const RouteContext& ctx);
// A node as GET /v1/nodes shows it.
nlohmann::json NodeToJson(const store::NodeRecord& node, const RouteContext& ctx);

// The run named by the path's {id}, as the caller may see it: another submitter's run is
// not_found, exactly as a run that does not exist, so its existence is not revealed either.
Result<store::RunRecord> VisibleRun(const RouteContext& ctx, const Request& req);

// DTOs, exposed for tests. `env` goes out with its values replaced by kRedacted.
extern const char* const kRedacted;
nlohmann::json RunToJson(const store::RunRecord& run);
// Decodes a POST /v1/runs body. Unknown fields and wrong types are errors naming the field.
Result<store::RunRequest> RunRequestFromJson(const nlohmann::json& body);

}  // namespace sbx::api
