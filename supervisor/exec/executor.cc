#include "supervisor/exec/executor.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>

#include "base/fs.h"
#include "supervisor/checkout/checkout.h"
#include "supervisor/exec/result_json.h"
#include "supervisor/workspace/run_logs.h"
#include "supervisor/workspace/text.h"
#include "supervisor/workspace/workspace.h"

namespace sbx::supervisor {

using store::EventType;
using store::RunRecord;
using store::RunState;

namespace {

constexpr size_t kMaxDiffBytes = 16 << 20;
// A checkout's tree, in the run's directory while it runs.
constexpr char kCheckoutDir[] = "checkout";
// A safety net behind the store's watch (Store::Watch), which wakes the workers when another
// daemon queues a run: a notification lost with a broken connection delays a claim by this much.
constexpr auto kCrossNodeRecheck = std::chrono::seconds(10);

// How a process ended, as the run's record keeps it.
store::EndReason StepEnd(const isolate::ProcessResult& r) {
  switch (r.reason) {
    case isolate::EndReason::kExited:
      return {store::EndCode::kExited};
    case isolate::EndReason::kSignaled:
      return {store::EndCode::kSignaled};
    case isolate::EndReason::kOomKilled:
      return {store::EndCode::kOomKilled};
    case isolate::EndReason::kTimedOut:
      return {store::EndCode::kTimedOut};
    case isolate::EndReason::kCancelled:
      return {store::EndCode::kCancelled};
    case isolate::EndReason::kSetupFailed:
      break;
  }
  return {store::EndCode::kSetupFailed, r.error ? r.error->message : ""};
}

}  // namespace

isolate::SandboxSpec SpecFor(const store::Limits& limits, uid_t host_id_base) {
  isolate::SandboxSpec spec;
  spec.host_id_base = host_id_base;
  spec.limits.cpus = limits.cpus;
  spec.limits.memory_bytes = static_cast<uint64_t>(limits.memory_bytes.value_or(0));
  spec.limits.pids = static_cast<uint64_t>(limits.pids.value_or(0));
  return spec;
}

Result<isolate::SandboxSpec> BaseSpec(const store::Limits& limits, uid_t host_id_base,
                                      const SeccompPrograms& seccomp, const std::string& profile) {
  isolate::SandboxSpec spec = SpecFor(limits, host_id_base);
  auto program = seccomp(profile);
  if (!program.ok()) return WithContext(std::move(program).error(), "seccomp profile");
  spec.seccomp = std::move(*program);
  return spec;
}

// One run on its way through the phases of Execute().
struct Executor::Execution {
  explicit Execution(RunRecord r) : run(std::move(r)), id(run.id) {}
  // The run cannot go on: it ends in `state` with `reason`.
  bool End(RunState state, store::EndReason reason) {
    end = state;
    result.reason = std::move(reason);
    return false;
  }
  // The run could not be set up: it ends FAILED with setup_failed and `what`.
  bool SetupFailed(std::string what) {
    return End(RunState::kFailed, {store::EndCode::kSetupFailed, std::move(what)});
  }

  RunRecord run;
  const std::string id;
  const std::chrono::steady_clock::time_point claimed_at = std::chrono::steady_clock::now();
  store::RunResult result;
  RunState end = RunState::kFailed;
  std::string dir;  // <data_dir>/runs/<id>
  // The logs: each chunk is appended to its stream's file, and its step.log event records where
  // (offset, length) and when (the event's ts), so the store holds no copy of the bytes.
  std::optional<LogAppender> logs[2];
  Backend* backend = nullptr;
  SandboxRequest request;
  std::optional<ResolvedWorkspace> workspace;
  WorkspaceMode ws_mode = WorkspaceMode::kReadOnly;
  // Before `mounts`, so destroyed after them: a sandbox built ahead of its run holds the
  // directory its mounts are in.
  std::unique_ptr<RunSandbox> sandbox;
  std::optional<RunMounts> mounts;
  std::vector<store::Step> steps;
  bool step_cancelled = false;          // a step ended cancelled (its sandbox was killed)
  std::vector<ArtifactInfo> artifacts;  // what the program left in /artifacts
  std::string diff;                     // the copy-on-write workspace's changes
  // A pinned checkout: its tree as written (<dir>/checkout), and whether the run must leave it
  // as it was.
  std::optional<checkout::TreeManifest> checkout;
  bool checkout_read_only = false;
};

Executor::Executor(store::Store& store, EventBus& events, ExecutorOptions options)
    : store_(store),
      events_(events),
      options_(std::move(options)),
      mirrors_(options_.data_dir + "/mirrors") {
  for (int i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { Worker(); });
}

Executor::~Executor() { Stop(); }

void Executor::Wake() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++wakeups_;
  }
  work_.notify_one();
}

