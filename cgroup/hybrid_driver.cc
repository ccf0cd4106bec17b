// The hybrid driver: limits (and memory accounting) from the v1 cpu, memory and pids hierarchies,
// each used only by sandboxes that set its limit; tracking, CLONE_INTO_CGROUP, cgroup.kill and
// CPU time from a controller-less cgroup2 mount.
#include <fcntl.h>

#include <algorithm>
#include <array>

#include "cgroup/common.h"

namespace sbx::cgroup::internal {

namespace {

constexpr std::array<const char*, 3> kV1Controllers = {"cpu", "memory", "pids"};

// One v1 hierarchy; several controllers may share it (e.g. "cpu,cpuacct" mounted together).
struct Hierarchy {
  std::string mount;
  std::vector<std::string> controllers;
  std::string parent_dir;
};

class HybridCgroup final : public CgroupBase {
 public:
  HybridCgroup(CgroupFs* fs, std::string name, CgroupPaths paths, UniqueFd unified_fd,
               std::vector<std::string> controllers, std::chrono::milliseconds timeout,
               std::string memory_dir, std::string pids_dir = "")
      : CgroupBase(fs, std::move(name), std::move(paths), std::move(unified_fd),
                   std::move(controllers), timeout),
        memory_dir_(std::move(memory_dir)),
        pids_dir_(std::move(pids_dir)) {}
  ~HybridCgroup() override {
    if (!destroyed()) (void)Destroy();
  }

  Status AttachV1(pid_t pid) override {
    SBX_TRY(CheckNotDestroyed());
    for (const std::string& dir : paths().v1) {
      Status r = fs().Write(JoinPath(dir, "cgroup.procs"), std::to_string(pid));
      if (!r.ok()) {
        return WithContext(std::move(r).error(), fmt::format("moving pid {} into {}", pid, dir));
      }
    }
    return Ok();
  }

  Result<Usage> ReadUsage() override {
    SBX_TRY(CheckNotDestroyed());
    Usage u;
    // CPU time from the cgroup2 core's cpu.stat, which exists without any controller.
    const std::string stat_path = JoinPath(paths().unified, "cpu.stat");
    auto stat = fs().Read(stat_path);
    if (!stat.ok()) return std::move(stat).error();
    u.cpu_usec = FindKeyedValue(*stat, "usage_usec").value_or(0);
    if (!pids_dir_.empty()) {
      const std::string path = JoinPath(pids_dir_, "pids.current");
      if (auto text = fs().Read(path); text.ok()) {
        if (auto v = ParseNumberFile(*text, path); v.ok()) u.pids_current = *v;
      }
    }
    // Memory is accounted where it is limited: without a v1 memory cgroup there is no peak here
    // (callers fall back to the processes' own maxrss) and no cgroup OOM kill.
    if (memory_dir_.empty()) return u;
    const std::string peak_path = JoinPath(memory_dir_, "memory.max_usage_in_bytes");
    auto peak = fs().Read(peak_path);
    if (!peak.ok()) return std::move(peak).error();
    auto bytes = ParseNumberFile(*peak, peak_path);
    if (!bytes.ok()) return std::move(bytes).error();
    u.memory_peak_bytes = *bytes;
    // The "oom_kill" line of memory.oom_control arrived in Linux 4.13.
    auto oom = fs().Read(JoinPath(memory_dir_, "memory.oom_control"));
    if (!oom.ok()) return std::move(oom).error();
    u.oom_kills = FindKeyedValue(*oom, "oom_kill").value_or(0);
    const std::string usage_path = JoinPath(memory_dir_, "memory.usage_in_bytes");
    if (auto text = fs().Read(usage_path); text.ok()) {
      if (auto v = ParseNumberFile(*text, usage_path); v.ok()) u.memory_current_bytes = *v;
    }
    return u;
  }

  std::string version() const override { return "hybrid"; }

 private:
  std::string memory_dir_;
  std::string pids_dir_;
};

// The parents in the order they can be removed: the v1 ones, then the unified one.
std::vector<std::string> ParentDirsForRemoval(const std::string& unified_parent,
                                              const std::vector<Hierarchy>& hierarchies) {
  std::vector<std::string> dirs;
  for (const Hierarchy& h : hierarchies) dirs.push_back(h.parent_dir);
  dirs.push_back(unified_parent);
  return dirs;
}

class HybridDriver final : public Driver {
 public:
  HybridDriver(HostInfo host, CgroupFs* fs, std::string unified_parent,
               std::vector<Hierarchy> hierarchies, ParentLease lease,
               std::chrono::milliseconds timeout)
      : host_(std::move(host)),
        fs_(fs),
        unified_parent_(std::move(unified_parent)),
        hierarchies_(std::move(hierarchies)),
        lease_(std::move(lease)),
        timeout_(timeout) {}
  ~HybridDriver() override {
    lease_.Release(*fs_, ParentDirsForRemoval(unified_parent_, hierarchies_));
  }

