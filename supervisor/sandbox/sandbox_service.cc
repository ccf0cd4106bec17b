#include "supervisor/sandbox/sandbox_service.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "base/fs.h"
#include "supervisor/exec/executor.h"
#include "supervisor/exec/result_json.h"
#include "supervisor/policy/decision_json.h"
#include "supervisor/workspace/workspace.h"

namespace sbx::supervisor {

using store::EndCode;
using store::EndReason;
using store::ProcessState;
using store::SandboxState;
using Clock = std::chrono::steady_clock;

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Error SandboxNotFound(std::string_view id) {
  return MakeError(ErrorCode::kNotFound, "sandbox {} not found", id);
}

nlohmann::json ProcessResultJson(const store::ProcessResult& r) {
  nlohmann::json j = {{"reason", store::RenderEndReason(r.reason)},
                      {"exit_code", nullptr},
                      {"signal", nullptr},
                      {"wall_ms", r.wall_ms},
                      {"cpu_ms", r.cpu_ms},
                      {"stdout_bytes", r.stdout_bytes},
                      {"stderr_bytes", r.stderr_bytes},
                      {"output_truncated", r.output_truncated}};
  if (r.exit_code) j["exit_code"] = *r.exit_code;
  if (r.signal) j["signal"] = *r.signal;
  return j;
}

EndReason FromLive(const isolate::LiveProcessResult& r) {
  switch (r.reason) {
    case isolate::LiveEndReason::kExited:
      return {EndCode::kExited, ""};
    case isolate::LiveEndReason::kSignaled:
      return {EndCode::kSignaled, ""};
    case isolate::LiveEndReason::kTimedOut:
      return {EndCode::kTimedOut, ""};
    case isolate::LiveEndReason::kKilled:
      return {EndCode::kKilled, ""};
    case isolate::LiveEndReason::kSetupFailed:
      return {EndCode::kSetupFailed, r.error ? r.error->message : std::string()};
  }
  return {EndCode::kKilled, ""};
}

// A memfd holding `data`, sealed, read from offset 0: a process's stdin given whole.
Result<UniqueFd> StdinMemfd(std::string_view data) {
  UniqueFd fd(static_cast<int>(::memfd_create("sbx-stdin", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (!fd) return ErrnoError("memfd_create");
  SBX_TRY(WriteAll(fd.get(), data));
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) !=
      0) {
    return ErrnoError("sealing the stdin memfd");
  }
  if (::lseek(fd.get(), 0, SEEK_SET) != 0) return ErrnoError("lseek");
  // A read-only descriptor of its own, so the process cannot write into it.
  UniqueFd ro(::open(fmt::format("/proc/self/fd/{}", fd.get()).c_str(), O_RDONLY | O_CLOEXEC));
  if (!ro) return ErrnoError("reopening the stdin memfd read-only");
  return ro;
}

// Writes all of `bytes` to a non-blocking fd, waiting for room at most `timeout`.
Status WriteWithin(int fd, std::string_view bytes, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) {
      if (errno == EPIPE) {
        return MakeError(ErrorCode::kFailedPrecondition, "the process closed its stdin");
      }
      return ErrnoError("writing to the process's stdin");
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      return MakeError(ErrorCode::kUnavailable,
                       "the process did not read its stdin within {} ms; {} bytes not written",
                       timeout.count(), bytes.size());
    }
    pollfd p{fd, POLLOUT, 0};
    (void)::poll(&p, 1, static_cast<int>(left));
  }
  return Ok();
}

}  // namespace

bool MayAccess(const store::SandboxRecord& sandbox, const Principal& who) {
  return who.role != Role::kSubmitter || sandbox.submitter == who.name;
}

// ---- The live state of one sandbox ------------------------------------------------------------

struct LiveProc {
  int64_t id = 0;
  isolate::ProcessId engine_id = 0;
  bool pty = false;
  std::shared_ptr<ProcessOutput> output;
  Clock::time_point started;
  // The output thread reads out/err/pty under io_mu; FinishProcess drains and closes them under
  // it, once.
  std::mutex io_mu;
  bool finished = false;
  UniqueFd out, err, pty_fd, done;
  std::vector<uint64_t> tokens;  // epoll registrations
  std::mutex in_mu;
  UniqueFd in;  // a pipe's write end, or a dup of the terminal's master
  // Waiters of WaitProcess.
  std::mutex wait_mu;
  std::condition_variable wait_cv;
  std::optional<store::ProcessRecord> final_record;
};

struct LiveBox {
  std::string id;
  std::string submitter;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> env;
  bool has_workspace = false;
  uint64_t output_cap = 16ull << 20;
  std::string dir;
  std::mutex mu;  // lifecycle calls on this sandbox, one at a time
  std::unique_ptr<LiveSandbox> engine;
  std::optional<RunMounts> mounts;
  std::mutex procs_mu;
  std::map<int64_t, std::shared_ptr<LiveProc>> procs;
  std::atomic<int> running{0};
  std::atomic<bool> ending{false};
  // Guarded by the service's mu.
  Clock::time_point expires;
  Clock::time_point last_activity;
  std::chrono::milliseconds idle{0};
  int64_t expires_at_ms = 0;
};

struct SandboxService::Impl {
  Impl(store::Store& s, EventBus& e, SandboxServiceOptions o)
      : store(s), events(e), options(std::move(o)), snapshots(options.data_dir + "/snapshots") {}

  store::Store& store;
  EventBus& events;
  SandboxServiceOptions options;
  Snapshots snapshots;

  std::mutex mu;  // boxes, timers, stopping
  std::condition_variable timer_cv;
  std::map<std::string, std::shared_ptr<LiveBox>> boxes;
  bool stopping = false;
  std::thread timer_thread, io_thread;

  UniqueFd epoll, wake;
  std::mutex watch_mu;
  struct Watch {
    std::shared_ptr<LiveBox> box;
    std::shared_ptr<LiveProc> proc;
    int kind;  // 1 stdout, 2 stderr, 3 terminal, 4 done
  };
  std::map<uint64_t, Watch> watches;
  uint64_t next_token = 1;

  // ---- helpers ----
  Result<store::SandboxRecord> Load(std::string_view id, const Principal& who) {
    auto sb = store.GetSandbox(id);
    if (!sb.ok()) return std::move(sb).error();
    if (!MayAccess(*sb, who)) return SandboxNotFound(id);
    return sb;
  }
  std::shared_ptr<LiveBox> Box(std::string_view id) {
    std::lock_guard lock(mu);
    auto it = boxes.find(std::string(id));
    return it == boxes.end() ? nullptr : it->second;
  }
  void Activity(LiveBox& box) {
    std::lock_guard lock(mu);
    box.last_activity = Clock::now();
  }
  void Audit(const Principal& who, std::string_view action, std::string_view id,
             nlohmann::json details) {
    events.Audit(who, action, id, std::move(details));
  }
  std::string SandboxDir(std::string_view id) const {
    return options.data_dir + "/" + kSandboxesDir + "/" + std::string(id);
  }
  static std::string ProcessDir(const std::string& sandbox_dir, int64_t pid) {
    return sandbox_dir + "/processes/" + std::to_string(pid);
  }

