#include "supervisor/observability/metrics.h"

#include <fmt/format.h>
#include <malloc.h>

#include <algorithm>
#include <cmath>

namespace sbx::supervisor {
namespace {

const std::vector<double> kStartBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                           0.5,   1,    2.5,   5,    10};
const std::vector<double> kDurationBuckets = {0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600};
const std::vector<double> kApiBuckets = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,   1,    2.5,   5,    10};

// A float as the exposition format writes it ("+Inf", shortest round-trip otherwise).
std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

void Family(std::string& out, std::string_view name, std::string_view type,
            std::string_view help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

bool IsSyscallName(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

}  // namespace

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string_view NormalizeRunReason(std::string_view reason) {
  std::string_view head = reason.substr(0, reason.find(':'));
  for (std::string_view r : kRunReasons) {
    if (head == r) return r;
  }
  if (head == "timeout") return "timed_out";
  return "other";
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), buckets_(bounds_.size(), 0) {}

void Histogram::Observe(double value) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (value <= bounds_[i]) {
      ++buckets_[i];
      break;
    }
  }
  sum_ += value;
  ++count_;
}

void Histogram::Render(std::string& out, std::string_view name, std::string_view labels) const {
  std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += buckets_[i];
    out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, Number(bounds_[i]),
                       cumulative);
  }
  out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, count_);
  std::string braces = labels.empty() ? "" : fmt::format("{{{}}}", labels);
  out += fmt::format("{}_sum{} {}\n", name, braces, Number(sum_));
  out += fmt::format("{}_count{} {}\n", name, braces, count_);
}

Metrics::Metrics() : start_latency_(kStartBuckets), run_duration_(kDurationBuckets) {}

void Metrics::OnEvent(std::string_view run_id, std::string_view type, const nlohmann::json& data) {
  if (!data.is_object()) return;
  std::lock_guard lock(mu_);
  if (type == "run.status") {
    std::string state = data.value("state", "");
    if (state == "RUNNING") {
      started_[std::string(run_id)] = std::chrono::steady_clock::now();
    } else if (state == "PLANNED") {
      auto p = data.find("policy");
      if (p != data.end() && p->is_object()) {
        std::string d = p->value("decision", "");
        if (d == "allow" || d == "review" || d == "deny") ++decisions_[d];
      }
    }
  } else if (type == "step.finished") {
    std::string reason = data.value("reason", "");
    std::string_view norm = NormalizeRunReason(reason);
    if (norm == "oom_killed") ++oom_kills_;
    if (norm == "timed_out") ++timeouts_;
    if (auto d = data.find("seccomp_denials"); d != data.end()) SeccompDenials(*d);
  } else if (type == "run.completed") {
    std::string state = data.value("state", "");
    if (state != "SUCCEEDED" && state != "FAILED" && state != "CANCELLED") state = "other";
    std::string reason = data.contains("reason") && data["reason"].is_string()
                             ? data["reason"].get<std::string>()
                             : "";
    ++runs_[{state, std::string(NormalizeRunReason(reason))}];
    if (auto it = started_.find(std::string(run_id)); it != started_.end()) {
      run_duration_.Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - it->second).count());
      started_.erase(it);
    }
  }
}

// Accepts ["openat", …] (one denial each) and [{"syscall": "openat", "count": 3}, …].
void Metrics::SeccompDenials(const nlohmann::json& list) {
  if (!list.is_array()) return;
  for (const auto& d : list) {
    std::string name;
    uint64_t count = 1;
    if (d.is_string()) {
      name = d.get<std::string>();
    } else if (d.is_object()) {
      auto s = d.find("syscall");
      if (s == d.end()) s = d.find("name");
      if (s != d.end() && s->is_string()) name = s->get<std::string>();
      auto c = d.find("count");
      if (c != d.end() && c->is_number_integer() && c->get<int64_t>() >= 0) {
        count = c->get<uint64_t>();
      }
    } else {
      continue;
    }
    if (!IsSyscallName(name)) name = "other";
    if (seccomp_.count(name) == 0 && seccomp_.size() >= kMaxSyscallLabels) name = "other";
    seccomp_[name] += count;
  }
}

void Metrics::SandboxStarted(std::chrono::duration<double> latency, bool warm) {
  std::lock_guard lock(mu_);
  start_latency_.Observe(latency.count());
  ++active_;
  ++(warm ? started_warm_ : started_built_);
}

void Metrics::RunPhase(std::string_view phase, std::chrono::duration<double> took) {
  // Phases run from microseconds (a commit) to hours (the steps).
  static const std::vector<double> kPhaseBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                     0.005,  0.01,    0.025,  0.05,  0.1,
                                                     0.25,   0.5,     1,      2.5,   10,  60};
  std::lock_guard lock(mu_);
  auto it = run_phases_.find(phase);
  if (it == run_phases_.end()) {
    it = run_phases_.emplace(std::string(phase), Histogram(kPhaseBuckets)).first;
  }
  it->second.Observe(took.count());
}

void Metrics::SandboxEnded() {
  std::lock_guard lock(mu_);
  if (active_ > 0) --active_;
}

void Metrics::ApiRequest(std::string_view method, std::string_view route, int status,
                         std::chrono::duration<double> latency) {
  std::string r = route.empty() ? "unmatched" : std::string(route);
  std::lock_guard lock(mu_);
  ++requests_[{std::string(method), r, status}];
  auto key = std::make_pair(std::string(method), r);
  auto it = request_latency_.find(key);
  if (it == request_latency_.end()) it = request_latency_.emplace(key, Histogram(kApiBuckets)).first;
  it->second.Observe(latency.count());
}

