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

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
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

// Pure: the cgroup mounts in a mount table (text of /proc/self/mounts). Fills unified_mount (the
// first cgroup2 mount) and v1_mounts (controllers named in each `cgroup` mount's options, e.g.
// "rw,relatime,cpu,cpuacct"; "name=systemd" and other options are not controllers). Octal escapes
// in mount points ("\040") are decoded. layout and v2_controllers are left empty.
HostInfo ParseMountTable(std::string_view mounts_text);

// Pure: the layout of a host whose mounts and v2_controllers are filled in.
//  - kV2: a cgroup2 mount whose root offers cpu, memory and pids, or a cgroup2 mount and no v1
//    cpu/cpuacct/memory/pids hierarchy (the v2 driver then says which controller is missing).
//  - kHybrid: a cgroup2 mount plus v1 hierarchies for (some of) cpu, cpuacct, memory, pids.
//  - kV1Only: v1 controllers and no cgroup2 mount (unsupported).
//  - kNone: no cgroup controller at all.
Layout ClassifyLayout(const HostInfo& host);

// Parses the mount table text, reads <unified mount>/cgroup.controllers and classifies the host.
// Fails when the unified root's cgroup.controllers cannot be read. The second form prefixes every
// path it reads from disk with `fs_prefix` (tests point it at a temp dir); the mount points in the
// returned HostInfo are the ones in the table, unprefixed.
Result<HostInfo> DetectHost(const std::string& mounts_text);
Result<HostInfo> DetectHost(const std::string& mounts_text, const std::string& fs_prefix);
Result<HostInfo> DetectHost();  // from /proc/self/mounts

