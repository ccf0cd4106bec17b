#include "supervisor/exec/heartbeat.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <vector>

#include "base/clock.h"

namespace sbx::supervisor {

namespace {

// What a run that was RUNNING on a node that died (or fenced itself) gets: run.status and
// run.completed (FAILED, with the reason) and the audit record saying who noticed.
std::vector<store::Write> RecoveredWrites(const std::string& run_id, store::EndCode reason,
                                          nlohmann::json audit) {
  const nlohmann::json data = {{"state", "FAILED"}, {"reason", store::EndCodeName(reason)}};
  std::vector<store::Write> writes;
  writes.push_back(store::EventWrite{run_id, store::EventType::kRunStatus, data});
  writes.push_back(store::EventWrite{run_id, store::EventType::kRunCompleted, data});
  writes.push_back(AuditOf(Daemon(), "run.recovered", run_id, std::move(audit)));
  return writes;
}

}  // namespace

Status RecoverNode(store::Store& store, EventBus& events, const std::string& node,
                   store::EndCode reason) {
  // What this node was running when it died (or fenced itself) did not finish.
  auto stale = store.RecoverStale(node, reason);
  if (!stale.ok()) return std::move(stale).error();
  for (const std::string& id : *stale) {
    (void)events.Record(id, "its recovery", RecoveredWrites(id, reason, {{"node", node}}));
    spdlog::warn("run {}: was running when the daemon stopped or lost the database; marked "
                 "FAILED ({})",
                 id, store::EndCodeName(reason));
  }
  return Ok();
}

size_t RecoverLostNode(store::Store& store, EventBus& events, const std::string& node,
                       const store::LostNodeRuns& runs, const std::string& by) {
  events.Audit(Daemon(), "node.lost", "",
               {{"node", node},
                {"by", by},
                {"failed_runs", runs.failed.size()},
                {"requeued_runs", runs.requeued.size()}});
  const nlohmann::json who = {{"node", node}, {"by", by}};
  for (const std::string& id : runs.failed) {
    const nlohmann::json data = {{"state", "FAILED"}, {"reason", "node_lost"}};
    std::vector<store::Write> writes;
    writes.push_back(store::EventWrite{id, store::EventType::kRunStatus, data});
    writes.push_back(store::EventWrite{id, store::EventType::kRunCompleted, data});
    writes.push_back(AuditOf(Daemon(), "run.node_lost", id, who));
    (void)events.Record(id, "its end on a lost node", writes);
    spdlog::warn("run {}: its node {} was lost; marked FAILED", id, node);
  }
  for (const std::string& id : runs.requeued) {
    std::vector<store::Write> writes;
    writes.push_back(store::EventWrite{
        id, store::EventType::kRunStatus, {{"state", "QUEUED"}, {"reason", "node_lost"}}});
    writes.push_back(AuditOf(Daemon(), "run.requeued", id, who));
    (void)events.Record(id, "its requeue", writes);
    spdlog::warn("run {}: its node {} was lost; queued again", id, node);
  }
  auto sandboxes = store.RecoverStaleSandboxes(node, store::EndCode::kNodeLost);
  if (sandboxes.ok()) {
    for (const std::string& id : *sandboxes) {
      spdlog::warn("sandbox {}: its node {} was lost; ended FAILED", id, node);
      events.Audit(Daemon(), "sandbox.failed", id, {{"reason", "node_lost"}, {"node", node}});
    }
  } else {
    spdlog::error("ending the sandboxes of lost node {}: {}", node, sandboxes.error().ToString());
  }
  return runs.requeued.size();
}

std::chrono::milliseconds FenceAfter(std::chrono::milliseconds interval,
                                     std::chrono::milliseconds node_timeout) {
  return node_timeout - std::min(interval, node_timeout / 4);
}

namespace {
int64_t SteadyNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

Heartbeat::Heartbeat(store::Store& store, EventBus& events, store::NodeRecord self,
                     std::chrono::milliseconds interval, std::chrono::milliseconds node_timeout,
                     NodeHooks hooks, bool shared)
    : store_(store),
      events_(events),
      self_(std::move(self)),
      interval_(interval),
      node_timeout_(node_timeout),
      hooks_(std::move(hooks)),
      last_beat_ns_(SteadyNs()) {
  thread_ = std::thread([this] { Loop(); });
  if (shared) watch_ = std::thread([this] { Watch(); });
}

Heartbeat::~Heartbeat() { Stop(); }

void Heartbeat::Stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (watch_.joinable()) watch_.join();
}

std::string Heartbeat::address() const {
  std::lock_guard<std::mutex> lk(mu_);
  return self_.address;
}

void Heartbeat::SetAddress(const std::string& address) {
  store::NodeRecord self;
  {
    std::lock_guard<std::mutex> lk(mu_);
    self_.address = address;
    self = self_;
  }
  if (auto r = store_.RegisterNode(self); !r.ok()) {
    spdlog::error("node {}: storing its address: {}", self.name, r.error().ToString());
  }
}

bool Heartbeat::fenced_now() {
  std::lock_guard<std::mutex> lk(mu_);
  return fenced_;
}

void Heartbeat::SetFenced(bool fenced, const char* why) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (fenced_ == fenced) return;
    fenced_ = fenced;
  }
  if (fenced) {
    const size_t killed = hooks_.fence ? hooks_.fence() : 0;
    spdlog::error("node {}: {}; killed {} running run(s), taking no work", self_.name, why,
                  killed);
  } else {
    if (hooks_.unfence) hooks_.unfence();
    spdlog::warn("node {}: {}; taking work again", self_.name, why);
  }
}

