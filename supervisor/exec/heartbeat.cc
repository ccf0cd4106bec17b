#include "supervisor/exec/heartbeat.h"

#include <spdlog/spdlog.h>

#include <vector>

namespace sbx::supervisor {

namespace {

// What a run that was RUNNING on a node that died gets: run.status and run.completed (FAILED,
// supervisor_restart) and the audit record saying who noticed.
std::vector<store::Write> RecoveredWrites(const std::string& run_id, nlohmann::json audit) {
  const nlohmann::json data = {{"state", "FAILED"}, {"reason", "supervisor_restart"}};
  std::vector<store::Write> writes;
  writes.push_back(store::EventWrite{run_id, store::EventType::kRunStatus, data});
  writes.push_back(store::EventWrite{run_id, store::EventType::kRunCompleted, data});
  writes.push_back(AuditOf(Daemon(), "run.recovered", run_id, std::move(audit)));
  return writes;
}

}  // namespace

Status RecoverNode(store::Store& store, EventBus& events, const std::string& node) {
  // What this node was running when it died did not finish.
  auto stale = store.RecoverStale(node);
  if (!stale.ok()) return std::move(stale).error();
  for (const std::string& id : *stale) {
    (void)events.Record(id, "its recovery", RecoveredWrites(id, {{"node", node}}));
    spdlog::warn("run {}: was running when the daemon stopped; marked FAILED", id);
  }
  return Ok();
}

Heartbeat::Heartbeat(store::Store& store, EventBus& events, std::string node,
                     std::chrono::milliseconds interval, std::chrono::milliseconds node_timeout)
    : store_(store),
      events_(events),
      node_(std::move(node)),
      interval_(interval),
      node_timeout_(node_timeout) {
  (void)store_.Heartbeat(node_);
  thread_ = std::thread([this] { Loop(); });
}

Heartbeat::~Heartbeat() { Stop(); }

void Heartbeat::Stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Heartbeat::Loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      if (stop_cv_.wait_for(lk, interval_, [&] { return stopping_; })) return;
    }
    if (Status st = store_.Heartbeat(node_); !st.ok()) {
      spdlog::error("heartbeat of node {}: {}", node_, st.error().ToString());
      continue;
    }
    // Another daemon sharing the database that stopped beating died with its runs.
    auto nodes = store_.ListNodes();
    if (!nodes.ok()) continue;
    const int64_t cutoff = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count() -
                           node_timeout_.count();
    for (const store::NodeRecord& n : *nodes) {
      if (n.name == node_ || n.last_heartbeat_ms >= cutoff) continue;
      auto stale = store_.RecoverStale(n.name);
      if (!stale.ok()) continue;
      for (const std::string& id : *stale) {
        (void)events_.Record(id, "its recovery",
                             RecoveredWrites(id, {{"node", n.name}, {"by", node_}}));
        spdlog::warn("run {}: its node {} stopped beating; marked FAILED", id, n.name);
      }
    }
  }
}

}  // namespace sbx::supervisor
