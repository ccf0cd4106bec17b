// Shared by the files library's .cc files: client paths, the per-thread credential switch, the
// in-root resolver and errno → Error mapping. Not part of the public API.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "supervisor/files/files.h"

namespace sbx::files::internal {

// A client path split into components: "/a//b/./c/" → {"a", "b", "c"}; "/" → {}. Refuses (with
// kInvalidArgument) an empty path, a NUL byte, a ".." component, a component longer than
// NAME_MAX and a path longer than `max_bytes`.
Result<std::vector<std::string>> SplitPath(std::string_view path, size_t max_bytes);
// {"a", "b"} → "a/b"; {} → ".". Components from SplitPath only.
std::string JoinPath(const std::vector<std::string>& parts, size_t begin = 0,
                     size_t end = SIZE_MAX);

// Runs the calling thread with the file-system ids of `owner` (setfsuid, setfsgid, and a
// supplementary group list of owner.gid alone) until destroyed, then restores them. Switches
// nothing when owner's ids are the thread's own. ok() is false when the switch did not take
// (no CAP_SETUID/CAP_SETGID): the caller must not go on.
class FsCredsGuard {
 public:
  explicit FsCredsGuard(const Owner& owner);
  ~FsCredsGuard();
  FsCredsGuard(const FsCredsGuard&) = delete;
  FsCredsGuard& operator=(const FsCredsGuard&) = delete;
  Status status() const { return status_; }

 private:
  bool switched_ = false;
  uid_t old_uid_ = 0;
  gid_t old_gid_ = 0;
  std::vector<gid_t> old_groups_;
  Status status_;
};

// openat2(root_fd, rel, flags | O_CLOEXEC | O_NOCTTY, mode, RESOLVE_IN_ROOT |
// RESOLVE_NO_MAGICLINKS | extra_resolve), retried on EAGAIN (a concurrent rename or mount while
// ".." was resolved; openat2(2)). Returns the fd or -1 with errno.
int OpenInRoot(int root_fd, const std::string& rel, uint64_t flags, uint64_t mode = 0,
               uint64_t extra_resolve = 0);
// The same beneath a directory: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, so
// any symlink or ".." on the way fails (ELOOP, EXDEV). For the walks and the tar extraction.
int OpenBeneathNoLinks(int dir_fd, const std::string& rel, uint64_t flags, uint64_t mode = 0);

// An Error for the current errno with this library's codes (ELOOP → kPermissionDenied,
// ENOSPC/EDQUOT/EFBIG → kResourceExhausted, ENOTDIR/EISDIR/EINVAL → kInvalidArgument, …).
Error FsError(std::string_view op, std::string_view path);
Error FsErrorValue(int err, std::string_view op, std::string_view path);

// O_PATH on the directory that holds the last component, and that component. `parts` must not
// be empty.
struct Parent {
  UniqueFd dir;
  std::string name;
};
Result<Parent> OpenParent(int root_fd, const std::vector<std::string>& parts,
                          std::string_view path);

// Reopens an O_PATH descriptor with `flags` through /proc/self/fd (permission checked again
// with the thread's current ids).
int Reopen(int opath_fd, int flags);

FileType TypeOf(mode_t mode);
FileInfo InfoFrom(const struct stat& st, std::string name);

// A hidden, unpredictable name for temporary entries: ".sbx-<what>-<16 hex>".
std::string TempName(std::string_view what);

}  // namespace sbx::files::internal
