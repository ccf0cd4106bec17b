// JSON-RPC 2.0 as the Model Context Protocol uses it: one message per HTTP POST or stdio line,
// never a batch (removed in protocol 2025-06-18). Pure functions, no I/O: the HTTP transport
// (mcp_routes.cc), the stdio bridge and the fuzz target share them.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace sbx::api::mcp {

// The standard codes (JSON-RPC 2.0 §5.1).
inline constexpr int kParseError = -32700;
inline constexpr int kInvalidRequest = -32600;
inline constexpr int kMethodNotFound = -32601;
inline constexpr int kInvalidParams = -32602;
inline constexpr int kInternalError = -32603;

// Arrays and objects nested deeper than this anywhere in a message make it kInvalidRequest.
inline constexpr int kMaxDepth = 64;

struct RpcMessage {
  enum class Kind { kRequest, kNotification, kResponse };
  Kind kind = Kind::kRequest;
  nlohmann::json id;   // string or integer; null for a notification
  std::string method;  // empty for a response
  nlohmann::json params = nlohmann::json::object();  // always an object (absent: {})
};

// What made a message unusable, as the error to answer with (id null when it could not be read).
struct RpcFailure {
  int code = kInvalidRequest;
  std::string message;
  nlohmann::json id;  // the request's id when it had a valid one, else null
};

// One JSON-RPC message. Fails with kParseError for text that is not JSON (or not UTF-8), and
// kInvalidRequest for a batch (an array), a "jsonrpc" other than "2.0", an id that is neither a
// string nor an integer (null included), a method that is not a non-empty string, params that
// are not an object (MCP never uses positional params), nesting past kMaxDepth, or a response with neither or both of
// "result" and "error". Returns the message or the failure, never throws.
struct ParsedMessage {
  std::optional<RpcMessage> message;
  std::optional<RpcFailure> failure;
};
ParsedMessage ParseMessage(std::string_view text);

nlohmann::json RpcResult(const nlohmann::json& id, nlohmann::json result);
nlohmann::json RpcError(const nlohmann::json& id, int code, std::string_view message,
                        const nlohmann::json& data = nullptr);
// A notification the server sends (no id).
nlohmann::json RpcNotification(std::string_view method, nlohmann::json params);

}  // namespace sbx::api::mcp
