// The MCP server's protocol core without sandboxes: JSON-RPC parsing of hostile messages, the
// tools each profile exposes, initialize and version negotiation, the session id round trip,
// the stateless revision's _meta, and the Origin check.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "api/mcp/jsonrpc.h"
#include "api/mcp/mcp_routes.h"
#include "api/mcp/mcp_server.h"
#include "api/mcp/tools.h"

namespace sbx::api::mcp {
namespace {

using nlohmann::json;

TEST(McpJsonRpc, RefusesWhatIsNotOneMessage) {
  EXPECT_EQ(ParseMessage("{").failure->code, kParseError);
  EXPECT_EQ(ParseMessage("\"\\xff\"").failure->code, kParseError);
  EXPECT_EQ(ParseMessage(R"([{"jsonrpc":"2.0","id":1,"method":"ping"}])").failure->code,
            kInvalidRequest);
  auto wrong = ParseMessage(R"({"jsonrpc":"1.0","id":7,"method":"ping"})");
  ASSERT_TRUE(wrong.failure);
  EXPECT_EQ(wrong.failure->code, kInvalidRequest);
  EXPECT_EQ(wrong.failure->id, 7);  // answered to the request it came with
  EXPECT_TRUE(ParseMessage(R"({"jsonrpc":"2.0","id":null,"method":"ping"})").failure);
  EXPECT_TRUE(ParseMessage(R"({"jsonrpc":"2.0","id":1.5,"method":"ping"})").failure);
  EXPECT_TRUE(ParseMessage(R"({"jsonrpc":"2.0","id":1,"method":""})").failure);
  EXPECT_TRUE(ParseMessage(R"({"jsonrpc":"2.0","id":1,"method":"x","params":[1]})").failure);
  EXPECT_TRUE(ParseMessage(R"({"jsonrpc":"2.0","id":1,"result":{},"error":{}})").failure);
  EXPECT_TRUE(ParseMessage("42").failure);
  // A million-deep array is refused before anything recurses into it.
  std::string deep(1'000'000, '[');
  auto d = ParseMessage(deep);
  ASSERT_TRUE(d.failure);
  EXPECT_EQ(d.failure->code, kInvalidRequest);
  // Brackets inside strings do not count.
  std::string ok = R"({"jsonrpc":"2.0","id":1,"method":"ping","params":{"s":")" +
                   std::string(1000, '[') + R"("}})";
  EXPECT_TRUE(ParseMessage(ok).message);
}

TEST(McpJsonRpc, KindsOfMessages) {
  auto r = ParseMessage(R"({"jsonrpc":"2.0","id":"a","method":"tools/list"})");
  ASSERT_TRUE(r.message);
  EXPECT_EQ(r.message->kind, RpcMessage::Kind::kRequest);
  EXPECT_TRUE(r.message->params.is_object());
  auto n = ParseMessage(R"({"jsonrpc":"2.0","method":"notifications/initialized"})");
  ASSERT_TRUE(n.message);
  EXPECT_EQ(n.message->kind, RpcMessage::Kind::kNotification);
  auto resp = ParseMessage(R"({"jsonrpc":"2.0","id":3,"result":{}})");
  ASSERT_TRUE(resp.message);
  EXPECT_EQ(resp.message->kind, RpcMessage::Kind::kResponse);
}

std::set<std::string> Names(Profile p) {
  std::set<std::string> names;
  for (const ToolSpec& t : AllTools()) {
    if (FindTool(t.name, p)) names.insert(t.name);
  }
  return names;
}

TEST(McpTools, EachProfileHasExactlyItsTools) {
  EXPECT_EQ(Names(Profile::kExecutor), (std::set<std::string>{"process_run"}));
  EXPECT_EQ(Names(Profile::kDeveloper),
            (std::set<std::string>{"process_run", "file_read", "file_write", "file_list",
                                   "file_mkdir", "file_remove"}));
  auto full = Names(Profile::kFull);
  EXPECT_EQ(full.size(), AllTools().size());
  for (const char* t : {"sandbox_create", "sandbox_list", "sandbox_get", "sandbox_delete",
                        "sandbox_pause", "sandbox_resume", "process_start", "process_list",
                        "process_logs", "process_signal"}) {
    EXPECT_TRUE(full.count(t)) << t;
  }
  EXPECT_EQ(FindTool("file_read", Profile::kExecutor), nullptr);
  EXPECT_EQ(FindTool("no_such_tool", Profile::kFull), nullptr);
}

TEST(McpTools, AnnotationsFollowWhatTheToolsDo) {
  for (const ToolSpec& t : AllTools()) {
    json e = ToolListEntry(t);
    EXPECT_EQ(e["inputSchema"]["type"], "object") << t.name;
    EXPECT_EQ(e["outputSchema"]["type"], "object") << t.name;
    EXPECT_FALSE(e["annotations"]["openWorldHint"].get<bool>()) << t.name;
    // A read-only tool is never destructive.
    if (t.annotations.read_only) {
      EXPECT_FALSE(t.annotations.destructive) << t.name;
    }
  }
  EXPECT_TRUE(FindTool("file_read", Profile::kFull)->annotations.read_only);
  EXPECT_TRUE(FindTool("process_run", Profile::kFull)->annotations.destructive);
  EXPECT_TRUE(FindTool("file_remove", Profile::kFull)->annotations.destructive);
  EXPECT_FALSE(FindTool("file_write", Profile::kFull)->annotations.read_only);
}

