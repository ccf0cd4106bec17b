// Outbox: what an outbound runner has sent, or will send, to its coordinator and has not yet had
// acknowledged, kept in a file so that neither a dropped link nor a restarted process loses it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sbx::supervisor::runner {

// An ordered queue of JSON entries numbered 1, 2, 3, … that survives the process: each Append is
// written to the file before it returns; Ack(seq) drops entries up to seq. Numbering continues
// across restarts (a number is never reused), also after every entry was acknowledged.
//
// The file holds one compact JSON object per line: {"seq":N,"entry":…} for an entry and
// {"ack":N} for an acknowledgement. Pending entries are also kept in memory.
//
// Durability: an Append is in the file (the kernel's page cache) when it returns, so it survives a
// crash of the process, but there is no fsync per append: a power loss or kernel crash may lose the
// last appends. A compaction is fsynced (file, then directory) before it replaces the old file.
//
// One process at a time: Open takes an exclusive flock(2) on the file and fails with
// kFailedPrecondition while another open Outbox (in any process) holds it. All methods are
// thread-safe.
class Outbox {
 public:
  // Above this the file is compacted once acknowledged records are more than half of it, or
  // whenever nothing is pending.
  static constexpr uint64_t kCompactMinBytes = uint64_t{1} << 20;

  // Opens or creates `path` (mode 0600, O_CLOEXEC) and loads the entries after the last
  // acknowledged one. A torn last record (a crash in the middle of an append: no final newline, or
  // not parseable) is dropped with a warning and the file truncated to the last whole record.
  // Fails with kFailedPrecondition when a record before the last one is bad (not JSON, not one of
  // the two shapes, or out of sequence; the message names its byte offset: the file was damaged
  // by something other than a crash; move it aside to start afresh, losing what it held), or when
  // another Outbox holds the file; with an errno error when the file cannot be opened or read.
  static Result<std::unique_ptr<Outbox>> Open(std::string path);

  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;
  ~Outbox();

  // Writes `entry` to the file and queues it; returns its seq (last_seq() + 1). Then calls the
  // notify callback, outside the lock. Fails with kInvalidArgument when the entry cannot be
  // serialized (a string that is not UTF-8), or with the write's errno error; a failed write
  // leaves neither the file nor the queue changed (when truncating the partial record fails too,
  // every later Append and Ack fails with kFailedPrecondition).
  Result<int64_t> Append(nlohmann::json entry);

  // Drops every entry with seq <= `seq` and records the acknowledgement in the file. `seq` past
  // last_seq(): kInvalidArgument; at or below acked_seq(): a no-op. Compacts the file (a temporary
  // file, fsync, rename, fsync of the directory) once acknowledged records take more than half of
  // it and more than kCompactMinBytes, or when nothing is pending and the file is larger than
  // kCompactMinBytes. A failed compaction is logged and tried again at the next Ack; the
  // acknowledgement itself stands.
  Status Ack(int64_t seq);

  // Up to `max` pending entries with seq > `after`, in order.
  std::vector<std::pair<int64_t, nlohmann::json>> After(int64_t after, size_t max) const;

  int64_t last_seq() const;   // the highest seq ever assigned; 0 when none
  int64_t acked_seq() const;  // the highest seq acknowledged; 0 when none
  size_t pending() const;     // last_seq() - acked_seq()

  // Called after each Append (e.g. to wake a sender), outside the lock, on the appending thread;
  // may be null.
  void SetNotify(std::function<void()> notify);

 private:
  struct Pending {
    int64_t seq;
    nlohmann::json entry;
    uint64_t bytes;  // of its record in the file, newline included
  };

  Outbox(std::string path, UniqueFd fd);
  Status Load();
  void DropAckedLocked();
  bool ShouldCompactLocked() const;
  Status CompactLocked();
  Status AppendLineLocked(const std::string& line);

  const std::string path_;
  mutable std::mutex mu_;
  UniqueFd fd_;                // O_RDWR | O_APPEND, flock'ed
  std::deque<Pending> queue_;  // seq acked_seq_ + 1 … last_seq_, in order
  int64_t last_seq_ = 0;
  int64_t acked_seq_ = 0;
  uint64_t file_bytes_ = 0;
  uint64_t obsolete_bytes_ = 0;  // acknowledged entries' records and ack records
  bool broken_ = false;          // a partial record could not be truncated away
  std::function<void()> notify_;
};

}  // namespace sbx::supervisor::runner
