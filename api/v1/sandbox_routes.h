// The /v1/sandboxes routes (docs/sandboxes.md): lifecycle, processes (start, wait, signals,
// stdin, logs, the events and terminal WebSockets) and files (sandbox_file_routes.cc). Thin
// handlers: decode (sandbox_json.h), call one SandboxService function, encode. Every route
// needs a submitter's key except the review verbs (a reviewer's); tenancy is the service's: a
// submitter reaches its own sandboxes only, another's answer 404 like a missing one.
#pragma once

#include <optional>

#include "api/http/router.h"
#include "api/v1/run_routes.h"
#include "supervisor/sandbox/sandbox_service.h"
#include "supervisor/service/config.h"

namespace sbx::api {

struct SandboxRouteContext {
  supervisor::SandboxService* sandboxes = nullptr;
  const supervisor::ServiceConfig* config = nullptr;
  // The cluster, when this node shares its store with others: a request about a sandbox that
  // another node runs is forwarded to it, and one to create a sandbox whose node_selector this
  // node does not match goes to a node that does. Without it (no runs), every request is
  // answered here.
  std::optional<RouteContext> cluster;
};

// Where a request about a sandbox is answered, with several nodes on one store: nullopt here;
// else the answer of the node that runs the sandbox (a WebSocket relayed both ways when
// `websocket`), or, to create or approve a sandbox whose node_selector this node does not
// carry, of a ready node that does (409 when none does). Every sandbox route asks this first.
std::optional<Reply> SandboxElsewhere(const SandboxRouteContext& ctx, const Request& req,
                                      bool websocket);

// Adds every route of docs/sandboxes.md. The handlers keep `ctx`'s pointers (which must
// outlive the router) and dereference them only when a request comes.
Status AddSandboxRoutes(Router& router, const SandboxRouteContext& ctx);

// Snapshots (snapshot_routes.cc): POST /v1/sandboxes/{id}:snapshot and /v1/snapshots; added
// by AddSandboxRoutes.
Status AddSnapshotRoutes(Router& router, const SandboxRouteContext& ctx);

// The files group (sandbox_file_routes.cc), added by AddSandboxRoutes.
Status AddSandboxFileRoutes(Router& router, const SandboxRouteContext& ctx);

}  // namespace sbx::api
