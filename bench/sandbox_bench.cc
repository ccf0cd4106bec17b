// Long-lived sandboxes through the API of a real `sandboxd serve` (bench/sandbox.sh starts the
// daemon and calls this):
//
//   bench_sandbox first PORT KEY N CLIENTS   time to first command: POST /v1/sandboxes, then
//                                            POST …/processes?wait=true of /bin/true, until its
//                                            result; then DELETE (not timed). N in all, from
//                                            CLIENTS connections at once; p50/p99
//   bench_sandbox exec  PORT KEY N           one sandbox, N processes /bin/true one after
//                                            another (POST …/processes?wait=true); p50/p99
//   bench_sandbox mcp   PORT KEY N           one sandbox, N times /bin/true through the plain
//                                            API (POST …/processes?wait=true) and N times
//                                            through MCP (tools/call process_run on
//                                            /mcp/executor), interleaved; p50/p99 of each and
//                                            the difference of the p50s
//   bench_sandbox idle  PORT KEY N PID       N idle sandboxes: the daemon's (PID) RSS growth
//                                            per sandbox, and the RSS of one sandbox's init
//
// Output: one JSON object per line on stdout.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "api/testing/raw_client.h"
#include "bench/measure.h"

namespace {

using sbx::api::testing::MakeRequest;
using sbx::api::testing::RawConn;
using sbx::api::testing::RoundTrip;
using sbx::bench::Percentile;
using sbx::bench::PssKb;
using sbx::bench::StatusKb;
using Clock = std::chrono::steady_clock;

uint16_t g_port = 0;
std::string g_key;

// One request on a connection of its own; the status and the JSON body (null on failure).
std::pair<int, nlohmann::json> Call(const std::string& method, const std::string& target,
                                    const std::string& body = "") {
  auto c = RawConn::Tcp(g_port);
  if (!c) return {0, nullptr};
  c->SetTimeout(std::chrono::seconds(120));
  auto r = RoundTrip(*c, MakeRequest(method, target,
                                     {{"x-api-key", g_key}, {"Content-Type", "application/json"}},
                                     body));
  if (!r) return {0, nullptr};
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  return {r->status, j.is_discarded() ? nlohmann::json() : j};
}

std::string Create() {
  auto [status, j] = Call("POST", "/v1/sandboxes", "{}");
  if (status != 201 || j.value("state", "") != "RUNNING") {
    std::fprintf(stderr, "create: %d %s\n", status, j.dump().c_str());
    return "";
  }
  return j.value("id", "");
}

bool True(const std::string& id) {
  auto [status, j] = Call("POST", "/v1/sandboxes/" + id + "/processes?wait=true",
                          R"({"argv": ["/bin/true"]})");
  if (status != 200 || !j.contains("result") || j["result"].value("exit_code", -1) != 0) {
    std::fprintf(stderr, "process in %s: %d %s\n", id.c_str(), status, j.dump().c_str());
    return false;
  }
  return true;
}

void Delete(const std::string& id) { (void)Call("DELETE", "/v1/sandboxes/" + id); }

nlohmann::json Summary(const char* bench, std::vector<double> ms, int failed) {
  return {{"bench", bench},
          {"samples", ms.size()},
          {"failed", failed},
          {"p50_ms", Percentile(ms, 0.5)},
          {"p90_ms", Percentile(ms, 0.9)},
          {"p99_ms", Percentile(ms, 0.99)}};
}

int First(int n, int clients) {
  std::atomic<int> next{0}, failed{0};
  std::mutex mu;
  std::vector<double> ms;
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      while (next.fetch_add(1) < n) {
        const auto t0 = Clock::now();
        std::string id = Create();
        const bool ok = !id.empty() && True(id);
        const double d = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (!id.empty()) Delete(id);
        if (!ok) {
          failed.fetch_add(1);
          continue;
        }
        std::lock_guard lock(mu);
        ms.push_back(d);
      }
    });
  }
  for (auto& t : threads) t.join();
  nlohmann::json out = Summary("first_command", ms, failed.load());
  out["clients"] = clients;
  std::printf("%s\n", out.dump().c_str());
  return failed == 0 ? 0 : 1;
}

int Exec(int n) {
  std::string id = Create();
  if (id.empty()) return 1;
  for (int i = 0; i < 10; ++i) (void)True(id);  // warm-up
  std::vector<double> ms;
  int failed = 0;
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    if (!True(id)) {
      ++failed;
      continue;
    }
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  Delete(id);
  std::printf("%s\n", Summary("live_process", ms, failed).dump().c_str());
  return failed == 0 ? 0 : 1;
}

