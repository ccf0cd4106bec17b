#include "supervisor/events/event_bus.h"

#include <spdlog/spdlog.h>

#include <vector>

namespace sbx::supervisor {

EventBus::EventBus(store::Store& store, Listener observer)
    : store_(store), observer_(std::move(observer)) {}

uint64_t EventBus::Subscribe(std::string run_id, Listener listener) {
  std::lock_guard<std::mutex> lk(listeners_mu_);
  uint64_t token = next_token_++;
  listeners_[token] = {std::move(run_id), std::move(listener)};
  return token;
}

uint64_t EventBus::SubscribeWake(std::string run_id, std::function<void()> wake) {
  std::lock_guard<std::mutex> lk(listeners_mu_);
  uint64_t token = next_token_++;
  wakers_[token] = {std::move(run_id), std::move(wake)};
  return token;
}

void EventBus::Unsubscribe(uint64_t token) {
  std::lock_guard<std::mutex> lk(listeners_mu_);
  listeners_.erase(token);
  wakers_.erase(token);
}

void EventBus::WakeFor(const std::string& run_id) {
  std::vector<std::function<void()>> targets;
  {
    std::lock_guard<std::mutex> lk(listeners_mu_);
    for (const auto& [token, sub] : wakers_) {
      if (run_id.empty() || sub.first.empty() || sub.first == run_id) targets.push_back(sub.second);
    }
  }
  for (const auto& w : targets) w();
}

void EventBus::RemoteCommitted(const std::string& run_id) { WakeFor(run_id); }

Result<store::Committed> EventBus::Commit(std::span<const store::Write> writes) {
  // Listeners are called without listeners_mu_ held, so a listener may unsubscribe.
  std::lock_guard<std::mutex> emit(emit_mu_);
  auto done = store_.Commit(writes);
  if (done.ok() && commit_hook_) commit_hook_(writes);
  if (!done.ok() || done->events.empty()) return done;
  if (observer_) {
    for (const store::EventRecord& ev : done->events) observer_(ev);
  }
  const std::string& run_id = done->events.front().run_id;  // every event is of one run
  std::vector<Listener> targets;
  {
    std::lock_guard<std::mutex> lk(listeners_mu_);
    for (const auto& [token, sub] : listeners_) {
      if (sub.first.empty() || sub.first == run_id) targets.push_back(sub.second);
    }
  }
  for (const store::EventRecord& ev : done->events) {
    for (const auto& l : targets) l(ev);
  }
  WakeFor(run_id);
  return done;
}

Result<store::Committed> EventBus::Record(std::string_view run_id, std::string_view what,
                                          std::span<const store::Write> writes) {
  auto done = Commit(writes);
  if (!done.ok()) {
    spdlog::error("run {}: cannot record {}: {}", run_id, what, done.error().ToString());
  }
  return done;
}

Result<store::EventRecord> EventBus::Emit(std::string_view run_id, store::EventType type,
                                          nlohmann::json data) {
  const store::Write w = store::EventWrite{std::string(run_id), type, std::move(data)};
  // Named by its type: nothing is formatted for a commit that succeeds (one per log chunk).
  auto done = Record(run_id, store::EventTypeName(type), std::span(&w, 1));
  if (!done.ok()) return std::move(done).error();
  return std::move(done->events.front());
}

void EventBus::Audit(const Principal& who, std::string_view action, std::string_view run_id,
                     nlohmann::json details) {
  const store::Write w = AuditOf(who, action, run_id, std::move(details));
  (void)Record(run_id, action, std::span(&w, 1));
}

}  // namespace sbx::supervisor
