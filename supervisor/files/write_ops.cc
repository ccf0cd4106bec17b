// Changes: atomic replacement (Upload), mkdir -p, remove (recursive by descriptors), move.
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/dir.h"
#include "base/fs.h"
#include "supervisor/files/files.h"
#include "supervisor/files/internal.h"

namespace sbx::files {

using internal::FsCredsGuard;
using internal::FsError;
using internal::FsErrorValue;

// ---- Upload ----

Upload::Upload(Upload&& o) noexcept { *this = std::move(o); }

Upload& Upload::operator=(Upload&& o) noexcept {
  if (this != &o) {
    if (!done_) Discard();
    owner_ = o.owner_;
    max_bytes_ = o.max_bytes_;
    parent_ = std::move(o.parent_);
    name_ = std::move(o.name_);
    path_ = std::move(o.path_);
    tmp_ = std::move(o.tmp_);
    tmp_name_ = std::move(o.tmp_name_);
    mode_ = o.mode_;
    sync_ = o.sync_;
    failed_ = o.failed_;
    done_ = o.done_;
    size_ = o.size_;
    o.done_ = true;  // the moved-from upload owns nothing
  }
  return *this;
}

Upload::~Upload() {
  if (!done_) Discard();
}

void Upload::Discard() {
  done_ = true;
  tmp_.reset();  // an O_TMPFILE file vanishes with its last descriptor
  if (!tmp_name_.empty() && parent_) {
    FsCredsGuard creds(owner_);
    if (creds.status().ok()) ::unlinkat(parent_.get(), tmp_name_.c_str(), 0);
  }
  tmp_name_.clear();
}

Status Upload::Append(std::string_view data) {
  if (done_ || failed_) {
    return MakeError(ErrorCode::kFailedPrecondition, "the upload of '{}' has ended", path_);
  }
  uint64_t cap = max_bytes_;
  if (data.size() > cap - size_) {
    failed_ = true;
    Discard();
    return MakeError(ErrorCode::kResourceExhausted,
                     "'{}' would be larger than the {} bytes a file may have; nothing was written",
                     path_, cap);
  }
  Status st = WriteAll(tmp_.get(), data);
  if (!st.ok()) {
    int err = st.error().sys_errno;
    failed_ = true;
    Discard();
    return FsErrorValue(err, "write", path_);
  }
  size_ += data.size();
  return Ok();
}

Status Upload::Commit() {
  if (done_ || failed_) {
    return MakeError(ErrorCode::kFailedPrecondition, "the upload of '{}' has ended", path_);
  }
  FsCredsGuard creds(owner_);
  SBX_TRY(creds.status());
  if (sync_ && ::fsync(tmp_.get()) < 0) {
    Error e = FsError("fsync", path_);
    Discard();
    return e;
  }
  if (tmp_name_.empty()) {
    // The unnamed file gets a hidden name next to the target (linkat through our own
    // /proc/self/fd entry: AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH, which the switched ids
    // no longer carry), then takes the target's place in one rename.
    std::string proc = "/proc/self/fd/" + std::to_string(tmp_.get());
    for (int attempt = 0;; ++attempt) {
      std::string name = internal::TempName("upload");
      if (::linkat(AT_FDCWD, proc.c_str(), parent_.get(), name.c_str(), AT_SYMLINK_FOLLOW) == 0) {
        tmp_name_ = name;
        break;
      }
      if (errno != EEXIST || attempt >= 8) {
        Error e = FsError("link the new file at", path_);
        Discard();
        return e;
      }
    }
  }
  if (::renameat(parent_.get(), tmp_name_.c_str(), parent_.get(), name_.c_str()) < 0) {
    Error e = errno == EISDIR
                  ? MakeError(ErrorCode::kInvalidArgument,
                              "'{}' is a directory; it cannot be replaced by a file", path_)
                  : FsError("replace", path_);
    Discard();
    return e;
  }
  tmp_name_.clear();
  tmp_.reset();
  done_ = true;
  return Ok();
}

Result<Upload> internal_StartUpload(UniqueFd parent, std::string name, std::string_view path,
                                    Owner owner, uint64_t max_bytes, std::optional<uint32_t> mode,
                                    bool sync) {
  Upload up;
  up.owner_ = owner;
  up.max_bytes_ = max_bytes;
  up.path_ = std::string(path);
  up.sync_ = sync;
  up.mode_ = mode.value_or(0644);
  struct stat st;
  if (::fstatat(parent.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISDIR(st.st_mode)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'{}' is a directory; it cannot be replaced by a file", path);
    }
    if (S_ISREG(st.st_mode) && !mode) up.mode_ = st.st_mode & 0777;
  } else if (errno != ENOENT) {
    return FsError("stat", path);
  }

  int fd = ::openat(parent.get(), ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    // No O_TMPFILE on this file system: a hidden name, created exclusively.
    for (int attempt = 0; fd < 0; ++attempt) {
      std::string tmp = internal::TempName("upload");
      fd = ::openat(parent.get(), tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC,
                    0600);
      if (fd >= 0) up.tmp_name_ = tmp;
      if (fd < 0 && (errno != EEXIST || attempt >= 8)) break;
    }
  }
  if (fd < 0) return FsError("create a file next to", path);
  up.tmp_ = UniqueFd(fd);
  up.parent_ = std::move(parent);
  up.name_ = std::move(name);
  // Exactly the requested bits, whatever the umask.
  if (::fchmod(up.tmp_.get(), up.mode_) < 0) return FsError("chmod the new file", path);
  return up;
}

Status Upload::SetModifiedTime(int64_t mtime_ns) {
  if (done_ || failed_) {
    return MakeError(ErrorCode::kFailedPrecondition, "the upload of '{}' has ended", path_);
  }
  struct timespec ts[2];
  ts[0].tv_sec = 0;
  ts[0].tv_nsec = UTIME_OMIT;
  ts[1].tv_sec = mtime_ns / 1'000'000'000;
  ts[1].tv_nsec = mtime_ns % 1'000'000'000;
  if (ts[1].tv_nsec < 0) {
    ts[1].tv_nsec += 1'000'000'000;
    ts[1].tv_sec -= 1;
  }
  if (::futimens(tmp_.get(), ts) < 0) return FsError("set the time of", path_);
  return Ok();
}

// ---- SandboxRoot: writes ----

Result<Upload> SandboxRoot::BeginWrite(std::string_view path, const WriteOptions& options) const {
  auto parts = internal::SplitPath(path, limits_.max_path_bytes);
  if (!parts.ok()) return std::move(parts).error();
  if (parts->empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' is the root; name a file below it", path);
  }
  if (options.mode && *options.mode > 0777) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "mode {:o} is not a permission between 0 and 0777", *options.mode);
  }
  FsCredsGuard creds(owner_);
  SBX_TRY(creds.status());
  auto parent = internal::OpenParent(root_.get(), *parts, path);
  if (!parent.ok() && parent.error().code == ErrorCode::kNotFound && options.make_parents) {
    SBX_TRY(MakeDirectories(internal::JoinPath(*parts, 0, parts->size() - 1)));
    parent = internal::OpenParent(root_.get(), *parts, path);
  }
  if (!parent.ok()) return std::move(parent).error();

  return internal_StartUpload(std::move(parent->dir), std::move(parent->name), path, owner_,
                              limits_.max_file_bytes, options.mode, options.sync);
}

