// The run service: one composition of the units a run passes through, so that both front doors
// (the /v1 API and, later, sandboxes) share one core:
//
//   review/  Submit, plan (the command policy), approve, reject, cancel: PENDING .. QUEUED
//   exec/    workers claim QUEUED runs and run each as an ephemeral sandbox: RUNNING .. end
//   events/  every state change, event and audit record is committed through one bus
//
// RunManager owns them, wires review's "a run was queued" to the executor's wake-up and a
// cancel to whichever holds the run, and runs crash recovery and the heartbeat.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "cgroup/cgroup.h"
#include "isolate/sandbox.h"
#include "seccomp/seccomp.h"
#include "supervisor/backend/backend.h"
#include "supervisor/backend/warm_pool.h"
#include "supervisor/events/event_bus.h"
#include "supervisor/exec/executor.h"
#include "supervisor/exec/heartbeat.h"
#include "supervisor/observability/metrics.h"
#include "supervisor/policy/command_policy.h"
#include "supervisor/review/limits.h"
#include "supervisor/project/projects.h"
#include "supervisor/review/review.h"
#include "supervisor/review/seccomp_profiles.h"
#include "supervisor/store/store.h"
#include "supervisor/workspace/artifacts.h"

namespace sbx::supervisor {

struct RunManagerOptions {
  std::string node;      // this daemon's name in the store (defaults to the hostname)
  std::string data_dir;  // logs under <data_dir>/runs/<id>/
  ServiceLimits limits;
  cgroup::Driver* cgroups = nullptr;  // required unless `native` is given
  isolate::EngineOptions engine;
  // Decides, at submission, whether a run is approved automatically (allow), waits for a
  // reviewer (review) or is refused (deny: it ends CANCELLED, reason policy_denied). Null: every
  // run waits for a reviewer. Replace it while running with SetCommandPolicy().
  std::shared_ptr<const policy::CommandPolicy> command_policy;
  // The allowlisted jobs (<policy_dir>/jobs.yaml); null: none. Reloaded with the command policy.
  std::shared_ptr<const policy::JobSet> jobs;
  // The pluggable planners besides the built-in one.
  std::vector<PlannerConfig> planners;
  // This daemon beats every heartbeat_interval; a node sharing the database whose last beat is
  // older than node_timeout is lost: its RUNNING runs end FAILED (node_lost) or are queued again
  // (retry_on_node_loss). A run is taken over within node_timeout + heartbeat_interval of its
  // node's last beat (exec/heartbeat.h).
  std::chrono::milliseconds heartbeat_interval{2'000};
  std::chrono::milliseconds node_timeout{6'000};
  // What the node says of itself in the store (GET /v1/nodes): labels that runs' node_selector
  // match (os, arch, hostname and the backends available are added), the daemon's version and
  // the address its API is reached at.
  std::map<std::string, std::string> node_labels;
  std::string node_version;
  std::string node_address;
  // Compiles a named seccomp profile ("" or "default": the builtin one). Called on the worker
  // thread before each run.
  std::function<Result<seccomp::Program>(const std::string& name)> seccomp;
  // Without `seccomp` and `seccomp_json`: the profiles are the builtin one plus every NAME.json
  // here (SeccompProfileSet), loaded at Start() (a broken file stops it) and again with the
  // command policy by ReloadCommandPolicy(). "" or a missing directory: only the builtin.
  std::string seccomp_profiles_dir;
  // Counts runs, sandboxes and policy decisions for GET /metrics; null: nothing is counted.
  // Must outlive the manager.
  Metrics* metrics = nullptr;
  // Called with true before a command policy reload and false after it (whether or not it was
  // refused); `sandboxd serve` tells systemd RELOADING=1 / READY=1 through it.
  std::function<void(bool reloading)> on_policy_reload;
  // The same profile's JSON text, for backends that compile their own (Docker). Default: the
  // builtin profile's text for "" and "default".
  std::function<Result<std::string>(const std::string& name)> seccomp_json;
  // The backends (supervisor/backend/backend.h). Null native: the native engine over `cgroups`
  // (which may then be null only when `native` is given), probed at Start(). Null docker: Docker
  // is not configured, and runs asking for it fail with that reason.
  std::shared_ptr<Backend> native;
  std::shared_ptr<Backend> docker;
  // For runs that name no backend: "native", "docker" or "auto". A run naming an image always
  // goes to Docker.
  std::string default_backend = "native";
  // The first host id of every sandbox's user namespace (isolate/id_range.h).
  uid_t sandbox_id_base = 100000;
  // Sees the writes of every commit (EventBus::SetCommitHook); an outbound runner's outbox.
  EventBus::CommitHook on_commit;
};

class RunManager {
 public:
  // Recovers runs this node left RUNNING (a crash or restart: they end FAILED with reason
  // "supervisor_restart"; the Docker containers labelled with this node are removed), plans runs
  // a crash left in PENDING or PLANNED, and starts the
  // workers and the heartbeat. Stop() ends runs still running FAILED (supervisor_shutdown).
  static Result<std::unique_ptr<RunManager>> Start(store::Store& store, RunManagerOptions options);
  ~RunManager();

  // Validates the request (argv or steps; limits within the maxima, defaults filled in), stores
  // it and walks it to AWAITING_REVIEW. With an idempotency key already used by this submitter,
  // returns that run (created = false) and changes nothing. A request naming a project (by id or
  // name, in project_id) needs the caller to be able to use it, and inherits its defaults
  // (Projects::SubmitRun).
  Result<store::CreateRunResult> Submit(store::RunRequest request, const Principal& who) {
    if (!request.project_id.empty()) {
      const std::string project = request.project_id;
      return projects_->SubmitRun(project, std::move(request), who);
    }
    return review_->Submit(std::move(request), who);
  }
  // AWAITING_REVIEW -> QUEUED. kPermissionDenied for the submitter's own run or a submitter
  // role; kFailedPrecondition when the run is not awaiting review.
  Result<store::RunRecord> Approve(std::string_view run_id, const Principal& who,
                                   const Review::ApproveInput& input = {}) {
    return review_->Approve(run_id, who, input);
  }
  // AWAITING_REVIEW -> CANCELLED with reason "rejected: …".
  Result<store::RunRecord> Reject(std::string_view run_id, const Principal& who,
                                  const std::string& reason) {
    return review_->Reject(run_id, who, reason);
  }
  // `wake` is called (without blocking) whenever a run is queued, here or, on a shared store, by
  // another node: the coordinator of an outbound runner claims for it then.
  uint64_t SubscribeQueued(std::function<void()> wake);
  void UnsubscribeQueued(uint64_t token);
  // Wakes this node's workers: a run was queued in the store without the review gate (an
  // outbound runner's copy of a run its coordinator claimed for it).
  void WakeWorkers() {
    if (executor_) executor_->Wake();
  }
  // An outbound runner cut off from its coordinator for longer than node_timeout: its runs may
  // be running elsewhere. Kills them (a run still RUNNING here ends FAILED, node_lost) and
  // claims nothing until UnfenceNode() (Executor::Fence).
  size_t FenceNode() { return executor_ ? executor_->Fence() : 0; }
  void UnfenceNode() {
    if (executor_) executor_->Unfence();
  }
  // The labels this node claims with: node=NAME, the configured ones, os, arch, hostname and
  // backend.NAME=true.
  std::map<std::string, std::string> NodeLabels() const;
  // This node's state changed in the store (an operator's drain): applied now rather than at
  // the next heartbeat.
  void SetDraining(bool draining) {
    if (executor_) executor_->SetDraining(draining);
  }
  const std::chrono::milliseconds& node_timeout() const { return options_.node_timeout; }
  // Where this node's API is reached, once the listeners are up (when node_address is unset):
  // stored at once, and kept when the node registers again.
  void SetNodeAddress(const std::string& address);
  // Where this node's API is reached, as stored ("" while unknown).
  std::string node_address() const;
  // Any non-terminal state -> CANCELLED; a running sandbox is killed first.
  Result<store::RunRecord> Cancel(std::string_view run_id, const Principal& who);
  // A succeeded copy-on-write run's changes written into the host directory (Review).
  Result<Review::ApplyOutcome> ApplyChanges(std::string_view run_id, const Principal& who,
                                            const Review::ApplyInput& input = {}) {
    return review_->ApplyChanges(run_id, who, input);
  }
  Result<Review::KeptChanges> Changes(std::string_view run_id) { return review_->Changes(run_id); }

  // What the command policy in force decides, without running anything. nullopt when no
  // command policy is configured.
  std::optional<policy::Decision> Evaluate(const policy::CommandInput& input) const {
    return review_->Evaluate(input);
  }
  static policy::CommandInput PolicyInput(const store::RunRecord& run) {
    return Review::PolicyInput(run);
  }
  // Swaps the command policy atomically; runs already planned keep their decision.
  void SetCommandPolicy(std::shared_ptr<const policy::CommandPolicy> policy) {
    review_->SetCommandPolicy(std::move(policy));
  }
  // Loads <dir>/commands.yaml (the shipped default when there is none) and swaps it in, with an
  // audit record by `who`. A broken file is refused with the reason and the policy in force
  // stays.
  // The seccomp profiles of seccomp_profiles_dir reload with it, atomically: a broken command
  // policy or profile (refused with its file and JSON path, audited as policy.reload_refused or
  // seccomp.reload_refused) leaves both as they were.
  Status ReloadCommandPolicy(const std::string& dir, const Principal& who) {
    return review_->ReloadCommandPolicy(dir, who);
  }
  // The seccomp profiles in force; null when the caller compiles its own (options.seccomp).
  std::shared_ptr<const SeccompProfileSet> seccomp_profiles() const {
    return review_->seccomp_profiles();
  }
  // The policy in force; null when none is configured.
  std::shared_ptr<const policy::CommandPolicy> command_policy() const {
    return review_->command_policy();
  }

  // Events as they are appended ("" = every run), in seq order. The listener runs on the thread
  // that appended the event and must not block for long (queue and return); it may unsubscribe
  // but must not emit.
  using Listener = EventBus::Listener;
  uint64_t SubscribeWake(std::string run_id, std::function<void()> wake) {
    return events_.SubscribeWake(std::move(run_id), std::move(wake));
  }
  uint64_t Subscribe(std::string run_id, Listener listener) {
    return events_.Subscribe(std::move(run_id), std::move(listener));
  }
  void Unsubscribe(uint64_t token) { events_.Unsubscribe(token); }

  // Stops claiming, cancels running sandboxes, joins the workers, destroys the warm sandboxes.
  // Idempotent.
  void Stop();

  // Each backend's availability (for GET /v1/info), native first.
  std::vector<BackendAvailability> Backends() const;

  const RunManagerOptions& options() const { return options_; }
  // What a sandbox service beside the runs shares with them (supervisor/sandbox/): the
  // backends (the native one without the warm pool in front; docker null when not
  // configured), the seccomp profiles in force (they reload with the command policy) and the
  // event bus. Valid while the manager lives.
  Backend* native_backend() const { return options_.native.get(); }
  Backend* docker_backend() const { return options_.docker.get(); }
  // With `live`, the programs are compiled without notifications (a long-lived sandbox's).
  SeccompSource seccomp_source(bool live = false) const;
  EventBus& events() { return events_; }
  // The review gate and the policies in force (the command policy, the jobs, the profiles).
  Review& review() { return *review_; }
  // Projects and their plans (supervisor/project/), submitting through this manager's review.
  Projects& projects() { return *projects_; }
  // The warm sandboxes; null when there are none (warm_sandboxes 0, or no native backend).
  WarmPool* warm_pool() const { return warm_ ? &warm_->pool() : nullptr; }

 private:
  RunManager(store::Store& store, RunManagerOptions options);

  store::Store& store_;
  RunManagerOptions options_;
  EventBus events_;
  std::unique_ptr<Review> review_;
  std::unique_ptr<Projects> projects_;
  // The native backend with the warm sandboxes in front; null: no warm sandboxes.
  std::unique_ptr<WarmBackend> warm_;
  void Queued();  // wakes the executor and every SubscribeQueued subscriber
  std::mutex queued_mu_;
  uint64_t next_queued_token_ = 1;
  std::map<uint64_t, std::function<void()>> queued_subscribers_;

  std::unique_ptr<Heartbeat> heartbeat_;
  // What other daemons sharing the database commit (PostgreSQL); null on SQLite.
  std::unique_ptr<store::StoreWatch> watch_;
  std::unique_ptr<Executor> executor_;
};

}  // namespace sbx::supervisor