void Metrics::SetQueueCounts(std::function<std::optional<QueueCounts>()> source) {
  std::lock_guard lock(mu_);
  queue_counts_ = std::move(source);
}

int64_t Metrics::active_sandboxes() const {
  std::lock_guard lock(mu_);
  return active_;
}

std::string Metrics::Render() const {
  std::function<std::optional<QueueCounts>()> source;
  {
    std::lock_guard lock(mu_);
    source = queue_counts_;
  }
  // Read outside the lock: it may query the database.
  std::optional<QueueCounts> queue = source ? source() : std::nullopt;

  std::lock_guard lock(mu_);
  std::string out;
  Family(out, "sandboxd_runs_total", "counter", "Runs that ended, by final state and reason.");
  for (const auto& [k, v] : runs_) {
    out += fmt::format("sandboxd_runs_total{{state=\"{}\",reason=\"{}\"}} {}\n",
                       EscapeLabelValue(k.first), EscapeLabelValue(k.second), v);
  }
  Family(out, "sandboxd_policy_decisions_total", "counter",
         "Command policy decisions at submission.");
  for (const char* d : {"allow", "review", "deny"}) {
    auto it = decisions_.find(d);
    out += fmt::format("sandboxd_policy_decisions_total{{decision=\"{}\"}} {}\n", d,
                       it == decisions_.end() ? 0 : it->second);
  }
  Family(out, "sandboxd_sandbox_start_seconds", "histogram",
         "Time from claiming a queued run to its sandbox being built.");
  start_latency_.Render(out, "sandboxd_sandbox_start_seconds", "");
  Family(out, "sandboxd_run_duration_seconds", "histogram",
         "Time from a run starting to run until it ended.");
  run_duration_.Render(out, "sandboxd_run_duration_seconds", "");
  if (!run_phases_.empty()) {
    Family(out, "sandboxd_run_phase_seconds", "histogram",
           "Time a run spent in each phase of its execution, from the queue to its end's commit.");
    for (const auto& [phase, h] : run_phases_) {
      h.Render(out, "sandboxd_run_phase_seconds",
               fmt::format("phase=\"{}\"", EscapeLabelValue(phase)));
    }
  }
  Family(out, "sandboxd_sandboxes_active", "gauge", "Sandboxes that exist now.");
  out += fmt::format("sandboxd_sandboxes_active {}\n", active_);
  Family(out, "sandboxd_sandboxes_started_total", "counter",
         "Sandboxes runs started in: built ahead of the run (warm) or for it (built).");
  out += fmt::format("sandboxd_sandboxes_started_total{{source=\"warm\"}} {}\n", started_warm_);
  out += fmt::format("sandboxd_sandboxes_started_total{{source=\"built\"}} {}\n", started_built_);
  Family(out, "sandboxd_oom_kills_total", "counter", "Steps killed by their cgroup's OOM killer.");
  out += fmt::format("sandboxd_oom_kills_total {}\n", oom_kills_);
  Family(out, "sandboxd_timeouts_total", "counter", "Steps killed at their timeout.");
  out += fmt::format("sandboxd_timeouts_total {}\n", timeouts_);
  Family(out, "sandboxd_seccomp_denials_total", "counter",
         "System calls the seccomp filter refused, by name.");
  for (const auto& [name, v] : seccomp_) {
    out += fmt::format("sandboxd_seccomp_denials_total{{syscall=\"{}\"}} {}\n",
                       EscapeLabelValue(name), v);
  }
  Family(out, "sandboxd_api_requests_total", "counter",
         "API requests by method, route pattern and status.");
  for (const auto& [k, v] : requests_) {
    out += fmt::format("sandboxd_api_requests_total{{method=\"{}\",route=\"{}\",status=\"{}\"}} {}\n",
                       EscapeLabelValue(std::get<0>(k)), EscapeLabelValue(std::get<1>(k)),
                       std::get<2>(k), v);
  }
  Family(out, "sandboxd_api_request_duration_seconds", "histogram",
         "API request latency, from the request's arrival to its response's head.");
  for (const auto& [k, h] : request_latency_) {
    h.Render(out, "sandboxd_api_request_duration_seconds",
             fmt::format("method=\"{}\",route=\"{}\"", EscapeLabelValue(k.first),
                         EscapeLabelValue(k.second)));
  }
  if (queue) {
    Family(out, "sandboxd_queue_length", "gauge", "Runs approved and waiting for a worker.");
    out += fmt::format("sandboxd_queue_length {}\n", queue->queued);
    Family(out, "sandboxd_runs_awaiting_review", "gauge", "Runs waiting for a reviewer.");
    out += fmt::format("sandboxd_runs_awaiting_review {}\n", queue->awaiting_review);
  }
  // What the daemon holds, apart from what its allocator keeps for reuse: a leak shows here,
  // where the resident size also moves with arenas and caches.
  const struct mallinfo2 heap = ::mallinfo2();
  Family(out, "sandboxd_heap_in_use_bytes", "gauge",
         "Bytes of the daemon's heap in use (allocated and not freed), mmapped blocks included.");
  out += fmt::format("sandboxd_heap_in_use_bytes {}\n", heap.uordblks + heap.hblkhd);
  return out;
}

}  // namespace sbx::supervisor
