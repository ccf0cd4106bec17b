// The SandboxRoot itself and the pieces every operation shares: client paths, the credential
// switch, the resolver, errors.
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "base/syscalls.h"
#include "supervisor/files/files.h"
#include "supervisor/files/internal.h"

namespace sbx::files {

const char* FileTypeName(FileType type) {
  switch (type) {
    case FileType::kRegular:
      return "file";
    case FileType::kDirectory:
      return "directory";
    case FileType::kSymlink:
      return "symlink";
    case FileType::kFifo:
      return "fifo";
    case FileType::kSocket:
      return "socket";
    case FileType::kCharDevice:
      return "char_device";
    case FileType::kBlockDevice:
      return "block_device";
  }
  return "unknown";
}

namespace internal {

Result<std::vector<std::string>> SplitPath(std::string_view path, size_t max_bytes) {
  if (path.empty())
    return MakeError(ErrorCode::kInvalidArgument, "empty path; give one such as /workspace/file");
  if (path.find('\0') != std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "path contains a NUL byte");
  }
  if (path.size() > max_bytes) {
    return MakeError(ErrorCode::kInvalidArgument, "path is {} bytes long; at most {} are allowed",
                     path.size(), max_bytes);
  }
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view c = path.substr(i, j - i);
    i = j + 1;
    if (c.empty() || c == ".") continue;
    if (c == "..") {
      return MakeError(ErrorCode::kInvalidArgument,
                       "path '{}' has a '..' component; name the file without it", path);
    }
    if (c.size() > NAME_MAX) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "a component of the path is {} bytes long; at most {} are allowed", c.size(),
                       NAME_MAX);
    }
    parts.emplace_back(c);
  }
  return parts;
}

std::string JoinPath(const std::vector<std::string>& parts, size_t begin, size_t end) {
  end = std::min(end, parts.size());
  if (begin >= end) return ".";
  std::string out;
  for (size_t i = begin; i < end; ++i) {
    if (!out.empty()) out += '/';
    out += parts[i];
  }
  return out;
}

namespace {

// setfsuid/setfsgid return the previous id and cannot report failure; an invalid id (-1)
// changes nothing and returns the current one.
uid_t CurrentFsUid() { return static_cast<uid_t>(::syscall(SYS_setfsuid, -1)); }
gid_t CurrentFsGid() { return static_cast<gid_t>(::syscall(SYS_setfsgid, -1)); }

// Raw setgroups: only the calling thread's credentials (glibc's wrapper changes every thread).
int SetGroupsThread(size_t n, const gid_t* list) {
  return static_cast<int>(::syscall(SYS_setgroups, n, list));
}

// openat2 refuses unknown combinations (EINVAL) where open(2) ignores them: with O_PATH only
// O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC may accompany it.
uint64_t WithCommonFlags(uint64_t flags) {
  flags |= O_CLOEXEC;
  if ((flags & O_PATH) == 0) flags |= O_NOCTTY;
  return flags;
}

}  // namespace

