#include "supervisor/sandbox/sandbox_service.h"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "supervisor/exec/executor.h"
#include "supervisor/exec/result_json.h"
#include "supervisor/policy/decision_json.h"
#include "supervisor/sandbox/sandbox_internal.h"
#include "supervisor/workspace/workspace.h"

namespace sbx::supervisor {

using store::EndCode;
using store::EndReason;
using store::ProcessState;
using store::SandboxState;

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

Status MayReview(const Principal& who, const std::string& submitter, std::string_view what,
                 std::string_view id) {
  if (who.role != Role::kSubmitter && submitter != who.name) return Ok();
  return MakeError(ErrorCode::kPermissionDenied, "key '{}' may not {} {}: {}", who.name, what, id,
                   who.role == Role::kSubmitter ? "a submitter key cannot review"
                                                : "its own submission needs another reviewer");
}

bool MayAccess(const store::SandboxRecord& sandbox, const Principal& who) {
  return who.role != Role::kSubmitter || sandbox.submitter == who.name;
}

// ---- Validation and the policy -----------------------------------------------------------------

Status SandboxService::Impl::CheckSelector(const store::SandboxRequest& r) const {
  for (const auto& [key, value] : r.node_selector) {
    auto it = options.node_labels.find(key);
    if (it == options.node_labels.end() || it->second != value) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "node_selector {}={}: node {} does not carry it (ask a node that does, or "
                       "any node of the cluster: it forwards the request)",
                       key, value, options.node);
    }
  }
  return Ok();
}

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
    auto ws = CheckWorkspaceRequest(*r.workspace_path, r.workspace_mode, options.limits,
                                    who.workspace_roots, who.name, options.data_dir,
                                    /*allow_rw=*/true);
    if (!ws.ok()) return std::move(ws).error();
    r.workspace_path = ws->path;
    r.workspace_mode = ws->mode;
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
    auto r = UpdateSandbox(id, {SandboxState::kStarting}, SandboxState::kFailed, u);
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
  auto rec = UpdateSandbox(id, {SandboxState::kStarting}, SandboxState::kRunning, u);
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
      (void)UpdateProcess(id, p.id, {ProcessState::kAwaitingReview},
                                ProcessState::kCancelled, {});
    }
    if (!waiting->empty()) Decided();
  }
  store::SandboxUpdate u;
  u.reason = reason;
  auto rec = UpdateSandbox(id, store::NonTerminalSandboxStates(), state, u);
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
  SBX_TRY(impl_->CheckSelector(*valid));
  store::SandboxRecord rec;
  static_cast<store::SandboxRequest&>(rec) = std::move(*valid);
  rec.submitter = who.name;
  auto created = impl_->CreateSandbox(rec);
  if (!created.ok()) return std::move(created).error();
  if (!created->created) return created;
  const std::string id = created->sandbox.id;
  impl_->Audit(who, "sandbox.created", id, {{"labels", created->sandbox.labels}});
  const policy::Decision d = impl_->Judge(created->sandbox);
  store::SandboxUpdate u;
  u.policy = policy::ToJson(d);
  auto waiting = impl_->UpdateSandbox(id, {SandboxState::kPending},
                                            SandboxState::kAwaitingReview, u);
  if (!waiting.ok()) return std::move(waiting).error();
  created->sandbox = *waiting;
  if (d.action == policy::Action::kDeny) {
    std::string why = d.reasons.empty() ? "denied" : d.reasons.front().message;
    store::SandboxUpdate du;
    du.reason = EndReason{EndCode::kPolicyDenied, why};
    (void)impl_->UpdateSandbox(id, {SandboxState::kAwaitingReview}, SandboxState::kFailed,
                                     du);
    impl_->Audit(who, "sandbox.denied", id, {{"policy", *u.policy}});
    return MakeError(ErrorCode::kPermissionDenied, "the policy denies this sandbox: {}", why);
  }
  if (d.action == policy::Action::kAllow) {
    store::SandboxUpdate au;
    au.approval = store::SandboxApproval{
        "policy", NowMs(), d.rule ? fmt::format("{}:{}", d.rule->file, d.rule->line) : ""};
    auto starting = impl_->UpdateSandbox(id, {SandboxState::kAwaitingReview},
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

bool SandboxService::Hosts(std::string_view id) {
  auto box = impl_->Box(id);
  return box && !box->ending;
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
  SBX_TRY(MayReview(who, sb->submitter, "approve sandbox", id));
  SBX_TRY(impl_->CheckSelector(*sb));
  store::SandboxUpdate u;
  u.approval = store::SandboxApproval{who.name, NowMs(), "review"};
  auto starting = impl_->UpdateSandbox(id, {SandboxState::kAwaitingReview},
                                             SandboxState::kStarting, u);
  if (!starting.ok()) return std::move(starting).error();
  impl_->Audit(who, "sandbox.approved", id, {});
  return impl_->StartApproved(*starting, who);
}

Result<store::SandboxRecord> SandboxService::Reject(std::string_view id, const Principal& who,
                                                    const std::string& reason) {
  auto sb = impl_->Load(id, who);
  if (!sb.ok()) return std::move(sb).error();
  SBX_TRY(MayReview(who, sb->submitter, "reject sandbox", id));
  store::SandboxUpdate u;
  u.reason = EndReason{EndCode::kRejected, reason};
  auto r = impl_->UpdateSandbox(id, {SandboxState::kAwaitingReview}, SandboxState::kFailed,
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
  return impl_->Freeze(id, who, true);
}

Result<store::SandboxRecord> SandboxService::Resume(std::string_view id, const Principal& who) {
  return impl_->Freeze(id, who, false);
}

// RUNNING -> PAUSED (the cgroup freezer) or back.
Result<store::SandboxRecord> SandboxService::Impl::Freeze(std::string_view id,
                                                          const Principal& who, bool pause) {
  const SandboxState from = pause ? SandboxState::kRunning : SandboxState::kPaused;
  const SandboxState to = pause ? SandboxState::kPaused : SandboxState::kRunning;
  auto sb = Load(id, who);
  if (!sb.ok()) return std::move(sb).error();
  auto box = Box(id);
  if (!box || sb->state != from) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is {}, not {}", id,
                     store::SandboxStateName(sb->state), store::SandboxStateName(from));
  }
  std::lock_guard op(box->mu);
  if (box->ending) return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is ending", id);
  SBX_TRY(pause ? box->engine->Pause() : box->engine->Resume());
  store::SandboxUpdate u;
  u.last_activity_ms = NowMs();
  auto r = UpdateSandbox(id, {from}, to, u);
  if (!r.ok()) {
    if (pause) (void)box->engine->Resume();
    return std::move(r).error();
  }
  Activity(*box);
  Audit(who, pause ? "sandbox.paused" : "sandbox.resumed", id, {});
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

uint64_t SandboxService::SubscribeChanges(ChangeListener listener) {
  std::lock_guard lock(impl_->change_mu);
  const uint64_t token = impl_->next_change_token++;
  impl_->change_listeners.emplace(token,
                                  std::make_shared<const ChangeListener>(std::move(listener)));
  return token;
}

void SandboxService::UnsubscribeChanges(uint64_t token) {
  std::lock_guard lock(impl_->change_mu);
  impl_->change_listeners.erase(token);
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
