// Watching a directory of the sandbox: created, modified, deleted and moved events, recursive,
// from inotify.
//
// The watched directory is resolved like every other path (files.h); each directory below it
// is opened from the watched directory's descriptor with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
// (a symlink swapped in is not followed, it is simply not watched) and handed to
// inotify_add_watch as /proc/self/fd/N: inotify takes only path names, and that name is our own
// descriptor's, resolved by the kernel to the very inode we opened, never a path the sandbox
// can redirect. Watches stay on the watched directory's mount (a directory where something
// else is mounted is not entered) and follow no symlink.
//
// Events name paths relative to the watched directory. A moved event has both names when the
// move stays inside the watched tree; a move out reads as deleted, a move in as created. A new
// directory is watched as soon as its creation is seen, and what was made in it before the
// watch took hold is reported as created then (so a created event can repeat for an entry made
// in that instant). Consecutive modified events for the same path are merged. A file written
// through this library (SandboxRoot::Write, an upload, a tar) reads as one modified event for its
// name, new or not: its hidden temporary name (".sbx-upload-" and 16 hex digits) never shows,
// nor do the writes to the unnamed file before it is linked in (inotify names those "#<inode>";
// modified events for a real file named "#<digits>" are therefore not reported either).
//
// Bounds: at most WatchLimits::max_watches directories (beyond it, one kOverflow event; the
// deeper directories go unwatched) and max_depth levels; at most max_events per Read; when the
// kernel's queue overflows (fs.inotify.max_queued_events), a kOverflow event: the client should
// list the tree again. Each Watcher holds one inotify instance, which counts against the host's
// fs.inotify.max_user_instances (128 by default) for the daemon's user.
//
// Not thread-safe: one Watcher is driven by one thread (or strand) at a time.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "supervisor/files/files.h"

namespace sbx::files {

enum class WatchEventType { kCreated, kModified, kDeleted, kMoved, kOverflow };
const char* WatchEventTypeName(WatchEventType type);  // "created", "modified", …

struct WatchEvent {
  WatchEventType type = WatchEventType::kCreated;
  std::string path;  // relative to the watched directory; for kMoved the new name
  std::string from;  // kMoved: the old name
  bool is_dir = false;
};

struct WatchLimits {
  size_t max_watches = 8192;
  size_t max_events = 4096;  // per Read
  int max_depth = 64;
};

class Watcher {
 public:
  // Starts watching `path` (a directory) and everything below it. kInvalidArgument when it is
  // not a directory; kResourceExhausted when the host's inotify limits are reached.
  static Result<std::unique_ptr<Watcher>> Open(const SandboxRoot& root, std::string_view path,
                                               const WatchLimits& limits = {});
  ~Watcher();

  // Readable (poll/epoll POLLIN, an Asio stream descriptor) when events may be waiting.
  int fd() const { return inotify_.get(); }
  // The events waiting now, without blocking (empty when none).
  Result<std::vector<WatchEvent>> Read();
  // The watched directory itself was deleted or moved away: no more events will come.
  bool ended() const { return ended_; }

 private:
  Watcher() = default;
  // Watches the directory `rel` below the top and everything in it; with `report`, every entry
  // found is reported as created.
  void AddTree(const std::string& rel, int depth, bool report);
  void Emit(WatchEvent e);
  void ForgetTree(const std::string& rel);
  void RenameTree(const std::string& from, const std::string& to);

  // The watched directory, opened again when a new directory below it is to be watched: a
  // descriptor held open would keep its inode alive and delay IN_DELETE_SELF until it closed.
  UniqueFd OpenTop() const;

  Owner owner_;
  WatchLimits limits_;
  UniqueFd root_;        // O_PATH on the sandbox's root
  std::string top_rel_;  // the watched directory below it
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  UniqueFd inotify_;
  std::map<int, std::string> paths_;  // watch descriptor → relative path ("" for the top)
  std::map<int, int> depths_;
  std::vector<WatchEvent> out_;
  bool overflow_reported_ = false;
  bool ended_ = false;
  // An IN_MOVED_FROM waiting for its IN_MOVED_TO (the kernel queues the two together).
  struct PendingMove {
    uint32_t cookie = 0;
    std::string path;
    bool is_dir = false;
    bool hidden = false;  // the library's own temporary name
  };
  std::optional<PendingMove> pending_;
};

}  // namespace sbx::files