struct Limits {
  std::optional<double> cpus;            // CPU quota in CPUs (0.5 = half a CPU)
  std::optional<uint64_t> memory_bytes;  // hard limit; swap is disabled whenever this is set
  std::optional<uint64_t> pids;          // maximum number of tasks
  bool operator==(const Limits&) const = default;
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
// Pure planners: limits -> the writes the v2 / v1 drivers make, in the order they must be made.
// Unset limits produce no writes. Fails with kInvalidArgument when
//  - cpus is not finite or outside [kMinCpus, kMaxCpus] (quota = cpus * kCpuPeriodUsec, at least
//    1000 µs, the kernel's minimum);
//  - memory_bytes is below kMinMemoryBytes;
//  - pids is outside [1, kMaxPids].
// v2: cpu.max "QUOTA 100000"; memory.max, memory.swap.max "0" (optional), memory.oom.group "1";
//     pids.max.
// v1: cpu.cfs_period_us, cpu.cfs_quota_us; memory.limit_in_bytes, memory.memsw.limit_in_bytes
//     (optional, after limit_in_bytes: the kernel rejects memsw below limit_in_bytes),
//     memory.swappiness "0" (optional); pids.max.
// IMPORTANT: on a v1 host without swap accounting (no memory.memsw.* files, kernel booted without
// swapaccount=1) swap is not limited; swappiness 0 only discourages it.
inline constexpr uint64_t kCpuPeriodUsec = 100000;
inline constexpr double kMinCpus = 0.01;
inline constexpr double kMaxCpus = 4096;
inline constexpr uint64_t kMinMemoryBytes = 4ull << 20;
inline constexpr uint64_t kMaxPids = 4194304;  // PID_MAX_LIMIT on 64-bit kernels
Result<std::vector<PlannedWrite>> PlanV2Writes(const Limits& limits);
Result<std::vector<PlannedWrite>> PlanV1Writes(const Limits& limits);

struct Usage {
  uint64_t cpu_usec = 0;
  uint64_t memory_peak_bytes = 0;  // 0 when the host does not report a peak
  uint64_t oom_kills = 0;          // memory.events oom_kill (v2) / memory.oom_control oom_kill (v1)
  // Now, where the host reports it: v2 memory.current and pids.current (their controllers
  // enabled for the cgroup); hybrid: the v1 memory.usage_in_bytes and pids.current of the
  // sandbox's v1 cgroups, which exist only for the limits it sets. nullopt otherwise.
  std::optional<uint64_t> memory_current_bytes;
  std::optional<uint64_t> pids_current;
  // Block I/O since the cgroup was made: v2 io.stat's rbytes and wbytes summed over devices,
  // where the io controller is enabled for the cgroup (the driver enables it when the host
  // offers it). Block devices only: tmpfs, pipes and reads served by the page cache do not
  // count. nullopt elsewhere (hybrid hosts account it in v1 blkio, which sandboxes do not join).
  std::optional<uint64_t> io_read_bytes;
  std::optional<uint64_t> io_write_bytes;
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
  // Kills every process in the cgroup and its descendants: cgroup.kill (Linux 5.14), falling back
  // to freeze-kill-thaw (cgroup.freeze, 5.2), then to SIGKILLing the pids in cgroup.procs until
  // none is left (bounded). On hybrid it also SIGKILLs anything left in the v1 directories. Does
  // not wait for cgroup.kill's victims to exit; Destroy() does.
  virtual Status Kill() = 0;
  // Kills what is left, waits (on cgroup.events, bounded) until empty, removes every directory.
  // Idempotent; after success the other methods fail (or do nothing). The drivers' cgroups call
  // it from their destructors when it has not succeeded yet; call it explicitly to see errors.
  virtual Status Destroy() = 0;
  virtual const std::string& name() const = 0;
  // For the sandbox's isolation report: "v2" / "hybrid", and the controllers limiting it (those
  // that enforce a limit given to Create: "cpu", "memory", "pids"; the same names on v1).
  virtual std::string version() const = 0;
  virtual std::vector<std::string> controllers() const = 0;
};

class CgroupFs;  // cgroup/cgroup_fs.h

struct DriverOptions {
  // Relative to each hierarchy root; created when missing (its own parent must exist). Path
  // components may not be empty, "." or "..".
  std::string parent = "sandboxd";
  // How long Kill() waits for processes it signals one by one, and Destroy() for the cgroup to
  // empty, before giving up with an error (the cgroup is then left in place; call Destroy again).
  std::chrono::milliseconds destroy_timeout{5000};
  // The filesystem the drivers use; null means the real one. Tests pass a fake that emulates
  // cgroupfs in a temp dir. Must outlive the driver and every Cgroup it creates.
  CgroupFs* fs = nullptr;
  // Hybrid only: the parent in a v1 controller's hierarchy ("memory" -> "system.slice/x/sandboxd")
  // where it differs from `parent` (a delegated daemon's own v1 cgroups). Same rules as `parent`.
  std::map<std::string, std::string> v1_parents;
};

// ---- A delegated subtree (systemd's Delegate=yes) ----
//
// A daemon started by systemd with Delegate=yes owns the cgroup it was started in. Its
// sandboxes then live below that cgroup, so that stopping the unit (KillMode=mixed) kills every
// one of them and the unit's resource limits cover them. cgroup v2 allows controllers to be
// enabled only in a cgroup without processes of its own, so the daemon first moves itself into
// a leaf "<own>/supervisor"; the sandboxes' parent is "<own>/<parent name>" beside it.

// The cgroups a process is in (text of /proc/PID/cgroup), paths relative to each hierarchy's
// root as the file gives them ("/system.slice/sandboxd.service").
struct OwnCgroups {
  std::string unified;                   // the "0::" line; "" when none
  std::map<std::string, std::string> v1;  // controller -> path, for v1 hierarchies
};
// Pure.
OwnCgroups ParseProcCgroup(std::string_view text);

struct DelegationPlan {
  std::string leaf;            // unified path the daemon moves into ("/…/supervisor")
  bool enable_controllers;     // v2: write "+cpu +memory +pids" to <own>/cgroup.subtree_control
  std::string own;             // the delegated cgroup ("/system.slice/sandboxd.service")
  DriverOptions driver;        // parent (and v1_parents) below the delegated cgroups
};
// Pure: where a delegated daemon puts itself and its sandboxes. `parent_name` is one path
// component or a relative path (the configured cgroup_parent). A v1 controller whose cgroup is
// the hierarchy's root (not delegated to the unit) keeps `parent_name` at the root, as without
// delegation. Fails with kFailedPrecondition when the process is in the root cgroup (nothing was
// delegated).
Result<DelegationPlan> PlanDelegation(const OwnCgroups& own, const HostInfo& host,
                                      const std::string& parent_name);
// Whether this looks like a unit's cgroup handed over by systemd: $INVOCATION_ID is set and the
// unified path ends in ".service" (or "/supervisor" below one: a daemon already moved).
bool LooksDelegatedBySystemd(const OwnCgroups& own, const char* invocation_id_env);
// Makes the leaf, moves the whole process (every thread) into it, and the processes of
// `companions` with it (the daemon's sandbox spawner), and, on v2, enables the controllers in
// the delegated cgroup. Needs write access to the delegated cgroup.
Status ApplyDelegation(const DelegationPlan& plan, const HostInfo& host,
                       std::span<const pid_t> companions = {});

class Driver {
 public:
  virtual ~Driver() = default;
  // Detects the layout and opens (creating if needed) the parent cgroup in every hierarchy used.
  // Fails with a message saying what to enable when a needed controller is missing.
  static Result<std::unique_ptr<Driver>> Open(const DriverOptions& options);
  static Result<std::unique_ptr<Driver>> Open(const DriverOptions& options, const HostInfo& host);

  // Creates "<parent>/<name>" and applies limits. On error nothing is left behind. `name` is one
  // path component of [A-Za-z0-9._:@-], at most 200 characters, not "." or ".."; a name that
  // already exists fails with kAlreadyExists and the existing cgroup is left alone.
  virtual Result<std::unique_ptr<Cgroup>> Create(const std::string& name, const Limits& limits) = 0;
  // Crash recovery: kills the processes of every cgroup under the parent and removes them (in
  // every hierarchy); returns their names. Call it at start, before Create(), from the only
  // daemon using this parent: it does not know which cgroups another user of the parent owns.
  virtual Result<std::vector<std::string>> RemoveLeftovers() = 0;
  virtual const HostInfo& host() const = 0;
};

}  // namespace sbx::cgroup
