// Host changes only after review: a reviewer writes a succeeded copy-on-write run's changes into
// the host directory. The gate's checks (who, which run, which diff, once) are here; the
// filesystem work is ApplyChangeSet (supervisor/workspace/changes.h).
#include <spdlog/spdlog.h>

#include "base/sha256.h"
#include "supervisor/review/review.h"
#include "supervisor/workspace/artifacts.h"
#include "supervisor/workspace/workspace.h"

namespace sbx::supervisor {

using store::RunRecord;
using store::RunState;

namespace {

// The run.changes_applied audit record's details; null when the run's changes were not applied.
Result<nlohmann::json> AppliedRecord(store::Store& store, std::string_view run_id) {
  store::AuditFilter filter{.run_id = std::string(run_id), .limit = 1000};
  for (;;) {
    auto page = store.ListAudit(filter);
    if (!page.ok()) return std::move(page).error();
    for (const store::AuditRecord& a : *page) {
      if (a.action == "run.changes_applied") {
        nlohmann::json d = a.details;
        d["by"] = a.actor;
        d["at_ms"] = a.ts_ms;
        return d;
      }
    }
    if (page->size() < static_cast<size_t>(filter.limit)) return nlohmann::json(nullptr);
    filter.after_id = page->back().id;
  }
}

nlohmann::json ConflictsJson(const std::vector<ApplyConflict>& conflicts) {
  nlohmann::json out = nlohmann::json::array();
  for (const ApplyConflict& c : conflicts) out.push_back({{"path", c.path}, {"why", c.why}});
  return out;
}

}  // namespace

Result<Review::KeptChanges> Review::Changes(std::string_view run_id) {
  auto run = store_.GetRun(run_id);
  if (!run.ok()) return std::move(run).error();
  auto set = LoadChangeSet(ChangesDir(options_.data_dir, run_id));
  if (!set.ok()) {
    if (set.error().code == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kNotFound,
                       "run {} kept no changes on this node (it had no copy-on-write workspace, "
                       "has not ended, or ran on another node)",
                       run_id);
    }
    return std::move(set).error();
  }
  KeptChanges kept;
  kept.changes = std::move(*set);
  auto diff = DescribeArtifact(options_.data_dir, run_id, "diff.patch");
  if (diff.ok()) kept.diff_sha256 = diff->sha256;
  auto applied = AppliedRecord(store_, run_id);
  if (!applied.ok()) return std::move(applied).error();
  kept.applied = std::move(*applied);
  return kept;
}

Result<Review::ApplyOutcome> Review::ApplyChanges(std::string_view run_id, const Principal& who,
                                                  const ApplyInput& input) {
  if (who.role == Role::kSubmitter) {
    return MakeError(ErrorCode::kPermissionDenied, "applying changes needs the reviewer role");
  }
  auto run = store_.GetRun(run_id);
  if (!run.ok()) return std::move(run).error();
  if (run->submitter == who.name) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "a submitter cannot apply its own run's changes; another reviewer must");
  }
  if (run->state != RunState::kSucceeded) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "run {} is {}; only a succeeded run's changes are applied", run_id,
                     store::RunStateName(run->state));
  }
  if (!run->workspace || run->workspace->mode != "cow") {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "run {} had no copy-on-write workspace: it has no changes to apply", run_id);
  }
  if (!run->workspace->sha.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "run {} ran on a checkout of {} at {}, not on a host directory: its changes "
                     "are its diff.patch, to apply to the repository",
                     run_id, run->workspace->repo, run->workspace->sha);
  }
  std::lock_guard<std::mutex> lk(apply_mu_);
  auto kept = Changes(run_id);
  if (!kept.ok()) {
    Error e = std::move(kept).error();
    if (e.code == ErrorCode::kNotFound) e.code = ErrorCode::kFailedPrecondition;
    return e;
  }
  if (!kept->applied.is_null()) {
    return MakeError(ErrorCode::kAlreadyExists, "run {}'s changes were applied by {} already",
                     run_id, kept->applied.value("by", "?"));
  }
  if (kept->diff_sha256.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "run {} has no diff.patch: what would be applied cannot be shown", run_id);
  }
  if (!input.diff_sha256.empty() && input.diff_sha256 != kept->diff_sha256) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "run {}'s diff is {}, not the {} that was reviewed; read it again", run_id,
                     kept->diff_sha256, input.diff_sha256);
  }
  ApplyOutcome out;
  out.diff_sha256 = kept->diff_sha256;
  out.changes_sha256 = Sha256Hex(ChangeSetToJson(kept->changes).dump());
  out.changes = std::move(kept->changes);
  auto ws = ResolveWorkspace(run->workspace->path, options_.limits.workspace_roots);
  if (!ws.ok()) {
    return WithContext(std::move(ws).error(),
                       fmt::format("run {}'s workspace {}", run_id, run->workspace->path));
  }
  auto report = ApplyChangeSet(ws->fd.get(), ChangesDir(options_.data_dir, run_id), out.changes,
                               ws->owner_uid, ws->owner_gid);
  if (!report.ok()) {
    events_.Audit(who, "run.apply_failed", run_id,
                  {{"diff_sha256", out.diff_sha256}, {"error", report.error().message}});
    return std::move(report).error();
  }
  out.report = std::move(*report);
  const nlohmann::json details = {{"workspace", ws->path},
                                  {"diff_sha256", out.diff_sha256},
                                  {"changes_sha256", out.changes_sha256},
                                  {"files_written", out.report.files_written},
                                  {"files_deleted", out.report.files_deleted},
                                  {"dirs_made", out.report.dirs_made},
                                  {"dirs_removed", out.report.dirs_removed}};
  if (!out.report.conflicts.empty()) {
    events_.Audit(
        who, "run.apply_refused", run_id,
        {{"diff_sha256", out.diff_sha256}, {"conflicts", ConflictsJson(out.report.conflicts)}});
  } else {
    std::vector<store::Write> writes{AuditOf(who, "run.changes_applied", run_id, details)};
    auto done = events_.Record(run_id, "run.changes_applied", writes);
    if (!done.ok()) {
      return MakeError(ErrorCode::kInternal,
                       "run {}'s changes were written to {} but the audit record of it failed: {}",
                       run_id, ws->path, done.error().message);
    }
    spdlog::info("run {}: {} applied its changes to {} ({} written, {} deleted)", run_id, who.name,
                 ws->path, out.report.files_written, out.report.files_deleted);
  }
  out.run = std::move(*run);
  return out;
}

}  // namespace sbx::supervisor
