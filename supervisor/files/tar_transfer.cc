// WriteTar and ExtractTar: the tar format (tar_format.h) joined to the sandbox's root.
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "base/dir.h"
#include "base/fs.h"
#include "supervisor/files/internal.h"
#include "supervisor/files/tar.h"

namespace sbx::files {

using internal::FsCredsGuard;
using internal::FsError;

namespace {

constexpr size_t kChunk = 64 * 1024;
constexpr size_t kMaxSkipped = 100;

void NoteSkipped(TarStats* stats, const std::string& rel, std::string_view why) {
  if (stats->skipped.size() < kMaxSkipped) stats->skipped.push_back(rel + ": " + std::string(why));
}

// File systems whose files are not data: a tar of "/" leaves them out.
bool IsPseudoFs(int fd) {
  struct statfs sfs;
  if (::fstatfs(fd, &sfs) < 0) return true;
  switch (static_cast<unsigned long>(sfs.f_type)) {
    case PROC_SUPER_MAGIC:
    case SYSFS_MAGIC:
    case DEVPTS_SUPER_MAGIC:
    case CGROUP_SUPER_MAGIC:
    case CGROUP2_SUPER_MAGIC:
    case DEBUGFS_MAGIC:
    case TRACEFS_MAGIC:
    case SECURITYFS_MAGIC:
    case BPF_FS_MAGIC:
    case PSTOREFS_MAGIC:
    case EFIVARFS_MAGIC:
    case SELINUX_MAGIC:
    case 0x19800202:  // mqueue (ipc/mqueue.c)
      return true;
    default:
      return false;
  }
}

// Every name of a directory (without "." and ".."), at most `max` (more: kResourceExhausted
// naming `what`).
Result<std::vector<std::string>> AllNames(int dir_fd, uint64_t max, std::string_view what) {
  auto names = ListDirNames(dir_fd, max);
  if (!names.ok() && names.error().code == ErrorCode::kResourceExhausted) {
    return MakeError(ErrorCode::kResourceExhausted, "'{}' has more than {} entries", what, max);
  }
  return names;
}

class TarOut {
 public:
  TarOut(const Limits& limits, const ByteSink& sink, std::string_view top)
      : limits_(limits), sink_(sink), top_(top) {}

  Status Count(uint64_t bytes) {
    if (++stats_.entries > limits_.max_tar_entries) {
      return MakeError(ErrorCode::kResourceExhausted, "'{}' has more than {} entries to pack", top_,
                       limits_.max_tar_entries);
    }
    if (bytes > limits_.max_tar_bytes - stats_.bytes) {
      return MakeError(ErrorCode::kResourceExhausted, "'{}' holds more than {} bytes to pack", top_,
                       limits_.max_tar_bytes);
    }
    stats_.bytes += bytes;
    return Ok();
  }

