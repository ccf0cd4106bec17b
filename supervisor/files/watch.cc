// Recursive inotify watches (inotify(7)).
#include "supervisor/files/watch.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "supervisor/files/internal.h"

namespace sbx::files {

using internal::FsCredsGuard;
using internal::FsError;

namespace {

constexpr uint32_t kMask = IN_CREATE | IN_MODIFY | IN_ATTRIB | IN_DELETE | IN_MOVED_FROM |
                           IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_EXCL_UNLINK |
                           IN_ONLYDIR;

std::string Join(const std::string& dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  if (name.empty()) return dir;
  return dir + "/" + std::string(name);
}

bool Below(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

// The library's own temporary names (internal::TempName: ".sbx-upload-" or ".sbx-tar-" and 16
// hex digits): an atomic replacement shows as one modified event for the target, never as
// the hidden name.
bool Hidden(std::string_view name) {
  for (std::string_view prefix :
       {std::string_view(".sbx-upload-"), std::string_view(".sbx-tar-")}) {
    if (name.size() == prefix.size() + 16 && name.substr(0, prefix.size()) == prefix &&
        name.find_first_not_of("0123456789abcdef", prefix.size()) == std::string_view::npos) {
      return true;
    }
  }
  return false;
}

}  // namespace

const char* WatchEventTypeName(WatchEventType type) {
  switch (type) {
    case WatchEventType::kCreated:
      return "created";
    case WatchEventType::kModified:
      return "modified";
    case WatchEventType::kDeleted:
      return "deleted";
    case WatchEventType::kMoved:
      return "moved";
    case WatchEventType::kOverflow:
      return "overflow";
  }
  return "unknown";
}

Result<std::unique_ptr<Watcher>> Watcher::Open(const SandboxRoot& root, std::string_view path,
                                               const WatchLimits& limits) {
  auto parts = internal::SplitPath(path, root.limits().max_path_bytes);
  if (!parts.ok()) return std::move(parts).error();
  FsCredsGuard creds(root.owner());
  SBX_TRY(creds.status());
  std::unique_ptr<Watcher> w(new Watcher());
  w->owner_ = root.owner();
  w->limits_ = limits;
  w->root_ = UniqueFd(::fcntl(root.fd(), F_DUPFD_CLOEXEC, 0));
  if (!w->root_) return ErrnoError("dup the root descriptor");
  w->top_rel_ = internal::JoinPath(*parts);
  UniqueFd top(internal::OpenInRoot(root.fd(), w->top_rel_, O_RDONLY | O_DIRECTORY));
  if (!top) return FsError("open the directory to watch", path);
  struct stat st;
  if (::fstat(top.get(), &st) < 0) return FsError("stat", path);
  w->dev_ = st.st_dev;
  w->ino_ = st.st_ino;
  w->inotify_ = UniqueFd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!w->inotify_) {
    if (errno == EMFILE) {
      return MakeError(ErrorCode::kResourceExhausted,
                       "the host's inotify instances are used up "
                       "(fs.inotify.max_user_instances); close other watches or raise it");
    }
    return ErrnoError("inotify_init1");
  }
  std::string proc = "/proc/self/fd/" + std::to_string(top.get());
  int wd = ::inotify_add_watch(w->inotify_.get(), proc.c_str(), kMask);
  if (wd < 0) {
    if (errno == ENOSPC) {
      return MakeError(ErrorCode::kResourceExhausted,
                       "the host's inotify watches are used up (fs.inotify.max_user_watches)");
    }
    return FsError("watch", path);
  }
  w->paths_[wd] = "";
  w->depths_[wd] = 0;
  w->AddTree("", 0, false);
  w->out_.clear();  // nothing to report about what was there before
  return w;
}

Watcher::~Watcher() = default;

UniqueFd Watcher::OpenTop() const {
  UniqueFd top(internal::OpenInRoot(root_.get(), top_rel_, O_RDONLY | O_DIRECTORY));
  struct stat st;
  if (!top || ::fstat(top.get(), &st) < 0 || st.st_dev != dev_ || st.st_ino != ino_) {
    return UniqueFd();  // gone, or another directory by that name now
  }
  return top;
}

void Watcher::Emit(WatchEvent e) {
  if (out_.size() >= limits_.max_events) {
    if (out_.empty() || out_.back().type != WatchEventType::kOverflow) {
      out_.push_back(WatchEvent{WatchEventType::kOverflow, "", "", false});
    }
    return;
  }
  if (e.type == WatchEventType::kModified && !out_.empty() &&
      out_.back().type == WatchEventType::kModified && out_.back().path == e.path) {
    return;
  }
  out_.push_back(std::move(e));
}

void Watcher::AddTree(const std::string& rel, int depth, bool report) {
  UniqueFd dir = OpenTop();
  if (!dir) return;
  if (!rel.empty()) {
    dir = UniqueFd(internal::OpenBeneathNoLinks(dir.get(), rel, O_RDONLY | O_DIRECTORY));
    if (!dir) return;  // gone, or a symlink now: nothing to watch
    struct stat st;
    if (::fstat(dir.get(), &st) < 0 || st.st_dev != dev_) return;
    if (paths_.size() >= limits_.max_watches || depth > limits_.max_depth) {
      if (!overflow_reported_) {
        overflow_reported_ = true;
        Emit(WatchEvent{WatchEventType::kOverflow, rel, "", true});
      }
      return;
    }
    std::string proc = "/proc/self/fd/" + std::to_string(dir.get());
    int wd = ::inotify_add_watch(inotify_.get(), proc.c_str(), kMask);
    if (wd < 0) {
      if (!overflow_reported_) {
        overflow_reported_ = true;
        Emit(WatchEvent{WatchEventType::kOverflow, rel, "", true});
      }
      return;
    }
    paths_[wd] = rel;
    depths_[wd] = depth;
  }
  if (!dir) return;
  int dup = ::fcntl(dir.get(), F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return;
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    ::close(dup);
    return;
  }
  std::vector<std::pair<std::string, bool>> entries;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st;
      is_dir =
          ::fstatat(dir.get(), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    }
    entries.emplace_back(e->d_name, is_dir);
    if (entries.size() > limits_.max_events) break;
  }
  ::closedir(d);
  for (const auto& [name, is_dir] : entries) {
    std::string child = Join(rel, name);
    if (report) Emit(WatchEvent{WatchEventType::kCreated, child, "", is_dir});
    if (is_dir) AddTree(child, depth + 1, report);
  }
}

