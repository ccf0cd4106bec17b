// Driver::Open: picks the driver for the host's layout.
#include "cgroup/common.h"

namespace sbx::cgroup {

Result<std::unique_ptr<Driver>> Driver::Open(const DriverOptions& options) {
  auto host = DetectHost();
  if (!host.ok()) return std::move(host).error();
  return Open(options, *host);
}

Result<std::unique_ptr<Driver>> Driver::Open(const DriverOptions& options, const HostInfo& host) {
  switch (host.layout) {
    case Layout::kV2:
      return internal::OpenV2Driver(options, host);
    case Layout::kHybrid:
      return internal::OpenHybridDriver(options, host);
    case Layout::kV1Only:
      return MakeError(ErrorCode::kUnavailable,
                       "this host mounts only cgroup v1 hierarchies, which sandboxd does not "
                       "support: it needs cgroup2 for tracking, CLONE_INTO_CGROUP and "
                       "cgroup.kill; boot with systemd.unified_cgroup_hierarchy=1 or mount "
                       "cgroup2 (mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified)");
    case Layout::kNone:
      break;
  }
  return MakeError(ErrorCode::kUnavailable,
                   "no cgroup filesystem is mounted; mount cgroup2 at /sys/fs/cgroup "
                   "(mount -t cgroup2 cgroup2 /sys/fs/cgroup)");
}

}  // namespace sbx::cgroup
