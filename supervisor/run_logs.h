// Where a run's output lives: <data_dir>/runs/<id>/stdout and stderr, appended as it arrives.
// Each chunk's step.log event records its stream, offset and length (and, through the event's
// ts, when it arrived); the store keeps no copy of the bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"
#include "supervisor/store/store.h"

namespace sbx::supervisor {

// <data_dir>/runs/<run_id>
std::string RunDir(const std::string& data_dir, std::string_view run_id);

// The bytes of a step.log event: read back from the run's log file, or taken from the event's
// data / data_b64 when it carries them (a chunk the log file could not take). "" when the file
// is gone.
std::string LogEventBytes(const store::EventRecord& event, const std::string& data_dir);
// The same bytes put into *out at `at` (<= out->size()), read from the log file straight into
// it; *out then ends after them. Its bytes from `at` on are overwritten in place, so a reused
// buffer already that long is not zero-filled first.
void PutLogEventBytes(const store::EventRecord& event, const std::string& data_dir, size_t at,
                      std::string* out);

// Appends one stream's output to its log file, and writes the file behind as it grows: each full
// window of kWindowBytes is handed to writeback at once, and the window before it is waited for
// and dropped from the page cache. So a run that prints gigabytes holds at most two windows of
// its log in memory, dirty or cached, instead of evicting the host's page cache and stalling in
// the kernel's dirty throttling later; and the writes keep reusing the pages just dropped, where
// fresh pages of a large page cache cost a first touch each (on a VM, a fault to its host: 1 GiB
// appended to a cold page cache took 2.0 s here, written behind 0.26 s). Followers that fall more
// than a window behind read the file back from disk. Output below one window costs nothing more.
class LogAppender {
 public:
  static constexpr int64_t kWindowBytes = 16 << 20;

  // Opens (creates, 0600) `path` for appending; the offset starts at its current size.
  static Result<LogAppender> Open(const std::string& path);

  // Writes all of `data` at the end; offset() moves past what was written, all of it on success.
  Status Append(std::string_view data);
  // Where the next byte goes: the file's size.
  int64_t offset() const { return offset_; }

 private:
  explicit LogAppender(UniqueFd fd, int64_t offset);
  UniqueFd fd_;
  int64_t offset_ = 0;
  int64_t written_behind_ = 0;  // the windows below this are on their way to disk
};

}  // namespace sbx::supervisor
