// One MCP message as a client sends it (a POST body to /mcp/PROFILE, or a line of `sandboxd
// mcp`): the JSON-RPC parser, the protocol's answers to every method but tools/call (which needs
// live sandboxes) under each profile, and the session id and Origin checks on the same bytes.
#include <cstdint>
#include <string_view>

#include "api/mcp/jsonrpc.h"
#include "api/mcp/mcp_routes.h"
#include "api/mcp/mcp_server.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sbx::api::mcp;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  static McpServer server(McpOptions{nullptr, nullptr, nullptr, "fuzz"});
  ParsedMessage parsed = ParseMessage(text);
  if (parsed.message && !McpServer::IsToolCall(*parsed.message)) {
    for (Profile p : {Profile::kExecutor, Profile::kDeveloper, Profile::kFull}) {
      CallContext context;
      context.who.name = "fuzz";
      context.profile = p;
      auto answer = server.Handle(*parsed.message, context);
      if (answer.response) (void)answer.response->dump(-1, ' ', false,
                                                       nlohmann::json::error_handler_t::replace);
      if (answer.new_session) (void)DecodeSession(EncodeSession(*answer.new_session));
    }
    (void)McpServer::ProgressToken(*parsed.message);
  }
  (void)DecodeSession(text);
  (void)OriginAllowed(text, std::string_view("127.0.0.1:8080"), {"https://a.example"});
  return 0;
}