bool Executor::Cancel(std::string_view run_id, const Principal& who) {
  // A run this node is executing is finished by its worker, after its last bytes of output.
  std::lock_guard<std::mutex> lk(mu_);
  auto it = running_.find(std::string(run_id));
  if (it == running_.end()) return false;
  cancel_requested_[it->first] = KillCause::kClient;
  if (it->second != nullptr) it->second->Cancel();
  events_.Audit(who, "run.cancel_requested", run_id, {});
  return true;
}

void Executor::Stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
    for (auto& [id, sb] : running_) {
      cancel_requested_.emplace(id, KillCause::kShutdown);  // nobody cancelled it
      if (sb != nullptr) sb->Cancel();
    }
  }
  work_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void Executor::SetDraining(bool draining) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (draining_ == draining) return;
    draining_ = draining;
    ++wakeups_;
  }
  spdlog::info("node {}: {}", options_.node, draining ? "draining" : "taking work again");
  work_.notify_all();
}

size_t Executor::Fence() {
  size_t killed = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    fenced_ = true;
    for (auto& [id, sb] : running_) {
      cancel_requested_[id] = KillCause::kFenced;
      if (sb != nullptr) sb->Cancel();
      ++killed;
    }
  }
  return killed;
}

void Executor::Unfence() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!fenced_) return;
    fenced_ = false;
    ++wakeups_;
  }
  work_.notify_all();
}

bool Executor::WaitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  return idle_.wait_for(lk, timeout, [&] { return running_.empty(); });
}

size_t Executor::running() const {
  std::lock_guard<std::mutex> lk(mu_);
  return running_.size();
}

bool Executor::Claiming() const { return !stopping_ && !draining_ && !fenced_; }

bool Executor::CancelRequested(const std::string& id) {
  std::lock_guard<std::mutex> lk(mu_);
  return cancel_requested_.count(id) > 0;
}

void Executor::Worker() {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      // Draining or fenced: no new run until that ends (or the daemon stops).
      work_.wait(lk, [&] { return stopping_ || Claiming(); });
      if (stopping_) return;
      seen = wakeups_;
    }
    auto claimed = store_.ClaimNextQueued(options_.node, options_.labels);
    if (claimed.ok() && claimed->has_value()) {
      Execute(std::move(**claimed));
      continue;
    }
    if (!claimed.ok()) spdlog::error("claiming a run: {}", claimed.error().ToString());
    // Woken by a local approval at once; runs approved by another daemon sharing the database
    // are picked up at the next recheck.
    std::unique_lock<std::mutex> lk(mu_);
    work_.wait_for(lk, kCrossNodeRecheck, [&] { return stopping_ || wakeups_ != seen; });
  }
}

void Executor::Execute(RunRecord run) {
  Execution x(std::move(run));
  // Each phase's time goes into the result's timeline and the per-phase histogram. The time in
  // the queue comes from the store's queued_at (milliseconds); the rest is measured here.
  if (x.run.queued_at_ms) {
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    Timed(x, "queued",
          std::chrono::milliseconds(std::max<int64_t>(0, now_ms - *x.run.queued_at_ms)));
  }
  auto phase = [&](const char* name, auto&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    bool ok = true;
    if constexpr (std::is_void_v<decltype(f())>) {
      f();
    } else {
      ok = f();
    }
    Timed(x, name, std::chrono::steady_clock::now() - t0);
    return ok;
  };
  phase("start", [&] { Start(x); });
  if (phase("dir_and_logs", [&] { return PrepareDirAndLogs(x); }) &&
      phase("choose_backend", [&] { return ChooseBackend(x); }) &&
      phase("workspace", [&] { return PrepareWorkspace(x); }) &&
      phase("create_sandbox", [&] { return CreateSandbox(x); })) {
    phase("steps", [&] { RunSteps(x); });
    phase("release_sandbox", [&] { ReleaseSandbox(x); });
    phase("take_outputs", [&] { TakeOutputs(x); });
    phase("settle_cancel", [&] { SettleCancel(x); });
  }
  Finish(x);
}

