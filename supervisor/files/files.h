// Files inside a sandbox: stat, list, read, atomic write, mkdir -p, delete, move, resolved inside
// the sandbox's own root and never the host's.
//
// A SandboxRoot is an O_PATH descriptor on the sandbox's root as the host sees it (for a live
// sandbox, /proc/<init pid>/root, which works for native and Docker sandboxes alike: lookups from
// it cross the sandbox's own mounts such as /workspace and /tmp), the host ids of the sandbox
// user, and the limits below. Every client path is resolved with
//   openat2(root_fd, path, …, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
// so that "..", absolute symlinks and relative symlinks are all resolved as if root_fd were "/"
// (a lookup can never climb above it, however the tree changes meanwhile), and magic links such
// as /proc/1/root or /proc/self/fd/N inside the sandbox are refused (ELOOP). RESOLVE_NO_XDEV is
// deliberately not set: /workspace, /tmp and /artifacts are mounts of their own inside the root.
// Operations on a final name use the parent's descriptor and the bare name (fstatat, unlinkat,
// renameat2, mkdirat with AT_SYMLINK_NOFOLLOW / O_NOFOLLOW), never a host path string, so a
// symlink swapped in at the last moment is renamed or removed itself, never followed.
//
// Credentials. Every call that looks up or changes names runs, on the calling thread only, with
// the file-system ids of the sandbox user: setfsuid/setfsgid and a one-group supplementary list
// (raw setgroups, which is per-thread; glibc's wrapper would broadcast to every thread), restored
// before the call returns. Moving fsuid away from 0 drops the thread's file capabilities
// (CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_CHOWN…, see capabilities(7)), so every permission check is
// the one the sandbox user would get itself: a sandbox's read-only binds, root-owned files and
// procfs/sysfs files (/proc/sysrq-trigger) stay out of reach, new files are owned by the sandbox
// user without a racy fchown, and disk quotas charge that user. fchown after creating as root was
// the alternative; it leaves a window with a root-owned file and gives every check root's
// override. Requires CAP_SETUID/CAP_SETGID (the daemon runs as root) unless the owner's ids are
// the caller's own, in which case nothing is switched (the unit tests without privileges).
//
// Only regular files are read and only directories listed: a fifo, socket or device node is
// refused before it is opened (it is looked up O_PATH, checked with fstat, and reopened through
// /proc/self/fd), so nothing blocks and no driver's open() runs.
//
// Errors (Error::code; api/ maps them to statuses): kInvalidArgument for a malformed path (empty,
// NUL byte, "..", longer than Limits::max_path_bytes or a component over NAME_MAX) or an
// operation that does not fit the object (reading a fifo, writing over a directory);
// kNotFound; kPermissionDenied for a refusal by the file system (EACCES, EPERM, EROFS) or a
// magic link (ELOOP); kAlreadyExists; kFailedPrecondition (a directory not empty without
// `recursive`, a move across file systems, the root itself); kResourceExhausted past a limit
// here or when the sandbox's file system is full (ENOSPC, EDQUOT, EFBIG).
//
// Thread-safety: a SandboxRoot is immutable; every method may be called from several threads
// at once. Each call blocks on file-system I/O; run it off an event loop's I/O threads.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sbx::files {

// The sandbox user's ids as the host sees them (host_id_base + uid inside).
struct Owner {
  uid_t uid = 0;
  gid_t gid = 0;
};

struct Limits {
  uint64_t max_file_bytes = 1ull << 30;   // one upload (Write / an upload's Append)
  uint64_t max_tar_bytes = 4ull << 30;    // the file data of one tar, in or out
  uint64_t max_tar_entries = 100'000;     // entries of one tar, in or out
  uint64_t max_walk_entries = 1'000'000;  // entries a recursive delete visits
  size_t max_list_entries = 10'000;       // a directory listing is truncated past this
  size_t max_path_bytes = 4096;           // a client path (PATH_MAX)
  int max_depth = 128;                    // directories below the start of a walk or tar
};

enum class FileType { kRegular, kDirectory, kSymlink, kFifo, kSocket, kCharDevice, kBlockDevice };
const char* FileTypeName(FileType type);  // "file", "directory", "symlink", "fifo", …

struct FileInfo {
  std::string name;  // the last component ("" for the root); bytes as stored, not always UTF-8
  FileType type = FileType::kRegular;
  uint64_t size = 0;        // st_size
  uint32_t mode = 0;        // permission bits (07777)
  int64_t mtime_ns = 0;     // since the epoch
  std::string link_target;  // a symlink's target text, as stored
};

struct DirListing {
  std::vector<FileInfo> entries;  // sorted by name, bytewise; "." and ".." left out
  bool truncated = false;         // the directory had more than Limits::max_list_entries
};

// What Read found: a regular file, opened for reading, or a directory's listing.
struct ReadResult {
  FileInfo info;                      // of the file itself (symlinks on the way followed)
  UniqueFd file;                      // O_RDONLY on the regular file; invalid for a directory
  std::optional<DirListing> listing;  // a directory's entries
};

struct WriteOptions {
  // Permission bits of the new file (0 to 0777). Unset: those of the file it replaces, else 0644.
  std::optional<uint32_t> mode;
  bool make_parents = false;  // create missing parent directories (0755)
  bool sync = false;          // fsync the data before it replaces the old file
};

class SandboxRoot;
class Upload;