  // `opath` is O_PATH on a regular file of `size` bytes.
  Status File(int opath, const std::string& rel, const struct stat& st) {
    SBX_TRY(Count(static_cast<uint64_t>(st.st_size)));
    UniqueFd f(internal::Reopen(opath, O_RDONLY));
    if (!f) return FsError("open for reading", rel);
    TarEntry e{rel,
               TarType::kRegular,
               '0',
               st.st_mode & 07777u,
               static_cast<uint64_t>(st.st_size),
               st.st_mtim.tv_sec,
               {}};
    SBX_TRY(sink_(TarHeader(e)));
    // Exactly the size the header announced: a file that shrinks meanwhile is padded with
    // zeros, one that grows is cut (as GNU tar does, with a warning).
    std::string buf(kChunk, '\0');
    uint64_t off = 0;
    bool changed = false;
    while (off < e.size) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, e.size - off));
      size_t got = 0;
      if (!changed) {
        auto n = ReadAllAt(f.get(), buf.data(), want, off);
        if (!n.ok()) return WithContext(std::move(n).error(), rel);
        got = *n;
      }
      if (got < want) {
        changed = true;
        std::memset(buf.data() + got, 0, want - got);
      }
      SBX_TRY(sink_(std::string_view(buf.data(), want)));
      off += want;
    }
    if (changed) NoteSkipped(&stats_, rel, "shrank while it was packed; padded with zeros");
    size_t pad = TarPadding(e.size);
    if (pad > 0) SBX_TRY(sink_(std::string(pad, '\0')));
    return Ok();
  }

  Status Dir(int dir_fd, dev_t dev, const std::string& prefix, int depth) {
    auto names = AllNames(
        dir_fd, limits_.max_tar_entries - std::min(stats_.entries, limits_.max_tar_entries) + 1,
        top_);
    if (!names.ok()) return std::move(names).error();
    for (const std::string& name : *names) {
      std::string rel = prefix + name;
      UniqueFd o(::openat(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
      if (!o) {
        if (errno == ENOENT) continue;  // removed meanwhile
        return FsError("open", rel);
      }
      struct stat st;
      if (::fstat(o.get(), &st) < 0) return FsError("stat", rel);
      if (S_ISREG(st.st_mode)) {
        SBX_TRY(File(o.get(), rel, st));
      } else if (S_ISDIR(st.st_mode)) {
        if (st.st_dev != dev && IsPseudoFs(o.get())) {
          NoteSkipped(&stats_, rel, "a pseudo file system (proc, sysfs, …) is mounted there");
          continue;
        }
        if (depth + 1 > limits_.max_depth) {
          return MakeError(ErrorCode::kResourceExhausted,
                           "'{}' is nested more than {} directories deep", top_, limits_.max_depth);
        }
        SBX_TRY(Count(0));
        TarEntry e{rel, TarType::kDirectory, '5', st.st_mode & 07777u, 0, st.st_mtim.tv_sec, {}};
        SBX_TRY(sink_(TarHeader(e)));
        UniqueFd sub(internal::Reopen(o.get(), O_RDONLY | O_DIRECTORY));
        if (!sub) return FsError("open the directory", rel);
        SBX_TRY(Dir(sub.get(), st.st_dev, rel + "/", depth + 1));
      } else if (S_ISLNK(st.st_mode)) {
        char buf[PATH_MAX];
        // The link `o` holds (an empty path reads an O_PATH symlink itself): the name may
        // already be something else, swapped in by the sandbox since the fstat.
        ssize_t n = ::readlinkat(o.get(), "", buf, sizeof buf);
        if (n < 0) return FsError("read the link", rel);
        SBX_TRY(Count(0));
        TarEntry e{rel,
                   TarType::kSymlink,
                   '2',
                   0777,
                   0,
                   st.st_mtim.tv_sec,
                   std::string(buf, static_cast<size_t>(n))};
        SBX_TRY(sink_(TarHeader(e)));
      } else {
        NoteSkipped(
            &stats_, rel,
            std::string("a ") + FileTypeName(internal::TypeOf(st.st_mode)) + " is not packed");
      }
    }
    return Ok();
  }

  TarStats& stats() { return stats_; }

 private:
  const Limits& limits_;
  const ByteSink& sink_;
  std::string top_;
  TarStats stats_;
};

}  // namespace

Result<TarStats> WriteTar(const SandboxRoot& root, std::string_view path, const ByteSink& sink) {
  auto parts = internal::SplitPath(path, root.limits().max_path_bytes);
  if (!parts.ok()) return std::move(parts).error();
  FsCredsGuard creds(root.owner());
  SBX_TRY(creds.status());
  UniqueFd top(internal::OpenInRoot(root.fd(), internal::JoinPath(*parts), O_PATH));
  if (!top) return FsError("open", path);
  struct stat st;
  if (::fstat(top.get(), &st) < 0) return FsError("stat", path);
  TarOut out(root.limits(), sink, path);
  if (S_ISREG(st.st_mode)) {
    SBX_TRY(out.File(top.get(), parts->empty() ? "file" : parts->back(), st));
  } else if (S_ISDIR(st.st_mode)) {
    UniqueFd dir(internal::Reopen(top.get(), O_RDONLY | O_DIRECTORY));
    if (!dir) return FsError("open the directory", path);
    SBX_TRY(out.Dir(dir.get(), st.st_dev, "", 0));
  } else {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'{}' is a {}; only files and directories are packed", path,
                     FileTypeName(internal::TypeOf(st.st_mode)));
  }
  SBX_TRY(sink(TarTrailer()));
  return std::move(out.stats());
}