  Result<store::SandboxRequest> Validate(store::SandboxRequest r, const Principal& who);
  policy::Decision Judge(const store::SandboxRecord& sb);
  Result<store::SandboxRecord> StartApproved(store::SandboxRecord sb, const Principal& who);
  Result<store::SandboxRecord> End(const std::string& id, SandboxState state, EndReason reason,
                                   const Principal& who);
  Result<store::SandboxRecord> Restore(const store::SandboxRecord& sb,
                                       const std::shared_ptr<LiveBox>& box);
  std::vector<std::string> WritableDirs(const store::SandboxRecord& sb) const {
    std::vector<std::string> d = {"/tmp", "/artifacts"};
    if (sb.workspace_path && sb.workspace_mode == "cow") d.push_back("/workspace");
    return d;
  }
  Result<files::SandboxRoot> RootOf(const LiveBox& box) const {
    return files::SandboxRoot::OfProcess(box.engine->InitPid(), box.engine->InitPidFd(),
                                         files::Owner{box.engine->HostUid(), box.engine->HostGid()},
                                         options.file_limits);
  }
  Result<store::ProcessRecord> Launch(const std::shared_ptr<LiveBox>& box,
                                      store::ProcessRecord rec, const Principal& who);
  void FinishProcess(const std::shared_ptr<LiveBox>& box, const std::shared_ptr<LiveProc>& proc,
                     std::optional<isolate::LiveProcessResult> result);
  void Drain(LiveProc& proc, int kind);
  void Register(const std::shared_ptr<LiveBox>& box, const std::shared_ptr<LiveProc>& proc);
  void IoLoop();
  void TimerLoop();
  Result<std::pair<std::shared_ptr<LiveBox>, std::shared_ptr<LiveProc>>> LiveProcess(
      std::string_view sandbox_id, std::string_view id_or_tag, const Principal& who,
      store::ProcessRecord* record = nullptr);
};

// ---- Validation and the policy -----------------------------------------------------------------

Result<store::SandboxRequest> SandboxService::Impl::Validate(store::SandboxRequest r,
                                                              const Principal& who) {
  store::Limits in;
  in.cpus = r.cpus;
  in.memory_bytes = r.memory_bytes;
  in.pids = r.pids;
  in.output_bytes = r.output_bytes;
  auto lim = ResolveLimits(in, options.limits);
  if (!lim.ok()) return std::move(lim).error();
  r.cpus = lim->cpus;
  r.memory_bytes = lim->memory_bytes;
  r.pids = lim->pids;
  r.output_bytes = lim->output_bytes;
  if (!r.timeout_s) r.timeout_s = options.default_timeout_s;
  if (*r.timeout_s <= 0 || *r.timeout_s > options.max_timeout_s) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "limits.timeout_s {} is not in 1..{} (the sandbox's lifetime)", *r.timeout_s,
                     options.max_timeout_s);
  }
  if (!r.idle_timeout_s) r.idle_timeout_s = options.default_idle_timeout_s;
  if (*r.idle_timeout_s < 0 || *r.idle_timeout_s > options.max_timeout_s) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "idle_timeout_s {} is not in 0..{} (0: no idle timeout)", *r.idle_timeout_s,
                     options.max_timeout_s);
  }
  if (r.network.empty()) r.network = "none";
  if (r.network != "none") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "network '{}' is not available; sandboxes get network \"none\"", r.network);
  }
  if (!r.backend.empty()) SBX_TRY(CheckBackendName(r.backend));
  if (!r.image.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "image '{}': long-lived sandboxes run on the native backend, which builds "
                     "its root from the host's system directories (drop \"image\")",
                     r.image);
  }
  if (r.backend.empty()) r.backend = options.default_backend;
  if (r.backend == "docker") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "backend docker: long-lived sandboxes run on the native backend; ask for "
                     "backend native or auto");
  }
  if (r.from_snapshot) {
    // Another key's snapshot is not found, as a missing one.
    auto snap = snapshots.Find(*r.from_snapshot, who.role == Role::kAdmin ? "" : who.name);
    if (!snap.ok()) return WithContext(std::move(snap).error(), "from_snapshot");
    r.from_snapshot = snap->id;
  }
  for (const auto& [k, v] : r.env) {
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos ||
        v.find('\0') != std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument, "env: '{}' is not a valid variable name", k);
    }
  }
  if (r.workspace_path) {
    auto mode = ParseWorkspaceMode(r.workspace_mode);
    if (!mode.ok()) return WithContext(std::move(mode).error(), "workspace.mode");
    const bool rw = *mode == WorkspaceMode::kReadWrite;
    if (rw && options.limits.workspace_rw_roots.empty()) {
      return MakeError(ErrorCode::kPermissionDenied,
                       "workspace mode \"rw\": no directory is shared read-write here (the "
                       "configuration's workspace_rw_roots is empty)");
    }
    auto ws = ResolveWorkspace(*r.workspace_path, rw ? options.limits.workspace_rw_roots
                                                     : options.limits.workspace_roots);
    if (!ws.ok()) return WithContext(std::move(ws).error(), "workspace");
    if (!who.workspace_roots.empty()) {
      auto own = ResolveWorkspace(ws->path, who.workspace_roots);
      if (!own.ok()) {
        return WithContext(std::move(own).error(),
                           fmt::format("workspace (the roots of key '{}')", who.name));
      }
    }
    if (rw && (ws->owner_uid == 0 || ws->owner_gid == 0)) {
      return MakeError(ErrorCode::kPermissionDenied,
                       "workspace {} is owned by root: a read-write workspace gives the sandbox "
                       "every file of its owner; share a directory of an unprivileged user",
                       ws->path);
    }
    if (*mode == WorkspaceMode::kCopyOnWrite && ws->owner_uid == 0 &&
        !options.limits.workspace_cow_root_owned) {
      return MakeError(ErrorCode::kPermissionDenied,
                       "workspace {} is owned by root: copy-on-write would give the sandbox "
                       "every root-owned file in it; use mode \"ro\", a directory of an "
                       "unprivileged owner, or set workspace_cow_root_owned: true",
                       ws->path);
    }
    const std::string data = options.data_dir + "/", path = ws->path + "/";
    if (data.rfind(path, 0) == 0 || path.rfind(data, 0) == 0) {
      return MakeError(ErrorCode::kPermissionDenied,
                       "workspace {} overlaps the daemon's data directory {}", ws->path,
                       options.data_dir);
    }
    r.workspace_path = ws->path;
    r.workspace_mode = WorkspaceModeName(*mode);
  } else {
    r.workspace_mode.clear();
  }
  if (auto profiles = options.seccomp.program; profiles) {
    auto p = profiles(r.seccomp_profile);
    if (!p.ok()) return WithContext(std::move(p).error(), "seccomp_profile");
  }
  return r;
}

policy::Decision SandboxService::Impl::Judge(const store::SandboxRecord& sb) {
  auto cp = options.command_policy ? options.command_policy() : nullptr;
  if (!cp) {
    policy::Decision d;
    d.action = policy::Action::kReview;
    d.reasons.push_back({policy::ReasonCode::kNoRule,
                         "no command policy is configured: every sandbox waits for a reviewer"});
    return d;
  }
  policy::SandboxShape shape;
  shape.cpus = sb.cpus.value_or(0);
  shape.memory_bytes = sb.memory_bytes.value_or(0);
  shape.pids = sb.pids.value_or(0);
  shape.timeout_s = sb.timeout_s.value_or(0);
  shape.idle_timeout_s = sb.idle_timeout_s.value_or(0);
  shape.network = sb.network;
  shape.backend = sb.backend;
  shape.image = sb.image;
  shape.workspace_mode = sb.workspace_path ? sb.workspace_mode : "";
  shape.api_key_name = sb.submitter;
  shape.labels = sb.labels;
  return cp->EvaluateSandbox(shape);
}

