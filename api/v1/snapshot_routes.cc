// Snapshots of sandboxes (supervisor/sandbox/snapshots.h): POST /v1/sandboxes/{id}:snapshot
// takes one, /v1/snapshots lists, shows and deletes them; POST /v1/sandboxes with
// "from_snapshot" starts a sandbox from one. A submitter sees its own snapshots only.
#include "api/v1/route_util.h"
#include "api/v1/sandbox_routes.h"

namespace sbx::api {
namespace {

using nlohmann::json;

json SnapshotToJson(const supervisor::SnapshotRecord& s) {
  return {{"id", s.id},
          {"name", s.name},
          {"owner", s.owner},
          {"source_sandbox", s.source_sandbox},
          {"created_at", s.created_at_ms},
          {"bytes", s.bytes},
          {"dirs", s.dirs},
          {"skipped", s.skipped}};
}

}  // namespace

Status AddSnapshotRoutes(Router& router, const SandboxRouteContext& ctx) {
  SBX_TRY(router.Add(Method::kPost, "/v1/sandboxes/{id}:snapshot", Access::kSubmitter,
                     [ctx](const Request& req) -> Reply {
                       // Its files are on the node that runs it, and so is the snapshot.
                       if (auto elsewhere = SandboxElsewhere(ctx, req, /*websocket=*/false)) {
                         return std::move(*elsewhere);
                       }
                       auto body = ParseBody(req, false);
                       if (!body.ok()) return ErrorResponse(body.error());
                       if (!body->is_object() || !body->contains("name") ||
                           !(*body)["name"].is_string() || body->size() != 1) {
                         return ErrorResponse(FieldError("name", "the body is {\"name\": NAME}"));
                       }
                       auto snap = ctx.sandboxes->Snapshot(req.PathParam("id"),
                                                           (*body)["name"].get<std::string>(),
                                                           ToPrincipal(*ctx.config, req));
                       if (!snap.ok()) return ErrorResponse(snap.error());
                       return JsonResponse(201, SnapshotToJson(*snap));
                     }));
  SBX_TRY(router.Add(Method::kGet, "/v1/snapshots", Access::kSubmitter,
                     [ctx](const Request& req) -> Reply {
                       auto list = ctx.sandboxes->ListSnapshots(ToPrincipal(*ctx.config, req));
                       if (!list.ok()) return ErrorResponse(list.error());
                       json out = json::array();
                       for (const auto& s : *list) out.push_back(SnapshotToJson(s));
                       return JsonResponse(200, {{"snapshots", std::move(out)}});
                     }));
  SBX_TRY(router.Add(Method::kGet, "/v1/snapshots/{name}", Access::kSubmitter,
                     [ctx](const Request& req) -> Reply {
                       auto s = ctx.sandboxes->GetSnapshot(req.PathParam("name"),
                                                           ToPrincipal(*ctx.config, req));
                       if (!s.ok()) return ErrorResponse(s.error());
                       return JsonResponse(200, SnapshotToJson(*s));
                     }));
  SBX_TRY(router.Add(Method::kDelete, "/v1/snapshots/{name}", Access::kSubmitter,
                     [ctx](const Request& req) -> Reply {
                       Status st = ctx.sandboxes->DeleteSnapshot(req.PathParam("name"),
                                                                 ToPrincipal(*ctx.config, req));
                       if (!st.ok()) return ErrorResponse(st.error());
                       return JsonResponse(200, {{"deleted", std::string(req.PathParam("name"))}});
                     }));
  return Ok();
}

}  // namespace sbx::api
