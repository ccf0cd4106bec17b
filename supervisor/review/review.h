// The gate a run passes before it may run:
//
//   PENDING -> PLANNED -> AWAITING_REVIEW -> QUEUED        (then the executor: supervisor/exec/)
//   cancel: any non-terminal state -> CANCELLED
//
// No run reaches QUEUED without an approval: a reviewer's (never the submitter's own) or a
// command policy rule's. Every state change is a compare-and-set in the store, committed through
// the event bus with its run.status event and audit record, so an illegal or racing transition
// changes nothing.
//
// Review also holds the policies in force: the command policy that plans each run, and the
// seccomp profiles the executor compiles runs with; both reload together.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/result.h"
#include "seccomp/seccomp.h"
#include "supervisor/events/event_bus.h"
#include "supervisor/policy/command_policy.h"
#include "supervisor/policy/jobs.h"
#include "supervisor/review/limits.h"
#include "supervisor/review/seccomp_profiles.h"
#include "supervisor/store/store.h"
#include "supervisor/workspace/changes.h"

namespace sbx::supervisor {

struct ReviewOptions {
  std::string data_dir;  // a workspace may not overlap it
  ServiceLimits limits;
  std::string default_backend = "native";  // for requests that name none
  // Null: every run waits for a reviewer.
  std::shared_ptr<const policy::CommandPolicy> command_policy;
  // Where the seccomp profiles come from: the caller's compiler (both functions given), or the
  // builtin profile plus every NAME.json in seccomp_profiles_dir (reloadable).
  std::function<Result<seccomp::Program>(const std::string& name)> seccomp;
  std::function<Result<std::string>(const std::string& name)> seccomp_json;
  std::string seccomp_profiles_dir;
  // Around a command policy reload: true before, false after (whether or not it was refused).
  std::function<void(bool reloading)> on_policy_reload;
  // The jobs in force (<policy_dir>/jobs.yaml); null: none. Reloaded with the command policy.
  std::shared_ptr<const policy::JobSet> jobs;
  // A run reached QUEUED here (approved by a reviewer or a rule): wake a worker.
  std::function<void()> on_queued;
};

class Review {
 public:
  // Loads the seccomp profiles of seccomp_profiles_dir when they come from there; a broken file
  // is an error.
  static Result<std::unique_ptr<Review>> Create(store::Store& store, EventBus& events,
                                                ReviewOptions options);

  // Validates the request (argv or steps; limits within the maxima, defaults filled in), stores
  // it and walks it to AWAITING_REVIEW. With an idempotency key already used by this submitter,
  // returns that run (created = false) and changes nothing.
  // With `decided`, that is the run's policy decision instead of the command policy's (a job's:
  // jobs.yaml is the policy of its own runs).
  Result<store::CreateRunResult> Submit(store::RunRequest request, const Principal& who,
                                        const nlohmann::json* decided = nullptr);
  // PENDING -> PLANNED (the policy decision) -> AWAITING_REVIEW (-> QUEUED when a rule
  // approves it; -> CANCELLED when one denies it), in one commit after `before`; from PLANNED
  // for a run that stalled there.
  Result<store::RunRecord> Plan(const store::RunRecord& run, const Principal& who,
                                std::vector<store::Write> before = {},
                                const nlohmann::json* decided = nullptr);
  // Plans again the runs a crash caught between PENDING and AWAITING_REVIEW (older than 30 s:
  // Submit() takes milliseconds, also on another daemon sharing the database).
  void ReplanStalled();
  // One reviewer's approval. The run moves AWAITING_REVIEW -> QUEUED once as many distinct
  // reviewers as its policy decision requires (approvals_required, the policy's `review:`
  // section) have approved; until then it stays awaiting review with the votes so far.
  // kPermissionDenied for the submitter's own run or a submitter role; kFailedPrecondition when
  // the run is not awaiting review, or `plan_sha256` is given and is not the run's
  // (PlanSha256); kAlreadyExists when this reviewer has approved it already.
  struct ApproveInput {
    std::string comment;      // at most kMaxReviewComment bytes
    std::string plan_sha256;  // the plan the reviewer saw; "" to skip the check
  };
  Result<store::RunRecord> Approve(std::string_view run_id, const Principal& who,
                                   const ApproveInput& input = {});
  // AWAITING_REVIEW -> CANCELLED with reason "rejected: …".
  Result<store::RunRecord> Reject(std::string_view run_id, const Principal& who,
                                  const std::string& reason);
  // Any non-terminal state -> CANCELLED, for a run that is not running here (a running one is
  // the executor's to end).
  Result<store::RunRecord> Cancel(std::string_view run_id, const Principal& who);

