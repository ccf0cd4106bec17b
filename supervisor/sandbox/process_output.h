// A process's output and events, kept on disk so that they outlive the process, the sandbox and
// the daemon:
//
//   <dir>/stdout, <dir>/stderr   the bytes exactly as the process wrote them (a pty's output is
//                                stdout), up to the output cap
//   <dir>/events                 one JSON line per event, seq = its line number (1, 2, 3, …)
//
// Events: process.started, process.log {stream, offset, length} (the bytes stay in the stream's
// file: an event is a few dozen bytes whatever the output), process.finished {result}. While the
// process is live, the events are also held in memory and handed to subscribers as they are
// appended; Subscribe() returns the history and registers the listener in one step, so a
// follower gets every event once and in order.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sbx::supervisor {

enum class ProcessEventType { kStarted, kLog, kFinished };
const char* ProcessEventTypeName(ProcessEventType type);  // "process.started", …

struct ProcessEvent {
  int64_t seq = 0;
  int64_t ts_ms = 0;
  ProcessEventType type = ProcessEventType::kStarted;
  int stream = 1;  // kLog: 1 stdout, 2 stderr
  int64_t offset = 0;
  int64_t length = 0;
  nlohmann::json result;  // kFinished: the process's result as the API shows it
};

// The event as one JSON object without the bytes (type, seq, ts; stream, offset, length;
// result).
nlohmann::json ProcessEventHead(const ProcessEvent& event);

class ProcessOutput {
 public:
  using Listener = std::function<void(const ProcessEvent&)>;

  // Creates <dir> (0700) and its files. `cap_bytes`: stdout and stderr together keep at most
  // this much; later bytes are counted as dropped.
  static Result<std::unique_ptr<ProcessOutput>> Create(std::string dir, uint64_t cap_bytes);
  // The files of a process that is not live here (it ended, or an earlier daemon ran it).
  static std::string StreamPath(const std::string& dir, int stream);

  // Appends bytes of `stream` and their process.log event; returns the bytes kept (0 once the
  // cap is reached). Called by the daemon's output thread only.
  size_t Append(int stream, std::string_view bytes);
  void Started();
  void Finished(const nlohmann::json& result);

  // Every event with seq > after (the history), and from then on `listener` gets each new one
  // as it is appended, on the appending thread (it must not block; queue and return). A
  // finished process gets no listener (its history is complete): token 0.
  struct Subscription {
    std::vector<ProcessEvent> history;
    uint64_t token = 0;
    bool finished = false;
  };
  Subscription Subscribe(int64_t after, Listener listener);
  void Unsubscribe(uint64_t token);

  uint64_t stored_bytes(int stream) const;
  bool truncated() const;
  const std::string& dir() const { return dir_; }

 private:
  ProcessOutput() = default;
  void AppendEvent(ProcessEvent event);

  std::string dir_;
  uint64_t cap_ = 0;
  UniqueFd out_, err_, events_;
  mutable std::mutex mu_;
  std::vector<ProcessEvent> events_list_;
  uint64_t sizes_[2] = {0, 0};
  uint64_t dropped_ = 0;
  bool finished_ = false;
  uint64_t next_token_ = 1;
  std::map<uint64_t, Listener> listeners_;
};

// The events of a process from its events file, seq > after, at most `limit`.
Result<std::vector<ProcessEvent>> ReadProcessEvents(const std::string& dir, int64_t after,
                                                    size_t limit);

}  // namespace sbx::supervisor
