// GET /metrics: the daemon's metrics in the Prometheus text format (exposition 0.0.4).
#pragma once

#include <functional>
#include <string>

#include "api/http/router.h"
#include "api/v1/run_routes.h"
#include "supervisor/observability/metrics.h"

namespace sbx::api {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Adds GET /metrics. Public unless `require_key` (config metrics_require_key): then any valid
// API key. `metrics` must outlive the router; null answers an empty page. `more`, when set,
// appends families of its own (the node and the cluster, NodeMetrics).
Status AddMetricsRoute(Router& router, const supervisor::Metrics* metrics, bool require_key,
                       std::function<std::string()> more = nullptr);

// sandboxd_node_info{node, version} 1 for the node answering, and sandboxd_cluster_nodes{state}
// for the nodes sharing its database (as GET /v1/nodes counts them).
std::string NodeMetrics(const RouteContext& ctx);

}  // namespace sbx::api