void Executor::Timed(Execution& x, const char* phase, std::chrono::nanoseconds took) {
  const int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(took).count();
  x.result.timeline.push_back({phase, us});
  if (options_.metrics != nullptr) options_.metrics->RunPhase(phase, took);
}

void Executor::Start(Execution& x) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    running_[x.id] = nullptr;
    // Claimed just as the node fenced itself: killed as soon as it has a sandbox.
    if (fenced_) cancel_requested_[x.id] = KillCause::kFenced;
  }
  std::vector<store::Write> started;
  started.push_back(store::EventWrite{
      x.id, EventType::kRunStatus, {{"state", "RUNNING"}, {"node", options_.node}}});
  started.push_back(AuditOf(Daemon(), "run.started", x.id, {{"node", options_.node}}));
  (void)events_.Record(x.id, "its start", started);
}

bool Executor::PrepareDirAndLogs(Execution& x) {
  // Where its output goes, besides the events.
  x.dir = fmt::format("{}/runs/{}", options_.data_dir, x.id);
  // 0711: the sandbox's init (an unprivileged host uid) passes through to its mount points; it
  // cannot list the directory, and the logs in it are 0600.
  if (::mkdir(x.dir.c_str(), 0711) < 0 && errno != EEXIST) {
    return x.SetupFailed(fmt::format("mkdir {}: {}", x.dir, std::strerror(errno)));
  }
  for (int i = 0; i < 2; ++i) {
    auto log =
        LogAppender::Open(x.dir + "/" + LogFileName(i == 0 ? "stdout" : "stderr", x.run.attempt));
    if (!log.ok()) return x.SetupFailed(log.error().ToString());
    x.logs[i].emplace(std::move(*log));
  }
  return true;
}

bool Executor::ChooseBackend(Execution& x) {
  const RunRecord& run = x.run;
  x.request.spec = SpecFor(run.limits, options_.sandbox_id_base);
  x.request.spec.id = x.id;
  x.request.image = run.image;  // Docker's; the native engine builds its root from the host's
  // Which backend runs it: what it asked for, where that is available.
  auto chosen = SelectBackend(run.backend.empty() ? options_.default_backend : run.backend,
                              options_.native, options_.docker);
  if (!chosen.ok()) {
    x.SetupFailed(chosen.error().message);
    spdlog::error("run {}: {}", x.id, store::RenderEndReason(x.result.reason));
    return false;
  }
  x.backend = *chosen;
  x.result.backend = BackendKindName(x.backend->kind());
  x.request.seccomp_profile = run.seccomp_profile;
  const SeccompSource seccomp{options_.seccomp, options_.seccomp_json};
  if (Status st = x.backend->AttachSeccomp(seccomp, run.seccomp_profile, x.request); !st.ok()) {
    return x.SetupFailed(st.error().ToString());
  }
  if (CancelRequested(x.id)) return x.End(RunState::kCancelled, {store::EndCode::kCancelled});
  return true;
}

bool Executor::PrepareWorkspace(Execution& x) {
  const RunRecord& run = x.run;
  if (run.workspace && !run.workspace->sha.empty()) return PrepareCheckout(x);
  if (run.workspace) {
    auto ws = ResolveWorkspace(run.workspace->path, options_.workspace_roots);
    auto mode = ParseWorkspaceMode(run.workspace->mode);
    if (!ws.ok() || !mode.ok()) {
      return x.SetupFailed("workspace: " +
                           (ws.ok() ? mode.error().ToString() : ws.error().ToString()));
    }
    x.workspace = std::move(*ws);
    x.ws_mode = *mode;
  }
  return true;
}