namespace {

// An entry's name as components below the extraction directory; empty for "./".
Result<std::vector<std::string>> EntryParts(const std::string& name, const Limits& limits) {
  if (name.empty()) return MakeError(ErrorCode::kInvalidArgument, "a tar entry without a name");
  if (name[0] == '/') {
    return MakeError(ErrorCode::kInvalidArgument,
                     "tar entry '{}' has an absolute name; entries must be relative", name);
  }
  if (name.find('\0') != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "a tar entry's name contains a NUL byte");
  }
  auto parts = internal::SplitPath(name, limits.max_path_bytes);
  if (!parts.ok()) {
    return MakeError(ErrorCode::kInvalidArgument, "tar entry '{}' is refused: {}", name,
                     parts.error().message);
  }
  if (parts->size() > static_cast<size_t>(limits.max_depth)) {
    return MakeError(ErrorCode::kResourceExhausted,
                     "tar entry '{}' is nested more than {} directories deep", name,
                     limits.max_depth);
  }
  return parts;
}

// The first pass: every entry checked before anything is written.
class Validator {
 public:
  explicit Validator(const Limits& limits) : limits_(limits) {}

  Status Check(const TarEntry& e) {
    if (++entries_ > limits_.max_tar_entries) {
      return MakeError(ErrorCode::kResourceExhausted, "the tar has more than {} entries",
                       limits_.max_tar_entries);
    }
    auto parts = EntryParts(e.name, limits_);
    if (!parts.ok()) return std::move(parts).error();
    if (parts->empty()) {
      if (e.type == TarType::kDirectory) return Ok();  // "./"
      return MakeError(ErrorCode::kInvalidArgument, "tar entry '{}' names the directory itself",
                       e.name);
    }
    std::string key = internal::JoinPath(*parts);
    for (size_t i = 1; i < parts->size(); ++i) {
      if (symlinks_.count(internal::JoinPath(*parts, 0, i))) {
        return MakeError(ErrorCode::kPermissionDenied,
                         "tar entry '{}' lies below a symlink the same tar made; refused", e.name);
      }
    }
    switch (e.type) {
      case TarType::kRegular:
        if (e.size > limits_.max_file_bytes) {
          return MakeError(ErrorCode::kResourceExhausted,
                           "tar entry '{}' is {} bytes; a file may have at most {}", e.name, e.size,
                           limits_.max_file_bytes);
        }
        if (e.size > limits_.max_tar_bytes - bytes_) {
          return MakeError(ErrorCode::kResourceExhausted, "the tar holds more than {} bytes",
                           limits_.max_tar_bytes);
        }
        bytes_ += e.size;
        Mark(key, &files_);
        return Ok();
      case TarType::kDirectory:
        Mark(key, nullptr);
        return Ok();
      case TarType::kSymlink: {
        SBX_TRY(CheckLinkTarget(e, parts->size() - 1));
        Mark(key, &symlinks_);
        return Ok();
      }
      case TarType::kHardLink: {
        auto target = EntryParts(e.link_target, limits_);
        if (!target.ok() || target->empty() || !files_.count(internal::JoinPath(*target))) {
          return MakeError(ErrorCode::kPermissionDenied,
                           "tar entry '{}' is a hard link to '{}', which is not a file earlier "
                           "in the same tar; refused",
                           e.name, e.link_target);
        }
        Mark(key, &files_);
        return Ok();
      }
      case TarType::kCharDevice:
      case TarType::kBlockDevice:
      case TarType::kFifo:
        return MakeError(ErrorCode::kPermissionDenied,
                         "tar entry '{}' is a device node or fifo; they are not extracted", e.name);
      case TarType::kOther:
        break;
    }
    return MakeError(ErrorCode::kInvalidArgument,
                     "tar entry '{}' has type '{}', which is not extracted (files, directories, "
                     "symlinks and hard links are)",
                     e.name, e.typeflag);
  }

 private:
  // A symlink may point anywhere at or below the extraction directory, by a relative path.
  Status CheckLinkTarget(const TarEntry& e, size_t dir_depth) {
    const std::string& t = e.link_target;
    if (t.empty() || t.find('\0') != std::string::npos || t.size() > PATH_MAX) {
      return MakeError(ErrorCode::kInvalidArgument, "tar entry '{}' is a symlink to nothing",
                       e.name);
    }
    if (t[0] == '/') {
      return MakeError(ErrorCode::kPermissionDenied,
                       "tar entry '{}' is a symlink to the absolute path '{}'; refused", e.name, t);
    }
    long depth = static_cast<long>(dir_depth);
    size_t i = 0;
    while (i <= t.size()) {
      size_t j = t.find('/', i);
      if (j == std::string::npos) j = t.size();
      std::string_view c(t.data() + i, j - i);
      i = j + 1;
      if (c.empty() || c == ".") continue;
      depth += c == ".." ? -1 : 1;
      if (depth < 0) {
        return MakeError(ErrorCode::kPermissionDenied,
                         "tar entry '{}' is a symlink to '{}', above the directory it is "
                         "extracted into; refused",
                         e.name, t);
      }
    }
    return Ok();
  }

