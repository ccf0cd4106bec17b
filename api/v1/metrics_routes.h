// GET /metrics: the daemon's metrics in the Prometheus text format (exposition 0.0.4).
#pragma once

#include "api/http/router.h"
#include "supervisor/observability/metrics.h"

namespace sbx::api {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Adds GET /metrics. Public unless `require_key` (config metrics_require_key): then any valid
// API key. `metrics` must outlive the router; null answers an empty page.
Status AddMetricsRoute(Router& router, const supervisor::Metrics* metrics, bool require_key);

}  // namespace sbx::api