bool Executor::PrepareCheckout(Execution& x) {
  const store::Workspace& w = *x.run.workspace;
  auto mirror = mirrors_.Ensure(w.repo, w.sha);
  if (!mirror.ok()) return x.SetupFailed("checkout: " + mirror.error().message);
  const std::string dir = x.dir + "/" + kCheckoutDir;
  auto manifest = checkout::Materialize(*mirror, w.sha, dir);
  if (!manifest.ok()) return x.SetupFailed("checkout: " + manifest.error().message);
  x.checkout = std::move(*manifest);
  x.checkout_read_only = w.mode != "cow";
  ResolvedWorkspace ws;
  ws.fd.reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!ws.fd) return x.SetupFailed(fmt::format("checkout: open {}: {}", dir, std::strerror(errno)));
  ws.path = dir;
  ws.root = x.dir;
  // The tree is the daemon's own, fresh: its owner (root) becomes the sandbox user in the view.
  ws.owner_uid = 0;
  ws.owner_gid = 0;
  x.workspace = std::move(ws);
  // Read-only too is a copy-on-write view: a write lands in the run's own layer, where the
  // clean-tree check finds it (checkout_dirty), instead of failing inside the program.
  x.ws_mode = WorkspaceMode::kCopyOnWrite;
  return true;
}

bool Executor::CreateSandbox(Execution& x) {
  x.steps = x.run.steps.empty() ? std::vector<store::Step>{{"main", x.run.argv}} : x.run.steps;
  x.request.processes = x.steps.size();
  // Host-side mounts: /artifacts always, /workspace when asked for. They outlive the sandbox
  // until the artifacts and the diff have been taken.
  const RunMountsRequest mounts{x.dir, x.workspace ? &*x.workspace : nullptr, x.ws_mode,
                                options_.artifacts_quota_bytes};
  Result<std::unique_ptr<RunSandbox>> sb =
      x.backend->CreateForRun(std::move(x.request), mounts, x.mounts);
  if (!sb.ok()) {
    x.SetupFailed(sb.error().ToString());
    spdlog::error("run {}: {}", x.id, store::RenderEndReason(x.result.reason));
    if (x.mounts) TakeOutputs(x);  // the sandbox failed, not its mounts: they come down
    return false;
  }
  x.sandbox = std::move(*sb);
  if (options_.metrics != nullptr) {
    options_.metrics->SandboxStarted(std::chrono::steady_clock::now() - x.claimed_at,
                                     x.sandbox->BuiltAhead());
  }
  std::lock_guard<std::mutex> lk(mu_);
  running_[x.id] = x.sandbox.get();
  if (cancel_requested_.count(x.id)) x.sandbox->Cancel();
  return true;
}