  void Mark(const std::string& key, std::set<std::string>* set) {
    files_.erase(key);
    symlinks_.erase(key);
    if (set != nullptr) set->insert(key);
  }

  const Limits& limits_;
  uint64_t entries_ = 0;
  uint64_t bytes_ = 0;
  std::set<std::string> files_;
  std::set<std::string> symlinks_;
};

// Opens (creating where missing) the directory `parts[0..n)` below `dir`, following no symlink.
Result<UniqueFd> DirBeneath(int dir, const std::vector<std::string>& parts, size_t n,
                            const std::string& entry) {
  UniqueFd cur(::fcntl(dir, F_DUPFD_CLOEXEC, 0));
  if (!cur) return ErrnoError("dup a directory fd");
  for (size_t i = 0; i < n; ++i) {
    const char* c = parts[i].c_str();
    UniqueFd next(internal::OpenBeneathNoLinks(cur.get(), c, O_PATH | O_DIRECTORY));
    if (!next && errno == ENOENT) {
      if (::mkdirat(cur.get(), c, 0755) < 0 && errno != EEXIST) {
        return FsError("create a directory for tar entry", entry);
      }
      next = UniqueFd(internal::OpenBeneathNoLinks(cur.get(), c, O_PATH | O_DIRECTORY));
    }
    if (!next) {
      if (errno == ELOOP || errno == EXDEV) {
        return MakeError(ErrorCode::kPermissionDenied,
                         "a symlink stands where tar entry '{}' needs a directory; refused", entry);
      }
      return FsError("open a directory for tar entry", entry);
    }
    cur = std::move(next);
  }
  return cur;
}

// Makes `name` in `parent` with `make(tmp_name)` under a temporary name, then renames it over
// `name` (a file or link there is replaced; a directory is not).
template <typename MakeFn>
Status PlaceAtomically(int parent, const std::string& name, const std::string& entry, MakeFn make) {
  std::string tmp;
  for (int attempt = 0;; ++attempt) {
    tmp = internal::TempName("tar");
    if (make(tmp.c_str()) == 0) break;
    if (errno != EEXIST || attempt >= 8) return FsError("extract tar entry", entry);
  }
  if (::renameat(parent, tmp.c_str(), parent, name.c_str()) < 0) {
    Error e = FsError("extract tar entry", entry);
    ::unlinkat(parent, tmp.c_str(), 0);
    return e;
  }
  return Ok();
}

}  // namespace

