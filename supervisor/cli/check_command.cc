// `sandboxd check`: what the host offers for each isolation layer, and what to do where it falls
// short. The final check builds a default sandbox and runs /bin/true in it.
#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "base/syscalls.h"
#include "base/unique_fd.h"
#include "isolate/sandbox.h"
#include "supervisor/cli/commands.h"

namespace sbx::supervisor {
namespace {

struct Check {
  std::string layer;
  bool ok = false;
  bool required = true;
  std::string detail;
  std::string fix;
};

Check CheckRoot() {
  Check c{"privileges", ::geteuid() == 0, true, fmt::format("euid {}", ::geteuid()), ""};
  if (!c.ok) c.fix = "run sandboxd as root (or as the systemd service)";
  return c;
}

Check CheckNamespaces() {
  Check c{"namespaces", false, true, "", ""};
  pid_t pid = ::fork();
  if (pid == 0) {
    int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
                CLONE_NEWUTS | CLONE_NEWCGROUP;
    ::_exit(::unshare(flags) == 0 ? 0 : (errno & 0x7f));
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) < 0) {
    c.detail = "fork failed";
    return c;
  }
  c.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  c.detail = c.ok ? "user pid mount network ipc uts cgroup"
                  : fmt::format("unshare failed: {}", std::strerror(WEXITSTATUS(status)));
  if (!c.ok) c.fix = "enable namespaces in the kernel; check sysctl user.max_user_namespaces";
  return c;
}

Check CheckUserNs() {
  Check c{"user namespaces", false, true, "", ""};
  auto v = ReadFile("/proc/sys/user/max_user_namespaces");
  long n = v.ok() ? std::atol(v->c_str()) : 0;
  c.ok = n > 0;
  c.detail = fmt::format("user.max_user_namespaces = {}", n);
  if (!c.ok) c.fix = "sysctl -w user.max_user_namespaces=10000";
  return c;
}

Check CheckCgroups(const std::string& parent) {
  Check c{"cgroups", false, true, "", ""};
  auto host = cgroup::DetectHost();
  if (!host.ok()) {
    c.detail = host.error().ToString();
    c.fix = "mount cgroup2 at /sys/fs/cgroup";
    return c;
  }
  std::vector<std::string> ctrls;
  for (const auto& [name, mount] : host->v1_mounts) ctrls.push_back(name);
  c.detail = fmt::format("layout {}; cgroup2 at {}; v2 controllers [{}]; v1 controllers [{}]",
                         cgroup::LayoutName(host->layout),
                         host->unified_mount.empty() ? "-" : host->unified_mount,
                         fmt::join(host->v2_controllers, " "), fmt::join(ctrls, " "));
  auto driver = cgroup::Driver::Open(cgroup::DriverOptions{parent}, *host);
  if (!driver.ok()) {
    c.detail += "; " + driver.error().ToString();
    c.fix = "run under systemd with Delegate=yes, or enable the cpu, memory and pids controllers";
    return c;
  }
  c.ok = true;
  c.detail += fmt::format("; parent cgroup '{}' is delegated to sandboxd", parent);
  return c;
}

Check CheckSeccomp() {
  Check c{"seccomp", false, true, "", ""};
  auto actions = ReadFile("/proc/sys/kernel/seccomp/actions_avail");
  c.ok = ::prctl(PR_GET_SECCOMP) == 0 && actions.ok();
  c.detail = actions.ok() ? "filter actions: " + actions->substr(0, actions->find('\n'))
                          : "seccomp filters unavailable";
  if (!c.ok) c.fix = "use a kernel built with CONFIG_SECCOMP_FILTER";
  return c;
}

Check CheckOverlay() {
  Check c{"overlayfs", false, false, "", ""};
  auto fs = ReadFile("/proc/filesystems");
  c.ok = fs.ok() && fs->find("\toverlay\n") != std::string::npos;
  c.detail = c.ok ? "available (copy-on-write workspaces)" : "not loaded";
  if (!c.ok) c.fix = "modprobe overlay";
  return c;
}

Check CheckPidfd() {
  Check c{"pidfd/clone3", false, true, "", ""};
  UniqueFd fd(sys::PidfdOpen(::getpid()));
  errno = 0;
  long r = ::syscall(SYS_clone3, nullptr, 0);
  bool clone3 = !(r < 0 && errno == ENOSYS);
  long t = ::syscall(SYS_open_tree, -1, "", 0);
  bool mount_api = !(t < 0 && errno == ENOSYS);
  c.ok = fd.valid() && clone3 && mount_api;
  c.detail = fmt::format("pidfd_open {}, clone3 {}, open_tree/mount_setattr {}",
                         fd.valid() ? "yes" : "no", clone3 ? "yes" : "no",
                         mount_api ? "yes" : "no");
  if (!c.ok) c.fix = "sandboxd needs Linux 5.12 or later";
  return c;
}

Check CheckSandbox(const std::string& parent) {
  Check c{"default sandbox", false, true, "", ""};
  auto driver = cgroup::Driver::Open(cgroup::DriverOptions{parent});
  if (!driver.ok()) {
    c.detail = driver.error().ToString();
    return c;
  }
  isolate::SandboxSpec spec;
  spec.id = fmt::format("check-{}", ::getpid());
  auto prog = seccomp::Compile(seccomp::DefaultProfile());
  if (!prog.ok()) {
    c.detail = "default seccomp profile: " + prog.error().ToString();
    return c;
  }
  spec.seccomp = std::move(*prog);
  auto start = std::chrono::steady_clock::now();
  auto sb = isolate::Sandbox::Create(spec, **driver);
  if (!sb.ok()) {
    c.detail = sb.error().ToString();
    c.fix = "see the layers above";
    return c;
  }
  isolate::ProcessSpec p;
  p.argv = {"/bin/true"};
  auto r = (*sb)->Run(p, nullptr);
  (void)(*sb)->Destroy();
  auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
  if (!r.ok()) {
    c.detail = r.error().ToString();
    return c;
  }
  c.ok = r->reason == isolate::EndReason::kExited && r->exit_code == 0;
  c.detail = c.ok ? fmt::format("ran /bin/true with every layer on in {:.1f} ms", ms.count())
                  : fmt::format("/bin/true ended with {}{}", isolate::EndReasonName(r->reason),
                                r->error ? ": " + r->error->message : "");
  return c;
}

}  // namespace

