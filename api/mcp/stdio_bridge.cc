#include "api/mcp/stdio_bridge.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string_view>
#include <thread>

#include "api/mcp/jsonrpc.h"
#include "api/sandboxctl/client.h"

namespace sbx::api::mcp {

using nlohmann::json;

namespace {

constexpr size_t kMaxReplyBytes = 64 << 20;

constexpr const char* kUsage = R"(Usage: sandboxd mcp [--profile executor|developer|full] [--host ADDRESS]

Speaks the Model Context Protocol on stdin and stdout (one JSON-RPC message per line) and
forwards it to a running sandboxd daemon, which enforces the profile's tools, the command
policy, the review gate and the audit trail.

  --profile NAME   the tools offered: executor (process_run), developer (+ files) or full
                   (+ sandbox lifecycle and background processes); default developer
  --host ADDRESS   the daemon: unix:/PATH, HOST:PORT or http://HOST:PORT; default
                   $SANDBOXD_HOST, else unix:/run/sandboxd/api.sock

The API key comes from $SANDBOXD_API_KEY. An assistant's configuration starts it as:
  {"command": "sandboxd", "args": ["mcp", "--profile", "developer"],
   "env": {"SANDBOXD_API_KEY": "..."}}
)";

class Bridge {
 public:
  Bridge(ctl::Client client, std::string profile)
      : client_(std::move(client)), target_("/mcp/" + profile) {}

  void Forward(const std::string& line) {
    ParsedMessage parsed = ParseMessage(line);
    if (!parsed.message) {
      // Answered here: the daemon would answer the same, and nothing needs forwarding.
      Write(RpcError(parsed.failure->id, parsed.failure->code, parsed.failure->message));
      return;
    }
    const RpcMessage& m = *parsed.message;
    const bool wants_answer = m.kind == RpcMessage::Kind::kRequest;
    json body = json::parse(line, nullptr, false);
    std::vector<std::pair<std::string, std::string>> headers = {
        {"Accept", "application/json, text/event-stream"}};
    {
      std::lock_guard lock(mu_);
      if (!session_.empty() && m.method != "initialize") headers.emplace_back("Mcp-Session-Id", session_);
    }
    // The reply is read as it arrives: an event stream's progress notifications are written
    // out one by one, before the response at its end.
    ctl::HttpReply reply;
    bool sse = false;
    std::string pending;  // an event stream's bytes not yet cut into lines
    std::string data;     // the current event's data
    Status st = client_.Exchange(
        "POST", target_, &body, headers,
        [&](const ctl::HttpReply& head) -> Status {
          reply = head;
          sse = head.status == 200 && head.content_type.starts_with("text/event-stream");
          return Ok();
        },
        [&](std::string_view bytes) -> Status {
          if (!sse) {
            if (reply.body.size() + bytes.size() > kMaxReplyBytes) {
              return MakeError(ErrorCode::kResourceExhausted, "the daemon's answer is too large");
            }
            reply.body.append(bytes);
            return Ok();
          }
          pending.append(bytes);
          for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
            std::string_view l(pending.data(), nl);
            if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
            if (l.starts_with("data:")) {
              l.remove_prefix(5);
              if (l.starts_with(" ")) l.remove_prefix(1);
              data.append(l);
            } else if (l.empty() && !data.empty()) {
              WriteLine(data);  // one event: one message
              data.clear();
            }
            pending.erase(0, nl + 1);
          }
          return Ok();
        });
    if (!st.ok()) {
      Log(fmt::format("{}: {}", m.method.empty() ? "response" : m.method, st.error().message));
      if (wants_answer) Write(RpcError(m.id, -32000, "sandboxd: " + st.error().message));
      return;
    }
    if (m.method == "initialize" && reply.status == 200) {
      for (const auto& [name, value] : reply.headers) {
        if (strcasecmp(name.c_str(), "mcp-session-id") == 0) {
          std::lock_guard lock(mu_);
          session_ = value;
        }
      }
    }
    if (sse) {
      if (!data.empty()) WriteLine(data);
      return;
    }
    if (reply.status == 202) return;
    json answer = json::parse(reply.body, nullptr, false);
    if (answer.is_object() && answer.contains("jsonrpc")) {
      if (!wants_answer) return;
      // A refusal made before the daemon read the message names no id: it answers this one.
      if (answer["id"].is_null()) answer["id"] = m.id;
      Write(answer);
      return;
    }
    // Not a JSON-RPC answer: the daemon refused the request itself (401 without a key).
    std::string message = ctl::ApiError(reply).message;
    Log(fmt::format("{}: HTTP {}: {}", m.method, reply.status, message));
    if (wants_answer) Write(RpcError(m.id, -32000, fmt::format("sandboxd: {}", message)));
  }

  static void Log(const std::string& line) {
    std::fprintf(stderr, "sandboxd mcp: %s\n", line.c_str());
  }

 private:
  void Write(const json& message) { WriteLine(message.dump(-1, ' ', false, json::error_handler_t::replace)); }
  void WriteLine(std::string_view text) {
    std::lock_guard lock(out_mu_);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }

  ctl::Client client_;
  std::string target_;
  std::mutex mu_;
  std::string session_;
  std::mutex out_mu_;
};

}  // namespace

int RunStdioBridge(const std::vector<std::string>& args) {
  std::string profile = "developer";
  std::string host;
  if (const char* h = std::getenv("SANDBOXD_HOST"); h != nullptr && *h != '\0') host = h;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--profile" && i + 1 < args.size()) {
      profile = args[++i];
    } else if (a.starts_with("--profile=")) {
      profile = a.substr(10);
    } else if (a == "--host" && i + 1 < args.size()) {
      host = args[++i];
    } else if (a.starts_with("--host=")) {
      host = a.substr(7);
    } else {
      std::fprintf(stderr, "sandboxd mcp: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (profile != "executor" && profile != "developer" && profile != "full") {
    std::fprintf(stderr, "sandboxd mcp: --profile must be executor, developer or full\n");
    return 2;
  }
  if (host.starts_with("http://")) {
    host = host.substr(7);
    if (!host.empty() && host.back() == '/') host.pop_back();
  }
  auto endpoint = ctl::ParseEndpoint(host.empty() ? ctl::kDefaultEndpoint : host);
  if (!endpoint.ok()) {
    std::fprintf(stderr, "sandboxd mcp: --host: %s\n", endpoint.error().message.c_str());
    return 2;
  }
  const char* key = std::getenv("SANDBOXD_API_KEY");
  if (key == nullptr || *key == '\0') {
    std::fprintf(stderr, "sandboxd mcp: set SANDBOXD_API_KEY to the API key to use\n");
    return 2;
  }
  Bridge bridge(ctl::Client(*endpoint, key), profile);
  Bridge::Log(fmt::format("profile {} on {}", profile, endpoint->ToString()));
  std::vector<std::thread> calls;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty() || line == "\r") continue;
    // initialize is forwarded before the next line is read: the messages after it carry the
    // session it hands out.
    ParsedMessage parsed = ParseMessage(line);
    if (parsed.message && parsed.message->method == "initialize") {
      bridge.Forward(line);
      continue;
    }
    calls.emplace_back([&bridge, line] { bridge.Forward(line); });
    // Finished calls are joined as new lines come, so the list stays short.
    if (calls.size() > 64) {
      for (auto& t : calls) t.join();
      calls.clear();
    }
  }
  for (auto& t : calls) t.join();
  return 0;
}

}  // namespace sbx::api::mcp
