#include "api/v1/metrics_routes.h"

namespace sbx::api {

Status AddMetricsRoute(Router& router, const supervisor::Metrics* metrics, bool require_key) {
  return router.Add(Method::kGet, "/metrics", require_key ? Access::kSubmitter : Access::kPublic,
                    [metrics](const Request&) -> Reply {
                      Response r;
                      r.content_type = kMetricsContentType;
                      if (metrics != nullptr) r.body = metrics->Render();
                      return r;
                    });
}

}  // namespace sbx::api
