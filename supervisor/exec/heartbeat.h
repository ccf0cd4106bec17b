// The node's liveness in a store that several daemons may share, and what happens to the runs
// of a node that is gone: they were RUNNING there and did not finish, so they end FAILED with
// reason supervisor_restart (run.status, run.completed and a run.recovered audit record).
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "base/result.h"
#include "supervisor/events/event_bus.h"
#include "supervisor/store/store.h"

namespace sbx::supervisor {

// Crash recovery at start: the runs `node` (this daemon's name) left RUNNING end FAILED.
Status RecoverNode(store::Store& store, EventBus& events, const std::string& node);

// Beats every `interval` for `node`; a node sharing the store whose last beat is older than
// `node_timeout` is taken for dead, and its RUNNING runs end FAILED (supervisor_restart).
class Heartbeat {
 public:
  Heartbeat(store::Store& store, EventBus& events, std::string node,
            std::chrono::milliseconds interval, std::chrono::milliseconds node_timeout);
  ~Heartbeat();  // Stop()
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;
  void Stop();  // Idempotent.

 private:
  void Loop();

  store::Store& store_;
  EventBus& events_;
  const std::string node_;
  const std::chrono::milliseconds interval_;
  const std::chrono::milliseconds node_timeout_;
  std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace sbx::supervisor