Status SandboxRoot::Write(std::string_view path, std::string_view data,
                          const WriteOptions& options) const {
  auto up = BeginWrite(path, options);
  if (!up.ok()) return std::move(up).error();
  SBX_TRY(up->Append(data));
  return up->Commit();
}

Status SandboxRoot::MakeDirectories(std::string_view path, uint32_t mode) const {
  auto parts = internal::SplitPath(path, limits_.max_path_bytes);
  if (!parts.ok()) return std::move(parts).error();
  if (mode > 07777 || (mode & (S_ISUID | S_ISGID)) != 0) {
    return MakeError(ErrorCode::kInvalidArgument, "mode {:o} is not a directory permission", mode);
  }
  FsCredsGuard creds(owner_);
  SBX_TRY(creds.status());
  UniqueFd cur(internal::OpenInRoot(root_.get(), ".", O_PATH | O_DIRECTORY));
  if (!cur) return FsError("open", "/");
  for (size_t i = 0; i < parts->size(); ++i) {
    std::string prefix = internal::JoinPath(*parts, 0, i + 1);
    const std::string& name = (*parts)[i];
    UniqueFd next;
    for (int attempt = 0; !next; ++attempt) {
      next = UniqueFd(internal::OpenInRoot(root_.get(), prefix, O_PATH | O_DIRECTORY));
      if (next) break;
      if (errno == ENOTDIR) {
        return MakeError(ErrorCode::kAlreadyExists, "'/{}' exists and is not a directory", prefix);
      }
      if (errno != ENOENT) return FsError("open", "/" + prefix);
      if (attempt >= 2) {
        // mkdir says it exists, open says it does not: a dangling symlink.
        return MakeError(ErrorCode::kAlreadyExists, "'/{}' is a symlink to nothing", prefix);
      }
      if (::mkdirat(cur.get(), name.c_str(), 0700) < 0) {
        if (errno == EEXIST) continue;  // made meanwhile (or a symlink): look again
        return FsError("create the directory", "/" + prefix);
      }
      // Set the exact bits through a descriptor: fchmodat by name would follow a symlink
      // swapped in meanwhile (resolved against the host's root, not the sandbox's).
      UniqueFd made(
          ::openat(cur.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!made) return FsError("open the new directory", "/" + prefix);
      if (::fchmod(made.get(), mode) < 0) return FsError("chmod", "/" + prefix);
      next = std::move(made);
    }
    cur = std::move(next);
  }
  return Ok();
}

namespace {

struct Walk {
  uint64_t visited = 0;
  uint64_t max_entries = 0;
  int max_depth = 0;
  std::string top;  // the client's path, for messages
};

// Removes `name` in `parent_fd` and everything below it. Opens each directory with O_NOFOLLOW |
// O_DIRECTORY relative to its parent's descriptor, so a symlink swapped in is removed itself,
// never entered; never enters another mount (st_dev differs).
Status RemoveTree(int parent_fd, dev_t parent_dev, const std::string& name, int depth, Walk* w) {
  if (++w->visited > w->max_entries) {
    return MakeError(ErrorCode::kResourceExhausted,
                     "'{}' has more than {} entries; remove it in parts", w->top, w->max_entries);
  }
  UniqueFd dir(::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) {
    if (errno == ENOENT) return Ok();
    if (errno == ELOOP || errno == ENOTDIR) {  // not (or no longer) a directory
      if (::unlinkat(parent_fd, name.c_str(), 0) < 0 && errno != ENOENT) {
        return FsError("remove an entry of", w->top);
      }
      return Ok();
    }
    return FsError("open a directory below", w->top);
  }
  struct stat st;
  if (::fstat(dir.get(), &st) < 0) return FsError("stat a directory below", w->top);
  if (st.st_dev != parent_dev) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "something is mounted at '{}' below '{}'; it is not removed", name, w->top);
  }
  if (depth >= w->max_depth) {
    return MakeError(ErrorCode::kResourceExhausted, "'{}' is nested more than {} directories deep",
                     w->top, w->max_depth);
  }
  for (;;) {
    // A batch at a time: what is removed makes room for the next read.
    bool more = false;
    auto names = ListDirNames(dir.get(), 1024, &more);
    if (!names.ok()) return std::move(names).error();
    if (names->empty()) break;
    for (const std::string& n : *names) {
      struct stat cst;
      if (::fstatat(dir.get(), n.c_str(), &cst, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT) continue;
        return FsError("stat an entry below", w->top);
      }
      if (S_ISDIR(cst.st_mode)) {
        SBX_TRY(RemoveTree(dir.get(), st.st_dev, n, depth + 1, w));
        continue;
      }
      if (++w->visited > w->max_entries) {
        return MakeError(ErrorCode::kResourceExhausted,
                         "'{}' has more than {} entries; remove it in parts", w->top,
                         w->max_entries);
      }
      if (::unlinkat(dir.get(), n.c_str(), 0) < 0 && errno != ENOENT) {
        // EISDIR: swapped for a directory meanwhile; the next round sees it as one.
        if (errno != EISDIR) return FsError("remove an entry below", w->top);
      }
    }
  }
  if (::unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT) {
    return FsError("remove the directory", w->top);
  }
  return Ok();
}

}  // namespace

