#include "supervisor/review/limits.h"

#include <cmath>

#include "supervisor/workspace/workspace.h"

namespace sbx::supervisor {

namespace {

Status CheckLimit(const char* field, double value, double max) {
  if (!(value > 0) || !std::isfinite(value)) {
    return MakeError(ErrorCode::kInvalidArgument, "limits.{} must be positive", field);
  }
  if (value > max) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "limits.{} = {} is above the configured maximum {}", field, value, max);
  }
  return Ok();
}

}  // namespace

Result<store::Limits> ResolveLimits(const store::Limits& in, const ServiceLimits& cfg) {
  store::Limits out;
  out.cpus = in.cpus.value_or(cfg.defaults.cpus);
  out.memory_bytes = in.memory_bytes.value_or(cfg.defaults.memory_bytes);
  out.pids = in.pids.value_or(cfg.defaults.pids);
  out.timeout_s = in.timeout_s.value_or(cfg.defaults.timeout_s);
  out.output_bytes = in.output_bytes.value_or(cfg.defaults.output_bytes);
  SBX_TRY(CheckLimit("cpus", *out.cpus, cfg.maxima.cpus));
  SBX_TRY(CheckLimit("memory", static_cast<double>(*out.memory_bytes),
                     static_cast<double>(cfg.maxima.memory_bytes)));
  SBX_TRY(CheckLimit("pids", static_cast<double>(*out.pids), static_cast<double>(cfg.maxima.pids)));
  SBX_TRY(CheckLimit("timeout_s", static_cast<double>(*out.timeout_s),
                     static_cast<double>(cfg.maxima.timeout_s)));
  SBX_TRY(CheckLimit("output_bytes", static_cast<double>(*out.output_bytes),
                     static_cast<double>(cfg.maxima.output_bytes)));
  return out;
}

Result<CheckedWorkspace> CheckWorkspaceRequest(const std::string& path, const std::string& mode,
                                               const ServiceLimits& limits,
                                               const std::vector<std::string>& key_roots,
                                               const std::string& key_name,
                                               const std::string& data_dir, bool allow_rw) {
  auto m = ParseWorkspaceMode(mode);
  if (!m.ok()) return WithContext(std::move(m).error(), "workspace.mode");
  const bool rw = *m == WorkspaceMode::kReadWrite;
  if (rw && !allow_rw) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "workspace.mode: a run's workspace is \"ro\" or \"cow\" (its changes "
                     "come back as diff.patch); \"rw\" is for long-lived sandboxes");
  }
  if (rw && limits.workspace_rw_roots.empty()) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "workspace mode \"rw\": no directory is shared read-write here (the "
                     "configuration's workspace_rw_roots is empty)");
  }
  // Resolved now to refuse a bad path at once, and again (by fd) just before it is mounted.
  auto ws = ResolveWorkspace(path, rw ? limits.workspace_rw_roots : limits.workspace_roots);
  if (!ws.ok()) return WithContext(std::move(ws).error(), "workspace");
  if (!key_roots.empty()) {
    // The key's own roots narrow the daemon's: the path must resolve under one of them too.
    auto own = ResolveWorkspace(ws->path, key_roots);
    if (!own.ok()) {
      return WithContext(std::move(own).error(),
                         fmt::format("workspace (the roots of key '{}')", key_name));
    }
  }
  if (rw && (ws->owner_uid == 0 || ws->owner_gid == 0)) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "workspace {} is owned by root: a read-write workspace gives the sandbox "
                     "every file of its owner; share a directory of an unprivileged user",
                     ws->path);
  }
  if (*m == WorkspaceMode::kCopyOnWrite && ws->owner_uid == 0 &&
      !limits.workspace_cow_root_owned) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "workspace {} is owned by root: copy-on-write would give the sandbox "
                     "every root-owned file in it; use mode \"ro\", a directory of an "
                     "unprivileged owner, or set workspace_cow_root_owned: true",
                     ws->path);
  }
  const std::string data = data_dir + "/", canonical = ws->path + "/";
  if (data.rfind(canonical, 0) == 0 || canonical.rfind(data, 0) == 0) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "workspace {} overlaps the daemon's data directory {}", ws->path, data_dir);
  }
  return CheckedWorkspace{ws->path, WorkspaceModeName(*m)};
}

}  // namespace sbx::supervisor