// ---- Starting and ending -----------------------------------------------------------------------

Result<store::SandboxRecord> SandboxService::Impl::StartApproved(store::SandboxRecord sb,
                                                                 const Principal& who) {
  const std::string id = sb.id;
  auto fail = [&](std::string what) -> Result<store::SandboxRecord> {
    spdlog::error("sandbox {}: cannot start: {}", id, what);
    store::SandboxUpdate u;
    u.reason = EndReason{EndCode::kSetupFailed, what};
    auto r = store.UpdateSandbox(id, {SandboxState::kStarting}, SandboxState::kFailed, u);
    Audit(Daemon(), "sandbox.failed", id, {{"reason", store::RenderEndReason(*u.reason)}});
    return r;
  };
  {
    std::lock_guard lock(mu);
    if (stopping) return fail("the daemon is stopping");
    if (static_cast<int>(boxes.size()) >= options.max_sandboxes) {
      return fail(fmt::format("this node already holds {} sandboxes (max_sandboxes)",
                              options.max_sandboxes));
    }
  }
  auto chosen = SelectBackend(sb.backend.empty() ? options.default_backend : sb.backend,
                              options.native, nullptr);
  if (!chosen.ok()) return fail(chosen.error().message);
  Backend* backend = *chosen;

  auto box = std::make_shared<LiveBox>();
  box->id = id;
  box->submitter = sb.submitter;
  box->labels = sb.labels;
  box->env = sb.env;
  box->has_workspace = sb.workspace_path.has_value();
  box->output_cap = static_cast<uint64_t>(sb.output_bytes.value_or(16ll << 20));
  box->dir = SandboxDir(id);
  if (::mkdir(box->dir.c_str(), 0711) != 0 && errno != EEXIST) {
    return fail(ErrnoError("mkdir {}", box->dir).ToString());
  }
  (void)::chmod(box->dir.c_str(), 0711);
  if (::mkdir((box->dir + "/processes").c_str(), 0700) != 0 && errno != EEXIST) {
    return fail(ErrnoError("mkdir {}/processes", box->dir).ToString());
  }

  SandboxRequest req;
  store::Limits limits;
  limits.cpus = sb.cpus;
  limits.memory_bytes = sb.memory_bytes;
  limits.pids = sb.pids;
  req.spec = SpecFor(limits, options.sandbox_id_base);
  req.spec.id = id;
  req.seccomp_profile = sb.seccomp_profile;
  if (Status st = backend->AttachSeccomp(options.seccomp, sb.seccomp_profile, req); !st.ok()) {
    return fail(st.error().ToString());
  }
  if (req.spec.seccomp && req.spec.seccomp->notify != seccomp::NotifyMode::kNone) {
    return fail(fmt::format("seccomp profile '{}' was compiled to notify the daemon of denials; "
                            "a live sandbox needs the plain program (SandboxServiceOptions::"
                            "seccomp)",
                            sb.seccomp_profile));
  }
  const uid_t host_uid = req.spec.host_id_base + req.spec.uid;
  const gid_t host_gid = req.spec.host_id_base + req.spec.gid;
  std::optional<ResolvedWorkspace> ws;
  WorkspaceMode mode = WorkspaceMode::kReadOnly;
  if (sb.workspace_path) {
    auto resolved = ResolveWorkspace(*sb.workspace_path, sb.workspace_mode == "rw"
                                                             ? options.limits.workspace_rw_roots
                                                             : options.limits.workspace_roots);
    if (!resolved.ok()) return fail("workspace: " + resolved.error().ToString());
    ws = std::move(*resolved);
    auto m = ParseWorkspaceMode(sb.workspace_mode);
    if (!m.ok()) return fail(m.error().ToString());
    mode = *m;
  }
  auto mounts = RunMounts::Prepare(box->dir, ws ? &*ws : nullptr, mode,
                                   options.limits.artifacts_quota_bytes, host_uid, host_gid);
  if (!mounts.ok()) return fail("mounts: " + mounts.error().ToString());
  box->mounts.emplace(std::move(*mounts));
  for (auto& b : box->mounts->Binds()) req.spec.binds.push_back(std::move(b));

  const auto t0 = Clock::now();
  auto engine = backend->CreateLive(req);
  if (!engine.ok()) return fail(engine.error().ToString());
  if ((*engine)->SetupError()) {
    const auto& e = *(*engine)->SetupError();
    (void)(*engine)->Destroy();
    return fail(fmt::format("{}: {}", e.stage, e.message));
  }
  box->engine = std::move(*engine);
  if (options.metrics) options.metrics->SandboxStarted(Clock::now() - t0);

  store::SandboxUpdate u;
  u.node = options.node;
  u.backend_used = BackendKindName(backend->kind());
  u.last_activity_ms = NowMs();
  u.info = nlohmann::json{{"isolation", IsolationToJson(box->engine->Isolation())},
                          {"init_pid", box->engine->InitPid()}};
  {
    std::lock_guard lock(mu);
    box->last_activity = Clock::now();
    box->expires = box->last_activity + std::chrono::seconds(sb.timeout_s.value_or(3600));
    box->expires_at_ms = NowMs() + sb.timeout_s.value_or(3600) * 1000;
    box->idle = std::chrono::seconds(sb.idle_timeout_s.value_or(0));
    boxes[id] = box;
  }
  timer_cv.notify_all();
  auto rec = store.UpdateSandbox(id, {SandboxState::kStarting}, SandboxState::kRunning, u);
  if (!rec.ok()) {
    // Deleted while it started (STOPPED by another call): take it down again.
    spdlog::warn("sandbox {}: {}", id, rec.error().ToString());
    (void)End(id, SandboxState::kStopped, {EndCode::kDeleted, ""}, who);
    return std::move(rec).error();
  }
  if (sb.from_snapshot) {
    auto restored = Restore(*rec, box);
    if (!restored.ok()) {
      const std::string what = "from_snapshot: " + restored.error().ToString();
      spdlog::error("sandbox {}: {}", id, what);
      return End(id, SandboxState::kFailed, {EndCode::kSetupFailed, what}, Daemon());
    }
    rec = std::move(restored);
  }
  Audit(Daemon(), "sandbox.started", id,
        {{"node", options.node}, {"init_pid", box->engine->InitPid()}});
  spdlog::info("sandbox {}: running (init pid {})", id, box->engine->InitPid());
  return rec;
}

Result<store::SandboxRecord> SandboxService::Impl::Restore(const store::SandboxRecord& sb,
                                                           const std::shared_ptr<LiveBox>& box) {
  auto snap = snapshots.Find(*sb.from_snapshot, "");
  if (!snap.ok()) return std::move(snap).error();
  auto root = RootOf(*box);
  if (!root.ok()) return std::move(root).error();
  auto restored = snapshots.Restore(*snap, *root, WritableDirs(sb));
  if (!restored.ok()) return std::move(restored).error();
  store::SandboxUpdate u;
  nlohmann::json info = sb.info;
  info["from_snapshot"] = {{"id", snap->id}, {"name", snap->name}, {"restored", *restored}};
  u.info = std::move(info);
  return store.UpdateSandbox(sb.id, {SandboxState::kRunning}, SandboxState::kRunning, u);
}