void Executor::RunSteps(Execution& x) {
  const RunRecord& run = x.run;
  const std::string& id = x.id;
  store::RunResult& result = x.result;
  // stdin: the request's bytes, the same for each step. Sealed once written, and each step
  // reads it through a read-only open file of its own (its own offset): a step cannot change
  // what the next one reads, nor move its read position, from inside the sandbox.
  UniqueFd stdin_fd;
  if (!run.stdin_data.empty()) {
    stdin_fd.reset(::memfd_create("sbx-stdin", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (stdin_fd && (!WriteAll(stdin_fd.get(), run.stdin_data).ok() ||
                     ::fcntl(stdin_fd.get(), F_ADD_SEALS,
                             F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0)) {
      spdlog::error("run {}: preparing its stdin: {}", id, std::strerror(errno));
      stdin_fd.reset();
    }
  }
  std::vector<std::string> env;
  for (const auto& [k, v] : run.env) env.push_back(k + "=" + v);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(run.limits.timeout_s.value_or(600));
  uint64_t output_left = static_cast<uint64_t>(run.limits.output_bytes.value_or(16 << 20));
  bool all_ok = true;

  for (const store::Step& step : x.steps) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    isolate::ProcessSpec p;
    p.argv = step.argv;
    p.env = env;
    // In the workspace when there is one, as a long-lived sandbox's processes start.
    if (x.workspace) p.cwd = RunMounts::kWorkspaceTarget;
    p.timeout_ms = left.count() > 0 ? static_cast<uint64_t>(left.count()) : 1;
    p.output_limit_bytes = output_left;
    UniqueFd step_stdin;
    if (stdin_fd) {
      step_stdin.reset(
          ::open(fmt::format("/proc/self/fd/{}", stdin_fd.get()).c_str(), O_RDONLY | O_CLOEXEC));
      if (!step_stdin) spdlog::error("run {}: reopening its stdin: {}", id, std::strerror(errno));
      p.stdin_fd = step_stdin.get();
    }
    (void)events_.Emit(id, EventType::kStepStarted, {{"step", step.name}, {"argv", step.argv}});
    auto sink = [&](int stream, std::string_view data) {
      LogAppender& log = *x.logs[stream == 1 ? 0 : 1];
      nlohmann::json ev = {{"step", step.name}, {"stream", stream == 1 ? "stdout" : "stderr"}};
      // Its bytes are in this attempt's log file (LogFileName).
      if (x.run.attempt > 1) ev["attempt"] = x.run.attempt;
      const int64_t offset = log.offset();
      if (Status w = log.Append(data); w.ok()) {
        ev["offset"] = offset;
        ev["length"] = data.size();
      } else {
        // The log file cannot take it (disk full?): the event carries the bytes instead.
        spdlog::error("run {}: writing its {} log: {}", id, ev["stream"].get<std::string>(),
                      w.error().ToString());
        if (IsValidUtf8(data)) {
          ev["data"] = std::string(data);
        } else {
          ev["data_b64"] = Base64Encode(data);
        }
      }
      (void)events_.Emit(id, EventType::kStepLog, std::move(ev));
    };
    auto r = x.sandbox->Run(p, sink);
    store::StepResult sr;
    sr.name = step.name;
    if (!r.ok()) {
      sr.reason = {store::EndCode::kSetupFailed, r.error().ToString()};
    } else {
      sr.reason = StepEnd(*r);
      sr.exit_code = r->exit_code;
      sr.signal = r->signal;
      sr.wall_ms = static_cast<int64_t>(r->wall_ms);
      sr.cpu_ms = static_cast<int64_t>(r->cpu_ms);
      sr.memory_peak_bytes = static_cast<int64_t>(r->memory_peak_bytes);
      for (const auto& d : r->seccomp_denials) {
        sr.seccomp_denials.push_back({d.name, static_cast<int64_t>(d.count)});
      }
      if (result.isolation.is_null()) result.isolation = IsolationToJson(r->isolation);
      if (r->output_truncated) result.output_truncated = true;
      uint64_t used = r->stdout_bytes + r->stderr_bytes;
      output_left = used >= output_left ? 0 : output_left - used;
      x.step_cancelled = r->reason == isolate::EndReason::kCancelled;
    }
    (void)events_.Emit(id, EventType::kStepFinished, StepResultJson(sr));
    result.steps.push_back(sr);
    result.reason = sr.reason;
    result.exit_code = sr.exit_code;
    result.signal = sr.signal;
    result.wall_ms += sr.wall_ms;
    result.cpu_ms += sr.cpu_ms;
    result.memory_peak_bytes = std::max(result.memory_peak_bytes, sr.memory_peak_bytes);
    result.seccomp_denials = AddDenials(std::move(result.seccomp_denials), sr.seccomp_denials);
    if (!r.ok() || r->reason != isolate::EndReason::kExited || r->exit_code != 0) {
      all_ok = false;
      break;
    }
  }
  x.end = all_ok ? RunState::kSucceeded : RunState::kFailed;
}

void Executor::ReleaseSandbox(Execution& x) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    running_[x.id] = nullptr;
  }
  if (Status st = x.sandbox->Destroy(); !st.ok()) {
    spdlog::warn("run {}: sandbox cleanup: {}", x.id, st.error().ToString());
  }
  if (options_.metrics != nullptr) options_.metrics->SandboxEnded();
}

void Executor::SettleCancel(Execution& x) {
  if (!x.step_cancelled && !CancelRequested(x.id)) return;
  KillCause cause = KillCause::kShutdown;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = cancel_requested_.find(x.id);
    if (it != cancel_requested_.end()) cause = it->second;
  }
  // Without a client's cancel, it was SIGTERM while it ran, or the node was fenced: it did not
  // finish, and nobody cancelled it.
  switch (cause) {
    case KillCause::kClient:
      x.End(RunState::kCancelled, {store::EndCode::kCancelled});
      break;
    case KillCause::kShutdown:
      x.End(RunState::kFailed, {store::EndCode::kSupervisorShutdown});
      break;
    case KillCause::kFenced:
      x.End(RunState::kFailed, {store::EndCode::kNodeLost});
      break;
  }
}

