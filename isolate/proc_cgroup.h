// The cgroup2 operations live processes need, on directory fds: a process's own cgroup below the
// sandbox's, delegation of cgroup.procs, kill, freeze, and waiting on cgroup.events. The daemon
// side only (they allocate and fail with Results).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sbx::isolate::internal {

using Deadline = std::chrono::steady_clock::time_point;

// Gives cgroup.procs of the cgroup2 directory `dir` to host uid/gid `owner` (see live.h on why
// that is safe).
Status DelegateProcs(int dir, uid_t owner, gid_t group);
// Makes the cgroup `name` below the cgroup2 directory `parent`, delegates its cgroup.procs, and
// returns an O_PATH fd of it (for CLONE_INTO_CGROUP). Nothing is left behind on failure.
Result<UniqueFd> MakeProcessCgroup(int parent, const std::string& name, uid_t owner, gid_t group);
// rmdir; a missing cgroup counts as removed. EBUSY while processes are left in it.
Status RemoveProcessCgroup(int parent, const std::string& name);

// The processes in cgroup.procs of `dir` (host pids).
Result<std::vector<pid_t>> ListProcs(int dir);
// The value of `key` in the cgroup.events file open at `events_fd` (read from offset 0, which
// also re-arms its POLLPRI notification).
Result<uint64_t> ReadEventsKey(int events_fd, std::string_view key);
// Sleeps in poll(POLLPRI) on cgroup.events of `dir` until `key` reads `want`; kernfs notifies on
// every change (cgroup-v2.rst, "cgroup.events"). Fails with kUnavailable at the deadline.
Status WaitEventsKey(int dir, std::string_view key, uint64_t want, Deadline deadline);

// SIGKILLs every process in `dir` and below: cgroup.kill (Linux 5.14), else freeze, kill the
// listed pids through pidfds, thaw (5.2). Does not wait for them to exit.
Status KillCgroup(int dir, Deadline deadline);
// cgroup.freeze, then waits until cgroup.events says "frozen <want>".
Status SetFrozen(int dir, bool frozen, Deadline deadline);

}  // namespace sbx::isolate::internal