Result<store::SandboxRecord> SandboxService::Impl::End(const std::string& id, SandboxState state,
                                                       EndReason reason, const Principal& who) {
  std::shared_ptr<LiveBox> box = Box(id);
  if (box) {
    std::lock_guard op(box->mu);
    if (!box->ending.exchange(true)) {
      // Everything is killed at once (the init's end takes its pid namespace along); each
      // process then gets its final result, its last bytes of output first.
      std::vector<std::shared_ptr<LiveProc>> procs;
      {
        std::lock_guard pl(box->procs_mu);
        for (auto& [pid, p] : box->procs) procs.push_back(p);
      }
      for (auto& p : procs) (void)box->engine->Kill(p->engine_id);
      for (auto& p : procs) {
        auto r = box->engine->Wait(p->engine_id, std::chrono::seconds(5));
        FinishProcess(box, p, r.ok() ? std::optional(*r) : std::nullopt);
      }
      if (Status st = box->engine->Destroy(); !st.ok()) {
        spdlog::warn("sandbox {}: destroy: {}", id, st.error().ToString());
      }
      box->mounts.reset();
      std::lock_guard lock(mu);
      boxes.erase(id);
      if (options.metrics) options.metrics->SandboxEnded();
    }
  }
  // Processes that waited for a reviewer will never start.
  store::ProcessFilter pf;
  pf.states = {ProcessState::kAwaitingReview};
  pf.limit = 1000;
  if (auto waiting = store.ListProcesses(id, pf); waiting.ok()) {
    for (const auto& p : *waiting) {
      (void)store.UpdateProcess(id, p.id, {ProcessState::kAwaitingReview},
                                ProcessState::kCancelled, {});
    }
  }
  store::SandboxUpdate u;
  u.reason = reason;
  auto rec = store.UpdateSandbox(id, store::NonTerminalSandboxStates(), state, u);
  if (!rec.ok()) {
    if (rec.error().code == ErrorCode::kFailedPrecondition) return store.GetSandbox(id);
    return rec;
  }
  Audit(who, state == SandboxState::kStopped ? "sandbox.deleted" : "sandbox.failed", id,
        {{"reason", store::RenderEndReason(reason)}});
  spdlog::info("sandbox {}: {} ({})", id, store::SandboxStateName(state),
               store::RenderEndReason(reason));
  return rec;
}

// ---- Processes ---------------------------------------------------------------------------------

void SandboxService::Impl::Register(const std::shared_ptr<LiveBox>& box,
                                    const std::shared_ptr<LiveProc>& proc) {
  std::lock_guard lock(watch_mu);
  auto add = [&](int fd, int kind) {
    if (fd < 0) return;
    const uint64_t token = next_token++;
    watches[token] = Watch{box, proc, kind};
    proc->tokens.push_back(token);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = token;
    if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      spdlog::error("sandbox {}: process {}: epoll_ctl: {}", box->id, proc->id,
                    std::strerror(errno));
    }
  };
  add(proc->out.get(), 1);
  add(proc->err.get(), 2);
  add(proc->pty_fd.get(), 3);
  add(proc->done.get(), 4);
}

// Reads what `kind`'s fd holds now (io_mu held). Returns at EOF, EAGAIN or after 1 MiB.
void SandboxService::Impl::Drain(LiveProc& proc, int kind) {
  UniqueFd& fd = kind == 1 ? proc.out : kind == 2 ? proc.err : proc.pty_fd;
  if (!fd) return;
  char buf[64 << 10];
  for (size_t total = 0; total < (1u << 20);) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // EOF, or EIO from a terminal whose last slave closed: nothing more will come. Leave the
      // fd registered until the process is finished (the done fd decides the end); a closed
      // pipe stays readable, so unregister it to stop the wake-ups.
      if (n == 0 || (n < 0 && errno == EIO)) {
        (void)::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, fd.get(), nullptr);
        fd.reset();
      }
      return;
    }
    proc.output->Append(kind == 2 ? 2 : 1, std::string_view(buf, static_cast<size_t>(n)));
    total += static_cast<size_t>(n);
  }
}

void SandboxService::Impl::FinishProcess(const std::shared_ptr<LiveBox>& box,
                                         const std::shared_ptr<LiveProc>& proc,
                                         std::optional<isolate::LiveProcessResult> live) {
  {
    std::lock_guard io(proc->io_mu);
    if (proc->finished) return;
    proc->finished = true;
    // Everything the process wrote before it ended is in the pipes now.
    for (int kind : {1, 2, 3}) Drain(*proc, kind);
    {
      std::lock_guard lock(watch_mu);
      for (uint64_t t : proc->tokens) watches.erase(t);
    }
    for (UniqueFd* fd : {&proc->out, &proc->err, &proc->pty_fd, &proc->done}) {
      if (*fd) (void)::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, fd->get(), nullptr);
      fd->reset();
    }
  }
  {
    std::lock_guard in(proc->in_mu);
    proc->in.reset();
  }
  store::ProcessResult r;
  if (live) {
    r.reason = FromLive(*live);
    r.exit_code = live->exit_code;
    r.signal = live->signal;
    r.wall_ms = static_cast<int64_t>(live->wall_ms);
    r.cpu_ms = static_cast<int64_t>(live->cpu_ms);
  } else {
    r.reason = {EndCode::kKilled, ""};
    r.wall_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() -
                                                                      proc->started)
                    .count();
  }
  r.stdout_bytes = static_cast<int64_t>(proc->output->stored_bytes(1));
  r.stderr_bytes = static_cast<int64_t>(proc->output->stored_bytes(2));
  r.output_truncated = proc->output->truncated();
  // The record first: a client told process.finished reads FINISHED from then on.
  store::ProcessUpdate u;
  u.result = r;
  auto rec = store.UpdateProcess(box->id, proc->id, {ProcessState::kRunning},
                                 ProcessState::kFinished, u);
  if (!rec.ok()) {
    spdlog::error("sandbox {}: process {}: cannot record its end: {}", box->id, proc->id,
                  rec.error().ToString());
  }
  proc->output->Finished(ProcessResultJson(r));
  Audit(Daemon(), "process.finished", box->id,
        {{"process_id", proc->id}, {"result", ProcessResultJson(r)}});
  {
    std::lock_guard lock(mu);
    box->last_activity = Clock::now();
  }
  if (box->running.fetch_sub(1) == 1) timer_cv.notify_all();  // the idle clock may start
  {
    std::lock_guard w(proc->wait_mu);
    if (rec.ok()) proc->final_record = *rec;
  }
  proc->wait_cv.notify_all();
}