int CheckCommand(const std::vector<std::string>& args) {
  bool json = false;
  std::string parent = "sandboxd";
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--json") {
      json = true;
    } else if (args[i] == "--cgroup-parent" && i + 1 < args.size()) {
      parent = args[++i];
    } else if (args[i] == "-h" || args[i] == "--help") {
      std::puts(
          "Usage: sandboxd check [--json] [--cgroup-parent NAME]\n\n"
          "Inspects the host: privileges, namespaces, user namespaces, cgroup layout and\n"
          "controllers, delegation, seccomp, overlayfs, pidfd/clone3; then builds a default\n"
          "sandbox and runs /bin/true in it. Exits 1 when the default sandbox cannot be built.");
      return 0;
    } else {
      std::fprintf(stderr, "sandboxd check: unknown option '%s'\n", args[i].c_str());
      return 2;
    }
  }
  std::vector<Check> checks = {CheckRoot(),    CheckNamespaces(), CheckUserNs(),
                               CheckCgroups(parent), CheckSeccomp(), CheckOverlay(),
                               CheckPidfd()};
  bool prereqs = true;
  for (const auto& c : checks) prereqs = prereqs && (c.ok || !c.required);
  if (prereqs) checks.push_back(CheckSandbox(parent));
  bool ok = true;
  for (const auto& c : checks) ok = ok && (c.ok || !c.required);
  if (!prereqs) ok = false;
  if (json) {
    nlohmann::json out = {{"ok", ok}, {"layers", nlohmann::json::array()}};
    for (const auto& c : checks) {
      out["layers"].push_back({{"layer", c.layer},
                               {"ok", c.ok},
                               {"required", c.required},
                               {"detail", c.detail},
                               {"fix", c.fix.empty() ? nlohmann::json(nullptr) : nlohmann::json(c.fix)}});
    }
    std::puts(out.dump(2).c_str());
  } else {
    for (const auto& c : checks) {
      std::printf("%-8s %-16s %s\n", c.ok ? "ok" : (c.required ? "MISSING" : "optional"),
                  c.layer.c_str(), c.detail.c_str());
      if (!c.ok && !c.fix.empty()) std::printf("%-8s %-16s fix: %s\n", "", "", c.fix.c_str());
    }
    std::printf("\n%s\n", ok ? "The default sandbox can be built on this host."
                             : "The default sandbox cannot be built on this host.");
  }
  return ok ? 0 : 1;
}

}  // namespace sbx::supervisor
