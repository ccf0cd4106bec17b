// The daemon's metrics, rendered in the Prometheus text exposition format 0.0.4 for GET /metrics.
//
// Families (every label has a bounded set of values):
//   sandboxd_runs_total{state,reason}            counter: runs that ended; reason from a fixed set
//                                                (kRunReasons; anything else is "other")
//   sandboxd_policy_decisions_total{decision}    counter: allow, review, deny
//   sandboxd_sandbox_start_seconds               histogram: from the worker's claim of a run to
//                                                its sandbox being built
//   sandboxd_run_duration_seconds                histogram: RUNNING until the run ended
//   sandboxd_sandboxes_active                    gauge
//   sandboxd_sandboxes_started_total{source}     counter: "warm" (built ahead of its run, see
//                                                warm_pool.h) or "built" (for the run)
//   sandboxd_oom_kills_total                     counter: steps killed by the cgroup's OOM killer
//   sandboxd_timeouts_total                      counter: steps that ran past their timeout
//   sandboxd_seccomp_denials_total{syscall}      counter: from a step result's "seccomp_denials"
//                                                (absent: nothing is counted); at most
//                                                kMaxSyscallLabels names, the rest "other"
//   sandboxd_api_requests_total{method,route,status}  counter; route is the route's pattern
//                                                ("/v1/runs/{id}"), "unmatched" when none matched
//   sandboxd_api_request_duration_seconds{method,route}  histogram
//   sandboxd_queue_length                        gauge: QUEUED runs (read at scrape time)
//   sandboxd_runs_awaiting_review                gauge (read at scrape time)
// No label carries a run id, a key, a path parameter or anything a client chose freely.
//
// Thread-safe; every method is cheap (a mutex and a map lookup).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace sbx::supervisor {

inline constexpr size_t kMaxSyscallLabels = 64;

// The reasons sandboxd_runs_total knows; "setup_failed: …" and "policy_denied: …" count by
// their prefix.
inline constexpr std::string_view kRunReasons[] = {
    "exited",  "signaled",      "oom_killed", "timed_out",          "cancelled",
    "rejected", "policy_denied", "setup_failed", "supervisor_restart", "supervisor_shutdown"};
// The reason label for a run's reason string.
std::string_view NormalizeRunReason(std::string_view reason);

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double value);
  // "NAME_bucket{LABELS,le=…} N" lines, then _sum and _count. `labels` is "" or `a="b",c="d"`.
  void Render(std::string& out, std::string_view name, std::string_view labels) const;
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> buckets_;  // per bound, not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

// The scrape-time gauges' source: QUEUED and AWAITING_REVIEW counts, or nullopt when they cannot
// be read (the gauges are then left out of the page).
struct QueueCounts {
  int64_t queued = 0;
  int64_t awaiting_review = 0;
};

class Metrics {
 public:
  Metrics();

  // Feeds the run families from the run manager's events (store::EventTypeName names):
  // run.status (RUNNING starts a run's clock; PLANNED carries the policy decision),
  // step.finished (oom_killed, timed_out, seccomp_denials), run.completed (state and reason).
  void OnEvent(std::string_view run_id, std::string_view type, const nlohmann::json& data);
  void SandboxStarted(std::chrono::duration<double> latency, bool warm = false);
  void SandboxEnded();
  // One phase of a run's execution (store::PhaseTime's names, and "end_commit").
  void RunPhase(std::string_view phase, std::chrono::duration<double> took);
  void ApiRequest(std::string_view method, std::string_view route, int status,
                  std::chrono::duration<double> latency);
  void SetQueueCounts(std::function<std::optional<QueueCounts>()> source);

  int64_t active_sandboxes() const;
  // The page, "# HELP"/"# TYPE" before each family.
  std::string Render() const;

 private:
  void SeccompDenials(const nlohmann::json& list);

  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, uint64_t> runs_;  // {state, reason}
  std::map<std::string, uint64_t> decisions_;
  Histogram start_latency_;
  Histogram run_duration_;
  int64_t active_ = 0;
  uint64_t started_warm_ = 0;
  uint64_t started_built_ = 0;
  uint64_t oom_kills_ = 0;
  uint64_t timeouts_ = 0;
  std::map<std::string, uint64_t> seccomp_;
  std::map<std::tuple<std::string, std::string, int>, uint64_t> requests_;
  std::map<std::pair<std::string, std::string>, Histogram> request_latency_;
  std::map<std::string, Histogram, std::less<>> run_phases_;
  std::map<std::string, std::chrono::steady_clock::time_point> started_;  // run id -> RUNNING
  std::function<std::optional<QueueCounts>()> queue_counts_;
};

// Escapes a label value for the exposition format: backslash, double quote and newline.
std::string EscapeLabelValue(std::string_view value);

}  // namespace sbx::supervisor
