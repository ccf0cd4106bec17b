// The cgroup v2 driver: one unified hierarchy with the cpu, memory and pids controllers (and
// io, for accounting only, where the host offers it).
#include <fcntl.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <string_view>

#include "cgroup/common.h"

namespace sbx::cgroup::internal {

namespace {

constexpr std::array<const char*, 3> kControllers = {"cpu", "memory", "pids"};

class V2Cgroup final : public CgroupBase {
 public:
  using CgroupBase::CgroupBase;
  ~V2Cgroup() override {
    if (!destroyed()) (void)Destroy();
  }

  Status AttachV1(pid_t) override { return Ok(); }

  Result<Usage> ReadUsage() override {
    SBX_TRY(CheckNotDestroyed());
    const std::string& dir = paths().unified;
    Usage u;
    const std::string cpu_stat = JoinPath(dir, "cpu.stat");
    auto cpu = fs().Read(cpu_stat);
    if (!cpu.ok()) return std::move(cpu).error();
    auto usec = FindKeyedValue(*cpu, "usage_usec");
    if (!usec) return MakeError(ErrorCode::kInternal, "{} has no usage_usec line", cpu_stat);
    u.cpu_usec = *usec;
    // memory.peak arrived in Linux 5.19; report 0 before that.
    const std::string peak_path = JoinPath(dir, "memory.peak");
    auto peak = fs().Read(peak_path);
    if (peak.ok()) {
      auto v = ParseNumberFile(*peak, peak_path);
      if (!v.ok()) return std::move(v).error();
      u.memory_peak_bytes = *v;
    } else if (peak.error().code != ErrorCode::kNotFound) {
      return std::move(peak).error();
    }
    auto events = fs().Read(JoinPath(dir, "memory.events"));
    if (!events.ok()) return std::move(events).error();
    u.oom_kills = FindKeyedValue(*events, "oom_kill").value_or(0);
    for (auto [file, field] : {std::pair{"memory.current", &u.memory_current_bytes},
                               std::pair{"pids.current", &u.pids_current}}) {
      const std::string path = JoinPath(dir, file);
      auto text = fs().Read(path);
      if (!text.ok()) continue;  // the controller is not enabled here
      if (auto v = ParseNumberFile(*text, path); v.ok()) *field = *v;
    }
    // "MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N", a line per device.
    if (auto io = fs().Read(JoinPath(dir, "io.stat")); io.ok()) {
      uint64_t read = 0, written = 0;
      std::string_view rest = *io;
      while (!rest.empty()) {
        const size_t end = rest.find('\n');
        std::string_view line = rest.substr(0, end);
        rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
        for (size_t at = 0; at < line.size();) {
          size_t next = line.find(' ', at);
          if (next == std::string_view::npos) next = line.size();
          const std::string_view field = line.substr(at, next - at);
          at = next + 1;
          uint64_t* sum = field.starts_with("rbytes=")   ? &read
                          : field.starts_with("wbytes=") ? &written
                                                         : nullptr;
          if (sum == nullptr) continue;
          uint64_t v = 0;
          const std::string_view digits = field.substr(7);
          auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
          if (ec == std::errc() && p == digits.data() + digits.size()) *sum += v;
        }
      }
      u.io_read_bytes = read;
      u.io_write_bytes = written;
    }
    return u;
  }

  std::string version() const override { return "v2"; }
};

class V2Driver final : public Driver {
 public:
  V2Driver(HostInfo host, CgroupFs* fs, std::string parent_dir, ParentLease lease,
           std::chrono::milliseconds timeout)
      : host_(std::move(host)),
        fs_(fs),
        parent_dir_(std::move(parent_dir)),
        lease_(std::move(lease)),
        timeout_(timeout) {}
  ~V2Driver() override { lease_.Release(*fs_, {parent_dir_}); }

  Result<std::unique_ptr<Cgroup>> Create(const std::string& name, const Limits& limits) override {
    SBX_TRY(ValidateName(name));
    auto writes = PlanV2Writes(limits);
    if (!writes.ok()) return std::move(writes).error();
    const std::string dir = JoinPath(parent_dir_, name);
    Status made = fs_->MakeDir(dir);
    if (!made.ok()) {
      if (made.error().code == ErrorCode::kAlreadyExists) {
        return MakeError(ErrorCode::kAlreadyExists,
                         "cgroup {} already exists: a sandbox with this name is running or was "
                         "not destroyed",
                         dir);
      }
      return std::move(made).error();
    }
    Status applied = ApplyWrites(*fs_, *writes, [&](const std::string&) { return &dir; });
    if (!applied.ok()) {
      (void)fs_->RemoveDir(dir);
      return WithContext(std::move(applied).error(), "cgroup " + dir);
    }
    auto fd = fs_->Open(dir, O_PATH | O_DIRECTORY);
    if (!fd.ok()) {
      (void)fs_->RemoveDir(dir);
      return std::move(fd).error();
    }
    return std::unique_ptr<Cgroup>(
        std::make_unique<V2Cgroup>(fs_, name, CgroupPaths{dir, {}}, std::move(fd).value(),
                                   LimitingControllers(limits), timeout_));
  }

