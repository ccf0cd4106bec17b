// The runner's side of its link (protocol.h). The runner runs the runs its coordinator hands it
// with a run service of its own (RunManager over a local store): each one's copy is queued in
// the local store and executed like a local run. Every commit of that service about a handed-over
// run becomes an outbox entry (outbox.h, on disk), sent in order with the run's new file bytes
// before it, and dropped only once the coordinator says it is committed. So a dropped link or a
// coordinator that restarts loses nothing: the next session sends again what was not
// acknowledged (the coordinator commits each entry once) and the files from the start.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <optional>
#include <string>
#include <thread>

#include "base/result.h"
#include "supervisor/runner/outbox.h"
#include "supervisor/service/run_manager.h"
#include "supervisor/store/store.h"

namespace sbx::supervisor::runner {

struct UplinkOptions {
  std::string name;      // the runner's (its token's) name
  std::string data_dir;  // the local run service's; the outbox is <data_dir>/outbox
  std::map<std::string, std::string> labels;
  int64_t capacity = 2;  // runs at once: the local service's workers
  std::string version;
};

class Uplink {
 public:
  struct Transport {
    std::function<bool(std::string text)> send_text;
    std::function<bool(std::string bytes)> send_binary;
    std::function<size_t()> queued_bytes;
  };

  static Result<std::unique_ptr<Uplink>> Open(UplinkOptions options, store::Store& local);
  // RunManagerOptions::on_commit of the local service.
  void OnCommit(std::span<const store::Write> writes);
  // The local service, once started; before it, no run is taken.
  void Attach(RunManager* manager);

  // One session over a link that just connected: hello, then the outbox and beats until the link
  // ends (LinkClosed) or Stop(). kUnavailable when the coordinator did not welcome the runner
  // within `welcome_timeout`. Returns Ok once it was welcomed (the link then ended).
  Status Session(Transport transport, std::chrono::milliseconds welcome_timeout);
  // What the coordinator sent, in order (the link's I/O thread).
  void OnMessage(const std::string& text);
  void LinkClosed(std::string why);
  void Stop();

  int64_t pending() const { return outbox_->pending(); }
  ~Uplink();  // Stop(), and the fencing thread joined

 private:
  Uplink(UplinkOptions options, store::Store& local, std::unique_ptr<Outbox> outbox);
  void OnAssign(const nlohmann::json& wire);
  void Kill(const std::string& run_id, const std::string& why);
  // Sends the bytes of `run_id`'s files past what this session sent.
  bool SyncFiles(const std::string& run_id, const Transport& t);
  nlohmann::json Beat();
  // Fences the local service once no beat was confirmed for longer than the coordinator's
  // node_timeout (by then the coordinator may have given its runs to another node), like a
  // node cut off from the database; unfenced at the next welcome. The time counts from when the
  // last confirmed beat was sent, which is no later than the coordinator stored it. A
  // coordinator that does not echo beats (no beat_echo in its welcome): from when the link
  // ended.
  void Fencer();
  // When the silence began that fencing counts from; nullopt while it cannot be known (a link
  // up to a coordinator that does not echo beats). Under mu_.
  std::optional<std::chrono::steady_clock::time_point> SilentSince() const;

  UplinkOptions options_;
  store::Store& local_;
  std::unique_ptr<Outbox> outbox_;
  RunManager* manager_ = nullptr;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  // The session's state.
  bool linked_ = false;
  bool welcomed_ = false;
  bool beat_now_ = false;
  int64_t acked_ = 0;
  std::map<std::string, std::map<std::string, uint64_t>> shipped_;  // run -> file -> bytes sent
  // Runs handed over: run -> the coordinator's attempt; and those not yet ended here.
  std::map<std::string, int64_t> attempts_;
  std::set<std::string> running_;
  // From the coordinator's welcome.
  std::chrono::milliseconds heartbeat_{2'000};
  std::optional<std::chrono::milliseconds> node_timeout_;
  std::chrono::steady_clock::time_point unlinked_since_ = std::chrono::steady_clock::now();
  // Beats sent and not yet echoed (number, when), the time the last echoed one was sent (or
  // the hello, at the welcome), and whether this coordinator echoes beats.
  int64_t beat_n_ = 0;
  std::deque<std::pair<int64_t, std::chrono::steady_clock::time_point>> beats_in_flight_;
  std::chrono::steady_clock::time_point hello_sent_;
  std::chrono::steady_clock::time_point confirmed_ = std::chrono::steady_clock::now();
  bool echoes_ = false;
  bool fenced_ = false;
  std::thread fencer_;
};

}  // namespace sbx::supervisor::runner