// After the sandbox is gone: what the program left, the workspace's changes, the unmounts.
void Executor::TakeOutputs(Execution& x) {
  const std::string& id = x.id;
  const std::string artifact_dir = ArtifactDir(options_.data_dir, id);
  if (::mkdir(artifact_dir.c_str(), 0700) < 0 && errno != EEXIST) {
    spdlog::error("run {}: mkdir {}: {}", id, artifact_dir, std::strerror(errno));
  }
  auto files = x.mounts->CollectArtifacts(artifact_dir + "/files");
  if (files.ok()) {
    for (const auto& f : files->files) {
      x.artifacts.push_back({"files/" + f.path, f.size, f.sha256});
    }
    for (const auto& s : files->skipped) {
      spdlog::warn("run {}: artifact {} skipped: {}", id, s.path, s.reason);
    }
    if (files->skipped_unlisted > 0) {
      spdlog::warn("run {}: {} more artifacts skipped", id, files->skipped_unlisted);
    }
  } else {
    spdlog::error("run {}: collecting artifacts: {}", id, files.error().ToString());
  }
  if (x.checkout && x.checkout_read_only) {
    // The tree as the run left it, seen through its view: anything changed, removed or added
    // fails the run, naming the paths.
    auto status = checkout::CheckClean(x.dir + "/mnt/merged", *x.checkout);
    std::string dirty;
    if (!status.ok()) {
      dirty = "the tree could not be checked: " + status.error().message;
    } else if (!status->clean()) {
      auto list = [](const char* what, const std::vector<std::string>& paths) {
        std::string out;
        for (size_t i = 0; i < paths.size() && i < 20; ++i) out += (i ? ", " : "") + paths[i];
        if (paths.size() > 20) out += fmt::format(" and {} more", paths.size() - 20);
        return paths.empty() ? std::string() : fmt::format("{} {}; ", what, out);
      };
      dirty = list("modified", status->modified) + list("deleted", status->deleted) +
              list("untracked", status->untracked);
      if (status->capped) dirty += "more not listed; ";
      dirty.resize(dirty.size() - 2);
    }
    if (!dirty.empty()) {
      spdlog::info("run {}: checkout {} left dirty: {}", id, x.checkout->commit, dirty);
      x.end = RunState::kFailed;
      x.result.reason = {store::EndCode::kCheckoutDirty, dirty};
    }
  } else if (x.workspace && x.ws_mode == WorkspaceMode::kCopyOnWrite) {
    auto d = x.mounts->Diff(kMaxDiffBytes);
    if (d.ok()) {
      x.diff = std::move(*d);
    } else {
      spdlog::error("run {}: workspace diff: {}", id, d.error().ToString());
    }
    // What a reviewer may later write into the host directory (POST /v1/runs/{id}:apply); a
    // checkout's changes go to its repository, as diff.patch, not to a host directory.
    auto kept = x.checkout ? Result<ChangeSet>(ChangeSet{})
                           : x.mounts->SaveChanges(ChangesDir(options_.data_dir, id),
                                                   options_.artifacts_quota_bytes);
    if (!kept.ok()) {
      spdlog::error("run {}: keeping the workspace's changes: {}", id, kept.error().ToString());
    } else if (!kept->refused.empty()) {
      spdlog::info("run {}: its changes cannot be applied: {} {}", id, kept->refused[0].path,
                   kept->refused[0].why);
    }
  }
  if (Status st = x.mounts->Teardown(); !st.ok()) {
    spdlog::error("run {}: unmounting: {}", id, st.error().ToString());
  }
  if (x.checkout) {
    if (Status st = checkout::RemoveTree(x.dir + "/" + kCheckoutDir); !st.ok()) {
      spdlog::error("run {}: removing its checkout: {}", id, st.error().ToString());
    }
  }
}

