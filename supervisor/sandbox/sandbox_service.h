// Long-lived sandboxes (issue 18): created behind the same review gate as runs, held open by
// their init for as long as their lifetime allows, with processes started in them side by side,
// their files reachable inside their own root, and every start, signal and end audited.
//
//   Create:  PENDING -> AWAITING_REVIEW (the command policy's `sandboxes:` section decides)
//            -> STARTING -> RUNNING when it allows, or after a reviewer's Approve();
//            FAILED (policy_denied) when it denies, (rejected) on Reject()
//   Pause/Resume: RUNNING <-> PAUSED (the cgroup freezer)
//   Delete:  any state -> STOPPED (deleted); the whole tree killed, the record and logs kept
//   expiry:  timeout_s after its start it ends FAILED (expired); idle_timeout_s without a
//            process running and without a call on it, FAILED (idle)
//   restart: a daemon that dies leaves its sandboxes FAILED (supervisor_restart) at its next
//            start, with their processes' results and logs kept
//
// Processes (StartProcess) pass the command policy exactly like a run's steps: allow starts
// them, review keeps them AWAITING_REVIEW until ApproveProcess(), deny refuses them. Their
// output goes to <data_dir>/sandboxes/<id>/processes/<n>/ (process_output.h), read by one
// output thread that watches every live process's pipes, terminal and end.
//
// Tenancy: a submitter sees and drives its own sandboxes only; another's answers kNotFound,
// exactly as a missing one. Reviewers and admins see every sandbox.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "supervisor/files/files.h"
#include "isolate/live.h"
#include "supervisor/backend/backend.h"
#include "supervisor/events/audit.h"
#include "supervisor/events/event_bus.h"
#include "supervisor/observability/metrics.h"
#include "supervisor/policy/command_policy.h"
#include "supervisor/review/limits.h"
#include "supervisor/sandbox/process_output.h"
#include "supervisor/sandbox/snapshots.h"
#include "supervisor/store/store.h"

namespace sbx::supervisor {

struct SandboxServiceOptions {
  std::string node;      // this daemon's name in the store
  // This node's labels: a sandbox whose node_selector they do not match is not started here
  // (the API forwards it to a node that matches).
  std::map<std::string, std::string> node_labels;
  std::string data_dir;  // <data_dir>/sandboxes/<id>/
  ServiceLimits limits;  // defaults and maxima of cpus, memory, pids, output; workspace roots
  // Lifetime when a sandbox names none, and the most it may ask for; idle timeout likewise.
  int64_t default_timeout_s = 3600;
  int64_t max_timeout_s = 7 * 24 * 3600;
  int64_t default_idle_timeout_s = 600;
  int max_sandboxes = 64;  // live on this node at once; past it, Create fails kResourceExhausted
  Backend* native = nullptr;  // not owned
  Backend* docker = nullptr;  // not owned; null: not configured
  std::string default_backend = "native";
  uid_t sandbox_id_base = 100000;
  // The seccomp profiles by name. Programs must be compiled without notify_errors: a live
  // sandbox's filter answers denials itself (no listener runs beside its processes).
  SeccompSource seccomp;
  // The command policy in force (it changes on reload); null: everything waits for review.
  std::function<std::shared_ptr<const policy::CommandPolicy>()> command_policy;
  Metrics* metrics = nullptr;
  files::Limits file_limits;
};

// What GET /v1/sandboxes/{id} shows beyond the record while the sandbox is live here.
struct SandboxLiveInfo {
  std::optional<isolate::SandboxStats> stats;
  std::optional<int64_t> expires_at_ms;
  std::optional<int64_t> idle_expires_at_ms;
};

// A process's result with the start of its output, for StartProcess(wait).
struct ProcessOutcome {
  store::ProcessRecord process;
  std::string stdout_head, stderr_head;  // up to max_bytes of each
  bool stdout_truncated = false, stderr_truncated = false;
};

// A sandbox or one of its processes changed state (created, awaiting review, started, paused,
// finished, …): what the change feed tells its listeners, for pages and clients that follow
// sandboxes live instead of asking again and again.
struct SandboxChange {
  std::string sandbox_id;
  std::string submitter;
  std::optional<int64_t> process_id;  // set for a process's change
  std::string state;                  // SandboxStateName or ProcessStateName
  std::string reason;                 // how it ended, once it has
};
using ChangeListener = std::function<void(const SandboxChange&)>;

class SandboxService {
 public:
  // Ends FAILED (supervisor_restart) what an earlier daemon of this node left live, then starts
  // the output thread and the expiry timer.
  static Result<std::unique_ptr<SandboxService>> Start(store::Store& store, EventBus& events,
                                                       SandboxServiceOptions options);
  ~SandboxService();  // Stop()
  // Ends every live sandbox FAILED (supervisor_shutdown) and stops the threads. Idempotent.
  void Stop();

