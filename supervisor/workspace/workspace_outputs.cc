// What a run leaves behind: the files in /artifacts (CollectArtifacts) and its changes to a
// copy-on-write workspace (Diff). Both read trees the sandbox wrote, so both walk with directory
// fds, follow no symlink, open nothing but regular files (O_NONBLOCK, checked again after open),
// and bound what they read.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <thread>

#include "base/fs.h"
#include "base/sha256.h"
#include "supervisor/workspace/diff.h"
#include "supervisor/workspace/workspace.h"
#include "supervisor/workspace/workspace_fs.h"

namespace sbx::supervisor {

using internal::EscapeName;
using internal::IsCleanName;
using internal::ListDir;
using internal::OpenBeneath;

namespace {

// ---- artifacts --------------------------------------------------------------------------------

constexpr size_t kMaxDirEntries = 100000;
// Entries one walk looks at, whatever the tree: hard links let a sandbox make dentries without
// inodes, so neither the tmpfs's inode limit nor its size bounds the count.
constexpr uint64_t kMaxEntriesVisited = 1'000'000;

class ArtifactCollector {
 public:
  ArtifactCollector(const ArtifactLimits& limits, uint64_t max_total, ArtifactList* out)
      : limits_(limits), max_total_(max_total), out_(out) {}

  Status Walk(int src_dir, int dest_dir, const std::string& prefix, int depth) {
    auto names = ListDir(src_dir, kMaxDirEntries);
    if (!names.ok()) {
      if (names.error().code != ErrorCode::kResourceExhausted) return std::move(names).error();
      // Hard links make entries without inodes: a directory can outgrow the inode limit.
      Skip(prefix.empty() ? "." : prefix,
           fmt::format("directory with more than {} entries", kMaxDirEntries));
      return Ok();
    }
    for (const std::string& name : *names) {
      const std::string rel = prefix + name;
      if (++visited_ > kMaxEntriesVisited) {
        if (!stopped_)
          Skip(rel, fmt::format("the walk stopped after {} entries", kMaxEntriesVisited));
        stopped_ = true;
        return Ok();
      }
      if (!IsCleanName(name)) {
        Skip(prefix + EscapeName(name), "name has control characters or is not valid UTF-8");
        continue;
      }
      struct stat st;
      if (::fstatat(src_dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT) continue;
        return ErrnoError("stat artifact {}", rel);
      }
      switch (st.st_mode & S_IFMT) {
        case S_IFREG:
          SBX_TRY(CopyFile(src_dir, dest_dir, name, rel, st));
          break;
        case S_IFDIR:
          SBX_TRY(EnterDir(src_dir, dest_dir, name, rel, depth));
          break;
        case S_IFLNK:
          Skip(rel, "symbolic link (not followed)");
          break;
        case S_IFIFO:
          Skip(rel, "fifo (not opened)");
          break;
        case S_IFSOCK:
          Skip(rel, "socket");
          break;
        case S_IFCHR:
        case S_IFBLK:
          Skip(rel, "device node");
          break;
        default:
          Skip(rel, "unsupported file type");
      }
    }
    return Ok();
  }

 private:
  void Skip(std::string path, std::string reason) {
    if (out_->skipped.size() >= ArtifactList::kMaxSkippedListed) {
      ++out_->skipped_unlisted;
      return;
    }
    out_->skipped.push_back({std::move(path), std::move(reason)});
  }

  Status EnterDir(int src_dir, int dest_dir, const std::string& name, const std::string& rel,
                  int depth) {
    if (depth + 1 > limits_.max_depth) {
      Skip(rel, fmt::format("directory nested deeper than {} levels", limits_.max_depth));
      return Ok();
    }
    UniqueFd sub(OpenBeneath(src_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, true));
    if (!sub) {
      if (errno == ENOENT) return Ok();
      if (errno == ELOOP || errno == ENOTDIR || errno == EXDEV) {
        Skip(rel, "changed while being collected");
        return Ok();
      }
      return ErrnoError("open artifact directory {}", rel);
    }
    if (::mkdirat(dest_dir, name.c_str(), 0755) < 0 && errno != EEXIST) {
      return ErrnoError("mkdir {}", rel);
    }
    UniqueFd dest_sub(OpenBeneath(dest_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, true));
    if (!dest_sub) return ErrnoError("open destination directory {}", rel);
    return Walk(sub.get(), dest_sub.get(), rel + "/", depth + 1);
  }

