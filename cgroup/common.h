// Internal to sbx_cgroup: what the v2 and hybrid drivers share. Not part of the public API.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "cgroup/cgroup.h"
#include "cgroup/cgroup_fs.h"

namespace sbx::cgroup::internal {

using Clock = std::chrono::steady_clock;

std::string JoinPath(std::string_view dir, std::string_view name);
// The directory holding `path` ("/a/b" -> "/a").
std::string DirName(std::string_view path);
Status ValidateParent(const std::string& parent);
Status ValidateName(const std::string& name);

// A driver's hold on its parent cgroup. Every driver using a parent holds a shared flock(2) on
// the parent's unified directory for as long as it lives; the parent is removed only under the
// exclusive lock, taken without waiting, so only by its last user and never from under another
// (a `sandboxd exec` next to another one, or next to the daemon). Only the parent directories a
// sandboxd made are removed: one that was there before (an administrator's, with limits of its
// own) stays. Who made which is noted on the unified parent (the extended attribute
// user.sandboxd.made, one path per line), so the last user removes them even when another made
// them; where the attribute cannot be set, a driver removes only what it made itself.
class ParentLease {
 public:
  // Makes `unified_parent` when missing and takes the shared lock on it, making it again when
  // the last user of a parent that was there removed it in between.
  static Result<ParentLease> Acquire(CgroupFs& fs, const std::string& unified_parent);

  // Notes that the driver made `dir` (a v1 parent).
  void NoteMade(const std::string& dir);
  // When this is the parent's only user now: removes those of `dirs` (the driver's parent
  // directories, in order: the unified one last) that a sandboxd made and that are empty. Ends
  // the lease.
  void Release(CgroupFs& fs, const std::vector<std::string>& dirs);

 private:
  ParentLease(UniqueFd fd, std::string unified)
      : fd_(std::move(fd)), unified_(std::move(unified)) {}
  UniqueFd fd_;
  std::string unified_;
  std::vector<std::string> made_;
};

// Whitespace-separated words ("cpu memory pids\n").
std::vector<std::string> Words(std::string_view text);
// The value of a "key value" line (cgroup.events, cpu.stat, memory.events, memory.oom_control).
std::optional<uint64_t> FindKeyedValue(std::string_view text, std::string_view key);
// A file holding one unsigned number (cpuacct.usage, memory.peak).
Result<uint64_t> ParseNumberFile(std::string_view text, const std::string& path);

// "cpu", "memory", "pids" for the limits that are set.
std::vector<std::string> LimitingControllers(const Limits& limits);

// Waits until the "key value" line of the cgroup.events file at `events_path` reads `want`,
// sleeping in poll(POLLPRI): kernfs notifies pollers when cgroup.events changes
// (Documentation/admin-guide/cgroup-v2.rst, "cgroup.events"). Fails after `deadline`.
Status WaitForEvent(CgroupFs& fs, const std::string& events_path, std::string_view key,
                    uint64_t want, Clock::time_point deadline);

// SIGKILLs every process listed in cgroup.procs of `dir` and its sub-cgroups, then waits on pidfds
// until they have exited, and repeats until a pass finds the cgroups empty (bounded by a number
// of passes and by `deadline`). A missing `dir` counts as empty.
Status KillListedProcesses(CgroupFs& fs, const std::string& dir, Clock::time_point deadline);

// Kills everything in the cgroup2 directory `dir`: cgroup.kill, else freeze, kill, thaw.
Status KillUnified(CgroupFs& fs, const std::string& dir, Clock::time_point deadline);

// Removes `dir` and any sub-cgroups below it, deepest first. A missing `dir` counts as removed.
Status RemoveCgroupTree(CgroupFs& fs, const std::string& dir);

// Makes `writes` in order; `dir_for(controller)` is the cgroup directory in that controller's
// hierarchy. Optional writes to missing files are skipped.
Status ApplyWrites(CgroupFs& fs, const std::vector<PlannedWrite>& writes,
                   const std::function<const std::string*(const std::string&)>& dir_for);

struct CgroupPaths {
  std::string unified;          // the cgroup's directory in the cgroup2 hierarchy
  std::vector<std::string> v1;  // its directories in distinct v1 hierarchies (hybrid only)
};

// Kill/Destroy and the accessors both drivers' cgroups share. Subclasses call Destroy() from their
// destructors (a base destructor cannot reach their overrides).
class CgroupBase : public Cgroup {
 public:
  CgroupBase(CgroupFs* fs, std::string name, CgroupPaths paths, UniqueFd unified_fd,
             std::vector<std::string> controllers, std::chrono::milliseconds timeout);

  int unified_dirfd() const override { return unified_fd_.get(); }
  Status Kill() override;
  Status Destroy() override;
  const std::string& name() const override { return name_; }
  std::vector<std::string> controllers() const override { return controllers_; }

 protected:
  bool destroyed() const { return destroyed_; }
  Status CheckNotDestroyed() const;
  CgroupFs& fs() const { return *fs_; }
  const CgroupPaths& paths() const { return paths_; }

 private:
  Status RemoveV1Dir(const std::string& dir, Clock::time_point deadline);

  CgroupFs* fs_;
  std::string name_;
  CgroupPaths paths_;
  UniqueFd unified_fd_;
  std::vector<std::string> controllers_;
  std::chrono::milliseconds timeout_;
  bool destroyed_ = false;
};

Result<std::unique_ptr<Driver>> OpenV2Driver(const DriverOptions& options, const HostInfo& host);
Result<std::unique_ptr<Driver>> OpenHybridDriver(const DriverOptions& options,
                                                 const HostInfo& host);

}  // namespace sbx::cgroup::internal
