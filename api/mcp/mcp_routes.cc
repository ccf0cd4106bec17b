#include "api/mcp/mcp_routes.h"

#include <fmt/format.h>

#include <atomic>
#include <thread>

#include "api/mcp/tool_args.h"
#include "api/v1/route_util.h"

namespace sbx::api::mcp {

using nlohmann::json;

namespace {

std::atomic<int> active_calls{0};

Response RpcResponse(int status, const json& body) { return JsonResponse(status, body); }

Response HttpRpcError(int status, int code, std::string message, const json& id = nullptr) {
  return RpcResponse(status, RpcError(id, code, message));
}

bool Contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The client as the audit trail names it: "NAME VERSION via mcp/PROFILE".
std::string ClientName(const std::optional<SessionInfo>& session, const RpcMessage& m,
                       Profile profile) {
  std::string name, version;
  if (session) {
    name = session->client_name;
    version = session->client_version;
  }
  auto meta = m.params.find("_meta");
  if (meta != m.params.end() && meta->is_object()) {
    auto ci = meta->find("io.modelcontextprotocol/clientInfo");
    if (ci != meta->end() && ci->is_object()) {
      name = internal::Clip(internal::StringField(*ci, "name"), 128);
      version = internal::Clip(internal::StringField(*ci, "version"), 64);
    }
  }
  std::string via = fmt::format("mcp/{}", ProfileName(profile));
  if (name.empty()) return via;
  return version.empty() ? fmt::format("{} via {}", name, via)
                         : fmt::format("{} {} via {}", name, version, via);
}

std::string SseEvent(const json& message) {
  return "event: message\ndata: " + DumpJson(message) + "\n\n";
}

Reply Post(const McpRouteContext& c, const Request& req) {
  const auto& config = *c.config;
  // Read first (nothing runs yet), so that every refusal below answers the request's own id.
  ParsedMessage parsed = ParseMessage(req.body);
  const json id = parsed.message ? parsed.message->id : parsed.failure->id;
  if (!OriginAllowed(req.headers.Get("origin"), req.headers.Get("host"),
                     config.mcp.allowed_origins)) {
    return HttpRpcError(403, -32000,
                        fmt::format("Origin {} may not call this server (mcp.allowed_origins)",
                                    *req.headers.Get("origin")),
                        id);
  }
  auto profile = ParseProfile(req.PathParam("profile"));
  if (!profile) {
    return HttpRpcError(404, -32000,
                        "no such MCP endpoint: use /mcp/executor, /mcp/developer or /mcp/full",
                        id);
  }
  supervisor::Principal who = ToPrincipal(config, req);
  for (const auto& k : config.api_keys) {
    if (k.name != who.name || !k.mcp_profiles) continue;
    if (std::find(k.mcp_profiles->begin(), k.mcp_profiles->end(), ProfileName(*profile)) ==
        k.mcp_profiles->end()) {
      return HttpRpcError(403, -32000,
                          fmt::format("the key {} may not use the MCP profile {} (its "
                                      "mcp_profiles: {})",
                                      who.name, ProfileName(*profile),
                                      k.mcp_profiles->empty()
                                          ? std::string("none")
                                          : fmt::format("{}", fmt::join(*k.mcp_profiles, ", "))),
                          id);
    }
  }
  const std::string content_type = Lower(req.headers.Get("content-type").value_or(""));
  if (!content_type.starts_with("application/json")) {
    return HttpRpcError(415, kInvalidRequest, "Content-Type must be application/json", id);
  }
  const std::string accept = Lower(req.headers.Get("accept").value_or("*/*"));
  const bool accepts_sse = Contains(accept, "text/event-stream");
  if (!Contains(accept, "application/json") && !accepts_sse && !Contains(accept, "*/*") &&
      !Contains(accept, "application/*")) {
    return HttpRpcError(406, kInvalidRequest,
                        "Accept must include application/json or text/event-stream", id);
  }
  if (auto v = req.headers.Get("mcp-protocol-version"); v && !IsSupportedVersion(*v)) {
    return HttpRpcError(400, kInvalidRequest,
                        fmt::format("unsupported MCP-Protocol-Version {}", *v), id);
  }
  if (!parsed.message) {
    return HttpRpcError(400, parsed.failure->code, parsed.failure->message, parsed.failure->id);
  }
  RpcMessage m = std::move(*parsed.message);
  std::optional<SessionInfo> session;
  if (auto sid = req.headers.Get("mcp-session-id"); sid && m.method != "initialize") {
    session = DecodeSession(*sid);
    if (!session) {
      return HttpRpcError(404, -32001, "Session not found: initialize again", m.id);
    }
  }
  CallContext ctx;
  ctx.who = std::move(who);
  ctx.who.client = ClientName(session, m, *profile);
  ctx.profile = *profile;
  ctx.session = session;
  McpServer* server = c.server;

  if (m.kind != RpcMessage::Kind::kRequest) {
    server->Handle(m, ctx);
    Response r;
    r.status = 202;
    r.content_type = "application/json";
    return r;
  }
  if (!McpServer::IsToolCall(m)) {
    auto answer = server->Handle(m, ctx);
    Response r = RpcResponse(200, *answer.response);
    if (answer.new_session) r.headers.Add("Mcp-Session-Id", EncodeSession(*answer.new_session));
    return r;
  }
  if (active_calls.load() >= kMaxToolCalls) {
    json result = {{"content", json::array({{{"type", "text"},
                                             {"text", fmt::format("the daemon already runs {} "
                                                                  "tool calls; try again shortly",
                                                                  kMaxToolCalls)}}})},
                   {"isError", true}};
    return RpcResponse(200, RpcResult(m.id, std::move(result)));
  }
  auto token = McpServer::ProgressToken(m);
  const bool sse = token.has_value() && accepts_sse;
  StreamResponse sr;
  sr.content_type = sse ? "text/event-stream" : "application/json";
  if (sse) sr.headers.Add("Cache-Control", "no-store");
  sr.start = [server, m = std::move(m), ctx = std::move(ctx), sse,
              token](std::shared_ptr<StreamSink> sink) mutable {
    ++active_calls;
    // Counted in before the thread exists: the server, which waits for its calls when it is
    // destroyed, outlives the worker pool that runs this.
    ctx.cancelled = server->BeginCall(ctx.who.name, m.id);
    std::thread([server, m = std::move(m), ctx = std::move(ctx), sse, token, sink]() mutable {
      if (sse) {
        ctx.notify = [sink, token](const json& progress) {
          json params = progress;
          params["progressToken"] = *token;
          (void)WriteWhole(sink,
                           SseEvent(RpcNotification("notifications/progress", std::move(params))));
        };
      }
      auto answer = server->Handle(m, ctx);
      server->EndCall(ctx.who.name, m.id, ctx.cancelled);
      (void)WriteWhole(sink, sse ? SseEvent(*answer.response) : DumpJson(*answer.response));
      sink->Finish();
      --active_calls;
    }).detach();
  };
  return sr;
}

}  // namespace

bool OriginAllowed(std::optional<std::string_view> origin, std::optional<std::string_view> host,
                   const std::vector<std::string>& allowed) {
  if (!origin) return true;
  for (const auto& a : allowed) {
    if (*origin == a) return true;
  }
  // Same origin: the Origin's authority is the Host the request was sent to.
  std::string_view o = *origin;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (o.starts_with(scheme)) {
      o.remove_prefix(scheme.size());
      return host && !o.empty() && Lower(o) == Lower(*host);
    }
  }
  return false;
}

Status AddMcpRoutes(Router& router, const McpRouteContext& ctx) {
  return router.Add(Method::kPost, "/mcp/{profile}", Access::kSubmitter,
                    [ctx](const Request& req) { return Post(ctx, req); });
}

}  // namespace sbx::api::mcp