// Internal (tar_transfer.cc): an upload into the directory `parent` (the thread already holds
// the owner's ids).
Result<Upload> internal_StartUpload(UniqueFd parent, std::string name, std::string_view path,
                                    Owner owner, uint64_t max_bytes, std::optional<uint32_t> mode,
                                    bool sync);

// One atomic replacement of a file, streamed: Append as the data arrives, then Commit. The data
// goes to an unnamed file (O_TMPFILE; a hidden ".sbx-upload-*" name on file systems without it)
// in the target's directory; Commit links it over the target in one rename, so readers see the
// old file or the new one, never a part. Destroying an upload that was not committed discards
// it; the target never changed.
class Upload {
 public:
  Upload(Upload&&) noexcept;
  Upload& operator=(Upload&&) noexcept;
  ~Upload();

  // Writes the next bytes. kResourceExhausted once the total passes Limits::max_file_bytes (or
  // the sandbox's file system is full); the upload is then dead and Commit fails.
  Status Append(std::string_view data);
  // Replaces the target. On failure the target is unchanged and the data discarded.
  Status Commit();
  // Sets the new file's modification time (default: when it was written).
  Status SetModifiedTime(int64_t mtime_ns);
  uint64_t size() const { return size_; }

 private:
  friend class SandboxRoot;
  friend Result<Upload> internal_StartUpload(UniqueFd parent, std::string name,
                                             std::string_view path, Owner owner, uint64_t max_bytes,
                                             std::optional<uint32_t> mode, bool sync);
  Upload() = default;
  void Discard();

  Owner owner_;
  uint64_t max_bytes_ = 0;
  UniqueFd parent_;  // O_PATH on the target's directory
  std::string name_;
  std::string path_;  // the client's path, for messages
  UniqueFd tmp_;
  std::string tmp_name_;  // the named fallback's name; empty with O_TMPFILE
  uint32_t mode_ = 0644;
  bool sync_ = false;
  bool failed_ = false;
  bool done_ = false;
  uint64_t size_ = 0;
};

class SandboxRoot {
 public:
  // From a descriptor on the root directory (O_PATH is enough). kInvalidArgument when it is not
  // a directory.
  static Result<SandboxRoot> FromFd(UniqueFd root, Owner owner, const Limits& limits = {});
  // A host directory named by a trusted path (the daemon's own, a test's temp dir).
  static Result<SandboxRoot> OpenDirectory(const std::string& host_path, Owner owner,
                                           const Limits& limits = {});
  // The root of a live process (a sandbox's init): /proc/<pid>/root. With `pidfd` (>= 0) the
  // process is checked to be still alive after the open, so a recycled pid is never trusted.
  // kNotFound when the process is gone; kPermissionDenied without ptrace access (root has it).
  static Result<SandboxRoot> OfProcess(pid_t pid, int pidfd, Owner owner,
                                       const Limits& limits = {});

  SandboxRoot(SandboxRoot&&) = default;
  SandboxRoot& operator=(SandboxRoot&&) = default;

  // Paths are the sandbox's own: "/workspace/a.txt" and "workspace/a.txt" are the same file;
  // "/" (or "", refused elsewhere) is the root. "." components and repeated slashes are ignored.

  // The entry itself (a symlink is reported as one, with its target; not followed).
  Result<FileInfo> Stat(std::string_view path) const;
  // A regular file opened for reading (the caller streams it, e.g. with pread for a Range), or
  // a directory's listing. Symlinks are followed, inside the root.
  Result<ReadResult> Read(std::string_view path) const;
  // A directory's entries (symlinks on the way, including the last, followed inside the root).
  Result<DirListing> List(std::string_view path) const;

  // Starts an atomic replacement of `path` (a symlink there is replaced, not followed).
  // kInvalidArgument for the root, a directory at `path` or a bad mode; kNotFound when the
  // parent directory is missing and !make_parents.
  Result<Upload> BeginWrite(std::string_view path, const WriteOptions& options = {}) const;
  // BeginWrite + Append(data) + Commit.
  Status Write(std::string_view path, std::string_view data,
               const WriteOptions& options = {}) const;

  // mkdir -p: creates `path` and every missing parent (mode 0755 before the umask is ignored:
  // the bits are set exactly). An existing directory is success; kAlreadyExists when something
  // else is there. Symlinks on the way are followed inside the root.
  Status MakeDirectories(std::string_view path, uint32_t mode = 0755) const;

  // Removes a file, symlink (the link itself) or empty directory; with `recursive`, a directory
  // and everything below it, walked by descriptors, following no symlink and entering no other
  // mount (kFailedPrecondition: something is mounted below), at most Limits::max_walk_entries
  // entries and Limits::max_depth levels (kResourceExhausted; what was removed stays removed).
  // The root cannot be removed.
  Status Remove(std::string_view path, bool recursive = false) const;

  // rename(2) inside the root: `from` itself moves (a symlink is moved, not followed); `to` is
  // replaced when `replace` (a file over a file, a directory over an empty directory), else
  // kAlreadyExists when it exists. Neither may be the root; a directory cannot move below
  // itself (kInvalidArgument); kFailedPrecondition across mounts (EXDEV).
  Status Move(std::string_view from, std::string_view to, bool replace = false) const;

  int fd() const { return root_.get(); }
  const Owner& owner() const { return owner_; }
  const Limits& limits() const { return limits_; }

 private:
  friend class Upload;
  SandboxRoot() = default;

  UniqueFd root_;  // O_PATH | O_DIRECTORY
  Owner owner_;
  Limits limits_;
};

}  // namespace sbx::files
