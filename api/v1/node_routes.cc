// The nodes sharing the store (several daemons on one PostgreSQL): GET /v1/nodes, and an
// operator's drain (POST /v1/nodes/{name}:drain, :resume).
#include <algorithm>
#include <chrono>

#include "api/v1/route_util.h"
#include "base/clock.h"
#include "api/v1/run_routes.h"

namespace sbx::api {
namespace {

}  // namespace

const char* NodeStateShown(const store::NodeRecord& n, const RouteContext& ctx) {
  // A node not yet declared lost whose beats stopped shows as lost already: nothing runs there.
  const bool stale = NowMs() - n.last_heartbeat_ms > ctx.runs->node_timeout().count();
  return stale ? "lost" : store::NodeStateName(n.state);
}

nlohmann::json NodeToJson(const store::NodeRecord& n, const RouteContext& ctx) {
  const int64_t age = std::max<int64_t>(0, NowMs() - n.last_heartbeat_ms);
  return {{"name", n.name},
          {"state", NodeStateShown(n, ctx)},
          {"self", n.name == ctx.runs->options().node},
          {"labels", n.labels},
          {"capacity", n.capacity},
          {"running", n.running},
          {"version", n.version},
          {"address", n.address.empty() ? nlohmann::json(nullptr) : nlohmann::json(n.address)},
          {"last_heartbeat_ms", n.last_heartbeat_ms},
          {"heartbeat_age_ms", age},
          {"started_at_ms", n.started_at_ms}};
}

Status AddNodeRoutes(Router& router, const RouteContext& ctx) {
  const RouteContext c = ctx;
  SBX_TRY(router.Add(Method::kGet, "/v1/nodes", Access::kReviewer,
                     [c](const Request&) -> Reply {
                       auto nodes = c.store->ListNodes();
                       if (!nodes.ok()) return ErrorResponse(nodes.error());
                       nlohmann::json out = nlohmann::json::array();
                       for (const auto& n : *nodes) out.push_back(NodeToJson(n, c));
                       return JsonResponse(200, {{"nodes", std::move(out)}});
                     }));
  for (const bool drain : {true, false}) {
    const std::string path = drain ? "/v1/nodes/{name}:drain" : "/v1/nodes/{name}:resume";
    SBX_TRY(router.Add(
        Method::kPost, path, Access::kAdmin, [c, drain](const Request& req) -> Reply {
          const std::string name = std::string(req.PathParam("name"));
          auto node = c.store->SetNodeState(
              name, drain ? store::NodeState::kDraining : store::NodeState::kReady);
          if (!node.ok()) return ErrorResponse(node.error());
          // This node at once; another at its next heartbeat.
          if (name == c.runs->options().node) c.runs->SetDraining(drain);
          c.runs->events().Audit(ToPrincipal(*c.config, req),
                                 drain ? "node.drained" : "node.resumed", "", {{"node", name}});
          return JsonResponse(200, NodeToJson(*node, c));
        }));
  }
  return Ok();
}

}  // namespace sbx::api
