#include "api/sandboxctl/local_tar.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/dir.h"
#include "base/fs.h"
#include "base/unique_fd.h"
#include "supervisor/files/tar_format.h"

namespace sbx::ctl {
namespace {

using files::TarEntry;
using files::TarType;

constexpr int kMaxDepth = 256;
constexpr size_t kMaxNamesPerDir = 1'000'000;
constexpr uint64_t kMaxEntries = 1'000'000;
constexpr size_t kMaxSkipped = 100;

void Skip(LocalTarStats& stats, std::string what) {
  if (stats.skipped.size() < kMaxSkipped) stats.skipped.push_back(std::move(what));
}

class TreeWriter {
 public:
  TreeWriter(const std::function<Status(std::string_view)>& sink, LocalTarStats& stats)
      : sink_(sink), stats_(stats) {}

  // The entries below `dir_fd`, their names prefixed with `prefix` ("" or "sub/").
  Status Dir(int dir_fd, const std::string& prefix, int depth) {
    if (depth > kMaxDepth) {
      return MakeError(ErrorCode::kResourceExhausted,
                       "{}: more than {} levels of directories; copy a part of the tree", prefix,
                       kMaxDepth);
    }
    auto names = ListDirNames(dir_fd, kMaxNamesPerDir);
    if (!names.ok()) return WithContext(std::move(names).error(), prefix.empty() ? "." : prefix);
    for (const std::string& name : *names) {
      const std::string path = prefix + name;
      struct stat st {};
      if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // removed meanwhile
        return ErrnoError("cannot stat {}", path);
      }
      TarEntry e;
      e.name = path;
      e.mode = st.st_mode & 0777;
      e.mtime = st.st_mtim.tv_sec;
      if (S_ISDIR(st.st_mode)) {
        UniqueFd sub(
            ::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) return ErrnoError("cannot open directory {}", path);
        e.type = TarType::kDirectory;
        SBX_TRY(sink_(files::TarHeader(e)));
        ++stats_.entries;
        SBX_TRY(Dir(sub.get(), path + "/", depth + 1));
      } else if (S_ISREG(st.st_mode)) {
        SBX_TRY(File(dir_fd, name, path, e));
      } else if (S_ISLNK(st.st_mode)) {
        std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
        ssize_t n = ::readlinkat(dir_fd, name.c_str(), target.data(), target.size());
        if (n < 0) return ErrnoError("cannot read the link {}", path);
        target.resize(static_cast<size_t>(n));
        e.type = TarType::kSymlink;
        e.link_target = std::move(target);
        SBX_TRY(sink_(files::TarHeader(e)));
        ++stats_.entries;
      } else {
        Skip(stats_, path + ": not a file, directory or symbolic link");
      }
    }
    return Ok();
  }

 private:
  Status File(int dir_fd, const std::string& name, const std::string& path, TarEntry e) {
    UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd) return ErrnoError("cannot open {}", path);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return ErrnoError("cannot stat {}", path);
    if (!S_ISREG(st.st_mode)) {
      Skip(stats_, path + ": replaced by something other than a file while copying");
      return Ok();
    }
    e.type = TarType::kRegular;
    e.size = static_cast<uint64_t>(st.st_size);
    SBX_TRY(sink_(files::TarHeader(e)));
    uint64_t left = e.size;
    char buf[64 * 1024];
    while (left > 0) {
      ssize_t n = ::read(fd.get(), buf, static_cast<size_t>(std::min<uint64_t>(left, sizeof buf)));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError("cannot read {}", path);
      if (n == 0) {
        return MakeError(ErrorCode::kInternal, "{} shrank while it was copied; copy it again",
                         path);
      }
      SBX_TRY(sink_(std::string_view(buf, static_cast<size_t>(n))));
      left -= static_cast<uint64_t>(n);
    }
    SBX_TRY(sink_(std::string(files::TarPadding(e.size), '\0')));
    ++stats_.entries;
    stats_.bytes += e.size;
    return Ok();
  }

  const std::function<Status(std::string_view)>& sink_;
  LocalTarStats& stats_;
};

// An entry's name as components: no empty or "." ones; kInvalidArgument for an absolute name
// or a ".." component.
Result<std::vector<std::string>> NameComponents(const std::string& name) {
  if (!name.empty() && name.front() == '/') {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the archive names an absolute path '{}'; nothing was extracted", name);
  }
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    if (slash == std::string::npos) slash = name.size();
    std::string c = name.substr(start, slash - start);
    if (c == "..") {
      return MakeError(ErrorCode::kInvalidArgument,
                       "the archive names '{}', which climbs out with '..'; nothing was "
                       "extracted",
                       name);
    }
    if (!c.empty() && c != ".") out.push_back(std::move(c));
    start = slash + 1;
  }
  return out;
}

files::ByteSource PreadSource(int fd, uint64_t* offset) {
  return [fd, offset](char* buf, size_t n) -> Result<size_t> {
    for (;;) {
      ssize_t got = ::pread(fd, buf, n, static_cast<off_t>(*offset));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) return ErrnoError("cannot read the downloaded archive");
      *offset += static_cast<uint64_t>(got);
      return static_cast<size_t>(got);
    }
  };
}