bool McpTrue(const std::string& id, int call) {
  nlohmann::json body = {
      {"jsonrpc", "2.0"},
      {"id", call},
      {"method", "tools/call"},
      {"params",
       {{"name", "process_run"},
        {"arguments", {{"command", {"/bin/true"}}, {"sandbox_id", id}}}}}};
  auto c = RawConn::Tcp(g_port);
  if (!c) return false;
  c->SetTimeout(std::chrono::seconds(120));
  auto r = RoundTrip(*c, MakeRequest("POST", "/mcp/executor",
                                     {{"Authorization", "Bearer " + g_key},
                                      {"Content-Type", "application/json"},
                                      {"Accept", "application/json, text/event-stream"}},
                                     body.dump()));
  if (!r) return false;
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (r->status != 200 || j.is_discarded() || !j.contains("result") ||
      j["result"].value("isError", true) ||
      j["result"]["structuredContent"].value("exit_code", -1) != 0) {
    std::fprintf(stderr, "mcp process_run in %s: %d %s\n", id.c_str(), r->status,
                 r->body.c_str());
    return false;
  }
  return true;
}

int Mcp(int n) {
  std::string id = Create();
  if (id.empty()) return 1;
  for (int i = 0; i < 10; ++i) (void)True(id), (void)McpTrue(id, i);  // warm-up
  std::vector<double> api_ms, mcp_ms;
  int failed = 0;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    if (True(id)) {
      api_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    } else {
      ++failed;
    }
    t0 = Clock::now();
    if (McpTrue(id, i)) {
      mcp_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    } else {
      ++failed;
    }
  }
  Delete(id);
  nlohmann::json api = Summary("live_process_api", api_ms, 0);
  nlohmann::json mcp = Summary("live_process_mcp", mcp_ms, 0);
  std::printf("%s\n%s\n", api.dump().c_str(), mcp.dump().c_str());
  std::printf("%s\n", nlohmann::json{{"bench", "mcp_overhead"},
                                     {"samples", n},
                                     {"failed", failed},
                                     {"p50_added_ms", mcp["p50_ms"].get<double>() -
                                                          api["p50_ms"].get<double>()}}
                          .dump()
                          .c_str());
  return failed == 0 ? 0 : 1;
}

int Idle(int n, int daemon_pid) {
  // One sandbox first, so that what every sandbox shares (threads, pools) is not counted.
  std::string first = Create();
  if (first.empty()) return 1;
  const int64_t before = StatusKb(daemon_pid, "VmRSS:");
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    std::string id = Create();
    if (id.empty()) break;
    ids.push_back(id);
  }
  const int64_t after = StatusKb(daemon_pid, "VmRSS:");
  auto [status, j] = Call("GET", "/v1/sandboxes/" + first);
  int64_t init_kb = -1, init_pss_kb = -1;
  if (status == 200 && j.contains("init_pid") && j["init_pid"].is_number()) {
    init_kb = StatusKb(j["init_pid"].get<int>(), "VmRSS:");
    init_pss_kb = PssKb(j["init_pid"].get<int>());
  }
  for (const auto& id : ids) Delete(id);
  Delete(first);
  nlohmann::json out = {{"bench", "idle_sandbox"},
                        {"sandboxes", ids.size()},
                        {"daemon_rss_kb_before", before},
                        {"daemon_rss_kb_after", after},
                        {"daemon_kb_per_sandbox",
                         ids.empty() ? 0.0 : static_cast<double>(after - before) / ids.size()},
                        {"init_rss_kb", init_kb},
                        {"init_pss_kb", init_pss_kb}};
  std::printf("%s\n", out.dump().c_str());
  return static_cast<int>(ids.size()) == n ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr,
                 "usage: bench_sandbox first PORT KEY N CLIENTS | exec PORT KEY N | "
                 "mcp PORT KEY N | idle PORT KEY N PID\n");
    return 2;
  }
  const std::string mode = argv[1];
  g_port = static_cast<uint16_t>(std::stoi(argv[2]));
  g_key = argv[3];
  const int n = std::stoi(argv[4]);
  if (mode == "first" && argc >= 6) return First(n, std::stoi(argv[5]));
  if (mode == "exec") return Exec(n);
  if (mode == "mcp") return Mcp(n);
  if (mode == "idle" && argc >= 6) return Idle(n, std::stoi(argv[5]));
  std::fprintf(stderr, "bench_sandbox: unknown mode or missing arguments\n");
  return 2;
}
