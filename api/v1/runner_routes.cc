// Outbound runners (supervisor/runner/): their tokens (POST /v1/runners, GET and DELETE
// /v1/runners/{name}, admin) and the link a runner dials (GET /v1/runners, a WebSocket
// authenticated with the runner's own token).
#include <map>
#include <memory>
#include <mutex>

#include "api/v1/route_util.h"
#include "api/v1/run_routes.h"
#include "base/random.h"
#include "base/sha256.h"
#include "supervisor/runner/coordinator.h"
#include "supervisor/runner/protocol.h"

namespace sbx::api {
namespace {

using nlohmann::json;

// "sbxr_" and 64 hex digits: 256 bits.
std::string NewRunnerToken() { return "sbxr_" + RandomHex(32); }

json RunnerToJson(const store::RunnerRecord& r) {
  return {{"name", r.name},
          {"created_by", r.created_by},
          {"created_at_ms", r.created_at_ms},
          {"revoked", r.revoked_at_ms.has_value()},
          {"revoked_at_ms", r.revoked_at_ms ? json(*r.revoked_at_ms) : json(nullptr)},
          {"revoked_by", r.revoked_by.empty() ? json(nullptr) : json(r.revoked_by)},
          {"applied_seq", r.applied_seq}};
}

// The links open on this node, by runner: a runner has one (a newer one replaces it), and a
// revoked token ends it. Ending one stops its claims before this returns.
class Links {
 public:
  struct Link {
    std::weak_ptr<WebSocket> ws;
    std::weak_ptr<supervisor::runner::RunnerLink> link;
  };
  void Replace(const std::string& name, Link link) {
    Link old;
    {
      std::lock_guard<std::mutex> lk(mu_);
      old = std::exchange(links_[name], std::move(link));
    }
    End(old, "a newer link of this runner replaced it");
  }
  void End(const std::string& name, const std::string& why) {
    Link old;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (auto it = links_.find(name); it != links_.end()) {
        old = it->second;
        links_.erase(it);
      }
    }
    End(old, why);
  }

 private:
  static void End(const Link& l, const std::string& why) {
    if (auto link = l.link.lock()) link->Stop();
    if (auto ws = l.ws.lock()) {
      (void)ws->Send(json{{"type", "error"}, {"message", why}}.dump());
      ws->Close();
    }
  }
  std::mutex mu_;
  std::map<std::string, Link> links_;
};

Reply Connect(const RouteContext& c, const std::shared_ptr<Links>& links, const Request& req) {
  auto presented = ExtractApiKey(req.headers.Get("x-api-key"), req.headers.Get("authorization"));
  if (!presented) {
    return ErrorResponse(401, "unauthenticated", "a runner presents its token: Authorization: Bearer TOKEN");
  }
  auto runner = c.store->FindRunnerByToken(Sha256Hex(*presented));
  if (!runner.ok() && runner.error().code != ErrorCode::kInvalidArgument) {
    return ErrorResponse(runner.error());
  }
  if (!runner.ok() || !runner->has_value()) {
    return ErrorResponse(401, "unauthenticated", "unknown or revoked runner token");
  }
  supervisor::runner::CoordinatorOptions o{
      .data_dir = c.config->data_dir,
      .heartbeat_interval = c.runs->options().heartbeat_interval,
      .node_timeout = c.runs->options().node_timeout,
      .address = [runs = c.runs] { return runs->node_address(); }};
  WebSocketAccept accept;
  accept.on_open = [c, links, record = **runner, o](std::shared_ptr<WebSocket> ws) {
    std::weak_ptr<WebSocket> weak = ws;
    auto link = std::make_shared<supervisor::runner::RunnerLink>(
        *c.store, *c.runs, record, o,
        supervisor::runner::RunnerLink::Transport{
            .send =
                [weak](std::string text) {
                  auto s = weak.lock();
                  return s && s->Send(std::move(text)) == WebSocket::SendResult::kQueued;
                },
            .close =
                [weak](std::string why) {
                  if (auto s = weak.lock()) {
                    (void)s->Send(json{{"type", "error"}, {"message", why}}.dump());
                    s->Close();
                  }
                }});
    links->Replace(record.name, {weak, link});
    ws->OnMessage([link](std::string_view data, bool binary) {
      if (binary) {
        link->OnBinary(data);
      } else {
        link->OnText(data);
      }
    });
    ws->OnClose([link](WebSocket::CloseReason) { link->Stop(); });
  };
  return accept;
}

}  // namespace

Status AddRunnerRoutes(Router& router, const RouteContext& ctx) {
  const RouteContext c = ctx;
  auto links = std::make_shared<Links>();
  SBX_TRY(router.AddWebSocket("/v1/runners", Access::kPublic,
                              [c, links](const Request& req) { return Connect(c, links, req); }));
  SBX_TRY(router.Add(
      Method::kPost, "/v1/runners", Access::kAdmin, [c](const Request& req) -> Reply {
        json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
        if (!body.is_object() || !body.contains("name") || !body["name"].is_string()) {
          return ErrorResponse(400, "invalid_argument", "expected {\"name\": RUNNER}");
        }
        const std::string name = body["name"].get<std::string>();
        const std::string token = NewRunnerToken();
        const supervisor::Principal who = ToPrincipal(*c.config, req);
        auto record = c.store->PutRunner(name, Sha256Hex(token), who.name);
        if (!record.ok()) return ErrorResponse(record.error());
        c.runs->events().Audit(who, "runner.token_issued", "", {{"runner", name}});
        json out = RunnerToJson(*record);
        out["token"] = token;  // shown once: the store keeps its SHA-256 only
        return JsonResponse(201, out);
      }));
  SBX_TRY(router.Add(Method::kGet, "/v1/runners/{name}", Access::kAdmin,
                     [c](const Request& req) -> Reply {
                       auto record = c.store->GetRunner(req.PathParam("name"));
                       if (!record.ok()) return ErrorResponse(record.error());
                       return JsonResponse(200, RunnerToJson(*record));
                     }));
  SBX_TRY(router.Add(Method::kDelete, "/v1/runners/{name}", Access::kAdmin,
                     [c, links](const Request& req) -> Reply {
                       const std::string name(req.PathParam("name"));
                       const supervisor::Principal who = ToPrincipal(*c.config, req);
                       auto record = c.store->RevokeRunner(name, who.name);
                       if (!record.ok()) return ErrorResponse(record.error());
                       links->End(name, "this runner's token was revoked");
                       c.runs->events().Audit(who, "runner.token_revoked", "", {{"runner", name}});
                       return JsonResponse(200, RunnerToJson(*record));
                     }));
  return Ok();
}

}  // namespace sbx::api