// Opens (making what is missing) the directory of components [0, n) below `root`, one
// component at a time, following no symbolic link.
Result<UniqueFd> OpenDirBelow(int root, const std::vector<std::string>& comps, size_t n) {
  UniqueFd cur(::fcntl(root, F_DUPFD_CLOEXEC, 0));
  if (!cur) return ErrnoError("cannot duplicate a descriptor");
  std::string so_far;
  for (size_t i = 0; i < n; ++i) {
    so_far += (i == 0 ? "" : "/") + comps[i];
    if (::mkdirat(cur.get(), comps[i].c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoError("cannot make directory {}", so_far);
    }
    UniqueFd next(
        ::openat(cur.get(), comps[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next) {
      if (errno == ELOOP || errno == ENOTDIR) {
        return MakeError(ErrorCode::kPermissionDenied,
                         "{} is a symbolic link or not a directory; sandboxctl does not write "
                         "through it",
                         so_far);
      }
      return ErrnoError("cannot open directory {}", so_far);
    }
    cur = std::move(next);
  }
  return cur;
}

// Removes what is at `name` in `dir` unless it is a directory (a file or link an entry replaces).
Status RemoveNonDir(int dir, const std::string& name, const std::string& path) {
  struct stat st {};
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno == ENOENT ? Ok() : Status(ErrnoError("cannot stat {}", path));
  }
  if (S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kAlreadyExists, "{} is a directory; the archive has a file there",
                     path);
  }
  if (::unlinkat(dir, name.c_str(), 0) != 0) return ErrnoError("cannot replace {}", path);
  return Ok();
}

Status ExtractFile(files::TarReader& reader, int dir, const std::string& name, const TarEntry& e) {
  const mode_t mode = e.mode & 0777;
  UniqueFd fd(
      ::openat(dir, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd && errno == ELOOP) {
    // A symbolic link in the file's place: replace the link, never write through it.
    SBX_TRY(RemoveNonDir(dir, name, e.name));
    fd.reset(
        ::openat(dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  }
  if (!fd) return ErrnoError("cannot create {}", e.name);
  char buf[64 * 1024];
  for (;;) {
    auto n = reader.ReadData(buf, sizeof buf);
    if (!n.ok()) return std::move(n).error();
    if (*n == 0) break;
    SBX_TRY(WriteAll(fd.get(), std::string_view(buf, *n)));
  }
  const timespec times[2] = {{0, UTIME_OMIT}, {e.mtime, 0}};
  (void)::futimens(fd.get(), times);
  return Ok();
}

}  // namespace

Result<LocalTarStats> WriteLocalTar(int dir_fd,
                                    const std::function<Status(std::string_view)>& sink) {
  LocalTarStats stats;
  TreeWriter writer(sink, stats);
  SBX_TRY(writer.Dir(dir_fd, "", 0));
  SBX_TRY(sink(files::TarTrailer()));
  return stats;
}

Result<LocalTarStats> ExtractLocalTar(int archive_fd, int dir_fd) {
  // First pass: the whole archive is readable and every name stays below dir_fd.
  uint64_t offset = 0;
  {
    files::TarReader reader(PreadSource(archive_fd, &offset));
    TarEntry e;
    uint64_t entries = 0;
    for (;;) {
      auto more = reader.Next(&e);
      if (!more.ok()) {
        Error err = std::move(more).error();
        err.message =
            "the archive from the sandbox is damaged: " + err.message + "; nothing was extracted";
        return err;
      }
      if (!*more) break;
      if (++entries > kMaxEntries) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "the archive holds more than {} entries; copy a part of the tree",
                         kMaxEntries);
      }
      auto comps = NameComponents(e.name);
      if (!comps.ok()) return std::move(comps).error();
    }
  }
  LocalTarStats stats;
  offset = 0;
  files::TarReader reader(PreadSource(archive_fd, &offset));
  TarEntry e;
  for (;;) {
    auto more = reader.Next(&e);
    if (!more.ok()) return std::move(more).error();
    if (!*more) break;
    auto comps = NameComponents(e.name);
    if (!comps.ok()) return std::move(comps).error();
    if (comps->empty()) continue;  // the directory itself
    if (e.type != TarType::kDirectory && e.type != TarType::kRegular &&
        e.type != TarType::kSymlink) {
      Skip(stats, e.name + ": not a file, directory or symbolic link; left out");
      continue;
    }
    auto dir = OpenDirBelow(dir_fd, *comps, comps->size() - 1);
    if (!dir.ok()) return std::move(dir).error();
    const std::string& last = comps->back();
    if (e.type == TarType::kDirectory) {
      if (::mkdirat(dir->get(), last.c_str(), (e.mode & 0777) | 0700) != 0) {
        const int err = errno;
        struct stat st {};
        if (err != EEXIST) return ErrnoValueError(err, "cannot make directory {}", e.name);
        if (::fstatat(dir->get(), last.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISDIR(st.st_mode)) {
          return MakeError(ErrorCode::kAlreadyExists,
                           "{} exists and is not a directory; the archive has a directory there",
                           e.name);
        }
      }
    } else if (e.type == TarType::kRegular) {
      SBX_TRY(ExtractFile(reader, dir->get(), last, e));
      stats.bytes += e.size;
    } else {
      if (::symlinkat(e.link_target.c_str(), dir->get(), last.c_str()) != 0) {
        if (errno != EEXIST) return ErrnoError("cannot make the link {}", e.name);
        SBX_TRY(RemoveNonDir(dir->get(), last, e.name));
        if (::symlinkat(e.link_target.c_str(), dir->get(), last.c_str()) != 0) {
          return ErrnoError("cannot make the link {}", e.name);
        }
      }
    }
    ++stats.entries;
  }
  return stats;
}

}  // namespace sbx::ctl
