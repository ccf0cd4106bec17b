// Where a run's output lives: <data_dir>/runs/<id>/stdout and stderr, appended as it arrives
// (stdout.N and stderr.N for its attempt N > 1, after a requeue). Each chunk's step.log event
// records its stream, offset and length (and "attempt" after the first; through the event's ts,
// when it arrived); the store keeps no copy of the bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"
#include "supervisor/store/store.h"

namespace sbx::supervisor {

// <data_dir>/runs/<run_id>
std::string RunDir(const std::string& data_dir, std::string_view run_id);

// The log file of `stream` ("stdout" or "stderr") for a run's attempt `attempt`: the stream's
// name for the first, "stdout.2" and so on after it. A requeued run's attempts may run on
// different nodes, each writing from offset 0: an event must name the file its bytes are in.
std::string LogFileName(std::string_view stream, int64_t attempt);
// The attempt a step.log event was written in: its "attempt", 1 without one.
int64_t LogEventAttempt(const store::EventRecord& event);

// The bytes of a step.log event: read back from the run's log file, or taken from the event's
// data / data_b64 when it carries them (a chunk the log file could not take). "" when the file
// is gone.
std::string LogEventBytes(const store::EventRecord& event, const std::string& data_dir);
// Where a step.log event's bytes are: a range of its run's log file (the file may have been
// removed since). nullopt when the event carries its bytes itself or names no range.
struct LogRange {
  std::string path;
  int64_t offset = 0;
  size_t length = 0;
};
std::optional<LogRange> LogEventRange(const store::EventRecord& event, const std::string& data_dir);
// The same bytes put into *out at `at` (<= out->size()), read from the log file straight into
// it; *out then ends after them. Its bytes from `at` on are overwritten in place, so a reused
// buffer already that long is not zero-filled first.
void PutLogEventBytes(const store::EventRecord& event, const std::string& data_dir, size_t at,
                      std::string* out);

// Appends one stream's output to its log file and knows where each chunk landed: offset() is
// the file's end, moved by what a write took even when it then failed (a full disk), so the
// offsets of later chunks stay right.
//
// Not written behind: dropping the written part of a log from the page cache (sync_file_range,
// then POSIX_FADV_DONTNEED two 16 MiB windows back) kept a GiB-sized log from filling the cache,
// but a WebSocket follower slower than the program then read its bytes back from disk, and the
// bench's text stream ran 15 to 20 % slower.
//
// The file is created (0600) by the first Append: a run that prints nothing leaves no empty
// log files (each new inode is a bitmap scan on ext4, and readers find no step.log event to
// look for one).
class LogAppender {
 public:
  // Opens `path` for appending when it exists, the offset starting at its size; otherwise
  // the first Append() creates it.
  static Result<LogAppender> Open(const std::string& path);

  // Writes all of `data` at the end; offset() moves past what was written, all of it on success.
  Status Append(std::string_view data);
  // Where the next byte goes: the file's size.
  int64_t offset() const { return offset_; }

 private:
  LogAppender(std::string path, UniqueFd fd, int64_t offset);
  std::string path_;
  UniqueFd fd_;  // none until the file exists
  int64_t offset_ = 0;
};

}  // namespace sbx::supervisor
