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
