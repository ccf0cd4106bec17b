// Pluggable planners: a configured HTTP endpoint, or a command run as a run of the project (in
// a sandbox with no network, the project's directory read-only at /workspace), gets the intent
// and the project's summary as JSON and answers steps as JSON. Boost.Beast stays in this file.
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "base/fs.h"
#include "base/http_url.h"
#include "supervisor/plan/planner.h"
#include "supervisor/project/projects.h"
#include "supervisor/workspace/run_logs.h"

namespace sbx::supervisor {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using nlohmann::json;

namespace {

Result<std::string> PostJson(const std::string& url, const std::string& body,
                             std::chrono::seconds timeout) {
  auto u = ParseHttpUrl(url, "planner url");
  if (!u.ok()) return std::move(u).error();
  try {
    net::io_context io;
    net::ip::tcp::resolver resolver(io);
    beast::tcp_stream stream(io);
    stream.expires_after(timeout);
    auto endpoints = resolver.resolve(u->host, u->port);
    stream.connect(endpoints);
    http::request<http::string_body> req{http::verb::post, u->target, 11};
    req.set(http::field::host, u->host);
    req.set(http::field::content_type, "application/json");
    req.set(http::field::user_agent, "sandboxd-planner");
    req.body() = body;
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(plan::kMaxAnswerBytes + 1);
    http::read(stream, buffer, parser);
    beast::error_code ignored;
    stream.socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
    const auto& res = parser.get();
    if (res.result_int() != 200) {
      return MakeError(ErrorCode::kUnavailable, "planner at {} answered HTTP {}", url,
                       res.result_int());
    }
    return res.body();
  } catch (const beast::system_error& e) {
    if (e.code() == http::error::body_limit) {
      return MakeError(ErrorCode::kFailedPrecondition, "planner at {} answered more than {} bytes",
                       url, plan::kMaxAnswerBytes);
    }
    if (e.code() == beast::error::timeout) {
      return MakeError(ErrorCode::kUnavailable, "planner at {} did not answer within {} s", url,
                       timeout.count());
    }
    return MakeError(ErrorCode::kUnavailable, "planner at {}: {}", url, e.code().message());
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kUnavailable, "planner at {}: {}", url, e.what());
  }
}

}  // namespace

Status CheckPlannerConfig(const PlannerConfig& p) {
  if (p.name.empty() || p.name == "builtin" || p.name.size() > 64 ||
      p.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_.-") != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "planner name '{}': [a-z0-9_.-], at most 64, not \"builtin\"", p.name);
  }
  if (p.url.empty() == p.command.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "planner '{}': give either url or command",
                     p.name);
  }
  if (!p.url.empty()) SBX_TRY(ParseHttpUrl(p.url, "planner url"));
  if (!p.command.empty() && (p.command[0].empty() || p.command[0][0] != '/')) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "planner '{}': command[0] must be an absolute path", p.name);
  }
  if (p.timeout_s < 1 || p.timeout_s > 600) {
    return MakeError(ErrorCode::kInvalidArgument, "planner '{}': timeout_s is 1 to 600", p.name);
  }
  return Ok();
}

Result<std::string> Projects::AskPlanner(const PlannerConfig& planner,
                                         const store::ProjectRecord& project, const json& input,
                                         const Principal& who) {
  const std::string body = input.dump(-1, ' ', false, json::error_handler_t::replace);
  if (!planner.url.empty()) {
    return PostJson(planner.url, body, std::chrono::seconds(planner.timeout_s));
  }
  // A run of the project: no network, its directory read-only, the input on stdin, the answer
  // on stdout. The administrator configured the command: it is started without a reviewer.
  store::RunRequest request;
  request.argv = planner.command;
  request.stdin_data = body;
  request.network = "none";
  request.limits.timeout_s = planner.timeout_s;
  request.limits.output_bytes = static_cast<int64_t>(plan::kMaxAnswerBytes) + 1;
  if (!project.root_path.empty()) request.workspace = store::Workspace{project.root_path, "ro"};
  request.labels = {{"planner", planner.name}};
  // Here, where its stdout is read from, whichever node shares the database.
  if (!options_.node.empty()) request.node_selector = {{"node", options_.node}};
  request.project_id = project.id;
  const json decided = {
      {"decision", "allow"},
      {"risk", nullptr},
      {"reasons", json::array()},
      {"rule", {{"file", "sandboxd.yaml"}, {"line", 0}, {"pattern", "planner " + planner.name}}},
      {"note", "a configured planner"}};
  Principal as = who;
  as.workspace_roots.clear();
  auto created = review_.Submit(std::move(request), as, &decided);
  if (!created.ok()) return WithContext(std::move(created).error(), "planner " + planner.name);
  const std::string id = created->run.id;

  // Its end, without polling: the bus tells when it completes; the store, if it already has.
  // The state is shared with the listener, which the bus may still be calling after Unsubscribe.
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  auto wait = std::make_shared<Wait>();
  const uint64_t token = events_.Subscribe(id, [wait](const store::EventRecord& e) {
    if (e.type != store::EventType::kRunCompleted) return;
    std::lock_guard<std::mutex> lk(wait->mu);
    wait->done = true;
    wait->cv.notify_all();
  });
  auto ended = [&] {
    auto r = store_.GetRun(id);
    return r.ok() && store::IsTerminal(r->state);
  };
  if (!ended()) {
    // The run's own timeout ends it; the queue before it gets as long again.
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(2 * planner.timeout_s + 5);
    std::unique_lock<std::mutex> lk(wait->mu);
    wait->cv.wait_until(lk, deadline, [&] { return wait->done; });
  }
  events_.Unsubscribe(token);
  auto run = store_.GetRun(id);
  if (!run.ok()) return std::move(run).error();
  if (!store::IsTerminal(run->state)) {
    return MakeError(ErrorCode::kUnavailable,
                     "planner '{}' (run {}) has not answered in time; it is {}", planner.name, id,
                     store::RunStateName(run->state));
  }
  if (run->state != store::RunState::kSucceeded) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "planner '{}' (run {}) ended {}: {}; see its logs", planner.name, id,
                     store::RunStateName(run->state),
                     run->result ? store::RenderEndReason(run->result->reason) : "");
  }
  auto out = ReadFile(RunDir(options_.data_dir, id) + "/" + LogFileName("stdout", run->attempt),
                      plan::kMaxAnswerBytes + 1);
  if (!out.ok())
    return WithContext(std::move(out).error(), "planner " + planner.name + "'s answer");
  return out;
}

}  // namespace sbx::supervisor
