#include "supervisor/checkout/remove_tree.h"

#include <fcntl.h>
#include <linux/stat.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <set>
#include <utility>
#include <vector>

#include "base/dir.h"
#include "base/unique_fd.h"
#include "supervisor/checkout/path_util.h"

#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif

namespace sbx::supervisor::checkout {
namespace {

constexpr size_t kBatch = 1024;

struct Node {
  std::string name;  // under its parent
  dev_t dev = 0;
  ino_t ino = 0;
  std::set<std::string> kept;  // names under it that must stay (mount points, failures)
};

// The first failure and how many there were; the removal goes on past them.
struct Failures {
  int count = 0;
  Error first;
  void Add(Error e) {
    if (count++ == 0) first = std::move(e);
  }
};

struct Stat {
  mode_t mode = 0;
  dev_t dev = 0;
  ino_t ino = 0;
  bool mount_root = false;
};

Result<Stat> StatAt(int dir_fd, const char* name) {
  struct statx stx {};
  if (::statx(dir_fd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
              STATX_TYPE | STATX_MODE | STATX_INO, &stx) != 0) {
    return ErrnoError("statx {}", name);
  }
  Stat st;
  st.mode = stx.stx_mode;
  st.dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
  st.ino = stx.stx_ino;
  // STATX_ATTR_MOUNT_ROOT (Linux 5.8) also catches bind mounts from the same filesystem; a
  // different st_dev catches the rest on older kernels.
  st.mount_root = (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) != 0 &&
                  (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
  return st;
}

std::string Join(const std::string& base, const std::vector<Node>& stack, const Node& cur,
                 const std::string& name) {
  std::string out = base;
  for (size_t i = 1; i < stack.size(); ++i) out += "/" + stack[i].name;
  if (!stack.empty()) out += "/" + cur.name;
  return out + "/" + name;
}

// Lets the caller list and unlink in the directory open as `fd` (mode u+rwx).
Status MakeUsable(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoError("fstat");
  if ((st.st_mode & 0700) != 0700 && ::fchmod(fd, (st.st_mode & 07777) | 0700) != 0) {
    return ErrnoError("fchmod");
  }
  return Ok();
}

// Opens the directory `name` under dir_fd, making it searchable first when it is not.
Result<UniqueFd> OpenChildDir(int dir_fd, const std::string& name) {
  const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  UniqueFd fd(::openat(dir_fd, name.c_str(), flags));
  if (!fd && errno == EACCES) {
    // fchmodat with AT_SYMLINK_NOFOLLOW (glibc >= 2.32) refuses symlinks, so a directory
    // swapped for a symlink meanwhile is never followed.
    if (::fchmodat(dir_fd, name.c_str(), 0700, AT_SYMLINK_NOFOLLOW) != 0) {
      return ErrnoError("chmod {}", name);
    }
    fd.reset(::openat(dir_fd, name.c_str(), flags));
  }
  if (!fd) return ErrnoError("opening {}", name);
  return fd;
}

}  // namespace

Status RemoveTreeAt(int parent_fd, const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' is not a single path component", name);
  }
  auto root_st = StatAt(parent_fd, name.c_str());
  if (!root_st.ok()) {
    if (root_st.error().sys_errno == ENOENT) return Ok();
    return std::move(root_st).error();
  }
  if (!S_ISDIR(root_st->mode)) {
    return MakeError(ErrorCode::kInvalidArgument, "{} is not a directory (or is a symlink)", name);
  }
  if (root_st->mount_root) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "{} is a mount point; unmount it before removing the tree", name);
  }
  auto opened = OpenChildDir(parent_fd, name);
  if (!opened.ok()) return std::move(opened).error();
  UniqueFd cur = std::move(opened).value();
  struct stat check {};
  if (::fstat(cur.get(), &check) != 0) return ErrnoError("fstat {}", name);
  if (check.st_dev != root_st->dev || check.st_ino != root_st->ino) {
    return MakeError(ErrorCode::kAborted, "{} was replaced while it was being removed", name);
  }
  const dev_t root_dev = root_st->dev;

  Failures failures;
  std::vector<Node> stack;  // the ancestors of `node`, the tree's root first
  Node node{name, root_st->dev, root_st->ino, {}};
  for (;;) {
    if (Status s = MakeUsable(cur.get()); !s.ok()) {
      failures.Add(WithContext(std::move(s).error(), Join(name, stack, node, "")));
    }
    bool more = false;
    auto names = ListDirNames(cur.get(), node.kept.size() + kBatch, &more);
    if (!names.ok()) return WithContext(std::move(names).error(), Join(name, stack, node, ""));
    bool descended = false;
    bool removed = false;
    for (const std::string& n : *names) {
      if (node.kept.count(n) != 0) continue;
      auto st = StatAt(cur.get(), n.c_str());
      if (!st.ok()) {
        if (st.error().sys_errno == ENOENT) continue;
        failures.Add(WithContext(std::move(st).error(), Join(name, stack, node, n)));
        node.kept.insert(n);
        continue;
      }
      // A different st_dev is a mount only for directories: overlayfs reports the lower
      // filesystem's device for files. A file bind-mounted on an older kernel fails unlinkat
      // with EBUSY instead.
      if (st->mount_root || (S_ISDIR(st->mode) && st->dev != root_dev)) {
        failures.Add(MakeError(ErrorCode::kFailedPrecondition,
                               "{} is a mount point; unmount it, then remove the tree again",
                               Join(name, stack, node, n)));
        node.kept.insert(n);
        continue;
      }
      if (S_ISDIR(st->mode)) {
        auto child = OpenChildDir(cur.get(), n);
        struct stat cst {};
        if (child.ok() && ::fstat(child->get(), &cst) != 0) {
          child = ErrnoError("fstat {}", n);
        }
        if (!child.ok()) {
          failures.Add(WithContext(std::move(child).error(), Join(name, stack, node, n)));
          node.kept.insert(n);
          continue;
        }
        if (cst.st_dev != st->dev || cst.st_ino != st->ino) {
          return MakeError(ErrorCode::kAborted, "{} was replaced while it was being removed",
                           Join(name, stack, node, n));
        }
        stack.push_back(std::move(node));
        node = Node{n, st->dev, st->ino, {}};
        cur = std::move(child).value();
        descended = true;
        break;
      }
      if (::unlinkat(cur.get(), n.c_str(), 0) != 0 && errno != ENOENT) {
        failures.Add(ErrnoError("removing {}", Join(name, stack, node, n)));
        node.kept.insert(n);
        continue;
      }
      removed = true;
    }
    if (descended) continue;
    if (more || removed) continue;  // list again: what is left, or what did not fit

    // `node` holds nothing removable any more: go up and remove it.
    const bool keep = !node.kept.empty();
    if (stack.empty()) {
      cur.reset();
      if (!keep && ::unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
        failures.Add(ErrnoError("removing {}", name));
      }
      break;
    }
    UniqueFd up(::openat(cur.get(), "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct stat ust {};
    if (!up || ::fstat(up.get(), &ust) != 0) {
      return ErrnoError("opening the parent of {}", Join(name, stack, node, ""));
    }
    if (ust.st_dev != stack.back().dev || ust.st_ino != stack.back().ino) {
      return MakeError(ErrorCode::kAborted,
                       "{} was moved while its tree was being removed; stopped there",
                       Join(name, stack, node, ""));
    }
    std::string done = node.name;
    node = std::move(stack.back());
    stack.pop_back();
    cur = std::move(up);
    if (keep) {
      node.kept.insert(done);
    } else if (::unlinkat(cur.get(), done.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      failures.Add(ErrnoError("removing {}", Join(name, stack, node, done)));
      node.kept.insert(done);
    }
  }
  if (failures.count == 0) return Ok();
  Error e = std::move(failures.first);
  if (failures.count > 1) {
    e.message =
        fmt::format("{} (and {} more entries could not be removed)", e.message, failures.count - 1);
  }
  return e;
}

Status RemoveTree(const std::string& dir) {
  const auto [parent, name] = internal::SplitParent(dir);
  if (name.empty() || name == "." || name == "..") {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' does not name a directory to remove", dir);
  }
  UniqueFd parent_fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent_fd) {
    if (errno == ENOENT) return Ok();
    return ErrnoError("opening {}", parent);
  }
  Status s = RemoveTreeAt(parent_fd.get(), name);
  if (!s.ok()) return WithContext(std::move(s).error(), dir);
  return Ok();
}

}  // namespace sbx::supervisor::checkout
