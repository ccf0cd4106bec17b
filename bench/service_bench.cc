// Load generator for `sandboxd serve` (bench/service.sh starts the daemon and calls this):
//
//   bench_service latency  PORT KEY N [PAUSE_MS] N auto-approved /bin/true runs one after
//                                                another: POST /v1/runs until run.completed
//                                                arrives on the run's WebSocket; p50/p90/p99.
//                                                PAUSE_MS: an idle pause before each run (a
//                                                client that submits now and then), default 0
//   bench_service rate     PORT KEY CLIENTS N    CLIENTS connections in parallel, N runs in all;
//                                                runs per second
//   Both also give the whole host's busy CPU time per run (bench/measure.h): the daemon's,
//   its sandboxes', the kernel's and this client's.
//   bench_service logs     PORT KEY BYTES PID [FORMAT [SOURCE]]
//                                                one run writing BYTES to stdout, followed on a
//                                                WebSocket; MB/s, and the daemon's (PID) RSS
//                                                before and its peak (VmHWM) after. FORMAT: json
//                                                (default) or binary (?format=binary); SOURCE:
//                                                text (`yes … | head -c`, default) or zero
//                                                (`head -c BYTES /dev/zero`, the raw pipe's own
//                                                producer)
//
// Output: one JSON object per line on stdout.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "api/testing/raw_client.h"
#include "bench/measure.h"

