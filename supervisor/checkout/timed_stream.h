// Timeouts for libgit2's network fetches. libgit2 1.5 has no timeout of its own (1.7 adds
// GIT_OPT_SET_SERVER_TIMEOUT), but it lets a program register the plain socket stream it uses
// for http:// and under TLS for https:// (git_stream_register, sys/stream.h). The stream here
// connects and reads and writes non-blocking with poll(2), bounded by the limits of the fetch
// running on the calling thread. Internal to the checkout library.
#pragma once

#include <chrono>

namespace sbx::supervisor::checkout::internal {

struct FetchLimits {
  // Past it, connecting, reading and writing fail ("timed out") and the fetch's progress
  // callbacks abandon it.
  std::chrono::steady_clock::time_point deadline;
  // Connecting, and each wait for the socket to become readable or writable.
  std::chrono::milliseconds io_timeout{60'000};
  // Set when a stream or a progress callback gave up because of these limits.
  bool timed_out = false;
};

// Registers the stream for GIT_STREAM_STANDARD, process-wide. Called once, by EnsureLibgit2.
void RegisterTimedStream();

// Makes `limits` those of the streams this thread opens until the scope ends (libgit2 fetches
// on the calling thread). Without one, a stream waits at most 60 s per operation and has no
// overall deadline.
class ScopedFetchLimits {
 public:
  explicit ScopedFetchLimits(FetchLimits* limits);
  ~ScopedFetchLimits();
  ScopedFetchLimits(const ScopedFetchLimits&) = delete;
  ScopedFetchLimits& operator=(const ScopedFetchLimits&) = delete;

 private:
  FetchLimits* previous_;
};

// The limits in force on this thread, or null.
FetchLimits* CurrentFetchLimits();

}  // namespace sbx::supervisor::checkout::internal
