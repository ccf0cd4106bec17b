// /v1/projects and /v1/plans: projects (admins manage them; a submitter sees its own), plans
// from intent, and runs of a project or of a plan (supervisor/project/projects.h).
#include <fmt/format.h>

#include "api/v1/route_util.h"
#include "api/v1/run_routes.h"
#include "supervisor/project/projects.h"

namespace sbx::api {
namespace {

using store::PlanRecord;
using store::ProjectRecord;

Reply Fail(const Error& e) { return ErrorResponseWithRetry(e); }

nlohmann::json ProjectToJson(const ProjectRecord& p) {
  auto opt = [](const std::string& s) {
    return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s);
  };
  return {{"id", p.id},
          {"name", p.name},
          {"version", p.version},
          {"root_path", opt(p.root_path)},
          {"repo", opt(p.repo)},
          {"default_limits", p.default_limits},
          {"default_workspace_mode", p.default_workspace_mode},
          {"labels", p.labels},
          {"members", p.members},
          {"created_by", p.created_by},
          {"created_at_ms", p.created_at_ms},
          {"updated_at_ms", p.updated_at_ms}};
}

nlohmann::json PlanToJson(const PlanRecord& p) {
  nlohmann::json j = p.plan;
  j["id"] = p.id;
  j["project_id"] = p.project_id;
  j["sha256"] = p.sha256;
  j["created_by"] = p.created_by;
  j["created_at_ms"] = p.created_at_ms;
  return j;
}

// A project body: POST takes every field (name and root_path or repo needed), PATCH any of them
// (and "version", the version the change was made against).
Result<supervisor::ProjectInput> ProjectInputFromJson(const nlohmann::json& body, bool patch,
                                                      int64_t* version) {
  if (!body.is_object()) return FieldError("body", "must be a JSON object");
  supervisor::ProjectInput in;
  for (auto it = body.begin(); it != body.end(); ++it) {
    const std::string& k = it.key();
    const nlohmann::json& v = it.value();
    auto text = [&](std::optional<std::string>& out) -> Status {
      if (!v.is_string() || v.get<std::string>().find('\0') != std::string::npos) {
        return FieldError(k, "must be a string without NUL");
      }
      out = v.get<std::string>();
      return Ok();
    };
    if (k == "name") {
      SBX_TRY(text(in.name));
    } else if (k == "root_path") {
      SBX_TRY(text(in.root_path));
    } else if (k == "repo") {
      SBX_TRY(text(in.repo));
    } else if (k == "default_workspace_mode") {
      SBX_TRY(text(in.default_workspace_mode));
    } else if (k == "default_limits") {
      auto l = LimitsFromJson(v, k);
      if (!l.ok()) return std::move(l).error();
      in.default_limits = *l;
    } else if (k == "labels") {
      auto l = StringMap(v, k);
      if (!l.ok()) return std::move(l).error();
      in.labels = std::move(*l);
    } else if (k == "members") {
      if (v.is_array() && v.empty()) {
        in.members = std::vector<std::string>();
      } else {
        auto m = StringArray(v, k);
        if (!m.ok()) return std::move(m).error();
        in.members = std::move(*m);
      }
    } else if (k == "version" && patch) {
      if (!v.is_number_integer() || v.get<int64_t>() < 1) {
        return FieldError(k, "must be the project's version (a positive integer)");
      }
      *version = v.get<int64_t>();
    } else {
      return FieldError(k,
                        "unknown field (name, root_path, repo, default_limits, "
                        "default_workspace_mode, labels, members" +
                            std::string(patch ? ", version)" : ")"));
    }
  }
  if (!patch && !in.name) return FieldError("name", "a project needs a name");
  return in;
}

// Every member is a configured API key: a typo would lock its owner out in silence.
Status CheckMembers(const supervisor::ServiceConfig& config, const supervisor::ProjectInput& in) {
  if (!in.members) return Ok();
  for (const std::string& m : *in.members) {
    bool known = false;
    for (const auto& k : config.api_keys) known = known || k.name == m;
    if (!known) return FieldError("members", fmt::format("'{}' is not a configured API key", m));
  }
  return Ok();
}

}  // namespace

