// Execution: `workers` threads claim QUEUED runs from the store (atomically, also against other
// daemons sharing it) and run each as an ephemeral sandbox whose steps are processes started one
// after another:
//
//   QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED
//
// Output is written to <data_dir>/runs/<id>/{stdout,stderr} as it arrives and published as
// step.log events; every byte written before a step exited is delivered before run.completed.
// Execute() reads as its phases: start, directory and logs, backend, mounts, sandbox, steps,
// outputs, finish.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/result.h"
#include "isolate/spec.h"
#include "seccomp/seccomp.h"
#include "supervisor/backend/backend.h"
#include "supervisor/checkout/mirrors.h"
#include "supervisor/events/event_bus.h"
#include "supervisor/observability/metrics.h"
#include "supervisor/store/store.h"
#include "supervisor/workspace/artifacts.h"

namespace sbx::supervisor {

// Compiles a named seccomp profile ("" or "default": the builtin one).
using SeccompPrograms = std::function<Result<seccomp::Program>(const std::string& name)>;

// The spec of a sandbox for `limits`, before its id, binds and seccomp program.
isolate::SandboxSpec SpecFor(const store::Limits& limits, uid_t host_id_base);
// SpecFor() with seccomp profile `profile` compiled (a native sandbox's).
Result<isolate::SandboxSpec> BaseSpec(const store::Limits& limits, uid_t host_id_base,
                                      const SeccompPrograms& seccomp,
                                      const std::string& profile);

struct ExecutorOptions {
  std::string node;      // this daemon's name in the store
  std::string data_dir;  // logs and artifacts under <data_dir>/runs/<id>/
  // This node's labels: it claims only runs whose node_selector they satisfy.
  std::map<std::string, std::string> labels;
  int workers = 2;
  std::vector<std::string> workspace_roots;
  uint64_t artifacts_quota_bytes = 64ull << 20;
  std::string default_backend = "native";  // for runs that name none
  Backend* native = nullptr;               // not owned
  Backend* docker = nullptr;               // not owned; null: not configured
  SeccompPrograms seccomp;
  std::function<Result<std::string>(const std::string& name)> seccomp_json;
  Metrics* metrics = nullptr;  // null: nothing is counted
  uid_t sandbox_id_base = 100000;  // the first host id of every sandbox (isolate/id_range.h)
};

class Executor {
 public:
  // Starts the workers.
  Executor(store::Store& store, EventBus& events, ExecutorOptions options);
  ~Executor();  // Stop()
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // A run was queued on this node: a worker claims it at once (runs queued by another daemon
  // sharing the store are picked up at the next recheck).
  void Wake();
  // Whether `run_id` runs here; if so its sandbox is killed (audited as run.cancel_requested by
  // `who`) and its worker ends it CANCELLED after its last bytes of output.
  bool Cancel(std::string_view run_id, const Principal& who);
  // Stops claiming, kills running sandboxes (their runs end FAILED, supervisor_shutdown) and
  // joins the workers. Idempotent.
  void Stop();
  // Draining: the runs running here finish, and no new one is claimed until SetDraining(false).
  void SetDraining(bool draining);
  // This node lost the database for longer than other nodes wait, or was told that they declared
  // it lost: whatever runs here may already be ended or running elsewhere. Kills every running
  // sandbox (a run still RUNNING here ends FAILED, node_lost; a run taken over is left to its new
  // node: the end is written only for the attempt this node claimed) and claims nothing until
  // Unfence(). Returns how many runs it killed.
  size_t Fence();
  void Unfence();
  size_t running() const;
  // Waits up to `timeout` until no run executes here; whether none does.
  bool WaitIdle(std::chrono::milliseconds timeout);

 private:
  struct Execution;
  void Worker();
  void Execute(store::RunRecord run);
  // The phases of Execute(), in order. Each returns false when the run cannot go on; it has then
  // set the run's end (reason and state).
  void Start(Execution& x);
  bool PrepareDirAndLogs(Execution& x);
  bool ChooseBackend(Execution& x);
  bool PrepareWorkspace(Execution& x);
  // A pinned checkout: the commit's tree fetched into its mirror and written under the run's
  // directory, seen through a copy-on-write view (a read-only one's changes fail the run).
  bool PrepareCheckout(Execution& x);
  bool CreateSandbox(Execution& x);
  void RunSteps(Execution& x);
  void ReleaseSandbox(Execution& x);
  void TakeOutputs(Execution& x);
  // A run whose sandbox was killed ends CANCELLED (a client's cancel) or FAILED
  // (supervisor_shutdown: Stop()).
  void SettleCancel(Execution& x);
  void Finish(Execution& x);
  // Records how long `phase` took: in the result's timeline and in the metrics.
  void Timed(Execution& x, const char* phase, std::chrono::nanoseconds took);
  bool CancelRequested(const std::string& id);
  // diff.patch, report.md and audit.json for a run that has ended, and the manifest; returns
  // every artifact (`collected` first), to announce.
  std::vector<ArtifactInfo> WriteEndArtifacts(const store::RunRecord& run, std::string diff,
                                              std::vector<ArtifactInfo> collected);

  store::Store& store_;
  EventBus& events_;
  ExecutorOptions options_;
  checkout::Mirrors mirrors_;  // <data_dir>/mirrors
  // Why a running sandbox was killed: a client's cancel, the daemon's stop, or fencing.
  enum class KillCause { kClient, kShutdown, kFenced };
  bool Claiming() const;  // mu_ held

  mutable std::mutex mu_;
  std::condition_variable work_;  // a run was queued here, Stop(), or claiming may resume
  std::condition_variable idle_;  // a run ended here
  bool stopping_ = false;
  bool draining_ = false;
  bool fenced_ = false;
  uint64_t wakeups_ = 0;
  std::map<std::string, RunSandbox*> running_;         // run id -> its sandbox, while it runs
  std::map<std::string, KillCause> cancel_requested_;
  std::vector<std::thread> workers_;
};

}  // namespace sbx::supervisor
