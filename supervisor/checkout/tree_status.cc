#include "supervisor/checkout/tree_status.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <unordered_map>
#include <unordered_set>

#include "base/dir.h"
#include "base/unique_fd.h"
#include "supervisor/checkout/blob_hash.h"

namespace sbx::supervisor::checkout {
namespace {

std::string Join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "/" + name;
}

class Checker {
 public:
  Checker(const TreeManifest& manifest, const CheckCleanLimits& limits)
      : manifest_(manifest), limits_(limits), seen_(manifest.entries.size(), false) {
    for (size_t i = 0; i < manifest.entries.size(); ++i) {
      files_.emplace(manifest.entries[i].path, i);
      AddParents(manifest.entries[i].path);
    }
    for (const std::string& g : manifest.skipped) {
      gitlinks_.insert(g);
      AddParents(g);
    }
  }

  Status Walk(int fd, const std::string& prefix) {
    entered_.insert(prefix);
    const size_t budget = limits_.max_entries - std::min(looked_, limits_.max_entries);
    bool more = false;
    auto names = ListDirNames(fd, budget, &more);
    if (!names.ok()) return WithContext(std::move(names).error(), prefix);
    looked_ += names->size();
    if (more) status_.capped = true;
    for (const std::string& name : *names) {
      const std::string path = Join(prefix, name);
      struct stat st {};
      if (::fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;
        return ErrnoError("stat {}", path);
      }
      if (auto it = files_.find(path); it != files_.end()) {
        seen_[it->second] = true;
        auto differs = Differs(fd, name, st, manifest_.entries[it->second]);
        if (!differs.ok()) return WithContext(std::move(differs).error(), path);
        if (*differs) Report(status_.modified, path);
      } else if (gitlinks_.count(path) != 0) {
        gitlinks_seen_.insert(path);
        if (!S_ISDIR(st.st_mode)) {
          Report(status_.modified, path);
          continue;
        }
        auto child = OpenDir(fd, name, path);
        if (!child.ok()) return std::move(child).error();
        bool child_more = false;
        auto inside = ListDirNames(child->get(), 0, &child_more);
        if (!inside.ok()) return WithContext(std::move(inside).error(), path);
        if (child_more) Report(status_.untracked, path + "/");
      } else if (dirs_.count(path) != 0 && S_ISDIR(st.st_mode)) {
        auto child = OpenDir(fd, name, path);
        if (!child.ok()) return std::move(child).error();
        SBX_TRY(Walk(child->get(), path));
      } else {
        Report(status_.untracked, S_ISDIR(st.st_mode) ? path + "/" : path);
      }
    }
    if (!more) listed_.insert(prefix);
    return Ok();
  }

  TreeStatus Finish() {
    for (size_t i = 0; i < manifest_.entries.size(); ++i) {
      if (!seen_[i] && KnownMissing(manifest_.entries[i].path)) {
        Report(status_.deleted, manifest_.entries[i].path);
      }
    }
    for (const std::string& g : manifest_.skipped) {
      if (gitlinks_seen_.count(g) == 0 && KnownMissing(g)) Report(status_.deleted, g);
    }
    std::sort(status_.modified.begin(), status_.modified.end());
    std::sort(status_.deleted.begin(), status_.deleted.end());
    std::sort(status_.untracked.begin(), status_.untracked.end());
    return std::move(status_);
  }

 private:
  void AddParents(const std::string& path) {
    for (size_t pos = path.find('/'); pos != std::string::npos; pos = path.find('/', pos + 1)) {
      dirs_.insert(path.substr(0, pos));
    }
  }

  void Report(std::vector<std::string>& list, std::string path) {
    if (list.size() >= limits_.max_reported) {
      status_.capped = true;
      return;
    }
    list.push_back(std::move(path));
  }

  static Result<UniqueFd> OpenDir(int fd, const std::string& name, const std::string& path) {
    UniqueFd child(::openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!child) return ErrnoError("opening {}", path);
    return child;
  }

  // A path of the manifest not seen is deleted only when the walk listed its parent in full, and
  // every directory on the way there was either listed in full or found missing.
  bool KnownMissing(const std::string& path) const {
    if (listed_.count("") == 0) return false;
    for (size_t pos = path.find('/'); pos != std::string::npos; pos = path.find('/', pos + 1)) {
      const std::string dir = path.substr(0, pos);
      if (entered_.count(dir) == 0) return true;  // its listed parent had no such directory
      if (listed_.count(dir) == 0) return false;
    }
    return true;
  }

  static Result<bool> Differs(int dir_fd, const std::string& name, const struct stat& st,
                              const TreeEntry& entry) {
    if (entry.mode == kModeSymlink) {
      if (!S_ISLNK(st.st_mode)) return true;
      char buf[4096];
      const ssize_t n = ::readlinkat(dir_fd, name.c_str(), buf, sizeof(buf));
      if (n < 0) {
        if (errno == EINVAL || errno == ENOENT) return true;  // replaced meanwhile
        return ErrnoError("readlink");
      }
      const std::string_view target(buf, static_cast<size_t>(n));
      return target.size() != entry.size || GitBlobId(target) != entry.oid;
    }
    if (!S_ISREG(st.st_mode)) return true;
    const uint32_t mode = (st.st_mode & S_IXUSR) != 0 ? kModeExecutable : kModeFile;
    if (mode != entry.mode || static_cast<uint64_t>(st.st_size) != entry.size) return true;
    // O_NONBLOCK: a file swapped for a FIFO meanwhile does not block the open.
    UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd) {
      if (errno == ELOOP || errno == ENOENT || errno == EACCES) return true;
      return ErrnoError("opening");
    }
    struct stat now {};
    if (::fstat(fd.get(), &now) != 0) return ErrnoError("fstat");
    if (!S_ISREG(now.st_mode) || static_cast<uint64_t>(now.st_size) != entry.size) return true;
    auto id = GitBlobIdOfFd(fd.get(), entry.size);
    if (!id.ok()) {
      if (id.error().code == ErrorCode::kFailedPrecondition) return true;  // changed meanwhile
      return std::move(id).error();
    }
    return *id != entry.oid;
  }

  const TreeManifest& manifest_;
  const CheckCleanLimits& limits_;
  std::unordered_map<std::string, size_t> files_;
  std::unordered_set<std::string> gitlinks_;
  std::unordered_set<std::string> dirs_;
  std::vector<bool> seen_;
  std::unordered_set<std::string> gitlinks_seen_;
  std::unordered_set<std::string> entered_;
  std::unordered_set<std::string> listed_;
  size_t looked_ = 0;
  TreeStatus status_;
};

}  // namespace

Result<TreeStatus> CheckClean(const std::string& dir, const TreeManifest& manifest,
                              const CheckCleanLimits& limits) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return ErrnoError("opening the checkout {}", dir);
  Checker checker(manifest, limits);
  SBX_TRY(checker.Walk(fd.get(), ""));
  return checker.Finish();
}

}  // namespace sbx::supervisor::checkout
