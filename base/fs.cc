#include "base/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cmath>

namespace sbx {

Result<UniqueFd> OpenAt(int dirfd, const std::string& path, int flags, mode_t mode) {
  int fd = ::openat(dirfd, path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoError("open {}", path);
  return UniqueFd(fd);
}

Result<std::string> ReadFileAt(int dirfd, const std::string& path, size_t max_bytes) {
  auto fd = OpenAt(dirfd, path, O_RDONLY);
  if (!fd.ok()) return std::move(fd).error();
  std::string out;
  // One read for most files: sized from fstat where the file system knows the size (cgroupfs
  // and procfs report 0 or 4096, so a page-sized read follows).
  struct stat st;
  size_t chunk = 4096;
  if (::fstat(fd->get(), &st) == 0 && st.st_size > 0 && static_cast<size_t>(st.st_size) < max_bytes) {
    chunk = static_cast<size_t>(st.st_size) + 1;
  }
  std::string buf(chunk, '\0');
  for (;;) {
    ssize_t n = ::read(fd->get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("read {}", path);
    }
    if (n == 0) break;
    if (out.size() + n > max_bytes) {
      return MakeError(ErrorCode::kInvalidArgument, "{} is larger than {} bytes", path, max_bytes);
    }
    out.append(buf.data(), static_cast<size_t>(n));
  }
  return out;
}

Result<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  return ReadFileAt(AT_FDCWD, path, max_bytes);
}

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("write");
    }
    data.remove_prefix(n);
  }
  return Ok();
}

Result<size_t> ReadAllAt(int fd, char* buf, size_t length, uint64_t offset) {
  size_t got = 0;
  while (got < length) {
    ssize_t n = ::pread(fd, buf + got, length - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("read");
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  return got;
}

Status WriteFileAt(int dirfd, const std::string& path, std::string_view value) {
  auto fd = OpenAt(dirfd, path, O_WRONLY);
  if (!fd.ok()) return std::move(fd).error();
  ssize_t n;
  do {
    n = ::write(fd->get(), value.data(), value.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoError("write '{}' to {}", value, path);
  if (static_cast<size_t>(n) != value.size()) {
    return MakeError(ErrorCode::kInternal, "short write of '{}' to {}", value, path);
  }
  return Ok();
}

Status WriteFile(const std::string& path, std::string_view value) {
  return WriteFileAt(AT_FDCWD, path, value);
}

namespace {
Result<double> ParseNumberPrefix(std::string_view s, std::string_view* suffix) {
  size_t i = 0;
  while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) ++i;
  if (i == 0) return MakeError(ErrorCode::kInvalidArgument, "'{}' is not a number", s);
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + i, v);
  if (ec != std::errc() || p != s.data() + i || !std::isfinite(v) || v < 0) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' is not a number", s);
  }
  *suffix = s.substr(i);
  return v;
}
}  // namespace

Result<uint64_t> ParseByteSize(std::string_view s) {
  std::string_view suffix;
  auto v = ParseNumberPrefix(s, &suffix);
  if (!v.ok()) return std::move(v).error();
  double mult = 1;
  std::string suf(suffix);
  for (auto& c : suf) c = static_cast<char>(std::tolower(c));
  if (suf == "" || suf == "b") mult = 1;
  else if (suf == "k" || suf == "kb" || suf == "kib") mult = 1024.0;
  else if (suf == "m" || suf == "mb" || suf == "mib") mult = 1024.0 * 1024;
  else if (suf == "g" || suf == "gb" || suf == "gib") mult = 1024.0 * 1024 * 1024;
  else if (suf == "t" || suf == "tb" || suf == "tib") mult = 1024.0 * 1024 * 1024 * 1024;
  else return MakeError(ErrorCode::kInvalidArgument, "'{}': unknown size unit (use b, k, m, g)", s);
  double bytes = *v * mult;
  if (bytes > 9.0e18) return MakeError(ErrorCode::kInvalidArgument, "'{}' is too large", s);
  return static_cast<uint64_t>(bytes);
}

Result<uint64_t> ParseDurationMs(std::string_view s) {
  std::string_view suffix;
  auto v = ParseNumberPrefix(s, &suffix);
  if (!v.ok()) return std::move(v).error();
  double mult;
  if (suffix == "" || suffix == "s") mult = 1000;
  else if (suffix == "ms") mult = 1;
  else if (suffix == "m") mult = 60'000;
  else if (suffix == "h") mult = 3'600'000;
  else return MakeError(ErrorCode::kInvalidArgument, "'{}': unknown duration unit (use ms, s, m, h)", s);
  double ms = *v * mult;
  if (ms > 1e15) return MakeError(ErrorCode::kInvalidArgument, "'{}' is too long", s);
  return static_cast<uint64_t>(std::llround(ms));
}

}  // namespace sbx