Result<store::ProcessRecord> SandboxService::Impl::Launch(const std::shared_ptr<LiveBox>& box,
                                                          store::ProcessRecord rec,
                                                          const Principal& who) {
  auto fail = [&](Error e) -> Result<store::ProcessRecord> {
    store::ProcessUpdate u;
    store::ProcessResult r;
    r.reason = {EndCode::kSetupFailed, e.message};
    u.result = r;
    auto from = rec.state;
    if (from == ProcessState::kAwaitingReview) {
      (void)store.UpdateProcess(box->id, rec.id, {from}, ProcessState::kRunning, {});
    }
    auto done = store.UpdateProcess(box->id, rec.id, {ProcessState::kRunning},
                                    ProcessState::kFinished, u);
    Audit(Daemon(), "process.finished", box->id,
          {{"process_id", rec.id}, {"result", ProcessResultJson(r)}});
    if (!done.ok()) return e;
    return done;
  };
  if (box->ending) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is ending", box->id);
  }
  isolate::LiveProcessSpec spec;
  spec.argv = rec.argv;
  std::map<std::string, std::string> env = box->env;
  for (const auto& [k, v] : rec.env) env[k] = v;
  for (const auto& [k, v] : env) spec.env.push_back(k + "=" + v);
  spec.cwd = !rec.cwd.empty() ? rec.cwd : box->has_workspace ? RunMounts::kWorkspaceTarget : "/";
  spec.timeout_ms = static_cast<uint64_t>(rec.timeout_s.value_or(0)) * 1000;
  UniqueFd stdin_fd;
  if (rec.pty) {
    spec.pty = isolate::PtySize{static_cast<uint16_t>(rec.pty->cols),
                                static_cast<uint16_t>(rec.pty->rows)};
  } else {
    spec.out = isolate::LiveStdio::Pipe();
    spec.err = isolate::LiveStdio::Pipe();
    if (rec.stdin_open) {
      spec.in = isolate::LiveStdio::Pipe();
    } else if (!rec.stdin_data.empty()) {
      auto m = StdinMemfd(rec.stdin_data);
      if (!m.ok()) return fail(std::move(m).error());
      stdin_fd = std::move(*m);
      spec.in = isolate::LiveStdio::Fd(stdin_fd.get());
    }
  }
  auto proc = std::make_shared<LiveProc>();
  proc->id = rec.id;
  proc->pty = rec.pty.has_value();
  auto output = ProcessOutput::Create(ProcessDir(box->dir, rec.id),
                                      box->output_cap);
  if (!output.ok()) return fail(std::move(output).error());
  proc->output = std::move(*output);

  // The process counts as running from here, so the idle timer cannot end the sandbox under it.
  box->running.fetch_add(1);
  {
    std::lock_guard op(box->mu);
    if (box->ending) {
      box->running.fetch_sub(1);
      return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is ending", box->id);
    }
    auto started = box->engine->Start(spec);
    if (!started.ok()) {
      box->running.fetch_sub(1);
      timer_cv.notify_all();
      if (started.error().code == ErrorCode::kResourceExhausted ||
          started.error().code == ErrorCode::kFailedPrecondition) {
        // Nothing started: the client may try again; the record says why.
        (void)fail(started.error());
        return std::move(started).error();
      }
      return fail(std::move(started).error());
    }
    proc->engine_id = started->id;
    proc->started = Clock::now();
    proc->out = std::move(started->out);
    proc->err = std::move(started->err);
    proc->done = std::move(started->done);
    if (started->pty) {
      proc->in = UniqueFd(::fcntl(started->pty.get(), F_DUPFD_CLOEXEC, 0));
      proc->pty_fd = std::move(started->pty);
    } else {
      proc->in = std::move(started->in);
    }
    std::lock_guard pl(box->procs_mu);
    box->procs[rec.id] = proc;
  }
  store::ProcessUpdate ru;
  ru.approval = rec.approval;
  auto running = store.UpdateProcess(box->id, rec.id, {rec.state}, ProcessState::kRunning, ru);
  proc->output->Started();
  Register(box, proc);
  Activity(*box);
  Audit(who, "process.started", box->id,
        {{"process_id", rec.id}, {"argv", rec.argv}, {"tag", rec.tag}});
  if (rec.stdin_open && !rec.stdin_data.empty()) {
    std::lock_guard in(proc->in_mu);
    if (proc->in) {
      Status st = WriteWithin(proc->in.get(), rec.stdin_data, std::chrono::seconds(5));
      if (!st.ok()) spdlog::warn("sandbox {}: process {}: {}", box->id, rec.id, st.error().ToString());
    }
  }
  if (!running.ok()) return std::move(running).error();
  return running;
}

Result<std::pair<std::shared_ptr<LiveBox>, std::shared_ptr<LiveProc>>>
SandboxService::Impl::LiveProcess(std::string_view sandbox_id, std::string_view id_or_tag,
                                  const Principal& who, store::ProcessRecord* record) {
  auto sb = Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  auto rec = store.GetProcess(sandbox_id, id_or_tag);
  if (!rec.ok()) return std::move(rec).error();
  if (record) *record = *rec;
  auto box = Box(sandbox_id);
  if (!box || rec->state != ProcessState::kRunning) {
    return MakeError(ErrorCode::kFailedPrecondition, "process {} of sandbox {} is {}", rec->id,
                     sandbox_id, store::ProcessStateName(rec->state));
  }
  std::lock_guard pl(box->procs_mu);
  auto it = box->procs.find(rec->id);
  if (it == box->procs.end()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "process {} of sandbox {} is not running on this node", rec->id, sandbox_id);
  }
  Activity(*box);
  return std::make_pair(box, it->second);
}

// ---- Threads -----------------------------------------------------------------------------------

void SandboxService::Impl::IoLoop() {
  epoll_event evs[64];
  for (;;) {
    const int n = ::epoll_wait(epoll.get(), evs, 64, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      spdlog::error("sandbox output thread: epoll_wait: {}", std::strerror(errno));
      return;
    }
    for (int i = 0; i < n; ++i) {
      if (evs[i].data.u64 == 0) {
        std::lock_guard lock(mu);
        if (stopping) return;
        continue;
      }
      Watch w;
      {
        std::lock_guard lock(watch_mu);
        auto it = watches.find(evs[i].data.u64);
        if (it == watches.end()) continue;
        w = it->second;
      }
      if (w.kind == 4) {
        auto r = w.box->engine->ResultOf(w.proc->engine_id);
        FinishProcess(w.box, w.proc, r.ok() ? std::optional(*r) : std::nullopt);
        continue;
      }
      std::lock_guard io(w.proc->io_mu);
      if (!w.proc->finished) Drain(*w.proc, w.kind);
    }
  }
}

void SandboxService::Impl::TimerLoop() {
  std::unique_lock lock(mu);
  while (!stopping) {
    const auto now = Clock::now();
    auto next = now + std::chrono::hours(1);
    std::vector<std::pair<std::string, EndCode>> due;
    for (auto& [id, box] : boxes) {
      if (box->ending) continue;
      if (now >= box->expires) {
        due.emplace_back(id, EndCode::kExpired);
        continue;
      }
      next = std::min(next, box->expires);
      if (box->idle.count() > 0 && box->running.load() == 0) {
        const auto idle_at = box->last_activity + box->idle;
        if (now >= idle_at) {
          due.emplace_back(id, EndCode::kIdle);
          continue;
        }
        next = std::min(next, idle_at);
      }
    }
    if (!due.empty()) {
      lock.unlock();
      for (auto& [id, code] : due) {
        auto r = End(id, SandboxState::kFailed, {code, ""}, Daemon());
        if (!r.ok()) spdlog::error("sandbox {}: cannot end it: {}", id, r.error().ToString());
      }
      lock.lock();
      continue;
    }
    timer_cv.wait_until(lock, next);
  }
}

// ---- The public calls --------------------------------------------------------------------------

