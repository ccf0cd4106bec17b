// Helpers for the live-process tests: reading a process's fds with poll, never sleeping.
#pragma once

#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <string_view>

namespace sbx::testing {

// Reads `fd` (non-blocking) until `needle` appears in what was read, EOF (or EIO: a pty whose
// slave side is closed), or `ms` pass. Returns everything read.
inline std::string ReadUntil(int fd, std::string_view needle, int ms = 20'000,
                             std::string so_far = {}) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  char buf[65536];
  while (needle.empty() || so_far.find(needle) == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) break;
    struct pollfd p = {fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (r <= 0) break;  // EOF, or EIO from a pty master
    so_far.append(buf, static_cast<size_t>(r));
  }
  return so_far;
}

// Everything until EOF (bounded by `ms`).
inline std::string ReadAll(int fd, int ms = 20'000) { return ReadUntil(fd, {}, ms); }

// Whether `fd` turns readable within `ms`.
inline bool Readable(int fd, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  int n;
  do {
    n = ::poll(&p, 1, ms);
  } while (n < 0 && errno == EINTR);
  return n > 0;
}

}  // namespace sbx::testing