void Heartbeat::Watch() {
  // Apart from the beats: a call to an unreachable database can block far longer than the
  // timeout, and the node must stop its work before the others give it away.
  const auto period = std::max(interval_ / 4, std::chrono::milliseconds(50));
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      if (stop_cv_.wait_for(lk, period, [&] { return stopping_; })) return;
    }
    const auto since = std::chrono::nanoseconds(SteadyNs() - last_beat_ns_.load());
    if (since > FenceAfter(interval_, node_timeout_)) {
      SetFenced(true, "no heartbeat reached the database for nearly node_timeout");
    }
  }
}

void Heartbeat::Loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      if (stop_cv_.wait_for(lk, interval_, [&] { return stopping_; })) return;
    }
    Beat();
  }
}

void Heartbeat::Beat() {
  // Counted from before the call: the beat the store took is no older than this, so the node
  // fences itself no later than the others may declare it lost.
  const int64_t asked = SteadyNs();
  auto state = store_.Heartbeat(self_.name);
  if (!state.ok()) {
    spdlog::error("heartbeat of node {}: {}", self_.name, state.error().ToString());
    return;
  }
  last_beat_ns_.store(asked);
  if (std::chrono::nanoseconds(SteadyNs() - asked) > FenceAfter(interval_, node_timeout_)) {
    // It took nearly node_timeout (a database that was away, a connection made again): the next
    // beat, quick, says whether the node may work again.
    spdlog::warn("node {}: a heartbeat took {} ms", self_.name,
                 std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::nanoseconds(SteadyNs() - asked))
                     .count());
    return;
  }
  if (*state == store::NodeState::kLost) {
    // Declared lost while unreachable: what ran here was ended or requeued by another node.
    SetFenced(true, "declared lost by another node");
    store::NodeRecord self;
    {
      std::lock_guard<std::mutex> lk(mu_);
      self = self_;
    }
    auto again = store_.RegisterNode(self);
    if (!again.ok()) {
      spdlog::error("node {}: registering again: {}", self_.name, again.error().ToString());
      return;
    }
    events_.Audit(Daemon(), "node.returned", "", {{"node", self_.name}});
    state = again->state;
  }
  if (fenced_now()) {
    // Reachable again, and nobody declared it lost: the runs it killed end FAILED (node_lost),
    // by their own workers once they finish, or here for those whose end could not be written
    // while the database was away.
    if (hooks_.wait_idle && !hooks_.wait_idle(node_timeout_)) {
      spdlog::warn("node {}: its killed runs are still ending; taking no work yet", self_.name);
      return;
    }
    if (Status st = RecoverNode(store_, events_, self_.name, store::EndCode::kNodeLost);
        !st.ok()) {
      spdlog::error("node {}: ending the runs it killed: {}", self_.name, st.error().ToString());
      return;
    }
  }
  SetFenced(false, "the database answers again");
  if (hooks_.set_draining) hooks_.set_draining(*state == store::NodeState::kDraining);
  FindLostNodes();
}

void Heartbeat::FindLostNodes() {
  // Another daemon sharing the database that stopped beating is lost, with its runs. The cutoff
  // is this host's clock against theirs: nodes on several hosts need their clocks in sync (NTP)
  // to within a fraction of node_timeout.
  auto nodes = store_.ListNodes();
  if (!nodes.ok()) return;
  const int64_t cutoff = NowMs() - node_timeout_.count();
  size_t requeued = 0;
  for (const store::NodeRecord& n : *nodes) {
    if (n.name == self_.name || n.state == store::NodeState::kLost ||
        n.last_heartbeat_ms >= cutoff) {
      continue;
    }
    auto lost = store_.DeclareNodeLost(n.name, cutoff);
    if (!lost.ok()) {
      spdlog::error("declaring node {} lost: {}", n.name, lost.error().ToString());
      continue;
    }
    if (!lost->has_value()) continue;  // another node did, or it beat meanwhile
    requeued += RecoverLostNode(store_, events_, n.name, **lost, self_.name);
  }
  if (requeued > 0 && hooks_.wake) hooks_.wake();
}

}  // namespace sbx::supervisor