void Watcher::ForgetTree(const std::string& rel) {
  for (auto it = paths_.begin(); it != paths_.end();) {
    if (!it->second.empty() && Below(it->second, rel)) {
      ::inotify_rm_watch(inotify_.get(), it->first);
      depths_.erase(it->first);
      it = paths_.erase(it);
    } else {
      ++it;
    }
  }
}

void Watcher::RenameTree(const std::string& from, const std::string& to) {
  for (auto& [wd, p] : paths_) {
    if (!p.empty() && Below(p, from)) p = to + p.substr(from.size());
  }
}

Result<std::vector<WatchEvent>> Watcher::Read() {
  FsCredsGuard creds(owner_);
  SBX_TRY(creds.status());
  alignas(struct inotify_event) char buf[64 * 1024];
  auto flush_pending = [&] {
    if (!pending_) return;
    if (pending_->hidden) {
      pending_.reset();
      return;
    }
    Emit(WatchEvent{WatchEventType::kDeleted, pending_->path, "", pending_->is_dir});
    if (pending_->is_dir) ForgetTree(pending_->path);
    pending_.reset();
  };
  while (out_.size() < limits_.max_events && !ended_) {
    ssize_t n = ::read(inotify_.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        // The IN_MOVED_TO of a pending move would have been queued with it: none is coming,
        // so the entry left the watched tree.
        flush_pending();
        break;
      }
      return ErrnoError("read inotify events");
    }
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<struct inotify_event*>(p);
      p += sizeof(struct inotify_event) + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) {
        flush_pending();
        out_.push_back(WatchEvent{WatchEventType::kOverflow, "", "", false});
        continue;
      }
      auto it = paths_.find(ev->wd);
      if (ev->mask & IN_IGNORED) {
        if (it != paths_.end()) {
          depths_.erase(ev->wd);
          paths_.erase(it);
        }
        continue;
      }
      if (it == paths_.end()) continue;  // a watch already forgotten
      std::string dir = it->second;
      int depth = depths_[ev->wd];
      std::string_view name(ev->len > 0 ? ev->name : "");
      name = name.substr(0, std::strlen(name.data()));
      std::string path = Join(dir, name);
      bool is_dir = (ev->mask & IN_ISDIR) != 0;
      bool hidden = Hidden(name);
      if ((ev->mask & IN_MOVED_TO) && pending_ && pending_->cookie == ev->cookie) {
        if (pending_->hidden) {
          if (!hidden) Emit(WatchEvent{WatchEventType::kModified, path, "", is_dir});
          pending_.reset();
          continue;
        }
        Emit(WatchEvent{WatchEventType::kMoved, path, pending_->path, is_dir});
        if (is_dir) RenameTree(pending_->path, path);
        pending_.reset();
        continue;
      }
      flush_pending();
      if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
        if (dir.empty()) {
          Emit(WatchEvent{WatchEventType::kDeleted, "", "", true});
          ended_ = true;
        }
        continue;
      }
      if (ev->mask & IN_MOVED_FROM) {
        pending_ = PendingMove{ev->cookie, path, is_dir, hidden};
        continue;
      }
      if (hidden) continue;
      // Writes to an O_TMPFILE file (an upload in progress) are reported on its directory
      // under the kernel's name for it, "#<inode>".
      if ((ev->mask & (IN_MODIFY | IN_ATTRIB)) && name.size() > 1 && name[0] == '#' &&
          name.find_first_not_of("0123456789", 1) == std::string_view::npos) {
        continue;
      }
      if (ev->mask & (IN_CREATE | IN_MOVED_TO)) {
        Emit(WatchEvent{WatchEventType::kCreated, path, "", is_dir});
        if (is_dir) AddTree(path, depth + 1, true);
      } else if (ev->mask & (IN_MODIFY | IN_ATTRIB)) {
        Emit(WatchEvent{WatchEventType::kModified, path, "", is_dir});
      } else if (ev->mask & IN_DELETE) {
        Emit(WatchEvent{WatchEventType::kDeleted, path, "", is_dir});
      }
    }
  }
  std::vector<WatchEvent> events = std::move(out_);
  out_.clear();
  return events;
}

}  // namespace sbx::files
