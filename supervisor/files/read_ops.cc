// Stat, Read and List: lookups that change nothing.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "supervisor/files/files.h"
#include "supervisor/files/internal.h"

namespace sbx::files {

using internal::FsCredsGuard;
using internal::FsError;

namespace {

// Reads a directory (an fd open O_RDONLY | O_DIRECTORY) into a sorted listing; each entry is
// lstat'ed relative to the directory (AT_SYMLINK_NOFOLLOW).
Result<DirListing> ListFd(int dir_fd, size_t max_entries, std::string_view path) {
  int dup = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return ErrnoError("dup a directory fd");
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    Error e = FsError("read the directory", path);
    ::close(dup);
    return e;
  }
  DirListing out;
  errno = 0;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    if (out.entries.size() >= max_entries) {
      out.truncated = true;
      break;
    }
    struct stat st;
    if (::fstatat(dir_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT) continue;  // removed since readdir saw it
      Error err = FsError("stat an entry of", path);
      ::closedir(d);
      return err;
    }
    FileInfo info = internal::InfoFrom(st, e->d_name);
    if (info.type == FileType::kSymlink) {
      char buf[PATH_MAX];
      ssize_t n = ::readlinkat(dir_fd, e->d_name, buf, sizeof buf);
      if (n > 0) info.link_target.assign(buf, static_cast<size_t>(n));
    }
    out.entries.push_back(std::move(info));
    errno = 0;
  }
  int read_errno = errno;
  ::closedir(d);
  if (read_errno != 0 && !out.truncated)
    return internal::FsErrorValue(read_errno, "read the directory", path);
  std::sort(out.entries.begin(), out.entries.end(),
            [](const FileInfo& a, const FileInfo& b) { return a.name < b.name; });
  return out;
}

}  // namespace

Result<FileInfo> SandboxRoot::Stat(std::string_view path) const {
  auto parts = internal::SplitPath(path, limits_.max_path_bytes);
  if (!parts.ok()) return std::move(parts).error();
  FsCredsGuard creds(owner_);
  SBX_TRY(creds.status());
  struct stat st;
  if (parts->empty()) {
    if (::fstat(root_.get(), &st) < 0) return FsError("stat", path);
    return internal::InfoFrom(st, "");
  }
  auto parent = internal::OpenParent(root_.get(), *parts, path);
  if (!parent.ok()) return std::move(parent).error();
  // The entry itself, held by a descriptor: what is stat'ed is what is read as a link, even
  // while the sandbox swaps a directory and a symlink at that name.
  UniqueFd entry(::openat(parent->dir.get(), parent->name.c_str(),
                          O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!entry || ::fstat(entry.get(), &st) < 0) return FsError("stat", path);
  FileInfo info = internal::InfoFrom(st, parent->name);
  if (info.type == FileType::kSymlink) {
    char buf[PATH_MAX];
    // readlinkat(2) of an O_PATH descriptor on a symlink with an empty path (Linux 2.6.39).
    ssize_t n = ::readlinkat(entry.get(), "", buf, sizeof buf);
    if (n < 0) return FsError("read the link", path);
    info.link_target.assign(buf, static_cast<size_t>(n));
  }
  return info;
}

Result<ReadResult> SandboxRoot::Read(std::string_view path) const {
  auto parts = internal::SplitPath(path, limits_.max_path_bytes);
  if (!parts.ok()) return std::move(parts).error();
  FsCredsGuard creds(owner_);
  SBX_TRY(creds.status());
  // O_PATH first: a fifo or device is looked at, never opened (no blocking, no driver open).
  UniqueFd opath(internal::OpenInRoot(root_.get(), internal::JoinPath(*parts), O_PATH));
  if (!opath) return FsError("open", path);
  struct stat st;
  if (::fstat(opath.get(), &st) < 0) return FsError("stat", path);
  ReadResult out;
  out.info = internal::InfoFrom(st, parts->empty() ? "" : parts->back());
  if (S_ISREG(st.st_mode)) {
    out.file = UniqueFd(internal::Reopen(opath.get(), O_RDONLY));
    if (!out.file) return FsError("open for reading", path);
    return out;
  }
  if (S_ISDIR(st.st_mode)) {
    UniqueFd dir(internal::Reopen(opath.get(), O_RDONLY | O_DIRECTORY));
    if (!dir) return FsError("open the directory", path);
    auto listing = ListFd(dir.get(), limits_.max_list_entries, path);
    if (!listing.ok()) return std::move(listing).error();
    out.listing = std::move(*listing);
    return out;
  }
  return MakeError(ErrorCode::kInvalidArgument, "'{}' is a {}, not a file or directory", path,
                   FileTypeName(out.info.type));
}

Result<DirListing> SandboxRoot::List(std::string_view path) const {
  auto parts = internal::SplitPath(path, limits_.max_path_bytes);
  if (!parts.ok()) return std::move(parts).error();
  FsCredsGuard creds(owner_);
  SBX_TRY(creds.status());
  // O_DIRECTORY is checked before anything is opened, so a fifo here fails with ENOTDIR.
  UniqueFd dir(
      internal::OpenInRoot(root_.get(), internal::JoinPath(*parts), O_RDONLY | O_DIRECTORY));
  if (!dir) return FsError("open the directory", path);
  return ListFd(dir.get(), limits_.max_list_entries, path);
}

}  // namespace sbx::files
