#include "api/mcp/jsonrpc.h"

#include <fmt/format.h>

namespace sbx::api::mcp {

using nlohmann::json;

namespace {

ParsedMessage Fail(int code, std::string message, json id = nullptr) {
  return {std::nullopt, RpcFailure{code, std::move(message), std::move(id)}};
}

bool ValidId(const json& id) { return id.is_string() || id.is_number_integer(); }

// Whether arrays and objects nest deeper than `limit` anywhere in `text` (strings skipped), so
// that a hostile message of a million '[' is refused before a parser or a destructor recurses.
bool NestsDeeperThan(std::string_view text, int limit) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

}  // namespace

ParsedMessage ParseMessage(std::string_view text) {
  if (NestsDeeperThan(text, kMaxDepth)) {
    return Fail(kInvalidRequest, fmt::format("the message nests deeper than {} levels", kMaxDepth));
  }
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Fail(kParseError, "the message is not JSON");
  if (j.is_array()) {
    return Fail(kInvalidRequest,
                "batches are not supported: send one JSON-RPC message per request (MCP "
                "2025-06-18 removed batching)");
  }
  if (!j.is_object()) return Fail(kInvalidRequest, "a JSON-RPC message must be a JSON object");
  json id = nullptr;
  if (auto it = j.find("id"); it != j.end() && ValidId(*it)) id = *it;
  auto version = j.find("jsonrpc");
  if (version == j.end() || *version != "2.0") {
    return Fail(kInvalidRequest, "\"jsonrpc\" must be \"2.0\"", id);
  }
  RpcMessage m;
  auto method = j.find("method");
  if (method == j.end()) {
    // A response (to a request the server sent): MCP's streamable HTTP takes it with 202.
    const bool has_result = j.contains("result"), has_error = j.contains("error");
    if (has_result == has_error) {
      return Fail(kInvalidRequest, "a message needs \"method\", or exactly one of \"result\" and "
                                   "\"error\"", id);
    }
    if (!j.contains("id") || !ValidId(j["id"])) {
      return Fail(kInvalidRequest, "a response needs a string or integer \"id\"");
    }
    m.kind = RpcMessage::Kind::kResponse;
    m.id = j["id"];
    return {std::move(m), std::nullopt};
  }
  if (!method->is_string() || method->get_ref<const std::string&>().empty()) {
    return Fail(kInvalidRequest, "\"method\" must be a non-empty string", id);
  }
  m.method = method->get<std::string>();
  if (auto p = j.find("params"); p != j.end()) {
    if (!p->is_object()) return Fail(kInvalidRequest, "\"params\" must be an object", id);
    m.params = *p;
  }
  if (auto it = j.find("id"); it != j.end()) {
    if (!ValidId(*it)) return Fail(kInvalidRequest, "\"id\" must be a string or an integer");
    m.kind = RpcMessage::Kind::kRequest;
    m.id = *it;
  } else {
    m.kind = RpcMessage::Kind::kNotification;
  }
  return {std::move(m), std::nullopt};
}

json RpcResult(const json& id, json result) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}};
}

json RpcError(const json& id, int code, std::string_view message, const json& data) {
  json error = {{"code", code}, {"message", std::string(message)}};
  if (!data.is_null()) error["data"] = data;
  return {{"jsonrpc", "2.0"}, {"id", id}, {"error", std::move(error)}};
}

json RpcNotification(std::string_view method, json params) {
  return {{"jsonrpc", "2.0"}, {"method", std::string(method)}, {"params", std::move(params)}};
}

}  // namespace sbx::api::mcp