  // ---- Lifecycle ----------------------------------------------------------------------------
  // Validates (limits within the maxima, defaults filled in, workspace under an allowed root),
  // stores, judges with the policy, and starts it when the policy allows. A repeated
  // idempotency key returns the existing sandbox (created = false). A denied sandbox is
  // kPermissionDenied with the rule's reason (and stays recorded FAILED).
  Result<store::CreateSandboxResult> Create(store::SandboxRequest request, const Principal& who);
  Result<store::SandboxRecord> Get(std::string_view id, const Principal& who);
  Result<store::SandboxPage> List(store::SandboxFilter filter, const Principal& who);
  SandboxLiveInfo Live(std::string_view id);
  // Whether the sandbox is live on this node (no store read).
  bool Hosts(std::string_view id);
  // AWAITING_REVIEW -> STARTING -> RUNNING. kPermissionDenied for the submitter's own sandbox or
  // a submitter role; kFailedPrecondition when it is not awaiting review.
  Result<store::SandboxRecord> Approve(std::string_view id, const Principal& who);
  Result<store::SandboxRecord> Reject(std::string_view id, const Principal& who,
                                      const std::string& reason);
  // Any state -> STOPPED (deleted); a terminal sandbox is returned as it is.
  Result<store::SandboxRecord> Delete(std::string_view id, const Principal& who);
  Result<store::SandboxRecord> Pause(std::string_view id, const Principal& who);
  Result<store::SandboxRecord> Resume(std::string_view id, const Principal& who);
  // Resets the idle timer.
  Result<store::SandboxRecord> Touch(std::string_view id, const Principal& who);

  // ---- Processes ----------------------------------------------------------------------------
  // Judged by the command policy (argv as one step, the sandbox's labels): allow starts it,
  // review records it AWAITING_REVIEW, deny is kPermissionDenied naming the rule (audited).
  Result<store::ProcessRecord> StartProcess(std::string_view sandbox_id,
                                            store::ProcessRequest request, const Principal& who);
  // Blocks until the process has a final result or `timeout` passes (kUnavailable); with up to
  // `max_bytes` of each stream. A process awaiting review is waited for through the decision
  // (approved: until it ends; rejected, or cancelled with its sandbox: at once).
  Result<ProcessOutcome> WaitProcess(std::string_view sandbox_id, int64_t process_id,
                                     std::chrono::milliseconds timeout, size_t max_bytes,
                                     const Principal& who);
  Result<store::ProcessRecord> GetProcess(std::string_view sandbox_id, std::string_view id_or_tag,
                                          const Principal& who);
  Result<std::vector<store::ProcessRecord>> ListProcesses(std::string_view sandbox_id,
                                                          store::ProcessFilter filter,
                                                          const Principal& who);
  Result<store::ProcessRecord> ApproveProcess(std::string_view sandbox_id,
                                              std::string_view id_or_tag, const Principal& who);
  Result<store::ProcessRecord> RejectProcess(std::string_view sandbox_id,
                                             std::string_view id_or_tag, const Principal& who,
                                             const std::string& reason);
  // To the process's group (1..64). Kill: SIGKILL to its whole tree (its cgroup).
  Status Signal(std::string_view sandbox_id, std::string_view id_or_tag, int sig,
                const Principal& who);
  Status Kill(std::string_view sandbox_id, std::string_view id_or_tag, const Principal& who);
  // Writes to the process's stdin (a pipe kept open with stdin_open, or its terminal); `close`
  // closes a pipe after the bytes. kFailedPrecondition when there is no open stdin.
  Status WriteStdin(std::string_view sandbox_id, std::string_view id_or_tag,
                    std::string_view bytes, bool close, const Principal& who);
  Status Resize(std::string_view sandbox_id, std::string_view id_or_tag, isolate::PtySize size,
                const Principal& who);

  // The process's output, live or not: its directory (for ProcessOutput::StreamPath and
  // ReadProcessEvents) and, while it is live here, the live feed.
  struct OutputHandle {
    store::ProcessRecord process;
    std::string dir;
    std::shared_ptr<ProcessOutput> live;  // null: not live here; read the files
  };
  Result<OutputHandle> Output(std::string_view sandbox_id, std::string_view id_or_tag,
                              const Principal& who);

  // ---- Snapshots (snapshots.h) -------------------------------------------------------------
  // Saves /tmp, /artifacts and a copy-on-write /workspace of a RUNNING or PAUSED sandbox as
  // snapshot `name` of the caller; Create() with from_snapshot starts a sandbox from it.
  Result<SnapshotRecord> Snapshot(std::string_view sandbox_id, std::string_view name,
                                  const Principal& who);
  Result<std::vector<SnapshotRecord>> ListSnapshots(const Principal& who);
  Result<SnapshotRecord> GetSnapshot(std::string_view name_or_id, const Principal& who);
  Status DeleteSnapshot(std::string_view name_or_id, const Principal& who);

  // ---- Files --------------------------------------------------------------------------------
  // The sandbox's root for files/ (RUNNING or PAUSED here; kFailedPrecondition otherwise).
  // Counts as activity.
  Result<files::SandboxRoot> Files(std::string_view sandbox_id, const Principal& who);

  size_t live_count() const;

  // ---- The change feed -----------------------------------------------------------------------
  // `listener` sees every change of state of every sandbox and process from now on, on the
  // thread that stored it, right after the store write (changes stored by different threads
  // at once may reach it in either order: read the record when the order matters). It must
  // not block (queue and return); it may unsubscribe. It may still be called once after
  // UnsubscribeChanges returns, by a publication already under way. Nothing is replayed: list
  // first (after subscribing) to know the present. Returns a token for UnsubscribeChanges.
  uint64_t SubscribeChanges(ChangeListener listener);
  void UnsubscribeChanges(uint64_t token);

 private:
  struct Impl;
  explicit SandboxService(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Whether `who` may see `sandbox` (its submitter, a reviewer or an admin).
bool MayAccess(const store::SandboxRecord& sandbox, const Principal& who);

}  // namespace sbx::supervisor