void Executor::Finish(Execution& x) {
  const std::string& id = x.id;
  if (x.checkout && !x.mounts) {
    // Ended before its mounts existed (cancelled, or the sandbox could not be made): TakeOutputs
    // did not run, the tree is still there.
    if (Status st = checkout::RemoveTree(x.dir + "/" + kCheckoutDir); !st.ok()) {
      spdlog::error("run {}: removing its checkout: {}", id, st.error().ToString());
    }
  }
  const store::RunResult& result = x.result;
  {
    std::lock_guard<std::mutex> lk(mu_);
    running_.erase(id);
    cancel_requested_.erase(id);
  }
  idle_.notify_all();
  store::RunUpdate update;
  update.result = result;
  const nlohmann::json data = {{"state", store::RunStateName(x.end)},
                               {"reason", store::RenderEndReason(result.reason)},
                               {"exit_code", result.exit_code ? nlohmann::json(*result.exit_code)
                                                              : nlohmann::json(nullptr)}};
  std::vector<store::Write> ended;
  // Only for the attempt this node claimed: a run requeued after this node was declared lost,
  // and claimed again, belongs to its new node.
  ended.push_back(store::TransitionWrite{.run_id = id,
                                         .from = {RunState::kRunning},
                                         .to = x.end,
                                         .update = update,
                                         .if_attempt = x.run.attempt});
  ended.push_back(store::EventWrite{id, EventType::kRunStatus, data});
  ended.push_back(AuditOf(Daemon(), "run.finished", id, data));
  if (!result.seccomp_denials.empty()) {
    ended.push_back(
        AuditOf(Daemon(), "run.seccomp_denials", id,
                {{"denials", SeccompDenialsJson(result.seccomp_denials)},
                 {"summary", DenialSummary(result.seccomp_denials)},
                 {"profile", x.run.seccomp_profile.empty() ? "default" : x.run.seccomp_profile}}));
  }
  const auto end_commit = std::chrono::steady_clock::now();
  auto done = events_.Record(id, "its end", ended);
  // Its own time cannot be in the record it writes: the histogram alone has it.
  if (options_.metrics != nullptr) {
    options_.metrics->RunPhase("end_commit", std::chrono::steady_clock::now() - end_commit);
  }
  if (!done.ok()) return;
  // Every artifact exists, and is announced, before run.completed (in the same commit).
  std::vector<store::Write> completed;
  for (const ArtifactInfo& a :
       WriteEndArtifacts(done->runs.front(), std::move(x.diff), std::move(x.artifacts))) {
    completed.push_back(
        store::EventWrite{id,
                          EventType::kArtifactCreated,
                          {{"name", a.name}, {"size", a.size}, {"sha256", a.sha256}}});
  }
  completed.push_back(store::EventWrite{id, EventType::kRunCompleted, data});
  (void)events_.Record(id, "its completion", completed);
}

std::vector<ArtifactInfo> Executor::WriteEndArtifacts(const store::RunRecord& run, std::string diff,
                                                      std::vector<ArtifactInfo> collected) {
  const std::string& data_dir = options_.data_dir;
  const std::string dir = RunDir(data_dir, run.id);
  std::vector<ArtifactInfo> all = std::move(collected);
  auto add = [&](const char* name, const std::string& content) {
    auto info = WriteArtifact(data_dir, run.id, name, content);
    if (!info.ok()) {
      spdlog::error("run {}: writing artifact {}: {}", run.id, name, info.error().ToString());
      return;
    }
    all.push_back(std::move(*info));
  };
  add("diff.patch", diff);
  add("report.md",
      RenderReport(run, LogTail(dir + "/" + LogFileName("stdout", run.attempt), 40, 16 << 10),
                   LogTail(dir + "/" + LogFileName("stderr", run.attempt), 40, 16 << 10)));
  // audit.json goes out page by page: a run with many log chunks has as many events.
  auto write_audit = [&]() -> Result<ArtifactInfo> {
    auto w = ArtifactWriter::Create(data_dir, run.id, "audit.json");
    if (!w.ok()) return std::move(w).error();
    SBX_TRY(WriteAuditDocument(
        *w, run.id,
        [&](int64_t after) {
          return store_.ListAudit({.run_id = run.id, .after_id = after, .limit = 1000});
        },
        [&](int64_t after) { return store_.ListEvents(run.id, after, 1000); }));
    return w->Finish();
  };
  if (auto info = write_audit(); info.ok()) {
    all.push_back(std::move(*info));
  } else {
    spdlog::error("run {}: writing artifact audit.json: {}", run.id, info.error().ToString());
  }
  if (Status st = WriteManifest(data_dir, run.id, all); !st.ok()) {
    spdlog::error("run {}: writing the artifact manifest: {}", run.id, st.error().ToString());
  }
  return all;
}

}  // namespace sbx::supervisor
