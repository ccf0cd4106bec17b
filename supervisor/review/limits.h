// The service's limits: what a run gets when it names none, the most it may ask for, and the
// sizes of the service's own queues and pools.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "supervisor/store/store.h"

namespace sbx::supervisor {

struct LimitSet {
  double cpus = 1.0;
  int64_t memory_bytes = 512ll << 20;
  int64_t pids = 256;
  int64_t timeout_s = 600;
  int64_t output_bytes = 16ll << 20;
};

struct ServiceLimits {
  LimitSet defaults;
  LimitSet maxima{4.0, 8ll << 30, 4096, 24 * 3600, 1ll << 30};
  int max_concurrent_runs = 2;
  int max_queue = 100;  // QUEUED runs; past it, Submit() fails with kResourceExhausted
  // Host directories under which a run may name its workspace; empty: workspaces are off.
  std::vector<std::string> workspace_roots;
  // Host directories under which a long-lived sandbox may share its workspace read-write
  // ("rw": its writes land in the host directory). Empty: no read-write workspaces. Runs never
  // get one.
  std::vector<std::string> workspace_rw_roots;
  // IMPORTANT: a copy-on-write workspace maps its directory's owner to the sandbox user, so a
  // root-owned directory would hand every root-owned file in it (mode 0600 ones too) to the
  // sandbox. Refused unless this is true.
  bool workspace_cow_root_owned = false;
  // The size of each run's /artifacts (a tmpfs).
  uint64_t artifacts_quota_bytes = 64ull << 20;
  // Native sandboxes kept built ahead of their runs (supervisor/backend/warm_pool.h): a run with
  // the default limits, the default seccomp profile and no workspace starts in one at once.
  // 0: every sandbox is built when its run starts. None either when default_backend is docker.
  int warm_sandboxes = 1;
};

// A workspace a request names, checked: `mode` parsed ("rw" only with `allow_rw`, then under
// limits.workspace_rw_roots instead of workspace_roots), the path resolved under the daemon's
// roots and under the key's own (`key_roots`, when it has some), a root-owned directory refused
// for cow (unless workspace_cow_root_owned) and for rw, and no overlap with `data_dir`.
// Returns the canonical path and the mode's name.
struct CheckedWorkspace {
  std::string path;
  std::string mode;  // "ro", "cow", "rw"
};
Result<CheckedWorkspace> CheckWorkspaceRequest(const std::string& path, const std::string& mode,
                                               const ServiceLimits& limits,
                                               const std::vector<std::string>& key_roots,
                                               const std::string& key_name,
                                               const std::string& data_dir, bool allow_rw);

// A request's limits with the defaults filled in; kInvalidArgument for a value beyond the maxima
// (never clamped in silence) or not positive.
Result<store::Limits> ResolveLimits(const store::Limits& in, const ServiceLimits& cfg);

}  // namespace sbx::supervisor