namespace {

using sbx::api::testing::MakeRequest;
using sbx::api::testing::MakeWsUpgrade;
using sbx::api::testing::RawConn;
using sbx::api::testing::RoundTrip;
using sbx::api::testing::WsReadFrame;
using Clock = std::chrono::steady_clock;

// PORT, or PORT,PORT,…: several nodes of one service, each run submitted to the next one and
// followed through another (`rate` only).
std::vector<uint16_t> g_ports;
uint16_t g_port = 0;
std::string g_key;
thread_local size_t t_turn = 0;

// Submits `body` (to `port`, or g_port); returns the run id ("" on failure).
std::string Submit(const std::string& body, uint16_t port = 0) {
  auto c = RawConn::Tcp(port != 0 ? port : g_port);
  if (!c) return "";
  auto r = RoundTrip(*c, MakeRequest("POST", "/v1/runs",
                                     {{"x-api-key", g_key}, {"Content-Type", "application/json"}},
                                     body));
  if (!r || r->status != 201) {
    std::fprintf(stderr, "submit failed: %d %s\n", r ? r->status : 0, r ? r->body.c_str() : "");
    return "";
  }
  return r->Json().value("id", "");
}

// The length of the JSON string value after `"data":"` in `frame`, decoded (escapes count as
// the one byte they stand for; \uXXXX below 0x80 as one). -1 when there is none.
int64_t DataLength(const std::string& frame) {
  size_t at = frame.find("\"data\":\"");
  if (at == std::string::npos) return -1;
  int64_t n = 0;
  for (size_t i = at + 8; i < frame.size(); ++i) {
    char c = frame[i];
    if (c == '"') return n;
    if (c == '\\') {
      if (i + 1 < frame.size() && frame[i + 1] == 'u') i += 4;
      ++i;
    }
    ++n;
  }
  return n;
}

struct Followed {
  bool completed = false;
  std::string state;
  int64_t stdout_bytes = 0;
};

// Reads the run's events from the start until run.completed.
Followed Follow(const std::string& id, bool count_logs, bool binary = false,
                uint16_t port = 0) {
  Followed f;
  auto ws = RawConn::Tcp(port != 0 ? port : g_port);
  if (!ws) return f;
  ws->SetTimeout(std::chrono::seconds(120));
  ws->Send(MakeWsUpgrade("/v1/runs/" + id + "/events?after=0" + (binary ? "&format=binary" : ""),
                         {{"x-api-key", g_key}}));
  auto head = sbx::api::testing::ReadHead(*ws);
  if (!head || head->status != 101) return f;
  for (;;) {
    auto frame = WsReadFrame(*ws);
    if (!frame || frame->opcode == 8) return f;
    const std::string& p = frame->payload;
    if (frame->opcode == 2) {  // a binary step.log: header line, newline, the bytes
      size_t nl = p.find('\n');
      if (nl == std::string::npos) return f;
      std::string_view header(p.data(), nl);
      if (count_logs && header.find("\"stream\":\"stdout\"") != std::string_view::npos) {
        f.stdout_bytes += static_cast<int64_t>(p.size() - nl - 1);
      }
      continue;
    }
    if (p.find("\"type\":\"step.log\"") != std::string::npos) {
      if (count_logs && p.find("\"stream\":\"stdout\"") != std::string::npos) {
        f.stdout_bytes += std::max<int64_t>(0, DataLength(p));
      }
      continue;
    }
    if (p.find("\"type\":\"run.completed\"") != std::string::npos) {
      f.completed = true;
      f.state = nlohmann::json::parse(p).value("state", "");
      return f;
    }
  }
}

using sbx::bench::Percentile;
using sbx::bench::PssKb;
using sbx::bench::StatusKb;

constexpr char kTrue[] = R"({"argv": ["/bin/true"]})";

int Latency(int n, int pause_ms) {
  std::vector<double> ms;
  int failed = 0;
  const double busy0 = sbx::bench::HostBusyMs();
  for (int i = 0; i < n; ++i) {
    if (pause_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
    auto t0 = Clock::now();
    std::string id = Submit(kTrue);
    Followed f = id.empty() ? Followed{} : Follow(id, false);
    double d = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (!f.completed || f.state != "SUCCEEDED") {
      ++failed;
      continue;
    }
    ms.push_back(d);
  }
  nlohmann::json out = {{"bench", "latency"},
                        {"runs", n},
                        {"pause_ms", pause_ms},
                        {"failed", failed},
                        {"p50_ms", Percentile(ms, 0.5)},
                        {"p90_ms", Percentile(ms, 0.9)},
                        {"p99_ms", Percentile(ms, 0.99)},
                        {"host_cpu_ms_per_run", (sbx::bench::HostBusyMs() - busy0) / n}};
  std::printf("%s\n", out.dump().c_str());
  return failed == 0 ? 0 : 1;
}

// The run each client submits: $BENCH_BODY, or /bin/true.
std::string RunBody() {
  const char* b = std::getenv("BENCH_BODY");
  return b != nullptr && *b != '\0' ? b : kTrue;
}

int Rate(int clients, int n) {
  std::atomic<int> next{0}, failed{0};
  std::vector<std::thread> threads;
  const std::string body = RunBody();
  const double busy0 = sbx::bench::HostBusyMs();
  auto t0 = Clock::now();
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      t_turn = static_cast<size_t>(c);
      while (next.fetch_add(1) < n) {
        const size_t k = g_ports.size();
        const uint16_t to = g_ports[t_turn++ % k];
        std::string id = Submit(body, to);
        Followed f = id.empty() ? Followed{} : Follow(id, false, false, g_ports[t_turn % k]);
        if (!f.completed || f.state != "SUCCEEDED") {
          failed.fetch_add(1);
          std::fprintf(stderr, "run %s: %s\n", id.empty() ? "(not submitted)" : id.c_str(),
                       f.completed ? f.state.c_str() : "no run.completed before the timeout");
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  nlohmann::json out = {{"bench", "rate"},
                        {"nodes", g_ports.size()},
                        {"body", body},
                        {"clients", clients},
                        {"runs", n},
                        {"failed", failed.load()},
                        {"seconds", secs},
                        {"runs_per_s", n / secs},
                        {"host_cpu_ms_per_run", (sbx::bench::HostBusyMs() - busy0) / n}};
  std::printf("%s\n", out.dump().c_str());
  return failed == 0 ? 0 : 1;
}

int Logs(int64_t bytes, int daemon_pid, const std::string& format, const std::string& source) {
  int64_t rss_before = StatusKb(daemon_pid, "VmRSS:");
  int64_t hwm_before = StatusKb(daemon_pid, "VmHWM:");
  std::string script =
      source == "zero"
          ? "head -c " + std::to_string(bytes) + " /dev/zero"
          : "yes 'sandboxd log throughput: 0123456789abcdefghijklmnopqrstuvwxyz' | head -c " +
                std::to_string(bytes);
  nlohmann::json body = {
      {"argv", {"/bin/sh", "-c", script}},
      {"limits", {{"output_bytes", bytes + (1 << 20)}, {"timeout_s", 600}}}};
  auto t0 = Clock::now();
  std::string id = Submit(body.dump());
  if (id.empty()) return 1;
  Followed f = Follow(id, true, format == "binary");
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  int64_t hwm_after = StatusKb(daemon_pid, "VmHWM:");
  nlohmann::json out = {{"bench", "logs"},
                        {"format", format},
                        {"source", source},
                        {"bytes_expected", bytes},
                        {"bytes_received", f.stdout_bytes},
                        {"state", f.state},
                        {"seconds", secs},
                        {"mb_per_s", static_cast<double>(f.stdout_bytes) / secs / 1e6},
                        {"daemon_rss_before_kb", rss_before},
                        {"daemon_hwm_before_kb", hwm_before},
                        {"daemon_hwm_after_kb", hwm_after},
                        {"daemon_rss_growth_kb", hwm_after - rss_before}};
  std::printf("%s\n", out.dump().c_str());
  return f.completed && f.stdout_bytes == bytes ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr,
                 "usage: bench_service latency PORT KEY N [PAUSE_MS] | rate PORT[,PORT…] KEY "
                 "CLIENTS N ($BENCH_BODY: the run) | "
                 "logs PORT KEY BYTES DAEMON_PID [json|binary [text|zero]]\n");
    return 2;
  }
  std::string mode = argv[1];
  for (std::string_view ports = argv[2]; !ports.empty();) {
    const size_t comma = std::min(ports.find(','), ports.size());
    g_ports.push_back(static_cast<uint16_t>(std::stoi(std::string(ports.substr(0, comma)))));
    ports.remove_prefix(std::min(comma + 1, ports.size()));
  }
  g_port = g_ports.front();
  g_key = argv[3];
  if (mode == "latency") return Latency(std::stoi(argv[4]), argc >= 6 ? std::stoi(argv[5]) : 0);
  if (mode == "rate" && argc >= 6) return Rate(std::stoi(argv[4]), std::stoi(argv[5]));
  if (mode == "logs" && argc >= 6) {
    std::string format = argc >= 7 ? argv[6] : "json";
    std::string source = argc >= 8 ? argv[7] : "text";
    if ((format != "json" && format != "binary") || (source != "text" && source != "zero")) {
      std::fprintf(stderr, "bench_service: FORMAT is json or binary, SOURCE text or zero\n");
      return 2;
    }
    return Logs(std::stoll(argv[4]), std::stoi(argv[5]), format, source);
  }
  std::fprintf(stderr, "bench_service: unknown mode or missing arguments\n");
  return 2;
}