  Result<std::unique_ptr<Cgroup>> Create(const std::string& name, const Limits& limits) override {
    SBX_TRY(ValidateName(name));
    auto writes = PlanV1Writes(limits);
    if (!writes.ok()) return std::move(writes).error();

    std::vector<std::string> created;
    auto fail = [&](Error e) -> Error {
      for (auto it = created.rbegin(); it != created.rend(); ++it) (void)fs_->RemoveDir(*it);
      return e;
    };
    auto make = [&](const std::string& dir) -> Status {
      Status made = fs_->MakeDir(dir);
      if (made.ok()) {
        created.push_back(dir);
        return Ok();
      }
      if (made.error().code == ErrorCode::kAlreadyExists) {
        return MakeError(ErrorCode::kAlreadyExists,
                         "cgroup {} already exists: a sandbox with this name is running or was "
                         "not destroyed",
                         dir);
      }
      return made;
    };

    CgroupPaths paths{JoinPath(unified_parent_, name), {}};
    if (Status r = make(paths.unified); !r.ok()) return fail(std::move(r).error());
    // Only the v1 hierarchies of the controllers that limit this sandbox: each costs a mkdir, a
    // migration and an rmdir per sandbox. Tracking, killing and CPU time need none of them.
    std::vector<std::string> needed = LimitingControllers(limits);
    std::vector<const Hierarchy*> used;
    std::string memory_dir, pids_dir;
    for (const Hierarchy& h : hierarchies_) {
      bool wanted = std::any_of(h.controllers.begin(), h.controllers.end(), [&](const std::string& c) {
        return std::find(needed.begin(), needed.end(), c) != needed.end();
      });
      if (!wanted) continue;
      used.push_back(&h);
      std::string dir = JoinPath(h.parent_dir, name);
      if (Status r = make(dir); !r.ok()) return fail(std::move(r).error());
      for (const std::string& c : h.controllers) {
        if (c == "memory") memory_dir = dir;
        if (c == "pids") pids_dir = dir;
      }
      paths.v1.push_back(std::move(dir));
    }
    auto dir_for = [&](const std::string& controller) -> const std::string* {
      for (size_t i = 0; i < used.size(); ++i) {
        const auto& cs = used[i]->controllers;
        if (std::find(cs.begin(), cs.end(), controller) != cs.end()) return &paths.v1[i];
      }
      return nullptr;
    };
    if (Status r = ApplyWrites(*fs_, *writes, dir_for); !r.ok()) {
      return fail(WithContext(std::move(r).error(), "cgroup " + name));
    }
    auto fd = fs_->Open(paths.unified, O_PATH | O_DIRECTORY);
    if (!fd.ok()) return fail(std::move(fd).error());
    return std::unique_ptr<Cgroup>(std::make_unique<HybridCgroup>(
        fs_, name, std::move(paths), std::move(fd).value(), LimitingControllers(limits), timeout_,
        std::move(memory_dir), std::move(pids_dir)));
  }

  Result<std::vector<std::string>> RemoveLeftovers() override {
    // Names from every hierarchy: a crash between two mkdirs of Create() leaves a v1 directory
    // without its unified one.
    std::vector<std::string> names;
    for (const std::string* parent : ParentDirs()) {
      auto listed = fs_->ListSubdirs(*parent);
      if (!listed.ok()) return std::move(listed).error();
      for (auto& n : *listed) {
        if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(std::move(n));
      }
    }
    for (const std::string& name : names) {
      CgroupPaths paths{JoinPath(unified_parent_, name), {}};
      if (auto missing = fs_->Open(paths.unified, O_PATH | O_DIRECTORY); !missing.ok()) {
        SBX_TRY(fs_->MakeDir(paths.unified));  // so that Destroy() can track and kill
      }
      for (const Hierarchy& h : hierarchies_) {
        std::string dir = JoinPath(h.parent_dir, name);
        if (fs_->Open(dir, O_PATH | O_DIRECTORY).ok()) paths.v1.push_back(std::move(dir));
      }
      auto fd = fs_->Open(paths.unified, O_PATH | O_DIRECTORY);
      if (!fd.ok()) return std::move(fd).error();
      HybridCgroup leftover(fs_, name, std::move(paths), std::move(fd).value(), {}, timeout_, "");
      SBX_TRY(leftover.Destroy());
    }
    return names;
  }

