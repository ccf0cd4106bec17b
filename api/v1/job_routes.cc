// /v1/jobs: the allowlisted jobs of <policy_dir>/jobs.yaml, and starting one by name with typed
// parameters (supervisor/policy/jobs.h; Projects::SubmitJob).
#include "api/v1/route_util.h"
#include "api/v1/run_routes.h"
#include "supervisor/policy/jobs.h"

namespace sbx::api {

Status AddJobRoutes(Router& router, const RouteContext& ctx) {
  const RouteContext c = ctx;
  // The jobs the caller may start (every job for reviewers and admins), with their parameters'
  // schema.
  SBX_TRY(
      router.Add(Method::kGet, "/v1/jobs", Access::kSubmitter, [c](const Request& req) -> Reply {
        const supervisor::Principal who = ToPrincipal(*c.config, req);
        const auto jobs = c.runs->review().jobs();
        nlohmann::json out = nlohmann::json::array();
        for (const policy::Job& j : jobs->jobs()) {
          if (who.role == supervisor::Role::kSubmitter && !policy::MayStart(j, who.name)) continue;
          nlohmann::json shown = policy::JobToJson(j, jobs->source());
          // Which other keys may start it is the administrator's business, not a tenant's.
          if (who.role == supervisor::Role::kSubmitter) shown.erase("keys");
          out.push_back(std::move(shown));
        }
        return JsonResponse(200, {{"jobs", out}});
      }));
  SBX_TRY(router.Add(
      Method::kPost, "/v1/jobs/{name}/runs", Access::kSubmitter, [c](const Request& req) -> Reply {
        // {"params": {…}, "idempotency_key": "…"}; nothing else: a caller adds no argv.
        auto body = ParseBody(req, true);
        if (!body.ok()) return ErrorResponse(body.error());
        if (!body->is_object()) return ErrorResponse(FieldError("body", "must be a JSON object"));
        std::optional<std::string> key;
        std::string sha;
        for (auto it = body->begin(); it != body->end(); ++it) {
          if (it.key() == "params") {
            if (!it.value().is_object()) {
              return ErrorResponse(FieldError("params", "must be an object"));
            }
          } else if (it.key() == "idempotency_key") {
            if (!it.value().is_string()) {
              return ErrorResponse(FieldError("idempotency_key", "must be a string"));
            }
            key = it.value().get<std::string>();
          } else if (it.key() == "sha") {
            // A commit of the job's project's repo, checked out read-only for its run.
            if (!it.value().is_string()) {
              return ErrorResponse(FieldError("sha", "must be a string"));
            }
            sha = it.value().get<std::string>();
          } else {
            return ErrorResponse(
                FieldError(it.key(),
                           "unknown field; a job's run takes params, sha and idempotency_key (its "
                           "argv is the job's)"));
          }
        }
        if (auto h = req.headers.Get("Idempotency-Key")) key = std::string(*h);
        auto created = c.runs->projects().SubmitJob(req.PathParam("name"),
                                                    body->value("params", nlohmann::json::object()),
                                                    key, ToPrincipal(*c.config, req), sha);
        if (!created.ok()) return ErrorResponseWithRetry(created.error());
        return JsonResponse(created->created ? 201 : 200, RunToJson(created->run));
      }));
  return Ok();
}

}  // namespace sbx::api
