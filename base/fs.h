// Small file helpers with Result errors. Paths that come from users are opened relative to
// directory fds with O_NOFOLLOW by the callers that need it; these helpers are for trusted paths
// (cgroupfs, /proc, the daemon's own configuration).
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sbx {

Result<UniqueFd> OpenAt(int dirfd, const std::string& path, int flags, mode_t mode = 0);
Result<std::string> ReadFileAt(int dirfd, const std::string& path, size_t max_bytes = 1 << 20);
Result<std::string> ReadFile(const std::string& path, size_t max_bytes = 1 << 20);
// Writes the whole value in one write(2): cgroupfs and /proc files need that.
Status WriteFileAt(int dirfd, const std::string& path, std::string_view value);
Status WriteFile(const std::string& path, std::string_view value);
// Writes all of data to fd, retrying on EINTR and short writes.
Status WriteAll(int fd, std::string_view data);
// Reads `length` bytes of fd at `offset` into buf, retrying on EINTR and short reads; fewer
// when the file ends first. Returns how many it read.
Result<size_t> ReadAllAt(int fd, char* buf, size_t length, uint64_t offset);

// "1.5k"/"256m"/"2g" (powers of 1024, as docker spells them) to bytes.
Result<uint64_t> ParseByteSize(std::string_view s);
// "30s", "500ms", "2m", "1h", or a bare number of seconds, to milliseconds.
Result<uint64_t> ParseDurationMs(std::string_view s);

}  // namespace sbx