SandboxService::SandboxService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<SandboxService>> SandboxService::Start(store::Store& store,
                                                              EventBus& events,
                                                              SandboxServiceOptions options) {
  auto impl = std::make_unique<Impl>(store, events, std::move(options));
  const std::string root = impl->options.data_dir + "/" + kSandboxesDir;
  if (::mkdir(root.c_str(), 0711) != 0 && errno != EEXIST) return ErrnoError("mkdir {}", root);
  (void)::chmod(root.c_str(), 0711);
  auto stale = store.RecoverStaleSandboxes(impl->options.node);
  if (!stale.ok()) return WithContext(std::move(stale).error(), "recovering sandboxes");
  for (const auto& id : *stale) {
    spdlog::warn("sandbox {}: ended FAILED (supervisor_restart): its daemon stopped", id);
    impl->events.Audit(Daemon(), "sandbox.failed", id, {{"reason", "supervisor_restart"}});
  }
  impl->epoll = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  impl->wake = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!impl->epoll || !impl->wake) return ErrnoError("epoll/eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  if (::epoll_ctl(impl->epoll.get(), EPOLL_CTL_ADD, impl->wake.get(), &ev) != 0) {
    return ErrnoError("epoll_ctl");
  }
  Impl* p = impl.get();
  impl->io_thread = std::thread([p] { p->IoLoop(); });
  impl->timer_thread = std::thread([p] { p->TimerLoop(); });
  return std::unique_ptr<SandboxService>(new SandboxService(std::move(impl)));
}

SandboxService::~SandboxService() { Stop(); }

void SandboxService::Stop() {
  if (!impl_) return;
  std::vector<std::string> ids;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping && !impl_->io_thread.joinable()) return;
    impl_->stopping = true;
    for (auto& [id, box] : impl_->boxes) ids.push_back(id);
  }
  impl_->timer_cv.notify_all();
  for (const auto& id : ids) {
    (void)impl_->End(id, SandboxState::kFailed, {EndCode::kSupervisorShutdown, ""}, Daemon());
  }
  uint64_t one = 1;
  (void)!::write(impl_->wake.get(), &one, sizeof one);
  if (impl_->io_thread.joinable()) impl_->io_thread.join();
  if (impl_->timer_thread.joinable()) impl_->timer_thread.join();
}

size_t SandboxService::live_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->boxes.size();
}

Result<store::CreateSandboxResult> SandboxService::Create(store::SandboxRequest request,
                                                          const Principal& who) {
  auto valid = impl_->Validate(std::move(request), who);
  if (!valid.ok()) return std::move(valid).error();
  store::SandboxRecord rec;
  static_cast<store::SandboxRequest&>(rec) = std::move(*valid);
  rec.submitter = who.name;
  auto created = impl_->store.CreateSandbox(rec);
  if (!created.ok()) return std::move(created).error();
  if (!created->created) return created;
  const std::string id = created->sandbox.id;
  impl_->Audit(who, "sandbox.created", id, {{"labels", created->sandbox.labels}});
  const policy::Decision d = impl_->Judge(created->sandbox);
  store::SandboxUpdate u;
  u.policy = policy::ToJson(d);
  auto waiting = impl_->store.UpdateSandbox(id, {SandboxState::kPending},
                                            SandboxState::kAwaitingReview, u);
  if (!waiting.ok()) return std::move(waiting).error();
  created->sandbox = *waiting;
  if (d.action == policy::Action::kDeny) {
    std::string why = d.reasons.empty() ? "denied" : d.reasons.front().message;
    store::SandboxUpdate du;
    du.reason = EndReason{EndCode::kPolicyDenied, why};
    (void)impl_->store.UpdateSandbox(id, {SandboxState::kAwaitingReview}, SandboxState::kFailed,
                                     du);
    impl_->Audit(who, "sandbox.denied", id, {{"policy", *u.policy}});
    return MakeError(ErrorCode::kPermissionDenied, "the policy denies this sandbox: {}", why);
  }
  if (d.action == policy::Action::kAllow) {
    store::SandboxUpdate au;
    au.approval = store::SandboxApproval{
        "policy", NowMs(), d.rule ? fmt::format("{}:{}", d.rule->file, d.rule->line) : ""};
    auto starting = impl_->store.UpdateSandbox(id, {SandboxState::kAwaitingReview},
                                               SandboxState::kStarting, au);
    if (!starting.ok()) return std::move(starting).error();
    impl_->Audit(Daemon(), "sandbox.approved", id, {{"by", "policy"}});
    auto started = impl_->StartApproved(*starting, who);
    if (!started.ok()) return std::move(started).error();
    created->sandbox = *started;
  }
  return created;
}

Result<store::SandboxRecord> SandboxService::Get(std::string_view id, const Principal& who) {
  return impl_->Load(id, who);
}

Result<store::SandboxPage> SandboxService::List(store::SandboxFilter filter,
                                                const Principal& who) {
  if (who.role == Role::kSubmitter) filter.submitter = who.name;
  return impl_->store.ListSandboxes(filter);
}

SandboxLiveInfo SandboxService::Live(std::string_view id) {
  SandboxLiveInfo info;
  auto box = impl_->Box(id);
  if (!box || box->ending) return info;
  auto stats = box->engine->Stats();
  if (stats.ok()) info.stats = *stats;
  std::lock_guard lock(impl_->mu);
  info.expires_at_ms = box->expires_at_ms;
  if (box->idle.count() > 0 && box->running.load() == 0) {
    info.idle_expires_at_ms =
        NowMs() + std::chrono::duration_cast<std::chrono::milliseconds>(
                      box->last_activity + box->idle - Clock::now())
                      .count();
  }
  return info;
}

Result<store::SandboxRecord> SandboxService::Approve(std::string_view id, const Principal& who) {
  auto sb = impl_->Load(id, who);
  if (!sb.ok()) return std::move(sb).error();
  if (who.role == Role::kSubmitter || sb->submitter == who.name) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "key '{}' may not approve sandbox {}: {}", who.name, id,
                     who.role == Role::kSubmitter ? "a submitter key cannot review"
                                                  : "its own submission needs another reviewer");
  }
  store::SandboxUpdate u;
  u.approval = store::SandboxApproval{who.name, NowMs(), "review"};
  auto starting = impl_->store.UpdateSandbox(id, {SandboxState::kAwaitingReview},
                                             SandboxState::kStarting, u);
  if (!starting.ok()) return std::move(starting).error();
  impl_->Audit(who, "sandbox.approved", id, {});
  return impl_->StartApproved(*starting, who);
}

Result<store::SandboxRecord> SandboxService::Reject(std::string_view id, const Principal& who,
                                                    const std::string& reason) {
  auto sb = impl_->Load(id, who);
  if (!sb.ok()) return std::move(sb).error();
  if (who.role == Role::kSubmitter || sb->submitter == who.name) {
    return MakeError(ErrorCode::kPermissionDenied, "key '{}' may not reject sandbox {}",
                     who.name, id);
  }
  store::SandboxUpdate u;
  u.reason = EndReason{EndCode::kRejected, reason};
  auto r = impl_->store.UpdateSandbox(id, {SandboxState::kAwaitingReview}, SandboxState::kFailed,
                                      u);
  if (!r.ok()) return std::move(r).error();
  impl_->Audit(who, "sandbox.rejected", id, {{"reason", reason}});
  return r;
}

Result<store::SandboxRecord> SandboxService::Delete(std::string_view id, const Principal& who) {
  auto sb = impl_->Load(id, who);
  if (!sb.ok()) return std::move(sb).error();
  if (store::IsTerminal(sb->state)) return sb;
  return impl_->End(std::string(id), SandboxState::kStopped, {EndCode::kDeleted, ""}, who);
}

