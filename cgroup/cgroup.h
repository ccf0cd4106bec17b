// Control groups for sandboxes: one interface, two drivers chosen at start.
//
//  - v2 driver: a pure cgroup v2 host (controllers cpu, memory, pids in the unified hierarchy).
//  - hybrid driver: cgroup v2 mounted (e.g. at /sys/fs/cgroup/unified) with no controllers, used
//    for tracking, CLONE_INTO_CGROUP and cgroup.kill; limits and accounting come from the v1
//    hierarchies (cpu, cpuacct, memory, pids).
//
// The driver owns one parent cgroup (DriverOptions::parent, relative to each hierarchy's root,
// default "sandboxd") and never writes outside it. Each sandbox gets a child cgroup
// "<parent>/<name>" that Destroy() removes. Requires root (or a delegated subtree).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sbx::cgroup {

enum class Layout { kV2, kHybrid, kV1Only, kNone };
const char* LayoutName(Layout l);  // "v2", "hybrid", "v1", "none"

struct HostInfo {
  Layout layout = Layout::kNone;
  std::string unified_mount;                     // cgroup2 mount point, "" when none
  std::map<std::string, std::string> v1_mounts;  // v1 controller name -> mount point
  std::vector<std::string> v2_controllers;       // cgroup.controllers at the unified root
};

// Reads the mount table (text of /proc/self/mounts) and the unified root's cgroup.controllers.
// `sysfs_root` prefixes paths read from disk (tests point it at a temp dir).
Result<HostInfo> DetectHost(const std::string& mounts_text);
Result<HostInfo> DetectHost();  // from /proc/self/mounts

struct Limits {
  std::optional<double> cpus;            // CPU quota in CPUs (0.5 = half a CPU)
  std::optional<uint64_t> memory_bytes;  // hard limit; swap is disabled whenever this is set
  std::optional<uint64_t> pids;          // maximum number of tasks
};

// One write a driver performs to apply limits: file relative to the sandbox's cgroup directory
// in the hierarchy of `controller` ("" means the unified hierarchy).
struct PlannedWrite {
  std::string controller;
  std::string file;
  std::string value;
  bool optional = false;  // skip silently when the file does not exist (e.g. memory.swap.max)
  bool operator==(const PlannedWrite&) const = default;
};
// Pure planners: limits -> the writes the v2 / v1 drivers make. Validates ranges.
Result<std::vector<PlannedWrite>> PlanV2Writes(const Limits& limits);
Result<std::vector<PlannedWrite>> PlanV1Writes(const Limits& limits);

struct Usage {
  uint64_t cpu_usec = 0;
  uint64_t memory_peak_bytes = 0;  // 0 when the host does not report a peak
  uint64_t oom_kills = 0;          // memory.events oom_kill (v2) / memory.oom_control oom_kill (v1)
};

// One sandbox's cgroup (a directory per hierarchy). Not thread-safe.
class Cgroup {
 public:
  virtual ~Cgroup() = default;
  // O_PATH|O_DIRECTORY fd of the cgroup2 directory: pass to clone3 as CLONE_INTO_CGROUP.
  virtual int unified_dirfd() const = 0;
  // Moves `pid` into the v1 controller hierarchies (hybrid); a no-op on v2. Call it before the
  // process runs untrusted code.
  virtual Status AttachV1(pid_t pid) = 0;
  virtual Result<Usage> ReadUsage() = 0;
  // Kills every process in the cgroup: cgroup.kill, falling back to freeze-kill-thaw.
  virtual Status Kill() = 0;
  // Kills what is left, waits (on cgroup.events, bounded) until empty, removes every directory.
  // Idempotent.
  virtual Status Destroy() = 0;
  virtual const std::string& name() const = 0;
  // For the sandbox's isolation report: "v2" / "hybrid", and the controllers limiting it.
  virtual std::string version() const = 0;
  virtual std::vector<std::string> controllers() const = 0;
};

struct DriverOptions {
  std::string parent = "sandboxd";  // relative to each hierarchy root; created when missing
};

class Driver {
 public:
  virtual ~Driver() = default;
  // Detects the layout and opens (creating if needed) the parent cgroup in every hierarchy used.
  // Fails with a message saying what to enable when a needed controller is missing.
  static Result<std::unique_ptr<Driver>> Open(const DriverOptions& options);
  static Result<std::unique_ptr<Driver>> Open(const DriverOptions& options, const HostInfo& host);

  // Creates "<parent>/<name>" and applies limits. On error nothing is left behind.
  virtual Result<std::unique_ptr<Cgroup>> Create(const std::string& name, const Limits& limits) = 0;
  virtual const HostInfo& host() const = 0;
};

}  // namespace sbx::cgroup