  Result<std::vector<std::string>> RemoveLeftovers() override {
    auto names = fs_->ListSubdirs(parent_dir_);
    if (!names.ok()) return std::move(names).error();
    for (const std::string& name : *names) {
      std::string dir = JoinPath(parent_dir_, name);
      auto fd = fs_->Open(dir, O_PATH | O_DIRECTORY);
      if (!fd.ok()) return std::move(fd).error();
      V2Cgroup leftover(fs_, name, CgroupPaths{dir, {}}, std::move(fd).value(), {}, timeout_);
      SBX_TRY(leftover.Destroy());
    }
    return names;
  }

  const HostInfo& host() const override { return host_; }

 private:
  HostInfo host_;
  CgroupFs* fs_;
  std::string parent_dir_;
  ParentLease lease_;
  std::chrono::milliseconds timeout_;
};

// The error for a controller missing from <parent>/cgroup.controllers: it is offered there only
// when the cgroup above enables it in its cgroup.subtree_control.
Error MissingControllerError(const HostInfo& host, const std::string& parent_dir, const char* c) {
  const auto& root = host.v2_controllers;
  if (!root.empty() && std::find(root.begin(), root.end(), c) == root.end()) {
    return MakeError(ErrorCode::kUnavailable,
                     "cgroup v2 controller '{}' is not available on this host ({}/"
                     "cgroup.controllers lacks it); it is disabled (cgroup_disable=) or bound to "
                     "a v1 hierarchy",
                     c, host.unified_mount);
  }
  return MakeError(ErrorCode::kUnavailable,
                   "cgroup v2 controller '{}' not enabled in {}/cgroup.subtree_control; run "
                   "under systemd with Delegate=yes or enable it",
                   c, DirName(parent_dir));
}

}  // namespace

Result<std::unique_ptr<Driver>> OpenV2Driver(const DriverOptions& options, const HostInfo& host) {
  if (host.unified_mount.empty()) {
    return MakeError(ErrorCode::kUnavailable, "no cgroup2 filesystem is mounted");
  }
  SBX_TRY(ValidateParent(options.parent));
  CgroupFs* fs = options.fs != nullptr ? options.fs : RealCgroupFs();
  const std::string parent_dir = JoinPath(host.unified_mount, options.parent);

  auto lease = ParentLease::Acquire(*fs, parent_dir);
  if (!lease.ok()) return std::move(lease).error();
  auto fail = [&](Error e) -> Error {
    lease->Release(*fs, {parent_dir});
    return e;
  };

  auto offered = fs->Read(JoinPath(parent_dir, "cgroup.controllers"));
  if (!offered.ok()) return fail(std::move(offered).error());
  std::vector<std::string> words = Words(*offered);
  for (const char* c : kControllers) {
    if (std::find(words.begin(), words.end(), c) == words.end()) {
      return fail(MissingControllerError(host, parent_dir, c));
    }
  }
  // Enable the controllers for the sandboxes' cgroups, in our parent only.
  const std::string subtree = JoinPath(parent_dir, "cgroup.subtree_control");
  Status enabled = fs->Write(subtree, "+cpu +memory +pids");
  // io only counts (the sandboxes set no io limits): enabled where offered; where it cannot
  // be, a sandbox's stats say io is unavailable rather than the daemon refusing to start.
  if (enabled.ok() && std::find(words.begin(), words.end(), "io") != words.end()) {
    (void)fs->Write(subtree, "+io");
  }
  if (!enabled.ok()) {
    Error e = std::move(enabled).error();
    if (e.sys_errno == EBUSY) {
      e.message = fmt::format(
          "cannot enable controllers in {}: the cgroup has processes of its own (cgroup v2 "
          "allows controllers only in cgroups without them); choose an empty parent cgroup",
          subtree);
    }
    return fail(std::move(e));
  }
  return std::unique_ptr<Driver>(
      std::make_unique<V2Driver>(host, fs, parent_dir, std::move(*lease), options.destroy_timeout));
}

}  // namespace sbx::cgroup::internal
