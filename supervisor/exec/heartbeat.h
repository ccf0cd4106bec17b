// The node's liveness in a store that several daemons may share, and what happens to the work of
// a node that is gone.
//
// Each node beats every `interval`. A node whose last beat is older than `node_timeout` is lost:
// the first surviving node to notice declares it so (once, whatever the number of survivors;
// Store::DeclareNodeLost), and with it its RUNNING runs end FAILED (node_lost), or go back to
// QUEUED when they asked for that, and its live sandboxes end FAILED (node_lost).
//
// A node that cannot reach the store for nearly `node_timeout` (FenceAfter) fences itself: it
// kills what it runs
// and claims nothing, since other nodes may have declared it lost and given its runs away. When
// the store answers again it takes work again; when it learns that it was declared lost, it
// registers anew as ready.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "base/result.h"
#include "supervisor/events/event_bus.h"
#include "supervisor/store/store.h"

namespace sbx::supervisor {

// Crash recovery at start: the runs `node` (this daemon's name) left RUNNING end FAILED with
// `reason` (supervisor_restart; node_lost after fencing).
Status RecoverNode(store::Store& store, EventBus& events, const std::string& node,
                   store::EndCode reason = store::EndCode::kSupervisorRestart);

// Recovery of another node's work, once it is declared lost: events, audit records and the log
// for each run and sandbox Store::DeclareNodeLost() and RecoverStaleSandboxes() ended or
// requeued. `by` is the node that noticed. Returns how many runs went back to the queue.
size_t RecoverLostNode(store::Store& store, EventBus& events, const std::string& node,
                       const store::LostNodeRuns& runs, const std::string& by);

// How long a node goes without a beat the store took before it fences itself: node_timeout
// less a margin (a beat, at most a quarter of the timeout), so that its work is killed before
// another node may declare it lost and hand that work out again.
std::chrono::milliseconds FenceAfter(std::chrono::milliseconds interval,
                                     std::chrono::milliseconds node_timeout);

// What the heartbeat asks of the node's executor.
struct NodeHooks {
  std::function<void(bool draining)> set_draining;  // the node's state in the store
  std::function<size_t()> fence;                    // kill what runs here, claim nothing
  std::function<void()> unfence;                    // claim again
  std::function<void()> wake;                       // runs were requeued: look for work
  // Waits up to the time given for every run it executes to end; whether they did.
  std::function<bool(std::chrono::milliseconds)> wait_idle;
};

class Heartbeat {
 public:
  // `self` was registered (Store::RegisterNode) by the caller. `shared`: other daemons may share
  // the store (PostgreSQL). Only then does the node fence itself: alone on its database (SQLite),
  // nobody else can take its runs, and a slow disk must not cost it its work.
  Heartbeat(store::Store& store, EventBus& events, store::NodeRecord self,
            std::chrono::milliseconds interval, std::chrono::milliseconds node_timeout,
            NodeHooks hooks, bool shared);
  ~Heartbeat();  // Stop()
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;
  void Stop();  // Idempotent.
  // The node's address changed (known once its listeners are up): registered again with it.
  void SetAddress(const std::string& address);
  // The address stored now ("" until one is known).
  std::string address() const;

 private:
  void Loop();
  void Watch();  // fences the node when no beat succeeded for node_timeout
  void Beat();
  void FindLostNodes();
  void SetFenced(bool fenced, const char* why);
  bool fenced_now();

  store::Store& store_;
  EventBus& events_;
  store::NodeRecord self_;  // the address under mu_
  const std::chrono::milliseconds interval_;
  const std::chrono::milliseconds node_timeout_;
  const NodeHooks hooks_;
  mutable std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  bool fenced_ = false;  // mu_
  std::atomic<int64_t> last_beat_ns_;  // steady clock, of the last beat the store took
  std::thread thread_;
  std::thread watch_;
};

}  // namespace sbx::supervisor
