#include "api/v1/metrics_routes.h"

#include <fmt/format.h>

#include <map>
#include <string_view>

namespace sbx::api {

Status AddMetricsRoute(Router& router, const supervisor::Metrics* metrics, bool require_key,
                       std::function<std::string()> more) {
  return router.Add(Method::kGet, "/metrics", require_key ? Access::kSubmitter : Access::kPublic,
                    [metrics, more](const Request&) -> Reply {
                      Response r;
                      r.content_type = kMetricsContentType;
                      if (metrics != nullptr) r.body = metrics->Render();
                      if (more) r.body += more();
                      return r;
                    });
}

std::string NodeMetrics(const RouteContext& ctx) {
  // Node names and versions are label values: quoted, with '\\', '"' and newlines escaped.
  auto quoted = [](std::string_view v) {
    std::string out;
    for (char c : v) {
      if (c == '\\' || c == '"') out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    return out;
  };
  std::string out =
      "# HELP sandboxd_node_info The node answering: its name in the store and its version.\n"
      "# TYPE sandboxd_node_info gauge\n";
  out += fmt::format("sandboxd_node_info{{node=\"{}\",version=\"{}\"}} 1\n",
                     quoted(ctx.runs->options().node), quoted(ctx.runs->options().node_version));
  auto nodes = ctx.store->ListNodes();
  if (!nodes.ok()) return out;
  std::map<std::string, int> by_state = {{"ready", 0}, {"draining", 0}, {"lost", 0}};
  for (const auto& n : *nodes) ++by_state[NodeStateShown(n, ctx)];
  out +=
      "# HELP sandboxd_cluster_nodes The nodes sharing this node's database, by state.\n"
      "# TYPE sandboxd_cluster_nodes gauge\n";
  for (const auto& [state, count] : by_state) {
    out += fmt::format("sandboxd_cluster_nodes{{state=\"{}\"}} {}\n", state, count);
  }
  return out;
}

}  // namespace sbx::api