Result<store::SandboxRecord> SandboxService::Pause(std::string_view id, const Principal& who) {
  auto sb = impl_->Load(id, who);
  if (!sb.ok()) return std::move(sb).error();
  auto box = impl_->Box(id);
  if (!box || sb->state != SandboxState::kRunning) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is {}, not RUNNING", id,
                     store::SandboxStateName(sb->state));
  }
  std::lock_guard op(box->mu);
  if (box->ending) return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is ending", id);
  SBX_TRY(box->engine->Pause());
  store::SandboxUpdate u;
  u.last_activity_ms = NowMs();
  auto r = impl_->store.UpdateSandbox(id, {SandboxState::kRunning}, SandboxState::kPaused, u);
  if (!r.ok()) {
    (void)box->engine->Resume();
    return std::move(r).error();
  }
  impl_->Activity(*box);
  impl_->Audit(who, "sandbox.paused", id, {});
  return r;
}

Result<store::SandboxRecord> SandboxService::Resume(std::string_view id, const Principal& who) {
  auto sb = impl_->Load(id, who);
  if (!sb.ok()) return std::move(sb).error();
  auto box = impl_->Box(id);
  if (!box || sb->state != SandboxState::kPaused) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is {}, not PAUSED", id,
                     store::SandboxStateName(sb->state));
  }
  std::lock_guard op(box->mu);
  if (box->ending) return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is ending", id);
  SBX_TRY(box->engine->Resume());
  store::SandboxUpdate u;
  u.last_activity_ms = NowMs();
  auto r = impl_->store.UpdateSandbox(id, {SandboxState::kPaused}, SandboxState::kRunning, u);
  if (!r.ok()) return std::move(r).error();
  impl_->Activity(*box);
  impl_->Audit(who, "sandbox.resumed", id, {});
  return r;
}

Result<store::SandboxRecord> SandboxService::Touch(std::string_view id, const Principal& who) {
  auto sb = impl_->Load(id, who);
  if (!sb.ok()) return std::move(sb).error();
  auto box = impl_->Box(id);
  if (!box) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is {}, not running here", id,
                     store::SandboxStateName(sb->state));
  }
  impl_->Activity(*box);
  store::SandboxUpdate u;
  u.last_activity_ms = NowMs();
  return impl_->store.UpdateSandbox(id, {SandboxState::kRunning, SandboxState::kPaused},
                                    sb->state, u);
}

Result<store::ProcessRecord> SandboxService::StartProcess(std::string_view sandbox_id,
                                                          store::ProcessRequest request,
                                                          const Principal& who) {
  auto sb = impl_->Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  if (request.argv.empty() || request.argv[0].empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "argv: a program to run is required");
  }
  if (request.timeout_s && *request.timeout_s < 0) {
    return MakeError(ErrorCode::kInvalidArgument, "timeout_s must not be negative");
  }
  if (request.pty && (request.stdin_open || !request.stdin_data.empty())) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "stdin and stdin_open do not go with pty: a terminal's input is written to "
                     "it (…:stdin or the pty WebSocket)");
  }
  if (sb->state != SandboxState::kRunning && sb->state != SandboxState::kPaused) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is {}, not RUNNING", sandbox_id,
                     store::SandboxStateName(sb->state));
  }
  auto box = impl_->Box(sandbox_id);
  if (!box) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is not running on this node",
                     sandbox_id);
  }
  impl_->Activity(*box);
  // The command policy judges it as one step of a run by this key with the sandbox's labels.
  policy::Decision d;
  auto cp = impl_->options.command_policy ? impl_->options.command_policy() : nullptr;
  if (cp) {
    policy::CommandInput in;
    in.argvs.push_back(request.argv);
    in.api_key_name = who.name;
    in.labels = sb->labels;
    d = cp->Evaluate(in);
  } else {
    d.action = policy::Action::kReview;
  }
  if (d.action == policy::Action::kDeny) {
    const std::string why = d.reasons.empty() ? "no rule allows it" : d.reasons.front().message;
    impl_->Audit(who, "process.denied", sandbox_id,
                 {{"argv", request.argv}, {"policy", policy::ToJson(d)}});
    return MakeError(ErrorCode::kPermissionDenied, "the command policy denies {}: {}",
                     d.command.empty() ? request.argv[0] : d.command, why);
  }
  store::ProcessRecord rec;
  static_cast<store::ProcessRequest&>(rec) = std::move(request);
  rec.sandbox_id = std::string(sandbox_id);
  rec.submitter = who.name;
  rec.state = ProcessState::kAwaitingReview;
  rec.policy = policy::ToJson(d);
  if (d.action == policy::Action::kAllow) {
    rec.approval = store::SandboxApproval{
        "policy", NowMs(), d.rule ? fmt::format("{}:{}", d.rule->file, d.rule->line) : ""};
  }
  auto created = impl_->store.CreateProcess(rec);
  if (!created.ok()) return std::move(created).error();
  if (d.action == policy::Action::kReview) {
    impl_->Audit(who, "process.awaiting_review", sandbox_id,
                 {{"process_id", created->id}, {"argv", created->argv}});
    return created;
  }
  return impl_->Launch(box, std::move(*created), who);
}

Result<ProcessOutcome> SandboxService::WaitProcess(std::string_view sandbox_id,
                                                   int64_t process_id,
                                                   std::chrono::milliseconds timeout,
                                                   size_t max_bytes, const Principal& who) {
  auto sb = impl_->Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  std::shared_ptr<LiveProc> proc;
  if (auto box = impl_->Box(sandbox_id)) {
    std::lock_guard pl(box->procs_mu);
    auto it = box->procs.find(process_id);
    if (it != box->procs.end()) proc = it->second;
  }
  ProcessOutcome out;
  if (proc) {
    std::unique_lock w(proc->wait_mu);
    if (!proc->wait_cv.wait_for(w, timeout, [&] { return proc->final_record.has_value(); })) {
      return MakeError(ErrorCode::kUnavailable, "process {} still runs after {} ms", process_id,
                       timeout.count());
    }
    out.process = *proc->final_record;
  } else {
    auto rec = impl_->store.GetProcess(sandbox_id, std::to_string(process_id));
    if (!rec.ok()) return std::move(rec).error();
    out.process = *rec;
  }
  const std::string dir = Impl::ProcessDir(impl_->SandboxDir(sandbox_id), process_id);
  auto head = [&](int stream, std::string* text, bool* truncated) {
    auto data = ReadFile(ProcessOutput::StreamPath(dir, stream), max_bytes + 1);
    if (!data.ok()) {
      // ReadFile refuses a file past its cap: read the first max_bytes by hand.
      UniqueFd fd(::open(ProcessOutput::StreamPath(dir, stream).c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd) return;
      text->resize(max_bytes);
      auto n = ReadAllAt(fd.get(), text->data(), max_bytes, 0);
      text->resize(n.ok() ? *n : 0);
      *truncated = true;
      return;
    }
    *text = std::move(*data);
    if (text->size() > max_bytes) {
      text->resize(max_bytes);
      *truncated = true;
    }
  };
  head(1, &out.stdout_head, &out.stdout_truncated);
  head(2, &out.stderr_head, &out.stderr_truncated);
  return out;
}

Result<store::ProcessRecord> SandboxService::GetProcess(std::string_view sandbox_id,
                                                        std::string_view id_or_tag,
                                                        const Principal& who) {
  auto sb = impl_->Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  return impl_->store.GetProcess(sandbox_id, id_or_tag);
}

Result<std::vector<store::ProcessRecord>> SandboxService::ListProcesses(
    std::string_view sandbox_id, store::ProcessFilter filter, const Principal& who) {
  auto sb = impl_->Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  return impl_->store.ListProcesses(sandbox_id, filter);
}

Result<store::ProcessRecord> SandboxService::ApproveProcess(std::string_view sandbox_id,
                                                            std::string_view id_or_tag,
                                                            const Principal& who) {
  auto sb = impl_->Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  auto rec = impl_->store.GetProcess(sandbox_id, id_or_tag);
  if (!rec.ok()) return std::move(rec).error();
  if (who.role == Role::kSubmitter || rec->submitter == who.name) {
    return MakeError(ErrorCode::kPermissionDenied, "key '{}' may not approve process {}: {}",
                     who.name, rec->id,
                     who.role == Role::kSubmitter ? "a submitter key cannot review"
                                                  : "its own submission needs another reviewer");
  }
  if (rec->state != ProcessState::kAwaitingReview) {
    return MakeError(ErrorCode::kFailedPrecondition, "process {} is {}, not AWAITING_REVIEW",
                     rec->id, store::ProcessStateName(rec->state));
  }
  auto box = impl_->Box(sandbox_id);
  if (!box) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is not running on this node",
                     sandbox_id);
  }
  rec->approval = store::SandboxApproval{who.name, NowMs(), "review"};
  impl_->Audit(who, "process.approved", sandbox_id, {{"process_id", rec->id}});
  return impl_->Launch(box, std::move(*rec), who);
}