Status SandboxRoot::Remove(std::string_view path, bool recursive) const {
  auto parts = internal::SplitPath(path, limits_.max_path_bytes);
  if (!parts.ok()) return std::move(parts).error();
  if (parts->empty()) {
    return MakeError(ErrorCode::kFailedPrecondition, "the root cannot be removed");
  }
  FsCredsGuard creds(owner_);
  SBX_TRY(creds.status());
  auto parent = internal::OpenParent(root_.get(), *parts, path);
  if (!parent.ok()) return std::move(parent).error();
  int pfd = parent->dir.get();
  const char* name = parent->name.c_str();
  struct stat st;
  if (::fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) return FsError("stat", path);
  int flags = S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0;
  if (::unlinkat(pfd, name, flags) == 0) return Ok();
  if (errno == EISDIR || (errno == ENOTDIR && flags != 0)) {
    // The type changed between the stat and the unlink; try the other kind once.
    flags ^= AT_REMOVEDIR;
    if (::unlinkat(pfd, name, flags) == 0) return Ok();
  }
  if ((errno == ENOTEMPTY || errno == EEXIST) && flags == AT_REMOVEDIR) {
    if (!recursive) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "directory '{}' is not empty; remove it with recursive=true", path);
    }
    struct stat pst;
    if (::fstat(pfd, &pst) < 0) return FsError("stat the directory of", path);
    Walk w{0, limits_.max_walk_entries, limits_.max_depth, std::string(path)};
    // The tree may sit on another mount than its parent (removing /tmp/x where /tmp is a
    // mount): the walk stays on the device of the directory itself.
    UniqueFd top(::openat(pfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat tst;
    if (!top || ::fstat(top.get(), &tst) < 0) return FsError("open", path);
    if (tst.st_dev != pst.st_dev) {
      return MakeError(ErrorCode::kFailedPrecondition, "'{}' is a mount point; it is not removed",
                       path);
    }
    return RemoveTree(pfd, pst.st_dev, parent->name, 0, &w);
  }
  return FsError("remove", path);
}