  const HostInfo& host() const override { return host_; }

 private:
  std::vector<const std::string*> ParentDirs() const {
    std::vector<const std::string*> out = {&unified_parent_};
    for (const Hierarchy& h : hierarchies_) out.push_back(&h.parent_dir);
    return out;
  }

  HostInfo host_;
  CgroupFs* fs_;
  std::string unified_parent_;
  std::vector<Hierarchy> hierarchies_;
  ParentLease lease_;
  std::chrono::milliseconds timeout_;
};

}  // namespace

Result<std::unique_ptr<Driver>> OpenHybridDriver(const DriverOptions& options,
                                                 const HostInfo& host) {
  if (host.unified_mount.empty()) {
    return MakeError(ErrorCode::kUnavailable,
                     "no cgroup2 filesystem is mounted; sandboxd needs one for tracking and "
                     "cgroup.kill (mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified)");
  }
  SBX_TRY(ValidateParent(options.parent));
  CgroupFs* fs = options.fs != nullptr ? options.fs : RealCgroupFs();

  std::vector<Hierarchy> hierarchies;
  for (const char* c : kV1Controllers) {
    auto it = host.v1_mounts.find(c);
    if (it == host.v1_mounts.end()) {
      return MakeError(ErrorCode::kUnavailable,
                       "cgroup v1 controller '{}' is not mounted on this hybrid host; mount it "
                       "(mount -t cgroup -o {} cgroup /sys/fs/cgroup/{}) or boot with "
                       "systemd.unified_cgroup_hierarchy=1 to use cgroup v2",
                       c, c, c);
    }
    auto h = std::find_if(hierarchies.begin(), hierarchies.end(),
                          [&](const Hierarchy& x) { return x.mount == it->second; });
    auto own = options.v1_parents.find(c);
    const std::string& parent = own == options.v1_parents.end() ? options.parent : own->second;
    SBX_TRY(ValidateParent(parent));
    if (h == hierarchies.end()) {
      hierarchies.push_back({it->second, {c}, JoinPath(it->second, parent)});
    } else {
      h->controllers.push_back(c);
    }
  }

  // The unified parent first: its lease covers the v1 parents too.
  const std::string unified_parent = JoinPath(host.unified_mount, options.parent);
  auto lease = ParentLease::Acquire(*fs, unified_parent);
  if (!lease.ok()) return std::move(lease).error();
  auto fail = [&](Error e) -> Error {
    lease->Release(*fs, ParentDirsForRemoval(unified_parent, hierarchies));
    return e;
  };
  auto make_parent = [&](const std::string& dir) -> Status {
    Status made = fs->MakeDir(dir);
    if (made.ok()) {
      lease->NoteMade(dir);
      return Ok();
    }
    if (made.error().code == ErrorCode::kAlreadyExists) return Ok();
    return WithContext(std::move(made).error(), "creating the sandboxes' parent cgroup");
  };
  for (const Hierarchy& h : hierarchies) {
    if (Status r = make_parent(h.parent_dir); !r.ok()) return fail(std::move(r).error());
    if (std::find(h.controllers.begin(), h.controllers.end(), "memory") == h.controllers.end()) {
      continue;
    }
    // Without use_hierarchy a v1 memory cgroup's limit does not cover its children's usage. The
    // file is fixed at 1 where an ancestor has it set (and on kernels since 5.11 always); when
    // it reads 0, try to set it, but a parent that refuses is not fatal: each sandbox's own
    // limit still applies.
    const std::string use_hierarchy = JoinPath(h.parent_dir, "memory.use_hierarchy");
    auto v = fs->Read(use_hierarchy);
    if (v.ok() && Words(*v) == std::vector<std::string>{"0"}) {
      (void)fs->Write(use_hierarchy, "1");
    }
  }
  return std::unique_ptr<Driver>(
      std::make_unique<HybridDriver>(host, fs, unified_parent, std::move(hierarchies),
                                     std::move(*lease), options.destroy_timeout));
}

}  // namespace sbx::cgroup::internal
