// A run's logs and artifacts are files in the data directory of the node that ran it. Asked of
// another node sharing the database, the request is forwarded to the owner's node_address and
// its answer streamed back, so that a client needs one address.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "api/http/http.h"
#include "api/v1/run_routes.h"

namespace sbx::api {

// What of a client's request goes to the owner: its method, target, credentials, the headers
// that say what the body is, and the body.
struct ForwardedRequest {
  std::string method = "GET";
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  static ForwardedRequest Of(const Request& req);
};

// nullopt when `run`'s files are here (it ran here, or has not run), or when the request was
// itself forwarded by another node (X-Sandboxd-Proxied: a node answers for what it has). Else
// the owner's answer: its status, type and body, streamed; or 503 when the owner has no known
// address or cannot be reached. The caller's API key goes along: the owner authenticates and
// checks tenancy again.
std::optional<Reply> ForwardToOwner(const RouteContext& ctx, const Request& req,
                                    const store::RunRecord& run);

// A run's event stream (GET /v1/runs/{id}/events, a WebSocket) asked of a node that does not hold
// its files: the owner's stream, relayed message by message, so that step.log events carry
// their bytes (read from the owner's log files) whichever node the client reached. nullopt on
// the same terms as ForwardToOwner, and when the owner is lost or cannot be reached (the stream
// is then this node's: the events without their log bytes). A client reading
// slower than the owner writes gets what a slow client gets from the owner (the stream ends
// with a position to resume from).
std::optional<Reply> RelayEventsFromOwner(const RouteContext& ctx, const Request& req,
                                          const store::RunRecord& run,
                                          std::optional<int64_t> resume_after);

// A sandbox's request (any method, with its body) answered by node `node` at `address`, the
// answer streamed back; 503 when it cannot be reached. The caller's key goes along.
Reply ForwardToNode(const RouteContext& ctx, const Request& req, const std::string& node,
                    const std::string& address);
// A sandbox's WebSocket (a process's events or terminal, a files watch) of node `node` at
// `address`, relayed both ways message by message; 503 when it cannot be reached.
Reply RelayWebSocketToNode(const RouteContext& ctx, const Request& req, const std::string& node,
                           const std::string& address);

// A followed log whose run was claimed by another node after the stream began here: the rest of
// the body comes from `owner` (GET req.target there), on a thread of its own; the stream ends
// when the owner's does, or at once when the owner cannot be asked.
void ContinueFromOwner(const RouteContext& ctx, std::string owner, std::string run_id,
                       ForwardedRequest req, std::shared_ptr<StreamSink> sink);

}  // namespace sbx::api
