// Runs behind a review gate: submit, plan, review, queue, execute in a sandbox, finish.
//
//   PENDING -> PLANNED -> AWAITING_REVIEW -> QUEUED -> RUNNING -> SUCCEEDED | FAILED
//   cancel: any non-terminal state -> CANCELLED (a running sandbox's whole tree is killed)
//
// No run reaches QUEUED without an approval: a reviewer's (never the submitter's own), or, once
// the policy engine exists, a policy rule's. Every state change is a compare-and-set in the
// store, so an illegal or racing transition changes nothing. Each change is an event (per-run
// `seq`, replayable from the store) and an audit record.
//
// Execution: `max_concurrent_runs` worker threads claim QUEUED runs from the store (atomically,
// also against other daemons sharing it) and run their steps one after another in one sandbox.
// Output is written to <data_dir>/runs/<id>/{stdout,stderr} as it arrives and published as
// step.log events; every byte written before a step exited is delivered before run.completed.
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
#include "supervisor/artifacts.h"
#include "supervisor/backend.h"
#include "supervisor/events/event_bus.h"
#include "supervisor/metrics.h"
#include "supervisor/policy/command_policy.h"
#include "supervisor/seccomp_profiles.h"
#include "supervisor/store/store.h"
#include "supervisor/warm_pool.h"

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
  // The size of each run's /artifacts (a tmpfs).
  uint64_t artifacts_quota_bytes = 64ull << 20;
  // Native sandboxes kept built ahead of their runs (supervisor/warm_pool.h): a run with the
  // default limits, the default seccomp profile and no workspace starts in one at once.
  // 0: every sandbox is built when its run starts. None either when default_backend is docker.
  int warm_sandboxes = 1;
};

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
  // This daemon beats every heartbeat_interval; a node sharing the database whose last beat is
  // older than node_timeout is taken for dead and its RUNNING runs end FAILED
  // (supervisor_restart).
  std::chrono::milliseconds heartbeat_interval{10'000};
  std::chrono::milliseconds node_timeout{60'000};
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
  // The backends (supervisor/backend.h). Null native: the native engine over `cgroups` (which
  // may then be null only when `native` is given), probed at Start(). Null docker: Docker is
  // not configured, and runs asking for it fail with that reason.
  std::shared_ptr<Backend> native;
  std::shared_ptr<Backend> docker;
  // For runs that name no backend: "native", "docker" or "auto". A run naming an image always
  // goes to Docker.
  std::string default_backend = "native";
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
  // returns that run (created = false) and changes nothing.
  Result<store::CreateRunResult> Submit(store::RunRecord request, const Principal& who);
  // AWAITING_REVIEW -> QUEUED. kPermissionDenied for the submitter's own run or a submitter
  // role; kFailedPrecondition when the run is not awaiting review.
  Result<store::RunRecord> Approve(std::string_view run_id, const Principal& who);
  // AWAITING_REVIEW -> CANCELLED with reason "rejected: …".
  Result<store::RunRecord> Reject(std::string_view run_id, const Principal& who,
                                  const std::string& reason);
  // Any non-terminal state -> CANCELLED; a running sandbox is killed first.
  Result<store::RunRecord> Cancel(std::string_view run_id, const Principal& who);

  // What the command policy in force decides, without running anything. nullopt when no
  // command policy is configured.
  std::optional<policy::Decision> Evaluate(const policy::CommandInput& input) const;
  static policy::CommandInput PolicyInput(const store::RunRecord& run);
  // Swaps the command policy atomically; runs already planned keep their decision.
  void SetCommandPolicy(std::shared_ptr<const policy::CommandPolicy> policy);
  // Loads <dir>/commands.yaml (the shipped default when there is none) and swaps it in, with an
  // audit record by `who`. A broken file is refused with the reason and the policy in force
  // stays.
  // The seccomp profiles of seccomp_profiles_dir reload with it, atomically: a broken command
  // policy or profile (refused with its file and JSON path, audited as policy.reload_refused or
  // seccomp.reload_refused) leaves both as they were.
  Status ReloadCommandPolicy(const std::string& dir, const Principal& who);
  // The seccomp profiles in force; null when the caller compiles its own (options.seccomp).
  std::shared_ptr<const SeccompProfileSet> seccomp_profiles() const;
  // The policy in force; null when none is configured.
  std::shared_ptr<const policy::CommandPolicy> command_policy() const;

  // Events as they are appended ("" = every run), in seq order. The listener runs on the thread
  // that appended the event and must not block for long (queue and return); it may unsubscribe
  // but must not emit.
  using Listener = EventBus::Listener;
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
  // The warm sandboxes; null when there are none (warm_sandboxes 0, or no native backend).
  WarmPool* warm_pool() const { return warm_.get(); }

 private:
  RunManager(store::Store& store, RunManagerOptions options);
  // A transition with its run.status event and audit record (and run.completed when
  // `ends_run`), in one commit.
  Result<store::RunRecord> Move(std::string_view run_id, const std::vector<store::RunState>& from,
                                store::RunState to, const store::RunUpdate& update,
                                const Principal& who, std::string_view action,
                                bool ends_run = false);
  // PENDING -> PLANNED (the policy decision) -> AWAITING_REVIEW (-> QUEUED when a rule
  // approves it; -> CANCELLED when one denies it), in one commit after `before`; from PLANNED
  // for a run that stalled there.
  Result<store::RunRecord> Plan(const store::RunRecord& run, const Principal& who,
                                std::vector<store::Write> before = {});
  void HeartbeatLoop();
  void Worker();
  void Execute(store::RunRecord run);
  // The spec of a sandbox for `run`'s limits and seccomp profile, before its id and binds.
  Result<isolate::SandboxSpec> BaseSpec(const store::Limits& limits,
                                        const std::string& seccomp_profile) const;
  // diff.patch, report.md and audit.json for a run that has ended, and the manifest; returns
  // every artifact (`collected` first), to announce.
  std::vector<ArtifactInfo> WriteEndArtifacts(const store::RunRecord& run, std::string diff,
                                              std::vector<ArtifactInfo> collected);

  store::Store& store_;
  RunManagerOptions options_;
  EventBus events_;
  std::mutex mu_;
  std::condition_variable work_;     // a run was queued here, or Stop()
  std::condition_variable stop_cv_;  // Stop(), for the heartbeat
  bool stopping_ = false;
  uint64_t wakeups_ = 0;
  std::map<std::string, RunSandbox*> running_;  // run id -> its sandbox, while it runs
  std::map<std::string, bool> cancel_requested_;  // true: a client cancelled; false: Stop()
  std::vector<std::thread> workers_;
  std::thread heartbeat_;
  std::unique_ptr<WarmPool> warm_;  // null: no warm sandboxes

  mutable std::mutex policy_mu_;
  std::shared_ptr<const policy::CommandPolicy> policy_;
  bool seccomp_from_set_ = false;
  std::shared_ptr<const SeccompProfileSet> seccomp_profiles_;  // under policy_mu_

  static Result<std::shared_ptr<const SeccompProfileSet>> LoadSeccompProfiles(
      const std::string& dir);
  Result<seccomp::Program> SeccompProgram(const std::string& name) const;
  Result<std::string> SeccompJson(const std::string& name) const;
};

}  // namespace sbx::supervisor
