// File-tree helpers shared by supervisor/workspace*.cc: every walk is relative to directory fds,
// follows no symlink, and stops at mount points. Internal to the supervisor library.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sbx::supervisor::internal {

// openat2(dirfd, path, flags | O_CLOEXEC) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
// RESOLVE_NO_MAGICLINKS (| RESOLVE_NO_XDEV when `same_mount`): a symlink anywhere in `path`
// fails with ELOOP, a mount point with EXDEV. Returns -1 and errno on failure.
int OpenBeneath(int dirfd, const std::string& path, uint64_t flags, bool same_mount = false);

// The names in a directory (an fd opened O_RDONLY | O_DIRECTORY), without "." and "..", sorted
// bytewise. At most `max_entries`; more is an error (kResourceExhausted).
Result<std::vector<std::string>> ListDir(int dir_fd, size_t max_entries = 1'000'000);

// Removes `name` below `parent_fd` and everything under it, as root, following no symlink and
// refusing to descend into another mount (kFailedPrecondition: something is still mounted).
// Trees of any depth: subtrees past a fixed depth are moved up before they are removed.
// ENOENT for `name` is success.
Status RemoveTree(int parent_fd, const std::string& name);

// sha256 (lowercase hex) of everything `fd` reads from where it is; when `copy_to` >= 0 the
// bytes are written there too. *size: the bytes read.
Result<std::string> HashFd(int fd, int copy_to, uint64_t* size);

// Reads up to `max_bytes` from fd; `truncated` says whether more was there.
Result<std::string> ReadUpTo(int fd, size_t max_bytes, bool* truncated);

// True when `s` is valid UTF-8 without control characters (C0, DEL, C1).
bool IsCleanName(std::string_view s);
// `s` with bytes of invalid UTF-8 and control characters written as \xNN (for reports).
std::string EscapeName(std::string_view s);

}  // namespace sbx::supervisor::internal