  // Host changes only after review: writes a succeeded copy-on-write run's changes (its change
  // set, supervisor/workspace/changes.h) into the host directory it ran on, by a reviewer or an
  // admin who is not its submitter, once. With `diff_sha256` (the diff.patch artifact's sha256
  // as the reviewer read it), only when the run's diff is that one. Conflicts (a host file
  // changed since the run started, a symbolic link planted on the way) come back in the
  // outcome with nothing written, audited as run.apply_refused; a write is audited as
  // run.changes_applied with the diff's hash, the set's hash and the counts.
  // kPermissionDenied for a submitter role or the run's own submitter; kFailedPrecondition for
  // a run that did not succeed, has no copy-on-write workspace, kept no change set on this
  // node, holds changes apply does not make, or whose diff is not `diff_sha256`;
  // kAlreadyExists once applied; kInternal when writing fails part-way (the message says how
  // far it got).
  struct ApplyInput {
    std::string diff_sha256;  // "" to skip the check
  };
  struct ApplyOutcome {
    store::RunRecord run;
    std::string diff_sha256;     // the diff.patch the set belongs to
    std::string changes_sha256;  // of the set's manifest
    ChangeSet changes;
    ApplyReport report;          // report.conflicts non-empty: nothing was written
  };
  Result<ApplyOutcome> ApplyChanges(std::string_view run_id, const Principal& who,
                                    const ApplyInput& input = {});
  // The change set a run kept, for showing before applying it, and whether and by whom it was
  // applied (the run.changes_applied audit record's details; null when not). kNotFound when
  // the run kept none on this node.
  struct KeptChanges {
    ChangeSet changes;
    std::string diff_sha256;
    nlohmann::json applied;
  };
  Result<KeptChanges> Changes(std::string_view run_id);
  ~Review();

  // What the command policy in force decides, without running anything. nullopt when no
  // command policy is configured.
  std::optional<policy::Decision> Evaluate(const policy::CommandInput& input) const;
  static policy::CommandInput PolicyInput(const store::RunRecord& run);
  // Swaps the command policy atomically; runs already planned keep their decision.
  void SetCommandPolicy(std::shared_ptr<const policy::CommandPolicy> policy);
  // Loads <dir>/commands.yaml (the shipped default when there is none), <dir>/jobs.yaml (none
  // when there is none) and the seccomp profiles of seccomp_profiles_dir, and swaps them in,
  // with audit records by `who`. A broken file is refused with its reason (audited as
  // policy.reload_refused or seccomp.reload_refused) and all stay as they were.
  Status ReloadCommandPolicy(const std::string& dir, const Principal& who);
  std::shared_ptr<const policy::CommandPolicy> command_policy() const;
  // The jobs in force (never null).
  std::shared_ptr<const policy::JobSet> jobs() const;
  // The seccomp profiles in force; null when the caller compiles its own.
  std::shared_ptr<const SeccompProfileSet> seccomp_profiles() const;
  // A profile of those in force ("" or "default": the builtin one), compiled or as JSON text.
  Result<seccomp::Program> SeccompProgram(const std::string& name) const;
  // The profile compiled without notifications (LoadedSeccompProfile::plain_program).
  Result<seccomp::Program> SeccompPlainProgram(const std::string& name) const;
  Result<std::string> SeccompJson(const std::string& name) const;

 private:
  Review(store::Store& store, EventBus& events, ReviewOptions options);
  Result<store::RunRecord> Move(std::string_view run_id, const std::vector<store::RunState>& from,
                                store::RunState to, const store::RunUpdate& update,
                                const Principal& who, std::string_view action,
                                bool ends_run = false);
  void Queued() const;
  // A checkout a request names: a full sha, ro or cow, a repo that is a local repository under
  // the workspace roots, or (for a run of a project, whose repo Projects checked) a URL.
  // Normalizes ws.repo.
  Status CheckCheckout(store::Workspace& ws, const std::string& project_id,
                       const Principal& who) const;
  // Review expiry: runs awaiting review with a deadline (policy review_expires_at_ms) are
  // cancelled with reason review_expired when it passes, by one thread that sleeps until the
  // earliest deadline (no polling).
  void ScheduleExpiry(const store::RunRecord& run);
  void ExpiryLoop();
  void Expire(const std::string& run_id);
  // At start: every run awaiting review with a deadline (a restart, or another daemon's runs).
  void ScheduleExpiries();

  store::Store& store_;
  EventBus& events_;
  ReviewOptions options_;
  mutable std::mutex mu_;
  std::shared_ptr<const policy::CommandPolicy> policy_;
  std::shared_ptr<const policy::JobSet> jobs_;
  std::shared_ptr<const SeccompProfileSet> seccomp_profiles_;  // null: options_.seccomp
  std::mutex expiry_mu_;
  std::condition_variable expiry_cv_;
  std::multimap<int64_t, std::string> expiries_;  // deadline (ms since the epoch) -> run id
  bool expiry_stop_ = false;
  std::thread expiry_thread_;
  std::mutex apply_mu_;  // one apply at a time: the check and the write of a set go together
};

inline constexpr size_t kMaxReviewComment = 4096;

// The SHA-256 (hex) of everything that decides what a run will do: its commands, environment
// (values included), stdin, limits, network, seccomp profile, workspace, backend, image and
// labels. An approval records the hash it was given for; the same request always has the same
// hash.
std::string PlanSha256(const store::RunRecord& run);

// A state change with its run.status event and its audit record, to commit together; with
// the run.completed event too when `ends_run` (a run that ends without having run).
std::vector<store::Write> MoveWrites(std::string_view run_id,
                                     const std::vector<store::RunState>& from, store::RunState to,
                                     const store::RunUpdate& update, const Principal& who,
                                     std::string_view action, bool ends_run = false);

}  // namespace sbx::supervisor