FsCredsGuard::FsCredsGuard(const Owner& owner) {
  old_uid_ = CurrentFsUid();
  old_gid_ = CurrentFsGid();
  if (old_uid_ == owner.uid && old_gid_ == owner.gid) return;
  int n = ::getgroups(0, nullptr);
  if (n > 0) {
    old_groups_.resize(static_cast<size_t>(n));
    n = ::getgroups(n, old_groups_.data());
    old_groups_.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  switched_ = true;
  gid_t g = owner.gid;
  bool ok = SetGroupsThread(1, &g) == 0;
  ::syscall(SYS_setfsgid, owner.gid);
  ok = ok && CurrentFsGid() == owner.gid;
  // Last: moving fsuid off 0 drops CAP_DAC_OVERRIDE & co. from the thread's effective set.
  ::syscall(SYS_setfsuid, owner.uid);
  ok = ok && CurrentFsUid() == owner.uid;
  if (!ok) {
    status_ = MakeError(ErrorCode::kPermissionDenied,
                        "cannot take the sandbox user's file-system ids (uid {}, gid {}); the "
                        "daemon needs CAP_SETUID and CAP_SETGID (run it as root)",
                        owner.uid, owner.gid);
  }
}

FsCredsGuard::~FsCredsGuard() {
  if (!switched_) return;
  // fsuid back to 0 first: the permitted file capabilities return to the effective set.
  ::syscall(SYS_setfsuid, old_uid_);
  ::syscall(SYS_setfsgid, old_gid_);
  SetGroupsThread(old_groups_.size(), old_groups_.data());
}

int OpenInRoot(int root_fd, const std::string& rel, uint64_t flags, uint64_t mode,
               uint64_t extra_resolve) {
  uint64_t resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | extra_resolve;
  flags = WithCommonFlags(flags);
  for (int attempt = 0;; ++attempt) {
    int fd = sys::Openat2(root_fd, rel.c_str(), flags, mode, resolve);
    // EAGAIN: a rename or mount raced with the lookup of ".." (the kernel's seqcount check); the
    // lookup is simply repeated. A sandbox renaming in a tight loop could starve us; give up
    // after a bounded number of tries.
    if (fd >= 0 || errno != EAGAIN || attempt >= 64) return fd;
  }
}

int OpenBeneathNoLinks(int dir_fd, const std::string& rel, uint64_t flags, uint64_t mode) {
  uint64_t resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  flags = WithCommonFlags(flags);
  for (int attempt = 0;; ++attempt) {
    int fd = sys::Openat2(dir_fd, rel.c_str(), flags, mode, resolve);
    if (fd >= 0 || errno != EAGAIN || attempt >= 64) return fd;
  }
}

Error FsErrorValue(int err, std::string_view op, std::string_view path) {
  ErrorCode code = ErrorCode::kInternal;
  std::string hint;
  switch (err) {
    case ENOENT:
      code = ErrorCode::kNotFound;
      break;
    case EEXIST:
      code = ErrorCode::kAlreadyExists;
      break;
    case EACCES:
    case EPERM:
    case EROFS:
      code = ErrorCode::kPermissionDenied;
      break;
    case ELOOP:
      code = ErrorCode::kPermissionDenied;
      hint = " (a magic link such as /proc/PID/root, or a symlink where none may be)";
      break;
    case EXDEV:
      code = ErrorCode::kFailedPrecondition;
      hint = " (another file system or mount)";
      break;
    case ENOTEMPTY:
      code = ErrorCode::kFailedPrecondition;
      break;
    case EBUSY:
      code = ErrorCode::kFailedPrecondition;
      hint = " (in use, or a mount point)";
      break;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
    case EMLINK:
      code = ErrorCode::kResourceExhausted;
      break;
    case ENOTDIR:
    case EISDIR:
    case EINVAL:
    case ENAMETOOLONG:
      code = ErrorCode::kInvalidArgument;
      break;
    case ENOSYS:
    case EOPNOTSUPP:
      code = ErrorCode::kUnavailable;
      break;
    case EAGAIN:
      // openat2's lookup raced a rename or mount 64 times in a row (OpenInRoot): something in
      // the sandbox keeps moving the path. Nothing was opened; the client may try again.
      code = ErrorCode::kUnavailable;
      hint = " (the path kept changing during the lookup; try again)";
      break;
    default:
      break;
  }
  return Error{code, err, fmt::format("{} '{}'{}", op, path, hint), {}};
}

Error FsError(std::string_view op, std::string_view path) { return FsErrorValue(errno, op, path); }

Result<Parent> OpenParent(int root_fd, const std::vector<std::string>& parts,
                          std::string_view path) {
  Parent p;
  p.name = parts.back();
  p.dir = UniqueFd(OpenInRoot(root_fd, JoinPath(parts, 0, parts.size() - 1), O_PATH | O_DIRECTORY));
  if (!p.dir) return FsError("open the directory of", path);
  return p;
}

int Reopen(int opath_fd, int flags) {
  std::string proc = "/proc/self/fd/" + std::to_string(opath_fd);
  return ::open(proc.c_str(), flags | O_CLOEXEC | O_NOCTTY);
}

FileType TypeOf(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return FileType::kDirectory;
    case S_IFLNK:
      return FileType::kSymlink;
    case S_IFIFO:
      return FileType::kFifo;
    case S_IFSOCK:
      return FileType::kSocket;
    case S_IFCHR:
      return FileType::kCharDevice;
    case S_IFBLK:
      return FileType::kBlockDevice;
    default:
      return FileType::kRegular;
  }
}

FileInfo InfoFrom(const struct stat& st, std::string name) {
  FileInfo info;
  info.name = std::move(name);
  info.type = TypeOf(st.st_mode);
  info.size = static_cast<uint64_t>(st.st_size);
  info.mode = st.st_mode & 07777;
  info.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  return info;
}

std::string TempName(std::string_view what) {
  unsigned char b[8] = {};
  if (::getrandom(b, sizeof b, 0) != static_cast<ssize_t>(sizeof b)) {
    // getrandom on Linux >= 3.17 does not fail for 8 bytes once the pool is ready; the
    // fallback still differs per call, and every use is O_EXCL.
    static std::atomic<uint64_t> seq{0};
    uint64_t v = (static_cast<uint64_t>(::getpid()) << 32) ^ ++seq;
    std::memcpy(b, &v, sizeof b);
  }
  static const char* hex = "0123456789abcdef";
  std::string out = ".sbx-" + std::string(what) + "-";
  for (unsigned char c : b) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

}  // namespace internal

Result<SandboxRoot> SandboxRoot::FromFd(UniqueFd root, Owner owner, const Limits& limits) {
  struct stat st;
  if (!root || ::fstat(root.get(), &st) < 0) return ErrnoError("fstat the sandbox root");
  if (!S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument, "the sandbox root is not a directory");
  }
  // An O_PATH descriptor of our own, whatever the caller opened it with.
  int fd = internal::Reopen(root.get(), O_PATH | O_DIRECTORY);
  if (fd < 0) return ErrnoError("reopen the sandbox root");
  SandboxRoot r;
  r.root_ = UniqueFd(fd);
  r.owner_ = owner;
  r.limits_ = limits;
  return r;
}

Result<SandboxRoot> SandboxRoot::OpenDirectory(const std::string& host_path, Owner owner,
                                               const Limits& limits) {
  UniqueFd fd(::open(host_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return internal::FsError("open the sandbox root", host_path);
  return FromFd(std::move(fd), owner, limits);
}

Result<SandboxRoot> SandboxRoot::OfProcess(pid_t pid, int pidfd, Owner owner,
                                           const Limits& limits) {
  std::string proc = "/proc/" + std::to_string(pid) + "/root";
  UniqueFd fd(::open(proc.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT || errno == ESRCH) {
      return MakeError(ErrorCode::kNotFound, "process {} is gone; its sandbox has ended", pid);
    }
    return internal::FsError("open the root of", proc);
  }
  if (pidfd >= 0 && sys::PidfdSendSignal(pidfd, 0) < 0) {
    return MakeError(ErrorCode::kNotFound,
                     "process {} ended while its root was opened; its sandbox has ended", pid);
  }
  return FromFd(std::move(fd), owner, limits);
}

}  // namespace sbx::files
