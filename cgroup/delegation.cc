// A delegated subtree: where a daemon that owns its cgroup puts itself and its sandboxes.
#include <sys/stat.h>

#include <cstring>

#include "base/fs.h"
#include "cgroup/common.h"

namespace sbx::cgroup {
namespace {

constexpr const char* kLeaf = "supervisor";

std::string Relative(const std::string& path) {
  size_t i = path.find_first_not_of('/');
  return i == std::string::npos ? "" : path.substr(i);
}

std::string Below(const std::string& own, const std::string& name) {
  std::string rel = Relative(own);
  return rel.empty() ? name : rel + "/" + name;
}

}  // namespace

OwnCgroups ParseProcCgroup(std::string_view text) {
  OwnCgroups own;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    // "ID:CONTROLLERS:PATH"; the path may itself contain ':'.
    size_t a = line.find(':');
    if (a == std::string_view::npos) continue;
    size_t b = line.find(':', a + 1);
    if (b == std::string_view::npos) continue;
    std::string_view id = line.substr(0, a);
    std::string_view controllers = line.substr(a + 1, b - a - 1);
    std::string path(line.substr(b + 1));
    if (id == "0" && controllers.empty()) {
      own.unified = path;
      continue;
    }
    while (!controllers.empty()) {
      size_t comma = controllers.find(',');
      std::string_view c = controllers.substr(0, comma);
      if (!c.empty() && !c.starts_with("name=")) own.v1.emplace(std::string(c), path);
      if (comma == std::string_view::npos) break;
      controllers.remove_prefix(comma + 1);
    }
  }
  return own;
}

bool LooksDelegatedBySystemd(const OwnCgroups& own, const char* invocation_id_env) {
  if (invocation_id_env == nullptr || *invocation_id_env == '\0') return false;
  std::string_view u = own.unified;
  if (u.ends_with(std::string("/") + kLeaf)) u.remove_suffix(std::strlen(kLeaf) + 1);
  return u.ends_with(".service");
}

Result<DelegationPlan> PlanDelegation(const OwnCgroups& own, const HostInfo& host,
                                      const std::string& parent_name) {
  if (host.unified_mount.empty()) {
    return MakeError(ErrorCode::kUnavailable, "cgroup delegation needs a cgroup2 mount");
  }
  std::string unified = own.unified;
  // Started again in a cgroup it already set up (a re-exec): the leaf is not the delegated one.
  const std::string leaf_suffix = std::string("/") + kLeaf;
  if (unified.size() > leaf_suffix.size() && unified.ends_with(leaf_suffix)) {
    unified.resize(unified.size() - leaf_suffix.size());
  }
  if (Relative(unified).empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "cgroup delegation: this process is in the root cgroup, so nothing was "
                     "delegated to it; start it from a unit with Delegate=yes or set "
                     "cgroup_delegation: no");
  }
  DelegationPlan plan;
  plan.own = unified;
  plan.leaf = unified + leaf_suffix;
  plan.enable_controllers = host.layout == Layout::kV2;
  plan.driver.parent = Below(unified, parent_name);
  for (const auto& [controller, path] : own.v1) {
    plan.driver.v1_parents[controller] =
        Relative(path).empty() ? parent_name : Below(path, parent_name);
  }
  SBX_TRY(internal::ValidateParent(plan.driver.parent));
  return plan;
}

Status ApplyDelegation(const DelegationPlan& plan, const HostInfo& host,
                       std::span<const pid_t> companions) {
  const std::string leaf = host.unified_mount + plan.leaf;
  if (::mkdir(leaf.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoError("mkdir {} (the daemon's own leaf in its delegated cgroup)", leaf);
  }
  // "0" is the writing process; cgroup.procs moves every thread of it (cgroup-v2.rst). The
  // companions go before the controllers are enabled: an inner cgroup must be empty by then.
  if (Status st = WriteFile(leaf + "/cgroup.procs", "0"); !st.ok()) {
    return WithContext(std::move(st).error(), "moving the daemon into " + leaf);
  }
  for (pid_t pid : companions) {
    if (Status st = WriteFile(leaf + "/cgroup.procs", std::to_string(pid)); !st.ok()) {
      return WithContext(std::move(st).error(), fmt::format("moving process {} into {}", pid, leaf));
    }
  }
  if (!plan.enable_controllers) return Ok();
  const std::string own = host.unified_mount + plan.own;
  auto offered = ReadFile(own + "/cgroup.controllers");
  if (!offered.ok()) return std::move(offered).error();
  std::string enable;
  for (const std::string& c : internal::Words(*offered)) {
    if (c == "cpu" || c == "memory" || c == "pids" || c == "io") {
      enable += (enable.empty() ? "+" : " +") + c;
    }
  }
  if (enable.empty()) return Ok();  // the driver says which controller is missing
  if (Status st = WriteFile(own + "/cgroup.subtree_control", enable); !st.ok()) {
    Error e = std::move(st).error();
    if (e.sys_errno == EBUSY) {
      e.message = fmt::format(
          "cannot enable {} in {}/cgroup.subtree_control: processes other than the daemon are "
          "still in it; give the unit Delegate=yes and start nothing else in it",
          enable, own);
    }
    return e;
  }
  return Ok();
}

}  // namespace sbx::cgroup
