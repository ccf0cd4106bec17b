#include "supervisor/workspace/workspace_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "base/dir.h"
#include "base/fs.h"
#include "base/sha256.h"
#include "base/syscalls.h"
#include "supervisor/workspace/text.h"

namespace sbx::supervisor::internal {
namespace {

// Deeper directories are moved up to the top of the tree being removed, so that neither the
// stack nor the number of open fds grows with a tree the sandbox built.
constexpr int kMaxRemoveDepth = 48;

Status EmptyDir(int dir_fd, int top_fd, int depth, uint64_t* counter) {
  auto names = ListDir(dir_fd);
  if (!names.ok()) return std::move(names).error();
  for (const std::string& name : *names) {
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT) continue;
      return ErrnoError("stat {}", name);
    }
    if (!S_ISDIR(st.st_mode)) {
      if (::unlinkat(dir_fd, name.c_str(), 0) < 0 && errno != ENOENT) {
        return ErrnoError("unlink {}", name);
      }
      continue;
    }
    if (depth >= kMaxRemoveDepth) {
      // Set the subtree aside at the top; the caller's next pass removes it from there.
      for (;;) {
        std::string aside = fmt::format(".sbx-rm-{}", (*counter)++);
        if (::renameat2(dir_fd, name.c_str(), top_fd, aside.c_str(), RENAME_NOREPLACE) == 0) break;
        if (errno != EEXIST) return ErrnoError("rename {} up to remove it", name);
      }
      continue;
    }
    UniqueFd sub(OpenBeneath(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, true));
    if (!sub) {
      if (errno == EXDEV) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         "'{}' is still a mount point; unmount it before removing the tree", name);
      }
      return ErrnoError("open {}", name);
    }
    SBX_TRY(EmptyDir(sub.get(), top_fd, depth + 1, counter));
    if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT) {
      return ErrnoError("rmdir {}", name);
    }
  }
  return Ok();
}

}  // namespace

int OpenBeneath(int dirfd, const std::string& path, uint64_t flags, bool same_mount) {
  uint64_t resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  if (same_mount) resolve |= RESOLVE_NO_XDEV;
  return sys::Openat2(dirfd, path.c_str(), flags | O_CLOEXEC, 0, resolve);
}

Result<std::vector<std::string>> ListDir(int dir_fd, size_t max_entries) {
  return ListDirNames(dir_fd, max_entries);
}

Status RemoveTree(int parent_fd, const std::string& name) {
  struct stat st;
  if (::fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT) return Ok();
    return ErrnoError("stat {}", name);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(parent_fd, name.c_str(), 0) < 0 && errno != ENOENT) {
      return ErrnoError("unlink {}", name);
    }
    return Ok();
  }
  UniqueFd top(OpenBeneath(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, true));
  if (!top) {
    if (errno == EXDEV) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "'{}' is still a mount point; unmount it before removing the tree", name);
    }
    return ErrnoError("open {}", name);
  }
  uint64_t counter = 0;
  for (;;) {
    SBX_TRY(EmptyDir(top.get(), top.get(), 1, &counter));
    auto left = ListDir(top.get());
    if (!left.ok()) return std::move(left).error();
    if (left->empty()) break;  // else: subtrees set aside at the top by this pass
  }
  top.reset();
  if (::unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT) {
    return ErrnoError("rmdir {}", name);
  }
  return Ok();
}

Result<std::string> ReadUpTo(int fd, size_t max_bytes, bool* truncated) {
  std::string out;
  char buf[65536];
  *truncated = false;
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("read");
    }
    if (n == 0) break;
    size_t room = max_bytes - out.size();
    if (static_cast<size_t>(n) > room) {
      out.append(buf, room);
      *truncated = true;
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

bool IsCleanName(std::string_view s) {
  if (!IsValidUtf8(s)) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) return false;
    // C1 controls U+0080..U+009F are encoded as C2 80..C2 9F.
    if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) <= 0x9f) {
      return false;
    }
  }
  return true;
}

std::string EscapeName(std::string_view s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80             ? 1
               : (c & 0xe0) == 0xc0 ? 2
               : (c & 0xf0) == 0xe0 ? 3
               : (c & 0xf8) == 0xf0 ? 4
                                    : 0;
    std::string_view seq = n > 0 && i + n <= s.size() ? s.substr(i, n) : std::string_view();
    if (!seq.empty() && c != '\\' && IsCleanName(seq)) {
      out += seq;
      i += n;
    } else {
      out += fmt::format("\\x{:02x}", c);
      ++i;
    }
  }
  return out;
}

Result<std::string> HashFd(int fd, int copy_to, uint64_t* size) {
  Sha256Hasher hasher;
  std::string buf(1 << 20, '\0');
  *size = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("read");
    if (n == 0) break;
    hasher.Update(std::string_view(buf.data(), static_cast<size_t>(n)));
    *size += static_cast<uint64_t>(n);
    if (copy_to >= 0)
      SBX_TRY(WriteAll(copy_to, std::string_view(buf.data(), static_cast<size_t>(n))));
  }
  return DigestHex(hasher.Final());
}

}  // namespace sbx::supervisor::internal