Status AddProjectRoutes(Router& router, const RouteContext& ctx) {
  const RouteContext c = ctx;
  auto projects = [c]() -> supervisor::Projects& { return c.runs->projects(); };
  SBX_TRY(
      router.Add(Method::kPost, "/v1/projects", Access::kAdmin, [=](const Request& req) -> Reply {
        auto body = ParseBody(req, false);
        if (!body.ok()) return Fail(body.error());
        int64_t unused = 0;
        auto in = ProjectInputFromJson(*body, false, &unused);
        if (!in.ok()) return Fail(in.error());
        if (Status st = CheckMembers(*c.config, *in); !st.ok()) return Fail(st.error());
        auto p = projects().Create(*in, ToPrincipal(*c.config, req));
        if (!p.ok()) return Fail(p.error());
        return JsonResponse(201, ProjectToJson(*p));
      }));
  SBX_TRY(router.Add(
      Method::kGet, "/v1/projects", Access::kSubmitter, [=](const Request& req) -> Reply {
        store::ProjectFilter f;
        f.cursor = std::string(req.query.Get("cursor").value_or(""));
        auto limit = NonNegativeParam(req, "limit", 50);
        if (!limit.ok()) return Fail(limit.error());
        f.limit = static_cast<int>(std::min<int64_t>(*limit, 100000));
        auto page = projects().List(f, ToPrincipal(*c.config, req));
        if (!page.ok()) return Fail(page.error());
        nlohmann::json out = nlohmann::json::array();
        for (const auto& p : page->projects) out.push_back(ProjectToJson(p));
        return JsonResponse(
            200, {{"projects", out},
                  {"next_cursor", page->next_cursor.empty() ? nlohmann::json(nullptr)
                                                            : nlohmann::json(page->next_cursor)}});
      }));
  SBX_TRY(router.Add(Method::kGet, "/v1/projects/{id}", Access::kSubmitter,
                     [=](const Request& req) -> Reply {
                       auto p = projects().Get(req.PathParam("id"), ToPrincipal(*c.config, req));
                       if (!p.ok()) return Fail(p.error());
                       return JsonResponse(200, ProjectToJson(*p));
                     }));
  SBX_TRY(router.Add(
      Method::kPatch, "/v1/projects/{id}", Access::kAdmin, [=](const Request& req) -> Reply {
        auto body = ParseBody(req, false);
        if (!body.ok()) return Fail(body.error());
        int64_t version = 0;
        auto in = ProjectInputFromJson(*body, true, &version);
        if (!in.ok()) return Fail(in.error());
        if (Status st = CheckMembers(*c.config, *in); !st.ok()) return Fail(st.error());
        auto p = projects().Update(req.PathParam("id"), version, *in, ToPrincipal(*c.config, req));
        if (!p.ok()) return Fail(p.error());
        return JsonResponse(200, ProjectToJson(*p));
      }));
  SBX_TRY(router.Add(
      Method::kDelete, "/v1/projects/{id}", Access::kAdmin, [=](const Request& req) -> Reply {
        Status st = projects().Delete(req.PathParam("id"), ToPrincipal(*c.config, req));
        if (!st.ok()) return Fail(st.error());
        return JsonResponse(200, {{"deleted", std::string(req.PathParam("id"))}});
      }));
  SBX_TRY(router.Add(Method::kPost, "/v1/projects/{id}/plans", Access::kSubmitter,
                     [=](const Request& req) -> Reply {
                       // {"intent_text": "…", "planner"?: "builtin" | a configured one}.
                       auto fields = OptionalStringFields(req, {"intent_text", "planner"});
                       if (!fields.ok()) return Fail(fields.error());
                       auto plan =
                           projects().MakePlan(req.PathParam("id"), (*fields)["intent_text"],
                                               ToPrincipal(*c.config, req), (*fields)["planner"]);
                       if (!plan.ok()) return Fail(plan.error());
                       return JsonResponse(201, PlanToJson(*plan));
                     }));
  SBX_TRY(router.Add(Method::kGet, "/v1/projects/{id}/plans", Access::kSubmitter,
                     [=](const Request& req) -> Reply {
                       auto limit = NonNegativeParam(req, "limit", 50);
                       if (!limit.ok()) return Fail(limit.error());
                       auto plans = projects().ListPlans(
                           req.PathParam("id"), static_cast<int>(std::min<int64_t>(*limit, 100000)),
                           ToPrincipal(*c.config, req));
                       if (!plans.ok()) return Fail(plans.error());
                       nlohmann::json out = nlohmann::json::array();
                       for (const auto& p : *plans) out.push_back(PlanToJson(p));
                       return JsonResponse(200, {{"plans", out}});
                     }));
  SBX_TRY(router.Add(
      Method::kGet, "/v1/plans/{id}", Access::kSubmitter, [=](const Request& req) -> Reply {
        auto plan = projects().GetPlan(req.PathParam("id"), ToPrincipal(*c.config, req));
        if (!plan.ok()) return Fail(plan.error());
        return JsonResponse(200, PlanToJson(*plan));
      }));
  // {"plan_id": …, "idempotency_key"?: …}: the plan as a run; or a run body (argv or steps, …)
  // that inherits the project's defaults.
  SBX_TRY(router.Add(Method::kPost, "/v1/projects/{id}/runs", Access::kSubmitter,
                     [=](const Request& req) -> Reply {
                       auto body = ParseBody(req, false);
                       if (!body.ok()) return Fail(body.error());
                       const supervisor::Principal who = ToPrincipal(*c.config, req);
                       Result<store::CreateRunResult> created =
                           MakeError(ErrorCode::kInternal, "not submitted");
                       if (body->is_object() && body->contains("plan_id")) {
                         std::optional<std::string> key;
                         for (auto it = body->begin(); it != body->end(); ++it) {
                           if (it.key() != "plan_id" && it.key() != "idempotency_key") {
                             return Fail(FieldError(it.key(),
                                                    "unknown field; a plan's run takes plan_id and "
                                                    "idempotency_key"));
                           }
                           if (!it.value().is_string())
                             return Fail(FieldError(it.key(), "must be a string"));
                         }
                         if (body->contains("idempotency_key"))
                           key = (*body)["idempotency_key"].get<std::string>();
                         if (auto h = req.headers.Get("Idempotency-Key")) key = std::string(*h);
                         created = projects().RunPlan(
                             req.PathParam("id"), (*body)["plan_id"].get<std::string>(), key, who);
                       } else {
                         if (body->is_object() && body->contains("project")) {
                           return Fail(FieldError("project", "the path names the project"));
                         }
                         auto run = RunRequestFromJson(*body);
                         if (!run.ok()) return Fail(run.error());
                         if (auto h = req.headers.Get("Idempotency-Key"))
                           run->idempotency_key = std::string(*h);
                         created = projects().SubmitRun(req.PathParam("id"), std::move(*run), who);
                       }
                       if (!created.ok()) return Fail(created.error());
                       return JsonResponse(created->created ? 201 : 200, RunToJson(created->run));
                     }));
  return Ok();
}

}  // namespace sbx::api
