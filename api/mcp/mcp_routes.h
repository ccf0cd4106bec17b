// The MCP server over streamable HTTP (docs/mcp.md): POST /mcp/executor, /mcp/developer and
// /mcp/full, one JSON-RPC message per request, the API key as `Authorization: Bearer`.
//
//   - a request is answered with application/json, or with text/event-stream (progress
//     notifications, then the response) when it is a tools/call that asked for progress and
//     the client accepts event streams; notifications and responses get 202 and no body
//   - GET and DELETE answer 405: the server offers no server-initiated stream and keeps no
//     session to end (the session id only carries what initialize said, see mcp_server.h)
//   - an Origin header other than the daemon's own or one of mcp.allowed_origins: 403 (DNS
//     rebinding); a key whose mcp_profiles leave the profile out: 403; a body that is not one
//     JSON-RPC message: 400 with the JSON-RPC error; over max_body_bytes: 413
//   - tools/call runs on a thread of its own (a call lasts as long as its command), at most
//     kMaxToolCalls at once; the others answer at once on the worker pool
#pragma once

#include "api/http/router.h"
#include "api/mcp/mcp_server.h"
#include "supervisor/service/config.h"

namespace sbx::api::mcp {

inline constexpr int kMaxToolCalls = 64;

struct McpRouteContext {
  McpServer* server = nullptr;  // not owned; outlives the router
  const supervisor::ServiceConfig* config = nullptr;
};

Status AddMcpRoutes(Router& router, const McpRouteContext& ctx);

// Whether a request with these Origin and Host header values may reach /mcp/: no Origin (not a
// browser), an Origin whose host and port are the Host's, or one of `allowed`.
bool OriginAllowed(std::optional<std::string_view> origin, std::optional<std::string_view> host,
                   const std::vector<std::string>& allowed);

}  // namespace sbx::api::mcp
