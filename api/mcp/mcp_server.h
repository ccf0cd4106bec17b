// The MCP server's protocol core, independent of the transport: initialize, ping, tools/list,
// tools/call and server/discover for one profile, on behalf of one API key (docs/mcp.md).
//
// Stateless: nothing is kept between messages. What a later request needs of initialize (the
// client's name, for the audit trail) travels in the session id the server hands out
// (EncodeSession), which the client sends back with every request; a daemon restarted between
// two calls decodes it the same. Clients of protocol 2026-07-28 send no initialize at all:
// their version, capabilities and clientInfo come with each request in params._meta.
//
// Every tool call acts through the SandboxService (command policy, review gate, tenancy) and
// is recorded in the audit trail as "mcp.tool_call" with the key, the profile and the client.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/mcp/jsonrpc.h"
#include "api/mcp/tools.h"
#include "base/result.h"
#include "supervisor/events/event_bus.h"
#include "supervisor/sandbox/sandbox_service.h"
#include "supervisor/service/config.h"

namespace sbx::api::mcp {

// The revisions served, newest first. initialize answers the client's own when it is one of
// kHandshakeVersions, else the newest of them; kStatelessVersion is served to requests that
// carry it in _meta (no initialize).
inline constexpr const char* kHandshakeVersions[] = {"2025-11-25", "2025-06-18", "2025-03-26"};
inline constexpr const char* kStatelessVersion = "2026-07-28";
bool IsSupportedVersion(std::string_view version);

// What initialize told the server, carried in the session id.
struct SessionInfo {
  std::string client_name;     // clientInfo.name (at most 128 bytes)
  std::string client_version;  // clientInfo.version (at most 64 bytes)
  std::string protocol_version;
};
std::string EncodeSession(const SessionInfo& session);
// nullopt when `id` is not one EncodeSession made.
std::optional<SessionInfo> DecodeSession(std::string_view id);

// Who calls and how: the key's principal, the endpoint's profile, the client as it named
// itself, and where progress notifications go (empty: the client asked for none).
struct CallContext {
  supervisor::Principal who;
  Profile profile = Profile::kExecutor;
  std::optional<SessionInfo> session;
  // Sends a notifications/progress message to the client.
  std::function<void(const nlohmann::json& notification)> notify;
  // Set when the client cancelled the request (notifications/cancelled).
  std::shared_ptr<std::atomic<bool>> cancelled;
};

struct McpOptions {
  supervisor::SandboxService* sandboxes = nullptr;  // not owned
  supervisor::EventBus* events = nullptr;           // the audit trail; not owned
  const supervisor::ServiceConfig* config = nullptr;
  std::string server_version;
};

class McpServer {
 public:
  explicit McpServer(McpOptions options);
  // Waits (up to 30 s) for the tool calls under way to end: they run on threads of their own.
  // Stop the sandbox service first, so that their processes have ended.
  ~McpServer();

  // What a message asks of the server.
  struct Answer {
    std::optional<nlohmann::json> response;  // none for notifications and responses
    std::optional<SessionInfo> new_session;  // initialize: the session to hand out
  };
  // Handles one parsed message. May block for as long as a tool runs (tools/call); the rest
  // answer at once.
  Answer Handle(const RpcMessage& message, const CallContext& context);

  // Whether `message` is a tools/call (which may block, and is run off the worker pool).
  static bool IsToolCall(const RpcMessage& message) { return message.method == "tools/call"; }
  // The progress token of a request, if it asked for progress (params._meta.progressToken).
  static std::optional<nlohmann::json> ProgressToken(const RpcMessage& message);

  // A request in flight, so that notifications/cancelled can reach it: keyed by the key's name
  // and the request id. EndCall with the flag BeginCall returned; the server is not touched
  // after it.
  std::shared_ptr<std::atomic<bool>> BeginCall(const std::string& key, const nlohmann::json& id);
  void EndCall(const std::string& key, const nlohmann::json& id,
               const std::shared_ptr<std::atomic<bool>>& flag);

  // What a tool did: structuredContent, and for an error the text that says what happened.
  struct ToolResult {
    nlohmann::json structured;
    bool is_error = false;
    std::string message;
  };

 private:
  nlohmann::json CallTool(const RpcMessage& message, const CallContext& context);
  ToolResult Run(const ToolSpec& tool, const nlohmann::json& args, const CallContext& context,
                 std::string* sandbox_out);
  // The sandbox a process or file tool acts in: args.sandbox_id, else the key's own MCP
  // sandbox (created when it has none live here).
  Result<std::string> SandboxFor(const nlohmann::json& args, const CallContext& context);

  ToolResult ProcessRun(const nlohmann::json& args, const CallContext& context, bool background,
                        std::string* sandbox_out);
  ToolResult ProcessWait(const nlohmann::json& args, const CallContext& context,
                         std::string* sandbox_out);
  ToolResult File(const ToolSpec& tool, const nlohmann::json& args, const CallContext& context,
                  std::string* sandbox_out);
  ToolResult Sandbox(const ToolSpec& tool, const nlohmann::json& args, const CallContext& context,
                     std::string* sandbox_out);
  ToolResult ProcessQuery(const ToolSpec& tool, const nlohmann::json& args,
                          const CallContext& context, std::string* sandbox_out);
  // Waits for `process` to end (progress every few seconds; a review held past
  // mcp.review_wait_s answers the pending process as an error).
  ToolResult AwaitOutcome(const store::ProcessRecord& process, std::chrono::milliseconds limit,
                          size_t max_bytes, const CallContext& context);

  McpOptions options_;
  std::mutex default_mu_;  // one default-sandbox lookup or creation at a time per daemon
  std::mutex calls_mu_;
  std::condition_variable calls_done_;
  int in_flight_ = 0;
  std::map<std::string, std::shared_ptr<std::atomic<bool>>> calls_;
};

}  // namespace sbx::api::mcp