McpServer::Answer Ask(McpServer& s, const std::string& text, Profile p = Profile::kExecutor) {
  auto parsed = ParseMessage(text);
  EXPECT_TRUE(parsed.message) << text;
  CallContext c;
  c.who.name = "alice";
  c.profile = p;
  return s.Handle(*parsed.message, c);
}

TEST(McpServerCore, InitializeNegotiatesAndHandsOutASession) {
  McpServer s({nullptr, nullptr, nullptr, "9.9"});
  auto a = Ask(s, R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
      "protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"cli","version":"3"}}})");
  ASSERT_TRUE(a.response);
  EXPECT_EQ((*a.response)["result"]["protocolVersion"], "2025-03-26");
  EXPECT_EQ((*a.response)["result"]["serverInfo"]["version"], "9.9");
  ASSERT_TRUE(a.new_session);
  auto back = DecodeSession(EncodeSession(*a.new_session));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->client_name, "cli");
  EXPECT_EQ(back->client_version, "3");
  // An unknown revision gets the newest one offered.
  auto b = Ask(s, R"({"jsonrpc":"2.0","id":2,"method":"initialize","params":{
      "protocolVersion":"2024-01-01","capabilities":{}}})");
  EXPECT_EQ((*b.response)["result"]["protocolVersion"], kHandshakeVersions[0]);
  // A clientInfo without a version, or with fields of other types (found by fuzzing: a missing
  // key read from a const object).
  auto c = Ask(s, R"({"jsonrpc":"2.0","id":3,"method":"initialize","params":{
      "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","vezsion":"1"}}})");
  ASSERT_TRUE(c.new_session);
  EXPECT_EQ(c.new_session->client_name, "c");
  EXPECT_EQ(c.new_session->client_version, "");
  auto d = Ask(s, R"({"jsonrpc":"2.0","id":4,"method":"initialize","params":{
      "protocolVersion":"2025-11-25","clientInfo":{"name":7,"version":[]}}})");
  ASSERT_TRUE(d.new_session);
  EXPECT_EQ(d.new_session->client_name, "");
  EXPECT_FALSE(DecodeSession("sbxmcp1.!!!"));
  EXPECT_FALSE(DecodeSession("other"));
}

TEST(McpServerCore, ToolsListAndUnknownThings) {
  McpServer s({nullptr, nullptr, nullptr, "1"});
  auto list = Ask(s, R"({"jsonrpc":"2.0","id":1,"method":"tools/list"})", Profile::kDeveloper);
  EXPECT_EQ((*list.response)["result"]["tools"].size(), 6u);
  auto unknown_method = Ask(s, R"({"jsonrpc":"2.0","id":2,"method":"resources/list"})");
  EXPECT_EQ((*unknown_method.response)["error"]["code"], kMethodNotFound);
  // Outside the profile, a tool does not exist: refused before anything runs (no sandbox
  // service here: reaching it would crash).
  auto outside = Ask(s, R"({"jsonrpc":"2.0","id":3,"method":"tools/call",
      "params":{"name":"file_read","arguments":{"path":"/etc/passwd"}}})");
  EXPECT_EQ((*outside.response)["error"]["code"], kInvalidParams);
  // Bad arguments are a tool error the model can read, not a protocol error.
  auto bad = Ask(s, R"({"jsonrpc":"2.0","id":4,"method":"tools/call",
      "params":{"name":"process_run","arguments":{"comand":"ls"}}})");
  ASSERT_TRUE(bad.response->contains("result"));
  EXPECT_TRUE((*bad.response)["result"]["isError"].get<bool>());
  EXPECT_NE((*bad.response)["result"]["content"][0]["text"].get<std::string>().find("comand"),
            std::string::npos);
  auto notification = Ask(s, R"({"jsonrpc":"2.0","method":"notifications/initialized"})");
  EXPECT_FALSE(notification.response);
}

TEST(McpServerCore, StatelessRevisionFromMeta) {
  McpServer s({nullptr, nullptr, nullptr, "1"});
  auto a = Ask(s, R"({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{
      "io.modelcontextprotocol/protocolVersion":"2026-07-28",
      "io.modelcontextprotocol/clientCapabilities":{}}}})");
  EXPECT_EQ((*a.response)["result"]["resultType"], "complete");
  auto bad = Ask(s, R"({"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":{
      "io.modelcontextprotocol/protocolVersion":"1999-01-01"}}})");
  EXPECT_EQ((*bad.response)["error"]["code"], kInvalidParams);
  auto d = Ask(s, R"({"jsonrpc":"2.0","id":3,"method":"server/discover"})");
  EXPECT_EQ((*d.response)["result"]["supportedVersions"][0], kStatelessVersion);
}

TEST(McpOrigin, OnlyTheDaemonsOwnOrConfigured) {
  EXPECT_TRUE(OriginAllowed(std::nullopt, "127.0.0.1:8080", {}));
  EXPECT_TRUE(OriginAllowed("http://127.0.0.1:8080", "127.0.0.1:8080", {}));
  EXPECT_FALSE(OriginAllowed("http://evil.example", "127.0.0.1:8080", {}));
  EXPECT_FALSE(OriginAllowed("http://127.0.0.1:8080.evil.example", "127.0.0.1:8080", {}));
  EXPECT_FALSE(OriginAllowed("null", "127.0.0.1:8080", {}));
  EXPECT_FALSE(OriginAllowed("http://127.0.0.1:8080", std::nullopt, {}));
  EXPECT_TRUE(OriginAllowed("https://agent.example", "x", {"https://agent.example"}));
}

}  // namespace
}  // namespace sbx::api::mcp