Result<store::ProcessRecord> SandboxService::RejectProcess(std::string_view sandbox_id,
                                                           std::string_view id_or_tag,
                                                           const Principal& who,
                                                           const std::string& reason) {
  auto sb = impl_->Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  auto rec = impl_->store.GetProcess(sandbox_id, id_or_tag);
  if (!rec.ok()) return std::move(rec).error();
  if (who.role == Role::kSubmitter || rec->submitter == who.name) {
    return MakeError(ErrorCode::kPermissionDenied, "key '{}' may not reject process {}",
                     who.name, rec->id);
  }
  store::ProcessUpdate u;
  store::ProcessResult r;
  r.reason = EndReason{EndCode::kRejected, reason};
  u.result = r;
  auto out = impl_->store.UpdateProcess(sandbox_id, rec->id, {ProcessState::kAwaitingReview},
                                        ProcessState::kRejected, u);
  if (!out.ok()) return std::move(out).error();
  impl_->Audit(who, "process.rejected", sandbox_id, {{"process_id", rec->id}, {"reason", reason}});
  return out;
}

Status SandboxService::Signal(std::string_view sandbox_id, std::string_view id_or_tag, int sig,
                              const Principal& who) {
  auto live = impl_->LiveProcess(sandbox_id, id_or_tag, who);
  if (!live.ok()) return std::move(live).error();
  SBX_TRY(live->first->engine->Signal(live->second->engine_id, sig));
  impl_->Audit(who, "process.signaled", sandbox_id,
               {{"process_id", live->second->id}, {"signal", SignalName(sig)}});
  return Ok();
}

Status SandboxService::Kill(std::string_view sandbox_id, std::string_view id_or_tag,
                            const Principal& who) {
  auto live = impl_->LiveProcess(sandbox_id, id_or_tag, who);
  if (!live.ok()) return std::move(live).error();
  SBX_TRY(live->first->engine->Kill(live->second->engine_id));
  impl_->Audit(who, "process.killed", sandbox_id, {{"process_id", live->second->id}});
  return Ok();
}

Status SandboxService::WriteStdin(std::string_view sandbox_id, std::string_view id_or_tag,
                                  std::string_view bytes, bool close, const Principal& who) {
  auto live = impl_->LiveProcess(sandbox_id, id_or_tag, who);
  if (!live.ok()) return std::move(live).error();
  LiveProc& p = *live->second;
  std::lock_guard in(p.in_mu);
  if (!p.in) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "process {} has no open stdin (start it with stdin_open or a pty)", p.id);
  }
  SBX_TRY(WriteWithin(p.in.get(), bytes, std::chrono::seconds(10)));
  if (close && !p.pty) p.in.reset();
  return Ok();
}

Status SandboxService::Resize(std::string_view sandbox_id, std::string_view id_or_tag,
                              isolate::PtySize size, const Principal& who) {
  auto live = impl_->LiveProcess(sandbox_id, id_or_tag, who);
  if (!live.ok()) return std::move(live).error();
  if (size.cols == 0 || size.rows == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "a terminal needs at least 1 column and row");
  }
  return live->first->engine->Resize(live->second->engine_id, size);
}

Result<SandboxService::OutputHandle> SandboxService::Output(std::string_view sandbox_id,
                                                            std::string_view id_or_tag,
                                                            const Principal& who) {
  auto sb = impl_->Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  auto rec = impl_->store.GetProcess(sandbox_id, id_or_tag);
  if (!rec.ok()) return std::move(rec).error();
  OutputHandle h;
  h.dir = Impl::ProcessDir(impl_->SandboxDir(sandbox_id), rec->id);
  h.process = std::move(*rec);
  if (auto box = impl_->Box(sandbox_id)) {
    std::lock_guard pl(box->procs_mu);
    auto it = box->procs.find(h.process.id);
    if (it != box->procs.end()) h.live = it->second->output;
  }
  return h;
}

Result<files::SandboxRoot> SandboxService::Files(std::string_view sandbox_id,
                                                 const Principal& who) {
  auto sb = impl_->Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  auto box = impl_->Box(sandbox_id);
  if (!box || box->ending) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is {}: its files are gone",
                     sandbox_id, store::SandboxStateName(sb->state));
  }
  impl_->Activity(*box);
  return impl_->RootOf(*box);
}

Result<SnapshotRecord> SandboxService::Snapshot(std::string_view sandbox_id,
                                                std::string_view name, const Principal& who) {
  auto sb = impl_->Load(sandbox_id, who);
  if (!sb.ok()) return std::move(sb).error();
  SBX_TRY(Snapshots::CheckName(name));
  auto box = impl_->Box(sandbox_id);
  if (!box || box->ending) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is {}: nothing to snapshot",
                     sandbox_id, store::SandboxStateName(sb->state));
  }
  impl_->Activity(*box);
  auto root = impl_->RootOf(*box);
  if (!root.ok()) return std::move(root).error();
  auto snap = impl_->snapshots.Save(*root, name, who.name, sb->id, impl_->WritableDirs(*sb));
  if (!snap.ok()) return std::move(snap).error();
  impl_->Audit(who, "sandbox.snapshot", sandbox_id,
               {{"snapshot", snap->id}, {"name", snap->name}, {"bytes", snap->bytes}});
  return snap;
}

Result<std::vector<SnapshotRecord>> SandboxService::ListSnapshots(const Principal& who) {
  return impl_->snapshots.List(who.role == Role::kAdmin ? "" : who.name);
}

Result<SnapshotRecord> SandboxService::GetSnapshot(std::string_view name_or_id,
                                                   const Principal& who) {
  return impl_->snapshots.Find(name_or_id, who.role == Role::kAdmin ? "" : who.name);
}

Status SandboxService::DeleteSnapshot(std::string_view name_or_id, const Principal& who) {
  auto snap = GetSnapshot(name_or_id, who);
  if (!snap.ok()) return std::move(snap).error();
  SBX_TRY(impl_->snapshots.Delete(*snap));
  impl_->Audit(who, "snapshot.deleted", snap->source_sandbox, {{"snapshot", snap->id}});
  return Ok();
}

}  // namespace sbx::supervisor