Result<TarStats> ExtractTar(const SandboxRoot& root, std::string_view path,
                            const ByteSource& source, const ExtractOptions& options) {
  const Limits& limits = root.limits();
  auto parts = internal::SplitPath(path, limits.max_path_bytes);
  if (!parts.ok()) return std::move(parts).error();
  FsCredsGuard creds(root.owner());
  SBX_TRY(creds.status());
  std::string rel = internal::JoinPath(*parts);
  UniqueFd dir(internal::OpenInRoot(root.fd(), rel, O_PATH | O_DIRECTORY));
  if (!dir && errno == ENOENT && options.make_dir) {
    SBX_TRY(root.MakeDirectories(path));
    dir = UniqueFd(internal::OpenInRoot(root.fd(), rel, O_PATH | O_DIRECTORY));
  }
  if (!dir) return FsError("open the directory", path);

  // The spool: an unnamed file in the target directory (the sandbox's space, not the host's).
  UniqueFd spool(::openat(dir.get(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!spool && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    std::string tmp = internal::TempName("tar-spool");
    spool = UniqueFd(
        ::openat(dir.get(), tmp.c_str(), O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (spool) ::unlinkat(dir.get(), tmp.c_str(), 0);
  }
  if (!spool) return FsError("create a spool file in", path);

  // Pass 1: copy and check.
  const uint64_t spool_cap = limits.max_tar_bytes + (16u << 20);
  uint64_t spooled = 0;
  ByteSource tee = [&](char* buf, size_t n) -> Result<size_t> {
    auto r = source(buf, n);
    if (!r.ok() || *r == 0) return r;
    if (*r > spool_cap - spooled) {
      return MakeError(ErrorCode::kResourceExhausted,
                       "the tar stream is longer than {} bytes; nothing was extracted", spool_cap);
    }
    Status st = WriteAll(spool.get(), std::string_view(buf, *r));
    if (!st.ok()) return internal::FsErrorValue(st.error().sys_errno, "spool the tar in", path);
    spooled += *r;
    return r;
  };
  {
    TarReader reader(tee);
    Validator check(limits);
    TarEntry e;
    for (;;) {
      auto more = reader.Next(&e);
      if (!more.ok()) return std::move(more).error();
      if (!*more) break;
      SBX_TRY(check.Check(e));
    }
  }

  // Pass 2: extract from the spool.
  uint64_t off = 0;
  ByteSource from_spool = [&](char* buf, size_t n) -> Result<size_t> {
    auto r = ReadAllAt(spool.get(), buf, n, off);
    if (r.ok()) off += *r;
    return r;
  };
  TarReader reader(from_spool);
  TarStats stats;
  std::vector<std::pair<std::vector<std::string>, uint32_t>> dir_modes;
  TarEntry e;
  std::string buf(kChunk, '\0');
  for (;;) {
    auto more = reader.Next(&e);
    if (!more.ok()) return std::move(more).error();
    if (!*more) break;
    auto ep = EntryParts(e.name, limits);
    if (!ep.ok()) return std::move(ep).error();
    if (ep->empty()) continue;
    ++stats.entries;
    if (e.type == TarType::kDirectory) {
      auto d = DirBeneath(dir.get(), *ep, ep->size(), e.name);
      if (!d.ok()) return std::move(d).error();
      dir_modes.emplace_back(*ep, e.mode & 0777);
      continue;
    }
    auto parent = DirBeneath(dir.get(), *ep, ep->size() - 1, e.name);
    if (!parent.ok()) return std::move(parent).error();
    const std::string& name = ep->back();
    switch (e.type) {
      case TarType::kRegular: {
        auto up = internal_StartUpload(std::move(*parent), name, e.name, root.owner(),
                                       limits.max_file_bytes, e.mode & 0777, false);
        if (!up.ok()) return std::move(up).error();
        for (;;) {
          auto n = reader.ReadData(buf.data(), buf.size());
          if (!n.ok()) return std::move(n).error();
          if (*n == 0) break;
          SBX_TRY(up->Append(std::string_view(buf.data(), *n)));
        }
        SBX_TRY(up->SetModifiedTime(e.mtime * 1'000'000'000));
        SBX_TRY(up->Commit());
        stats.bytes += e.size;
        break;
      }
      case TarType::kSymlink:
        SBX_TRY(PlaceAtomically(parent->get(), name, e.name, [&](const char* tmp) {
          return ::symlinkat(e.link_target.c_str(), parent->get(), tmp);
        }));
        break;
      case TarType::kHardLink: {
        auto target = EntryParts(e.link_target, limits);
        if (!target.ok()) return std::move(target).error();
        UniqueFd tdir(internal::OpenBeneathNoLinks(
            dir.get(), internal::JoinPath(*target, 0, target->size() - 1), O_PATH | O_DIRECTORY));
        if (!tdir) return FsError("open the target of hard link", e.name);
        SBX_TRY(PlaceAtomically(parent->get(), name, e.name, [&](const char* tmp) {
          return ::linkat(tdir.get(), target->back().c_str(), parent->get(), tmp, 0);
        }));
        break;
      }
      default:
        // The first pass let nothing else through.
        return MakeError(ErrorCode::kInternal, "tar entry '{}' changed between passes", e.name);
    }
  }
  // Directory modes last, so that a read-only directory in the archive can still be filled.
  for (const auto& [dparts, mode] : dir_modes) {
    UniqueFd d(internal::OpenBeneathNoLinks(dir.get(), internal::JoinPath(dparts),
                                            O_RDONLY | O_DIRECTORY));
    if (!d || ::fchmod(d.get(), mode | S_IRWXU) < 0) {
      return FsError("set the mode of", internal::JoinPath(dparts));
    }
  }
  return stats;
}

}  // namespace sbx::files
