// The one bus every store write goes through: Commit() writes state changes, events and audit
// records together (store::Store::Commit) and hands the committed events, in seq order, first to
// the observer (the metrics) and then to the subscribers (the WebSocket streams, tests).
//
// One commit at a time: subscribers see every run's events in seq order.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"
#include "supervisor/events/audit.h"
#include "supervisor/store/store.h"

namespace sbx::supervisor {

class EventBus {
 public:
  using Listener = std::function<void(const store::EventRecord&)>;

  // `observer` (may be null) sees every committed event before the subscribers, e.g. to count
  // it. Neither may emit.
  explicit EventBus(store::Store& store, Listener observer = nullptr);
  EventBus(const EventBus&) = delete;
  EventBus& operator=(const EventBus&) = delete;

  // Commits `writes` together, then delivers their events (every one of them of one run).
  // Logs nothing: the caller knows what a failure means.
  Result<store::Committed> Commit(std::span<const store::Write> writes);
  // Commit(), logging a failure as "run RUN_ID: cannot record WHAT: …" (WHAT: "its start", an
  // event type, an audit action).
  Result<store::Committed> Record(std::string_view run_id, std::string_view what,
                                  std::span<const store::Write> writes);
  // One event of `run_id`.
  Result<store::EventRecord> Emit(std::string_view run_id, store::EventType type,
                                  nlohmann::json data);
  // One audit record; a failure is logged.
  void Audit(const Principal& who, std::string_view action, std::string_view run_id,
             nlohmann::json details);

  // Events as they are committed ("" = every run), in seq order. The listener runs on the thread
  // that committed the event and must not block for long (queue and return); it may unsubscribe
  // but must not emit.
  uint64_t Subscribe(std::string run_id, Listener listener);
  // `wake` is called, without the record, when events of `run_id` ("" = any run) are committed
  // here (after the listeners) or by another daemon sharing the database (RemoteCommitted): the
  // subscriber reads what is new from the store. It runs on the committing thread or the store
  // watch's, and must not block.
  uint64_t SubscribeWake(std::string run_id, std::function<void()> wake);
  void Unsubscribe(uint64_t token);  // either kind
  // Another daemon committed events of `run_id` ("" = of any run, or unknown).
  void RemoteCommitted(const std::string& run_id);

  store::Store& store() { return store_; }

  // Called with the writes of each successful commit, in commit order (under the commit lock,
  // before the listeners); must not emit. An outbound runner hands them on to its coordinator
  // (supervisor/runner/). Set before the first commit.
  using CommitHook = std::function<void(std::span<const store::Write> writes)>;
  void SetCommitHook(CommitHook hook) { commit_hook_ = std::move(hook); }

 private:
  store::Store& store_;
  Listener observer_;
  CommitHook commit_hook_;
  std::mutex emit_mu_;  // held while events are committed and delivered
  std::mutex listeners_mu_;
  uint64_t next_token_ = 1;
  std::map<uint64_t, std::pair<std::string, Listener>> listeners_;
  std::map<uint64_t, std::pair<std::string, std::function<void()>>> wakers_;
  void WakeFor(const std::string& run_id);
};

}  // namespace sbx::supervisor