Status SandboxRoot::Move(std::string_view from, std::string_view to, bool replace) const {
  auto src = internal::SplitPath(from, limits_.max_path_bytes);
  if (!src.ok()) return std::move(src).error();
  auto dst = internal::SplitPath(to, limits_.max_path_bytes);
  if (!dst.ok()) return std::move(dst).error();
  if (src->empty() || dst->empty()) {
    return MakeError(ErrorCode::kFailedPrecondition, "the root cannot be moved or replaced");
  }
  FsCredsGuard creds(owner_);
  SBX_TRY(creds.status());
  auto sp = internal::OpenParent(root_.get(), *src, from);
  if (!sp.ok()) return std::move(sp).error();
  auto dp = internal::OpenParent(root_.get(), *dst, to);
  if (!dp.ok()) return std::move(dp).error();
  unsigned flags = replace ? 0 : RENAME_NOREPLACE;
  if (::renameat2(sp->dir.get(), sp->name.c_str(), dp->dir.get(), dp->name.c_str(), flags) == 0) {
    return Ok();
  }
  if (errno == EINVAL) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' cannot be moved below itself ('{}')", from,
                     to);
  }
  if (errno == EEXIST) {
    return MakeError(ErrorCode::kAlreadyExists, "'{}' exists; move with replace to overwrite it",
                     to);
  }
  std::string both = fmt::format("{}' to '{}", from, to);
  return FsError("move", both);
}

}  // namespace sbx::files
