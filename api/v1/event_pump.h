// Delivery of stored events to bounded consumers (a WebSocket, a streamed HTTP body).
//
// An EventPump feeds events from the store, in order, from a position it keeps: the history
// first, then each new event as it is appended. It never buffers: when the consumer is full it
// waits for the consumer's OnWritable and reads on from the store, so a slow client costs no
// memory and misses nothing, and a client that goes away costs nothing at all.
//
// New events only wake a pump: the reading and sending happen on the pump's own delivery
// threads, never on the thread that appended the event (a run's worker), so no client can slow a
// run down.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "base/result.h"
#include "supervisor/service/run_manager.h"
#include "supervisor/store/store.h"

namespace sbx::api {

class EventPump : public std::enable_shared_from_this<EventPump> {
 public:
  enum class Step { kNext, kWait, kStop };  // delivered / consumer full, retry it / done
  struct Consumer {
    std::function<Step(const store::EventRecord&)> deliver;
    // Registers a one-shot callback for when the consumer has room again.
    std::function<void(std::function<void()>)> on_writable;
    // Optional: called when every event there is has been delivered (the store has no more for
    // now); true ends the pump there (a snapshot rather than a follower).
    std::function<bool()> caught_up;
  };

  // With a run id: that run's events with seq > after. With an empty run id: every run's
  // events with cursor > after.
  static std::shared_ptr<EventPump> Start(supervisor::RunManager& runs, store::Store& store,
                                          std::string run_id, int64_t after, Consumer consumer);
  ~EventPump();
  // No delivery after Stop() returns, except one already in progress on another thread.
  void Stop();

 private:
  EventPump(supervisor::RunManager& runs, store::Store& store, std::string run_id, int64_t after,
            Consumer consumer);
  // Schedules a read on a delivery thread (at most one pending per pump).
  void Wake();
  // Reads on from the store; one reader at a time, and a wake during a read makes it read again.
  void Pump();
  void Drain();

  supervisor::RunManager& runs_;
  store::Store& store_;
  std::string run_id_;
  int64_t next_;  // the last seq (or cursor) delivered
  Consumer consumer_;
  std::mutex mu_;
  bool running_ = false, again_ = false, done_ = false;
  uint64_t token_ = 0;

  friend class DeliveryThreads;
};

// The wire form of an event: its data fields plus type, run_id, seq, ts and cursor; a step.log
// event gets its bytes as `data` (valid UTF-8) or `data_b64`.
nlohmann::json EventToJson(const store::EventRecord& event, const std::string& data_dir);
// DumpJson(EventToJson(event)) in meaning (a step.log event's `data` comes last), built without
// the JSON tree for the bytes: what a WebSocket client following a busy log is sent.
std::string EventToJsonText(const store::EventRecord& event, const std::string& data_dir);

// The binary wire form of a step.log event (?format=binary): the event as EventToJson gives
// it but without data / data_b64, one newline, then the bytes exactly as the program wrote
// them. No escaping and no base64, so a client following a busy log pays nothing per byte.
std::string EventToBinaryMessage(const store::EventRecord& event, const std::string& data_dir);
// The part of that message before the bytes: the JSON line and its newline.
std::string BinaryMessageHead(const store::EventRecord& event);

}  // namespace sbx::api
