// The coordinator's side of an outbound runner's link (protocol.h): a serve node that a runner
// dialled claims runs for it, hands them over, and commits into the shared store what the runner
// sends back, each outbox entry once (store::RunnerAckWrite), the run's files first.
//
// The runner is a node in the store (GET /v1/nodes): the link registers it on hello and beats
// for it on each of its beats; when the link stays down longer than node_timeout, any node
// declares it lost like a node that died (its runs end node_lost or are queued again). A
// runner that comes back after that is told to fence: kill what it still runs, which is no
// longer its own.
//
// A run is the runner's while the store says so: its node is the runner and its attempt the one
// claimed for it. A batch or a file chunk for a run that is not (cancelled, taken over) is
// acknowledged and dropped, and the runner is told to kill the run.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>

#include "supervisor/service/run_manager.h"
#include "supervisor/store/store.h"

namespace sbx::supervisor::runner {

struct CoordinatorOptions {
  std::string data_dir;  // the run's files go under <data_dir>/runs/<id>/, as a local run's
  std::chrono::milliseconds heartbeat_interval{2'000};
  std::chrono::milliseconds node_timeout{6'000};
  std::string version;                   // this daemon's, for the log
  std::function<std::string()> address;  // where this node's API is reached now
};

class RunnerLink {
 public:
  struct Transport {
    // Queues a message; false once the link is closing.
    std::function<bool(std::string text)> send;
    // Ends the link, telling the runner why (a protocol error, a revoked token, the store down).
    std::function<void(std::string why)> close;
  };
  // `runner` authenticated with its token. Nothing happens before its hello.
  RunnerLink(store::Store& store, RunManager& manager, store::RunnerRecord runner,
             CoordinatorOptions options, Transport transport);
  ~RunnerLink();  // Stop()
  RunnerLink(const RunnerLink&) = delete;
  RunnerLink& operator=(const RunnerLink&) = delete;

  // Each message the runner sent, in order, one at a time.
  void OnText(std::string_view text);
  void OnBinary(std::string_view bytes);
  // The link ended: claims nothing more. Idempotent. The runner's node is not declared lost
  // here: its runs go on while it reconnects, and node_timeout decides.
  void Stop();
  const std::string& name() const { return runner_.name; }

 private:
  void Fail(std::string why);
  Status OnHello(const nlohmann::json& m);
  Status OnBeat(const nlohmann::json& m);
  Status OnBatch(const nlohmann::json& m);
  // Whether the store says `run_id`'s attempt `attempt` is this runner's to record (cached per
  // run; a run once dropped stays dropped).
  bool Owns(const std::string& run_id, std::optional<int64_t> attempt);
  // Whether a batch of `run_id`'s attempt `attempt` is to be committed: the run is RUNNING for
  // this runner, or (`after_end`: recorded after the run ended on the runner) it ended with the
  // runner's own end.
  bool OwnsBatch(const std::string& run_id, int64_t attempt, bool after_end);
  // Ends runs the store says this runner runs but it does not report (it restarted).
  void Reconcile(const std::set<std::string>& running);
  void Claimer();  // the thread that claims runs while the runner has room
  void Send(const nlohmann::json& m);

  store::Store& store_;
  RunManager& manager_;
  store::RunnerRecord runner_;
  CoordinatorOptions options_;
  Transport transport_;
  uint64_t queued_token_ = 0;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool failed_ = false;  // Fail(): the link is ending
  bool welcomed_ = false;
  // When the last beat (or the hello) arrived: a link silent for node_timeout has stalled, and
  // one silent for half of it (two beats at least) is handed no run.
  std::chrono::steady_clock::time_point last_beat_ = std::chrono::steady_clock::now();
  bool ready_ = false;  // the runner's node is ready (not draining)
  bool reconciled_ = false;
  int64_t capacity_ = 0;
  std::map<std::string, std::string> labels_;
  int64_t applied_seq_ = 0;
  std::set<std::string> running_;              // what the runner reported at its last beat
  std::map<std::string, int64_t> handed_over_;  // assigned, not yet reported: run -> attempt
  std::map<std::string, int64_t> owned_;        // run -> the attempt known to be the runner's
  std::set<std::string> dropped_;               // runs whose batches this link drops
  std::thread claimer_;
};

}  // namespace sbx::supervisor::runner
