#include "api/mcp/mcp_server.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "api/http/http.h"
#include "api/v1/route_util.h"
#include "api/v1/sandbox_json.h"
#include "base/base64.h"
#include "api/mcp/tool_args.h"

namespace sbx::api::mcp {

using nlohmann::json;
using namespace internal;

bool IsSupportedVersion(std::string_view version) {
  if (version == kStatelessVersion) return true;
  for (const char* v : kHandshakeVersions) {
    if (version == v) return true;
  }
  return false;
}

namespace {

constexpr char kSessionPrefix[] = "sbxmcp1.";
constexpr size_t kMaxClientName = 128;
constexpr size_t kMaxClientVersion = 64;

json Meta(const RpcMessage& m) {
  if (auto it = m.params.find("_meta"); it != m.params.end() && it->is_object()) return *it;
  return json::object();
}

constexpr char kMetaVersion[] = "io.modelcontextprotocol/protocolVersion";

std::string Instructions() {
  return "Every command runs in an isolated sandbox without a network, through sandboxd's "
         "command policy: it runs, waits for a human reviewer, or is refused with the reason. "
         "Without sandbox_id, tools act in this API key's own sandbox, created on first use.";
}

json Capabilities() { return {{"tools", {{"listChanged", false}}}}; }

json ServerInfo(const std::string& version) {
  return {{"name", "sandboxd"}, {"title", "sandboxd"}, {"version", version}};
}

// The first problem with `args` against the tool's input schema's names: a name it does not
// know, or a required one missing. Types are checked where each argument is used.
std::optional<std::string> CheckArgumentNames(const ToolSpec& tool, const json& args) {
  const json& props = tool.input_schema["properties"];
  for (auto it = args.begin(); it != args.end(); ++it) {
    if (!props.contains(it.key())) {
      std::vector<std::string> known;
      for (auto p = props.begin(); p != props.end(); ++p) known.push_back(p.key());
      return fmt::format("unknown argument \"{}\"; {} takes: {}", it.key(), tool.name,
                         fmt::join(known, ", "));
    }
  }
  if (auto req = tool.input_schema.find("required"); req != tool.input_schema.end()) {
    for (const auto& name : *req) {
      if (!args.contains(name.get<std::string>())) {
        return fmt::format("missing argument \"{}\"", name.get<std::string>());
      }
    }
  }
  return std::nullopt;
}

// Whether `value` is an object with every property the tool's output schema requires, each of
// the listed type (the schemas here use only "type" and "required").
bool ConformsToOutput(const ToolSpec& tool, const json& value) {
  if (!value.is_object()) return false;
  const json& schema = tool.output_schema;
  if (auto req = schema.find("required"); req != schema.end()) {
    for (const auto& name : *req) {
      if (!value.contains(name.get<std::string>())) return false;
    }
  }
  const json& props = schema["properties"];
  for (auto it = props.begin(); it != props.end(); ++it) {
    auto v = value.find(it.key());
    if (v == value.end() || !it->contains("type")) continue;
    const json& t = (*it)["type"];
    auto is = [&](const std::string& type) {
      if (type == "string") return v->is_string();
      if (type == "integer") return v->is_number_integer();
      if (type == "number") return v->is_number();
      if (type == "boolean") return v->is_boolean();
      if (type == "array") return v->is_array();
      if (type == "object") return v->is_object();
      if (type == "null") return v->is_null();
      return true;
    };
    bool ok = false;
    if (t.is_string()) {
      ok = is(t.get<std::string>());
    } else if (t.is_array()) {
      for (const auto& one : t) ok = ok || (one.is_string() && is(one.get<std::string>()));
    }
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string EncodeSession(const SessionInfo& s) {
  json j = {{"n", s.client_name}, {"v", s.client_version}, {"p", s.protocol_version}};
  return kSessionPrefix + Base64Encode(DumpJson(j));
}

std::optional<SessionInfo> DecodeSession(std::string_view id) {
  if (id.size() > 1024 || !id.starts_with(kSessionPrefix)) return std::nullopt;
  id.remove_prefix(std::strlen(kSessionPrefix));
  if (!IsStrictBase64(id)) return std::nullopt;
  json j = json::parse(Base64Decode(id), nullptr, false);
  if (!j.is_object() || !j["n"].is_string() || !j["v"].is_string() || !j["p"].is_string()) {
    return std::nullopt;
  }
  SessionInfo s{Clip(j["n"].get<std::string>(), kMaxClientName),
                Clip(j["v"].get<std::string>(), kMaxClientVersion), j["p"].get<std::string>()};
  if (!IsSupportedVersion(s.protocol_version)) return std::nullopt;
  return s;
}

McpServer::McpServer(McpOptions options) : options_(std::move(options)) {}

McpServer::~McpServer() {
  std::unique_lock lock(calls_mu_);
  calls_done_.wait_for(lock, std::chrono::seconds(30), [this] { return in_flight_ == 0; });
}

std::optional<json> McpServer::ProgressToken(const RpcMessage& message) {
  json meta = Meta(message);
  auto it = meta.find("progressToken");
  if (it == meta.end() || !(it->is_string() || it->is_number_integer())) return std::nullopt;
  return *it;
}

std::shared_ptr<std::atomic<bool>> McpServer::BeginCall(const std::string& key, const json& id) {
  auto flag = std::make_shared<std::atomic<bool>>(false);
  std::lock_guard lock(calls_mu_);
  calls_[key + "\n" + id.dump()] = flag;
  ++in_flight_;
  return flag;
}

void McpServer::EndCall(const std::string& key, const json& id,
                        const std::shared_ptr<std::atomic<bool>>& flag) {
  std::lock_guard lock(calls_mu_);
  // A second request of the key with the same id may have taken the entry meanwhile.
  if (auto it = calls_.find(key + "\n" + id.dump()); it != calls_.end() && it->second == flag) {
    calls_.erase(it);
  }
  if (--in_flight_ == 0) calls_done_.notify_all();
}

McpServer::Answer McpServer::Handle(const RpcMessage& m, const CallContext& context) {
  Answer a;
  if (m.kind == RpcMessage::Kind::kResponse) return a;
  if (m.kind == RpcMessage::Kind::kNotification) {
    if (m.method == "notifications/cancelled") {
      auto id = m.params.find("requestId");
      if (id != m.params.end() && (id->is_string() || id->is_number_integer())) {
        std::lock_guard lock(calls_mu_);
        if (auto it = calls_.find(context.who.name + "\n" + id->dump()); it != calls_.end()) {
          it->second->store(true);
        }
      }
    }
    return a;
  }
  // A request of the stateless revision names its version in _meta, with no initialize.
  json meta = Meta(m);
  bool stateless = false;
  if (auto v = meta.find(kMetaVersion); v != meta.end()) {
    if (!v->is_string() || !IsSupportedVersion(v->get<std::string>())) {
      std::vector<std::string> supported = {kStatelessVersion};
      for (const char* h : kHandshakeVersions) supported.emplace_back(h);
      a.response = RpcError(m.id, kInvalidParams, "unsupported protocol version",
                            {{"supported", supported}, {"requested", *v}});
      return a;
    }
    stateless = v->get<std::string>() == kStatelessVersion;
  }
  json result;
  if (m.method == "initialize") {
    std::string requested;
    if (auto v = m.params.find("protocolVersion"); v != m.params.end() && v->is_string()) {
      requested = v->get<std::string>();
    }
    std::string chosen = kHandshakeVersions[0];
    for (const char* h : kHandshakeVersions) {
      if (requested == h) chosen = h;
    }
    SessionInfo s;
    s.protocol_version = chosen;
    if (auto ci = m.params.find("clientInfo"); ci != m.params.end() && ci->is_object()) {
      s.client_name = Clip(StringField(*ci, "name"), kMaxClientName);
      s.client_version = Clip(StringField(*ci, "version"), kMaxClientVersion);
    }
    a.new_session = s;
    result = {{"protocolVersion", chosen},
              {"capabilities", Capabilities()},
              {"serverInfo", ServerInfo(options_.server_version)},
              {"instructions", Instructions()}};
  } else if (m.method == "ping") {
    result = json::object();
  } else if (m.method == "server/discover") {
    std::vector<std::string> supported = {kStatelessVersion};
    for (const char* h : kHandshakeVersions) supported.emplace_back(h);
    result = {{"supportedVersions", supported},
              {"capabilities", Capabilities()},
              {"serverInfo", ServerInfo(options_.server_version)},
              {"instructions", Instructions()}};
  } else if (m.method == "tools/list") {
    json tools = json::array();
    for (const ToolSpec& t : AllTools()) {
      if (FindTool(t.name, context.profile)) tools.push_back(ToolListEntry(t));
    }
    result = {{"tools", std::move(tools)}};
  } else if (m.method == "tools/call") {
    json r = CallTool(m, context);
    if (r.contains("error")) {
      a.response = std::move(r);
      return a;
    }
    result = std::move(r["result"]);
  } else {
    a.response = RpcError(m.id, kMethodNotFound, fmt::format("Method not found: {}", m.method));
    return a;
  }
  if (stateless || m.method == "server/discover") result["resultType"] = "complete";
  a.response = RpcResult(m.id, std::move(result));
  return a;
}

json McpServer::CallTool(const RpcMessage& m, const CallContext& context) {
  auto name = m.params.find("name");
  if (name == m.params.end() || !name->is_string()) {
    return RpcError(m.id, kInvalidParams, "tools/call needs params.name, the tool's name");
  }
  const ToolSpec* tool = FindTool(name->get<std::string>(), context.profile);
  if (tool == nullptr) {
    return RpcError(m.id, kInvalidParams,
                    fmt::format("Unknown tool: {}", name->get<std::string>()));
  }
  json args = json::object();
  ToolResult r;
  std::string sandbox_id;
  if (auto a = m.params.find("arguments"); a != m.params.end() && !a->is_null()) args = *a;
  if (!args.is_object()) {
    r = {ErrorJson(MakeError(ErrorCode::kInvalidArgument, "arguments must be an object")), true,
         "invalid argument: arguments must be an object"};
  } else if (auto problem = CheckArgumentNames(*tool, args)) {
    r = {ErrorJson(MakeError(ErrorCode::kInvalidArgument, "{}", *problem)), true,
         "invalid argument: " + *problem};
  } else {
    r = Run(*tool, args, context, &sandbox_id);
  }
  if (options_.events) {
    json details = {{"tool", tool->name},
                    {"profile", ProfileName(context.profile)},
                    {"ok", !r.is_error}};
    if (r.is_error) details["error"] = Clip(r.message, 512);
    options_.events->Audit(context.who, "mcp.tool_call", sandbox_id, std::move(details));
  }
  json result;
  if (r.is_error) {
    result["content"] = json::array({{{"type", "text"}, {"text", r.message}}});
    // Clients check structuredContent against the output schema even on errors: only a result
    // of the tool's own shape (a command's outcome that exited non-zero) carries it.
    if (ConformsToOutput(*tool, r.structured)) result["structuredContent"] = r.structured;
    result["isError"] = true;
  } else {
    result["content"] = json::array({{{"type", "text"}, {"text", DumpJson(r.structured)}}});
    result["structuredContent"] = r.structured;
    result["isError"] = false;
  }
  return RpcResult(m.id, std::move(result));
}

McpServer::ToolResult McpServer::Run(const ToolSpec& tool, const json& args,
                                     const CallContext& context, std::string* sandbox_out) {
  switch (tool.id) {
    case ToolId::kProcessRun: return ProcessRun(args, context, false, sandbox_out);
    case ToolId::kProcessStart: return ProcessRun(args, context, true, sandbox_out);
    case ToolId::kProcessWait: return ProcessWait(args, context, sandbox_out);
    case ToolId::kFileRead:
    case ToolId::kFileWrite:
    case ToolId::kFileList:
    case ToolId::kFileMkdir:
    case ToolId::kFileRemove: return File(tool, args, context, sandbox_out);
    case ToolId::kSandboxCreate:
    case ToolId::kSandboxList:
    case ToolId::kSandboxGet:
    case ToolId::kSandboxDelete:
    case ToolId::kSandboxPause:
    case ToolId::kSandboxResume: return Sandbox(tool, args, context, sandbox_out);
    case ToolId::kProcessList:
    case ToolId::kProcessLogs:
    case ToolId::kProcessSignal: return ProcessQuery(tool, args, context, sandbox_out);
  }
  return {ErrorJson(MakeError(ErrorCode::kInternal, "unknown tool")), true, "unknown tool"};
}

}  // namespace sbx::api::mcp