  Status CopyFile(int src_dir, int dest_dir, const std::string& name, const std::string& rel,
                  const struct stat& st) {
    if (out_->files.size() >= limits_.max_files) {
      Skip(rel, fmt::format("over the limit of {} files", limits_.max_files));
      return Ok();
    }
    const uint64_t left = max_total_ - out_->total_bytes;
    if (static_cast<uint64_t>(st.st_size) > left) {
      Skip(rel, fmt::format("over the artifacts quota of {} bytes", max_total_));
      return Ok();
    }
    // O_NONBLOCK: should the entry have been swapped for a fifo, the open does not wait for a
    // writer; the fstat below then refuses it.
    UniqueFd in(OpenBeneath(src_dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, true));
    struct stat now;
    if (!in || ::fstat(in.get(), &now) < 0 || !S_ISREG(now.st_mode)) {
      Skip(rel, "changed while being collected");
      return Ok();
    }
    UniqueFd out(::openat(dest_dir, name.c_str(),
                          O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (!out) {
      if (errno == EEXIST) {
        return Error{ErrorCode::kAlreadyExists,
                     EEXIST,
                     fmt::format("artifact {} already exists in the destination", rel),
                     {}};
      }
      return ErrnoError("create artifact copy {}", rel);
    }
    Sha256Hasher hasher;
    uint64_t copied = 0;
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(in.get(), buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("read artifact {}", rel);
      }
      if (n == 0) break;
      if (copied + static_cast<uint64_t>(n) > left) {
        // It grew past the quota since the stat.
        out.reset();
        ::unlinkat(dest_dir, name.c_str(), 0);
        Skip(rel, fmt::format("over the artifacts quota of {} bytes", max_total_));
        return Ok();
      }
      std::string_view chunk(buf, static_cast<size_t>(n));
      hasher.Update(chunk);
      SBX_TRY(WriteAll(out.get(), chunk));
      copied += static_cast<uint64_t>(n);
    }
    out_->files.push_back({rel, copied, DigestHex(hasher.Final())});
    out_->total_bytes += copied;
    return Ok();
  }

  const ArtifactLimits& limits_;
  const uint64_t max_total_;
  ArtifactList* out_;
  uint64_t visited_ = 0;
  bool stopped_ = false;
};

// ---- diff ------------------------------------------------------------------------------------

constexpr size_t kMaxDiffFileBytes = 2u << 20;  // larger files show as "Binary files … differ"
// Line-comparison steps for one Diff() call; past them, files are diffed as whole replacements.
constexpr uint64_t kDiffWorkBudget = 200'000'000;
constexpr size_t kMaxChanges = 100000;
constexpr int kMaxDiffDepth = 128;
constexpr size_t kFooterReserve = 160;  // room kept for the line that says what was left out

struct Change {
  enum Kind { kDeleted = 0, kAdded = 1, kModified = 2 };
  std::string path;
  Kind kind;
};

bool IsWhiteout(const struct stat& st) {
  return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

bool IsOpaque(int dir_fd) {
  char v = 0;
  return ::fgetxattr(dir_fd, "trusted.overlay.opaque", &v, 1) == 1 && v == 'y';
}

// Finds what changed by walking the upper layer against the lower one (the workspace).
class ChangeFinder {
 public:
  Status Walk(int upper_dir, int lower_dir, const std::string& prefix, int depth) {
    auto names = ListDir(upper_dir, kMaxDirEntries);
    if (!names.ok()) {
      if (names.error().code != ErrorCode::kResourceExhausted) return std::move(names).error();
      capped_ = true;  // a directory of more entries than any diff shows
      return Ok();
    }
    for (const std::string& name : *names) {
      if (Full()) return Ok();
      const std::string rel = prefix + name;
      struct stat st;
      if (::fstatat(upper_dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT) continue;
        return ErrnoError("stat {}", rel);
      }
      struct stat lst;
      bool has_lower =
          lower_dir >= 0 && ::fstatat(lower_dir, name.c_str(), &lst, AT_SYMLINK_NOFOLLOW) == 0;

      if (IsWhiteout(st)) {
        if (has_lower) SBX_TRY(AddLower(lower_dir, name, rel, lst, depth, /*gone=*/true));
        continue;
      }
      if (S_ISDIR(st.st_mode)) {
        UniqueFd usub(OpenBeneath(upper_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, true));
        if (!usub && errno == EACCES) {
          // Read with the sandbox user's rights: a directory it made unreadable is said, not
          // silently dropped, and does not cost the rest of the diff.
          if (unreadable_++ == 0) first_unreadable_ = rel;
          continue;
        }
        if (!usub) return ErrnoError("open {}", rel);
        UniqueFd lsub;
        if (has_lower) {
          if (S_ISDIR(lst.st_mode) && !IsOpaque(usub.get())) {
            // A merged directory. A mount point inside the workspace is not part of the lower
            // layer (overlayfs takes one mount): its contents are not compared.
            lsub.reset(OpenBeneath(lower_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, true));
          } else {
            // A lower file replaced by a directory, or a lower directory replaced by an opaque
            // one: everything below the lower entry is gone (the directory itself stays).
            SBX_TRY(AddLower(lower_dir, name, rel, lst, depth, /*gone=*/false));
          }
        }
        if (!has_lower || !S_ISDIR(lst.st_mode)) added_dirs_.push_back(rel);
        if (depth + 1 > kMaxDiffDepth) {
          ++too_deep_;
          continue;
        }
        SBX_TRY(Walk(usub.get(), lsub.get(), rel + "/", depth + 1));
        continue;
      }
      if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
        if (has_lower && (S_ISREG(lst.st_mode) || S_ISLNK(lst.st_mode))) {
          Add(rel, Change::kModified);
        } else {
          if (has_lower) SBX_TRY(AddLower(lower_dir, name, rel, lst, depth, /*gone=*/true));
          Add(rel, Change::kAdded);
        }
        continue;
      }
      // A fifo, socket or device the run made: not content; a lower file it replaced is gone.
      if (has_lower) SBX_TRY(AddLower(lower_dir, name, rel, lst, depth, /*gone=*/true));
    }
    return Ok();
  }

  std::vector<Change>& changes() { return changes_; }
  // Directories of the upper layer where the lower one had none, and lower directories that are
  // gone whole (not those an opaque directory of the same name replaced), in walk order.
  const std::vector<std::string>& added_dirs() const { return added_dirs_; }
  const std::vector<std::string>& removed_dirs() const { return removed_dirs_; }
  bool capped() const { return capped_; }
  size_t too_deep() const { return too_deep_; }
  // Directories of the upper layer the sandbox user cannot read (it made them so): how many,
  // and the first one met.
  size_t unreadable() const { return unreadable_; }
  const std::string& first_unreadable() const { return first_unreadable_; }

 private:
  // Counts one more entry looked at; true once the changes or the entries are at their caps:
  // past them, nothing more is read.
  bool Full() {
    if (++visited_ > kMaxEntriesVisited) capped_ = true;
    return capped_;
  }

  void Add(const std::string& path, Change::Kind kind) {
    if (changes_.size() >= kMaxChanges) {
      capped_ = true;
      return;
    }
    changes_.push_back({path, kind});
  }

  // The lower entry `name` (a file, or a directory with every file below it) is deleted; a
  // directory itself too when `gone`.
  Status AddLower(int lower_dir, const std::string& name, const std::string& rel,
                  const struct stat& lst, int depth, bool gone) {
    if (S_ISREG(lst.st_mode) || S_ISLNK(lst.st_mode)) {
      Add(rel, Change::kDeleted);
      return Ok();
    }
    if (!S_ISDIR(lst.st_mode)) return Ok();
    if (gone) removed_dirs_.push_back(rel);
    if (depth + 1 > kMaxDiffDepth) {
      ++too_deep_;
      return Ok();
    }
    UniqueFd sub(OpenBeneath(lower_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, true));
    if (!sub) return Ok();  // a mount point, or gone: not part of the lower layer
    auto names = ListDir(sub.get(), kMaxDirEntries);
    if (!names.ok()) {
      if (names.error().code != ErrorCode::kResourceExhausted) return std::move(names).error();
      capped_ = true;
      return Ok();
    }
    for (const std::string& child : *names) {
      if (Full()) return Ok();
      struct stat st;
      if (::fstatat(sub.get(), child.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
      SBX_TRY(AddLower(sub.get(), child, rel + "/" + child, st, depth + 1, /*gone=*/true));
    }
    return Ok();
  }

  std::vector<Change> changes_;
  std::vector<std::string> added_dirs_;
  std::vector<std::string> removed_dirs_;
  bool capped_ = false;
  size_t too_deep_ = 0;
  uint64_t visited_ = 0;
  size_t unreadable_ = 0;
  std::string first_unreadable_;
};

struct Loaded {
  std::string content;
  DiffSide side;
};

// One side of a change, read beneath `root` without following symlinks. A file that cannot be
// read whole (too large, or gone) is marked too_large and shows as binary.
Loaded Load(int root, const std::string& rel) {
  Loaded l;
  l.side.too_large = true;
  UniqueFd path_fd(OpenBeneath(root, rel, O_PATH | O_NOFOLLOW));
  struct stat st;
  if (!path_fd || ::fstat(path_fd.get(), &st) < 0) return l;
  l.side.mode = GitMode(st.st_mode);
  if (S_ISLNK(st.st_mode)) {
    char buf[4096];
    ssize_t n = ::readlinkat(path_fd.get(), "", buf, sizeof buf);
    if (n < 0) return l;
    l.content.assign(buf, static_cast<size_t>(n));
  } else if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) <= kMaxDiffFileBytes) {
    UniqueFd fd(OpenBeneath(root, rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
    struct stat now;
    if (!fd || ::fstat(fd.get(), &now) < 0 || !S_ISREG(now.st_mode)) return l;
    bool truncated = false;
    auto data = internal::ReadUpTo(fd.get(), kMaxDiffFileBytes, &truncated);
    if (!data.ok() || truncated) return l;
    l.content = std::move(*data);
  } else {
    return l;
  }
  l.side.too_large = false;
  l.side.content = l.content;
  return l;
}

std::string Render(int lower_root, int upper_root, const Change& c, uint64_t* work) {
  std::optional<Loaded> old_file;
  std::optional<Loaded> new_file;
  if (c.kind != Change::kAdded) old_file = Load(lower_root, c.path);
  if (c.kind != Change::kDeleted) new_file = Load(upper_root, c.path);
  // `side.content` views `content`: re-point after the moves into the optionals.
  std::optional<DiffSide> old_side;
  std::optional<DiffSide> new_side;
  if (old_file) {
    old_side = old_file->side;
    old_side->content = old_file->content;
  }
  if (new_file) {
    new_side = new_file->side;
    new_side->content = new_file->content;
  }
  return GitFileDiff(c.path, old_side, new_side, work);
}

// Whether a modified file really differs (a copy-up may have changed nothing), without diffing.
bool Differs(int lower_root, int upper_root, const std::string& path) {
  Loaded a = Load(lower_root, path);
  Loaded b = Load(upper_root, path);
  return a.side.too_large || b.side.too_large || a.side.mode != b.side.mode ||
         a.content != b.content;
}

}  // namespace

Result<ArtifactList> RunMounts::CollectArtifacts(const std::string& dest_dir,
                                                 const ArtifactLimits& limits) const {
  if (torn_down_ || !artifacts_fd_) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "the run's mounts are torn down; collect artifacts before Teardown");
  }
  const uint64_t max_total = limits.max_total_bytes != 0 ? limits.max_total_bytes : quota_;
  UniqueFd src(OpenBeneath(artifacts_fd_.get(), ".", O_RDONLY | O_DIRECTORY));
  if (!src) return ErrnoError("open the artifacts tmpfs of {}", run_dir_);
  // Most runs leave nothing: then there is no dest_dir either.
  if (auto any = ListDir(src.get(), 1); any.ok() && any->empty()) return ArtifactList{};
  if (::mkdir(dest_dir.c_str(), 0755) < 0 && errno != EEXIST) {
    return ErrnoError("mkdir {}", dest_dir);
  }
  UniqueFd dest(::open(dest_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dest) return ErrnoError("open {}", dest_dir);

  ArtifactList list;
  ArtifactCollector collector(limits, max_total, &list);
  SBX_TRY(collector.Walk(src.get(), dest.get(), "", 0));
  std::sort(list.files.begin(), list.files.end(),
            [](const ArtifactFile& a, const ArtifactFile& b) { return a.path < b.path; });
  std::sort(list.skipped.begin(), list.skipped.end(),
            [](const SkippedArtifact& a, const SkippedArtifact& b) { return a.path < b.path; });
  return list;
}

Result<std::string> RunMounts::Diff(size_t max_bytes) const {
  if (!has_workspace_ || mode_ != WorkspaceMode::kCopyOnWrite) return std::string();
  if (torn_down_ || !upper_fd_ || !lower_fd_) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "the run's mounts are torn down; take the diff before Teardown");
  }
  // The sandbox user's rights, on a thread of its own: setfsuid/setfsgid and the raw setgroups
  // syscall change the calling thread's credentials only (glibc's wrappers would change every
  // thread's). Moving the filesystem uid off 0 also clears the file capabilities
  // (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, …) from the thread's effective set
  // (capabilities(7)); CAP_SYS_ADMIN stays, which reading trusted.overlay.* needs.
  Result<std::string> out = std::string();
  std::thread reader([&] {
    ::syscall(SYS_setgroups, 0, nullptr);
    ::syscall(SYS_setfsgid, sandbox_gid_);
    ::syscall(SYS_setfsuid, sandbox_uid_);
    if (static_cast<uid_t>(::syscall(SYS_setfsuid, -1)) != sandbox_uid_ ||
        static_cast<gid_t>(::syscall(SYS_setfsgid, -1)) != sandbox_gid_) {
      out = MakeError(ErrorCode::kInternal, "cannot take the sandbox user's ids to read the diff");
      return;
    }
    out = DiffAsSandboxUser(max_bytes);
  });
  reader.join();
  return out;
}

Result<std::string> RunMounts::DiffAsSandboxUser(size_t max_bytes) const {
  UniqueFd lower(OpenBeneath(lower_fd_.get(), ".", O_RDONLY | O_DIRECTORY));
  if (!lower) return ErrnoError("open the workspace");

  ChangeFinder finder;
  SBX_TRY(finder.Walk(upper_fd_.get(), lower.get(), "", 0));
  std::vector<Change>& changes = finder.changes();
  std::sort(changes.begin(), changes.end(), [](const Change& a, const Change& b) {
    return a.path != b.path ? a.path < b.path : a.kind < b.kind;
  });

  std::string out;
  uint64_t work = kDiffWorkBudget;
  size_t i = 0;
  for (; i < changes.size(); ++i) {
    std::string block = Render(lower_fd_.get(), upper_fd_.get(), changes[i], &work);
    if (block.empty()) continue;  // copied up without a change (a chmod back, a touch)
    const bool last = i + 1 == changes.size() && !finder.capped() && finder.too_deep() == 0 &&
                      finder.unreadable() == 0;
    if (out.size() + block.size() + (last ? 0 : kFooterReserve) > max_bytes) break;
    out += block;
  }
  if (i < changes.size()) {
    size_t left = 1;
    for (size_t j = i + 1; j < changes.size(); ++j) {
      if (changes[j].kind != Change::kModified ||
          Differs(lower_fd_.get(), upper_fd_.get(), changes[j].path)) {
        ++left;
      }
    }
    out += fmt::format("... diff cut at {} bytes: {} more changed file{} left out\n", max_bytes,
                       left, left == 1 ? "" : "s");
  }
  if (finder.capped()) {
    out +=
        fmt::format("... more than {} changes (or {} entries looked at): the rest are left out\n",
                    kMaxChanges, kMaxEntriesVisited);
  }
  if (finder.unreadable() > 0) {
    out += fmt::format("... {} director{} the run made unreadable left out (first: {})\n",
                       finder.unreadable(), finder.unreadable() == 1 ? "y" : "ies",
                       QuoteGitPath("", finder.first_unreadable()));
  }
  if (finder.too_deep() > 0) {
    out += fmt::format("... {} director{} nested deeper than {} levels left out\n",
                       finder.too_deep(), finder.too_deep() == 1 ? "y" : "ies", kMaxDiffDepth);
  }
  return out;
}

namespace {

// ---- change sets ------------------------------------------------------------------------------

// Whether a ctime is after `start` (RunMounts::Prepare's fine clock). A file timestamp is never
// later than the change it records, so a change before the mounts were made never counts; one
// after them counts unless it fell in the same tick of the coarse clock file timestamps may
// come from (a few milliseconds, before the run's program starts).
bool After(const struct timespec& t, const struct timespec& start) {
  return t.tv_sec != start.tv_sec ? t.tv_sec > start.tv_sec : t.tv_nsec > start.tv_nsec;
}

// The lower entry at `rel` as the run found it.
Result<ChangeBase> BaseOf(int lower_root, const std::string& rel, const struct timespec& start) {
  ChangeBase b;
  UniqueFd path_fd(OpenBeneath(lower_root, rel, O_PATH | O_NOFOLLOW));
  struct stat st;
  if (!path_fd) {
    if (errno == ENOENT) return b;
    return ErrnoError("open the workspace's {}", EscapeName(rel));
  }
  if (::fstat(path_fd.get(), &st) < 0)
    return ErrnoError("stat the workspace's {}", EscapeName(rel));
  b.changed_during_run = After(st.st_ctim, start);
  if (S_ISDIR(st.st_mode)) {
    b.kind = ChangeBase::Kind::kDir;
  } else if (S_ISLNK(st.st_mode)) {
    b.kind = ChangeBase::Kind::kSymlink;
    char buf[4096];
    ssize_t n = ::readlinkat(path_fd.get(), "", buf, sizeof buf);
    if (n < 0) return ErrnoError("readlink the workspace's {}", EscapeName(rel));
    b.target.assign(buf, static_cast<size_t>(n));
  } else if (S_ISREG(st.st_mode)) {
    b.kind = ChangeBase::Kind::kFile;
    b.mode = st.st_mode & 07777;
    UniqueFd fd(OpenBeneath(lower_root, rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
    if (!fd) return ErrnoError("open the workspace's {}", EscapeName(rel));
    uint64_t size = 0;
    auto digest = internal::HashFd(fd.get(), -1, &size);
    if (!digest.ok()) return WithContext(std::move(digest).error(), EscapeName(rel));
    b.sha256 = std::move(*digest);
  } else {
    // A fifo, socket or device on the host: apply never touches one.
    b.kind = ChangeBase::Kind::kFile;
    b.mode = st.st_mode;
    b.sha256 = "(not a regular file)";
  }
  return b;
}

}  // namespace

Result<ChangeSet> RunMounts::SaveChanges(const std::string& dest_dir, uint64_t max_bytes) const {
  ChangeSet set;
  bool over = false;  // past max_bytes: the set is listed, its contents are not kept
  if (!has_workspace_ || mode_ != WorkspaceMode::kCopyOnWrite) return set;
  if (torn_down_ || !upper_fd_ || !lower_fd_) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "the run's mounts are torn down; keep the changes before Teardown");
  }
  UniqueFd lower(OpenBeneath(lower_fd_.get(), ".", O_RDONLY | O_DIRECTORY));
  if (!lower) return ErrnoError("open the workspace");
  ChangeFinder finder;
  SBX_TRY(finder.Walk(upper_fd_.get(), lower.get(), "", 0));
  if (finder.capped()) {
    set.refused.push_back({"", fmt::format("more than {} changes (or {} entries): the set is not "
                                           "complete",
                                           kMaxChanges, kMaxEntriesVisited)});
  }
  if (finder.too_deep() > 0) {
    set.refused.push_back(
        {"", fmt::format("{} director{} nested deeper than {} levels", finder.too_deep(),
                         finder.too_deep() == 1 ? "y" : "ies", kMaxDiffDepth)});
  }
  if (::mkdir(dest_dir.c_str(), 0700) < 0) {
    if (errno == EEXIST) {
      return MakeError(ErrorCode::kAlreadyExists, "{} exists already", dest_dir);
    }
    return ErrnoError("mkdir {}", dest_dir);
  }
  UniqueFd dest(::open(dest_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dest) return ErrnoError("open {}", dest_dir);
  if (::mkdirat(dest.get(), "blobs", 0700) < 0) return ErrnoError("mkdir {}/blobs", dest_dir);
  UniqueFd blobs(::openat(dest.get(), "blobs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!blobs) return ErrnoError("open {}/blobs", dest_dir);

  auto clean = [&](const std::string& rel) {
    if (IsCleanName(rel)) return true;
    set.refused.push_back({EscapeName(rel), "a name that is not clean UTF-8"});
    return false;
  };
  for (const std::string& rel : finder.removed_dirs()) {
    if (!clean(rel)) continue;
    ChangeEntry e{rel, ChangeEntry::Op::kRemoveDir};
    {
      auto base = BaseOf(lower.get(), rel, prepared_at_);
      if (!base.ok()) return std::move(base).error();
      e.base = std::move(*base);
    }
    set.entries.push_back(std::move(e));
  }
  for (const std::string& rel : finder.added_dirs()) {
    if (!clean(rel)) continue;
    struct stat st;
    UniqueFd d(OpenBeneath(upper_fd_.get(), rel, O_PATH | O_NOFOLLOW | O_DIRECTORY));
    if (!d || ::fstat(d.get(), &st) < 0) return ErrnoError("stat the run's {}", EscapeName(rel));
    ChangeEntry e{rel, ChangeEntry::Op::kMakeDir};
    e.mode = st.st_mode & 0777;
    set.entries.push_back(std::move(e));
  }
  size_t next_blob = 0;
  for (const Change& c : finder.changes()) {
    if (!clean(c.path)) continue;
    if (c.kind == Change::kDeleted) {
      ChangeEntry e{c.path, ChangeEntry::Op::kDelete};
      {
        auto base = BaseOf(lower.get(), c.path, prepared_at_);
        if (!base.ok()) return std::move(base).error();
        e.base = std::move(*base);
      }
      set.entries.push_back(std::move(e));
      continue;
    }
    UniqueFd path_fd(OpenBeneath(upper_fd_.get(), c.path, O_PATH | O_NOFOLLOW));
    struct stat st;
    if (!path_fd || ::fstat(path_fd.get(), &st) < 0) {
      return ErrnoError("stat the run's {}", EscapeName(c.path));
    }
    if (S_ISLNK(st.st_mode)) {
      set.refused.push_back({c.path,
                             "a symbolic link the run made: apply writes regular files "
                             "and directories only"});
      continue;
    }
    ChangeEntry e{c.path, ChangeEntry::Op::kWrite};
    e.mode = st.st_mode & 0777;
    if (c.kind == Change::kModified) {
      {
        auto base = BaseOf(lower.get(), c.path, prepared_at_);
        if (!base.ok()) return std::move(base).error();
        e.base = std::move(*base);
      }
    }
    UniqueFd in(
        OpenBeneath(upper_fd_.get(), c.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
    struct stat now;
    if (!in || ::fstat(in.get(), &now) < 0 || !S_ISREG(now.st_mode)) {
      return ErrnoError("open the run's {}", EscapeName(c.path));
    }
    if (over || set.total_bytes + static_cast<uint64_t>(now.st_size) > max_bytes) {
      // The run's directory is not for what a sandbox wants kept: past the bound, nothing more
      // is copied, and the set is refused (diff.patch still shows the changes).
      if (!over) {
        set.refused.push_back({"", fmt::format("the changes hold more than {} bytes, the most a "
                                               "run keeps to apply (artifacts_quota)",
                                               max_bytes)});
      }
      over = true;
      e.size = static_cast<uint64_t>(now.st_size);
      set.entries.push_back(std::move(e));
      continue;
    }
    e.blob = fmt::format("blobs/{}", next_blob);
    UniqueFd out(::openat(blobs.get(), std::to_string(next_blob).c_str(),
                          O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out) return ErrnoError("create {}/{}", dest_dir, e.blob);
    auto digest = internal::HashFd(in.get(), out.get(), &e.size);
    if (!digest.ok()) return WithContext(std::move(digest).error(), EscapeName(c.path));
    e.sha256 = std::move(*digest);
    if (e.base.kind == ChangeBase::Kind::kFile && e.base.sha256 == e.sha256 &&
        e.base.mode == e.mode) {
      // Copied up without a change (a touch, a chmod back): nothing to apply.
      out.reset();
      ::unlinkat(blobs.get(), std::to_string(next_blob).c_str(), 0);
      continue;
    }
    ++next_blob;
    set.total_bytes += e.size;
    set.entries.push_back(std::move(e));
  }
  std::stable_sort(set.entries.begin(), set.entries.end(),
                   [](const ChangeEntry& a, const ChangeEntry& b) { return a.path < b.path; });
  if (over) {
    // A set that is not applied keeps no content.
    blobs.reset();
    SBX_TRY(internal::RemoveTree(dest.get(), "blobs"));
  }
  SBX_TRY(StoreChangeSet(dest_dir, set));
  return set;
}

}  // namespace sbx::supervisor
