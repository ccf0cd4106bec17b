#include "supervisor/run_manager.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <optional>

#include "base/fs.h"
#include "supervisor/policy/decision_json.h"
#include "supervisor/run_logs.h"
#include "supervisor/workspace.h"
#include "supervisor/result_json.h"
#include "supervisor/text.h"

namespace sbx::supervisor {

using store::EventType;
using store::RunRecord;
using store::RunState;

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

constexpr size_t kMaxDiffBytes = 16 << 20;
constexpr auto kCrossNodeRecheck = std::chrono::seconds(2);

// A state change with its run.status event and its audit record, to commit together; with
// the run.completed event too when `ends_run` (a run that ends without having run).
std::vector<store::Write> MoveWrites(std::string_view run_id, const std::vector<RunState>& from,
                                     RunState to, const store::RunUpdate& update,
                                     const Principal& who, std::string_view action,
                                     bool ends_run = false) {
  nlohmann::json data = {{"state", store::RunStateName(to)}};
  if (update.result) data["reason"] = update.result->reason;
  std::vector<store::Write> writes;
  writes.push_back(store::TransitionWrite{std::string(run_id), from, to, update});
  writes.push_back(store::EventWrite{std::string(run_id), EventType::kRunStatus, data});
  writes.push_back(AuditOf(who, action, run_id, {{"to", store::RunStateName(to)}}));
  if (ends_run) {
    writes.push_back(
        store::EventWrite{std::string(run_id), EventType::kRunCompleted, std::move(data)});
  }
  return writes;
}

// What a run that was RUNNING on a node that died gets: run.status and run.completed (FAILED,
// supervisor_restart) and the audit record saying who noticed.
std::vector<store::Write> RecoveredWrites(const std::string& run_id, nlohmann::json audit) {
  const nlohmann::json data = {{"state", "FAILED"}, {"reason", "supervisor_restart"}};
  std::vector<store::Write> writes;
  writes.push_back(store::EventWrite{run_id, EventType::kRunStatus, data});
  writes.push_back(store::EventWrite{run_id, EventType::kRunCompleted, data});
  writes.push_back(AuditOf({"sandboxd", Role::kAdmin}, "run.recovered", run_id, std::move(audit)));
  return writes;
}

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

// Fills in defaults and refuses values beyond the maxima (never clamps in silence).
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

}  // namespace

RunManager::RunManager(store::Store& store, RunManagerOptions options)
    : store_(store),
      options_(std::move(options)),
      events_(store, [metrics = options_.metrics](const store::EventRecord& ev) {
        if (metrics != nullptr) metrics->OnEvent(ev.run_id, store::EventTypeName(ev.type), ev.data);
      }) {}

Result<std::unique_ptr<RunManager>> RunManager::Start(store::Store& store,
                                                      RunManagerOptions options) {
  if (options.cgroups == nullptr && !options.native) {
    return MakeError(ErrorCode::kInvalidArgument, "RunManager needs a cgroup driver");
  }
  if (Status st = CheckBackendName(options.default_backend); !st.ok()) {
    return WithContext(std::move(st).error(), "default_backend");
  }
  if (!options.native) {
    options.native = MakeNativeBackend(options.cgroups, options.engine,
                                       ProbeNativeHost(options.cgroups, ""));
  }
  // Without callbacks of the caller's, profiles come from seccomp_profiles_dir (reloadable).
  const bool seccomp_from_set = !options.seccomp && !options.seccomp_json;
  if (!options.seccomp_json) {
    options.seccomp_json = [](const std::string& name) -> Result<std::string> {
      if (!name.empty() && name != "default") {
        return MakeError(ErrorCode::kNotFound, "seccomp profile '{}' is not configured", name);
      }
      return std::string(seccomp::DefaultProfileJson());
    };
  }
  if (options.node.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    options.node = host;
  }
  if (!options.seccomp) {
    // The builtin profile, compiled once (compiling it costs milliseconds; the program is
    // immutable and copied into each sandbox's spec).
    auto compiled = std::make_shared<std::optional<Result<seccomp::Program>>>();
    auto once = std::make_shared<std::once_flag>();
    options.seccomp = [compiled, once](const std::string& name) -> Result<seccomp::Program> {
      if (!name.empty() && name != "default") {
        return MakeError(ErrorCode::kNotFound, "seccomp profile '{}' is not configured", name);
      }
      std::call_once(*once, [&] {
        seccomp::CompileOptions copts;
        copts.notify_errors = seccomp::NotifySupported();  // names each denial in the result
        compiled->emplace(seccomp::Compile(seccomp::DefaultProfile(), copts));
      });
      return **compiled;
    };
  }
  if (::mkdir(options.data_dir.c_str(), 0711) < 0 && errno != EEXIST) {
    return ErrnoError("mkdir {}", options.data_dir);
  }
  std::string runs = options.data_dir + "/runs";
  if (::mkdir(runs.c_str(), 0711) < 0 && errno != EEXIST) return ErrnoError("mkdir {}", runs);
  if (Status st = CheckSearchableByOthers(runs); !st.ok()) {
    return WithContext(std::move(st).error(), "data_dir");
  }
  // Mounts of runs a killed daemon left behind (their sandboxes died with it).
  if (Status st = SweepStaleMounts(options.data_dir); !st.ok()) {
    return WithContext(std::move(st).error(), "removing mounts left by an earlier daemon");
  }

  std::unique_ptr<RunManager> m(new RunManager(store, std::move(options)));
  m->policy_ = m->options_.command_policy;
  m->seccomp_from_set_ = seccomp_from_set;
  if (seccomp_from_set) {
    auto set = LoadSeccompProfiles(m->options_.seccomp_profiles_dir);
    if (!set.ok()) return WithContext(std::move(set).error(), "seccomp_profiles_dir");
    m->seccomp_profiles_ = std::move(*set);
  }
  // Crash recovery: what this node was running when it died did not finish.
  auto stale = store.RecoverStale(m->options_.node);
  if (!stale.ok()) return WithContext(std::move(stale).error(), "crash recovery");
  for (const std::string& id : *stale) {
    (void)m->events_.Record(id, "its recovery", RecoveredWrites(id, {{"node", m->options_.node}}));
    spdlog::warn("run {}: was running when the daemon stopped; marked FAILED", id);
  }
  // Their containers (Docker's survive the daemon that made them).
  if (m->options_.docker) {
    auto removed = m->options_.docker->RemoveLeftovers();
    if (removed.ok()) {
      for (const auto& name : *removed) {
        spdlog::warn("removed container {} left by an earlier run of the daemon", name);
      }
    } else {
      spdlog::warn("Docker: cannot look for containers left by an earlier run: {}",
                   removed.error().ToString());
    }
  }
  // Runs a crash caught between PENDING and AWAITING_REVIEW (Submit() takes milliseconds; an
  // older one is stalled, also when another daemon shares the database) are planned again.
  store::RunFilter stalled;
  stalled.states = {RunState::kPending, RunState::kPlanned};
  stalled.limit = 1000;
  if (auto page = store.ListRuns(stalled); page.ok()) {
    const int64_t cutoff = NowMs() - 30'000;
    for (const RunRecord& r : page->runs) {
      if (r.created_at_ms > cutoff) continue;
      spdlog::warn("run {}: found {} after a restart; planning it again", r.id,
                   store::RunStateName(r.state));
      (void)m->Plan(r, Principal{r.submitter, Role::kSubmitter});
    }
  }
  (void)store.Heartbeat(m->options_.node);
  // Warm sandboxes are native ones, for runs that name no backend: none when those go to Docker.
  // Their limits: a request's that names none.
  auto defaults = ResolveLimits({}, m->options_.limits);
  if (m->options_.limits.warm_sandboxes > 0 && m->options_.default_backend != "docker" &&
      m->options_.native->Availability().available && defaults.ok()) {
    WarmPoolOptions w;
    w.size = static_cast<size_t>(m->options_.limits.warm_sandboxes);
    w.data_dir = m->options_.data_dir;
    w.artifacts_quota_bytes = m->options_.limits.artifacts_quota_bytes;
    w.native = m->options_.native.get();
    w.spec = [raw = m.get(), defaults = *defaults] { return raw->BaseSpec(defaults, ""); };
    m->warm_ = std::make_unique<WarmPool>(std::move(w));
  }
  for (int i = 0; i < m->options_.limits.max_concurrent_runs; ++i) {
    m->workers_.emplace_back([raw = m.get()] { raw->Worker(); });
  }
  m->heartbeat_ = std::thread([raw = m.get()] { raw->HeartbeatLoop(); });
  return m;
}

RunManager::~RunManager() { Stop(); }

std::vector<BackendAvailability> RunManager::Backends() const {
  std::vector<BackendAvailability> out;
  out.push_back(options_.native->Availability());
  if (options_.docker) {
    out.push_back(options_.docker->Availability());
  } else {
    out.push_back({"docker", false, "not configured (docker_host)", ""});
  }
  return out;
}

void RunManager::Stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
    for (auto& [id, sb] : running_) {
      cancel_requested_.emplace(id, false);  // false: the daemon stops, nobody cancelled it
      if (sb != nullptr) sb->Cancel();
    }
  }
  work_.notify_all();
  stop_cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
  if (heartbeat_.joinable()) heartbeat_.join();
  if (warm_) warm_->Stop();
}

Result<isolate::SandboxSpec> RunManager::BaseSpec(const store::Limits& limits,
                                                  const std::string& seccomp_profile) const {
  isolate::SandboxSpec spec;
  spec.limits.cpus = limits.cpus;
  spec.limits.memory_bytes = static_cast<uint64_t>(limits.memory_bytes.value_or(0));
  spec.limits.pids = static_cast<uint64_t>(limits.pids.value_or(0));
  auto program = SeccompProgram(seccomp_profile);
  if (!program.ok()) return WithContext(std::move(program).error(), "seccomp profile");
  spec.seccomp = std::move(*program);
  return spec;
}

Result<RunRecord> RunManager::Move(std::string_view run_id, const std::vector<RunState>& from,
                                   RunState to, const store::RunUpdate& update,
                                   const Principal& who, std::string_view action, bool ends_run) {
  std::vector<store::Write> writes = MoveWrites(run_id, from, to, update, who, action, ends_run);
  auto done = events_.Commit(writes);
  if (!done.ok()) return std::move(done).error();
  return std::move(done->runs.front());
}

Result<store::CreateRunResult> RunManager::Submit(RunRecord request, const Principal& who) {
  if (request.argv.empty() == request.steps.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "a run needs either argv or steps (not both)");
  }
  if (!request.argv.empty()) request.steps = {{"main", request.argv}};
  for (size_t i = 0; i < request.steps.size(); ++i) {
    const auto& s = request.steps[i];
    if (s.argv.empty() || s.argv[0].empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "steps[{}].argv must name a command", i);
    }
    if (s.name.empty()) request.steps[i].name = fmt::format("step{}", i + 1);
  }
  if (!request.argv.empty()) request.steps.clear();
  if (request.network.empty()) request.network = "none";
  if (request.network != "none") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "network '{}' is not available; runs get network \"none\"", request.network);
  }
  if (!request.backend.empty()) {
    if (Status st = CheckBackendName(request.backend); !st.ok()) return std::move(st).error();
  }
  if (!request.image.empty()) {
    // An image is Docker's: the native engine builds its root from the host's directories.
    if (request.backend == "native") {
      return MakeError(ErrorCode::kInvalidArgument,
                       "image '{}' needs the docker backend; the native backend runs the host's "
                       "system directories (drop \"image\" or ask for backend docker or auto)",
                       request.image);
    }
    request.backend = "docker";
  } else if (request.backend.empty()) {
    request.backend = options_.default_backend;
  }
  if (request.workspace) {
    // Resolved now to refuse a bad path at once, and again (by fd) just before the run.
    auto ws = ResolveWorkspace(request.workspace->path, options_.limits.workspace_roots);
    if (!ws.ok()) return WithContext(std::move(ws).error(), "workspace");
    auto mode = ParseWorkspaceMode(request.workspace->mode);
    if (!mode.ok()) return WithContext(std::move(mode).error(), "workspace.mode");
    std::string data = options_.data_dir + "/";
    std::string path = ws->path + "/";
    if (data.rfind(path, 0) == 0 || path.rfind(data, 0) == 0) {
      return MakeError(ErrorCode::kPermissionDenied,
                       "workspace {} overlaps the daemon's data directory {}", ws->path,
                       options_.data_dir);
    }
    request.workspace = store::Workspace{ws->path, WorkspaceModeName(*mode)};
  }
  auto limits = ResolveLimits(request.limits, options_.limits);
  if (!limits.ok()) return std::move(limits).error();
  request.limits = *limits;
  request.submitter = who.name;
  request.state = RunState::kPending;

  auto queued = store_.CountInState(RunState::kQueued);
  if (!queued.ok()) return std::move(queued).error();
  if (*queued >= options_.limits.max_queue) {
    return MakeError(ErrorCode::kResourceExhausted,
                     "the run queue is full ({} queued); retry later", *queued);
  }

  auto created = store_.CreateRun(request);
  if (!created.ok()) return created;
  // (An existing run for this key is checked below.)
  if (!created->created) {
    // The same key must mean the same request; anything else is a client bug worth a 409.
    const RunRecord& old = created->run;
    bool same = old.argv == request.argv && old.steps == request.steps &&
                old.limits == request.limits && old.network == request.network &&
                old.seccomp_profile == request.seccomp_profile && old.env == request.env &&
                old.stdin_data == request.stdin_data && old.workspace == request.workspace &&
                old.labels == request.labels && old.backend == request.backend &&
                old.image == request.image;
    if (!same) {
      return MakeError(ErrorCode::kAlreadyExists,
                       "idempotency key '{}' was used for a different request (run {}); use a "
                       "new key for a new run",
                       request.idempotency_key.value_or(""), old.id);
    }
    return created;
  }
  const std::string id = created->run.id;
  std::vector<store::Write> submitted;
  submitted.push_back(store::EventWrite{id, EventType::kRunStatus, {{"state", "PENDING"}}});
  submitted.push_back(AuditOf(who, "run.submitted", id,
                              {{"idempotency_key", request.idempotency_key.value_or("")}}));
  auto run = Plan(created->run, who, std::move(submitted));
  if (!run.ok()) return std::move(run).error();
  created->run = std::move(*run);
  return created;
}

policy::CommandInput RunManager::PolicyInput(const RunRecord& run) {
  policy::CommandInput in;
  if (!run.argv.empty()) in.argvs.push_back(run.argv);
  for (const auto& s : run.steps) in.argvs.push_back(s.argv);
  in.api_key_name = run.submitter;
  in.labels = run.labels;
  return in;
}

std::optional<policy::Decision> RunManager::Evaluate(const policy::CommandInput& input) const {
  std::shared_ptr<const policy::CommandPolicy> p;
  {
    std::lock_guard<std::mutex> lk(policy_mu_);
    p = policy_;
  }
  if (!p) return std::nullopt;
  return p->Evaluate(input);
}

void RunManager::SetCommandPolicy(std::shared_ptr<const policy::CommandPolicy> policy) {
  std::lock_guard<std::mutex> lk(policy_mu_);
  policy_ = std::move(policy);
}

std::shared_ptr<const policy::CommandPolicy> RunManager::command_policy() const {
  std::lock_guard<std::mutex> lk(policy_mu_);
  return policy_;
}

Status RunManager::ReloadCommandPolicy(const std::string& dir, const Principal& who) {
  if (options_.on_policy_reload) options_.on_policy_reload(true);
  struct Done {
    const std::function<void(bool)>& fn;
    ~Done() {
      if (fn) fn(false);
    }
  } done{options_.on_policy_reload};
  auto loaded = policy::CommandPolicy::LoadDir(dir);
  std::shared_ptr<const policy::CommandPolicy> next;
  if (loaded.ok()) {
    next = std::move(*loaded);
  } else if (loaded.error().code == ErrorCode::kNotFound) {
    next = policy::CommandPolicy::Builtin();
  } else {
    events_.Audit(who, "policy.reload_refused", "", {{"error", loaded.error().ToString()}});
    return WithContext(std::move(loaded).error(), "the command policy in force is unchanged");
  }
  // The seccomp profiles with it: both are swapped, or neither.
  std::shared_ptr<const SeccompProfileSet> next_profiles;
  if (seccomp_from_set_) {
    auto profiles = LoadSeccompProfiles(options_.seccomp_profiles_dir);
    if (!profiles.ok()) {
      events_.Audit(who, "seccomp.reload_refused", "", {{"error", profiles.error().ToString()}});
      return WithContext(std::move(profiles).error(),
                         "the command policy and seccomp profiles in force are unchanged");
    }
    next_profiles = std::move(*profiles);
  }
  events_.Audit(who, "policy.reloaded", "", {{"source", next->source()}});
  spdlog::info("command policy reloaded from {}", next->source());
  if (next_profiles) {
    nlohmann::json names = nlohmann::json::array();
    for (const auto& p : next_profiles->profiles()) {
      names.push_back({{"name", p.name}, {"source", p.source}, {"sha256", p.sha256}});
    }
    events_.Audit(who, "seccomp.reloaded", "", {{"source", next_profiles->source()}, {"profiles", names}});
    spdlog::info("seccomp profiles reloaded from {} ({})", next_profiles->source(),
                 next_profiles->profiles().size());
    std::lock_guard<std::mutex> lk(policy_mu_);
    seccomp_profiles_ = std::move(next_profiles);
  }
  SetCommandPolicy(std::move(next));
  return Ok();
}

Result<std::shared_ptr<const SeccompProfileSet>> RunManager::LoadSeccompProfiles(
    const std::string& dir) {
  if (dir.empty()) return SeccompProfileSet::Builtin();
  auto set = SeccompProfileSet::LoadDir(dir);
  if (!set.ok() && set.error().code == ErrorCode::kNotFound) return SeccompProfileSet::Builtin();
  return set;
}

std::shared_ptr<const SeccompProfileSet> RunManager::seccomp_profiles() const {
  std::lock_guard<std::mutex> lk(policy_mu_);
  return seccomp_profiles_;
}

Result<seccomp::Program> RunManager::SeccompProgram(const std::string& name) const {
  auto set = seccomp_profiles();
  if (!set) return options_.seccomp(name);
  const LoadedSeccompProfile* p = set->Find(name);
  if (p == nullptr) {
    return MakeError(ErrorCode::kNotFound, "seccomp profile '{}' is not configured in {}", name,
                     set->source());
  }
  return p->program;
}

Result<std::string> RunManager::SeccompJson(const std::string& name) const {
  auto set = seccomp_profiles();
  if (!set) return options_.seccomp_json(name);
  const LoadedSeccompProfile* p = set->Find(name);
  if (p == nullptr) {
    return MakeError(ErrorCode::kNotFound, "seccomp profile '{}' is not configured in {}", name,
                     set->source());
  }
  return p->json;
}

Result<RunRecord> RunManager::Plan(const RunRecord& run, const Principal& who,
                                   std::vector<store::Write> before) {
  const std::string& id = run.id;
  std::vector<store::Write> writes = before;
  nlohmann::json policy = run.policy;
  if (run.state == RunState::kPending) {
    auto decision = Evaluate(PolicyInput(run));
    store::RunUpdate update;
    update.policy = decision ? policy::ToJson(*decision)
                             : nlohmann::json{{"decision", "review"},
                                              {"risk", nullptr},
                                              {"reasons", nlohmann::json::array()},
                                              {"rule", nullptr},
                                              {"note", "no command policy: a reviewer decides"}};
    policy = *update.policy;
    writes.push_back(store::TransitionWrite{id, {RunState::kPending}, RunState::kPlanned, update});
    writes.push_back(
        store::EventWrite{id, EventType::kRunStatus, {{"state", "PLANNED"}, {"policy", policy}}});
    writes.push_back(AuditOf(who, "policy.decision", id, policy));
  }
  auto add = [&writes](std::vector<store::Write> more) {
    for (store::Write& w : more) writes.push_back(std::move(w));
  };
  const std::string verdict = policy.is_object() ? policy.value("decision", "review") : "review";
  const Principal policy_actor{"policy", Role::kAdmin};
  if (verdict == "deny") {
    store::RunUpdate update;
    update.result = store::RunResult{};
    std::string why = "denied by the command policy";
    if (auto it = policy.find("reasons");
        it != policy.end() && it->is_array() && !it->empty() && (*it)[0].is_object()) {
      why = (*it)[0].value("message", why);
    }
    update.result->reason = "policy_denied: " + why;
    add(MoveWrites(id, {RunState::kPlanned}, RunState::kCancelled, update, policy_actor,
                   "run.denied", /*ends_run=*/true));
  } else {
    add(MoveWrites(id, {RunState::kPlanned}, RunState::kAwaitingReview, {}, who,
                   "run.awaiting_review"));
    if (verdict == "allow") {
      // Approved by a rule: who approved is the policy, and which rule is recorded.
      store::RunUpdate update;
      std::string rule = "policy";
      if (auto it = policy.find("rule"); it != policy.end() && it->is_object()) {
        rule = fmt::format("{}:{} {}", it->value("file", ""), it->value("line", 0),
                           it->value("pattern", ""));
      }
      update.approval = store::Approval{"policy", NowMs(), rule};
      add(MoveWrites(id, {RunState::kAwaitingReview}, RunState::kQueued, update, policy_actor,
                     "run.approved"));
    }
  }
  // The whole decision in one commit: a run is never seen half-planned.
  auto done = events_.Commit(writes);
  if (!done.ok()) {
    // What came before (the submission's own records) is kept all the same.
    if (!before.empty()) (void)events_.Record(id, "its submission", before);
    return std::move(done).error();
  }
  RunRecord planned = std::move(done->runs.back());
  if (planned.state == RunState::kQueued) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      ++wakeups_;
    }
    work_.notify_one();
  }
  return planned;
}

void RunManager::HeartbeatLoop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      if (stop_cv_.wait_for(lk, options_.heartbeat_interval, [&] { return stopping_; })) return;
    }
    if (Status st = store_.Heartbeat(options_.node); !st.ok()) {
      spdlog::error("heartbeat of node {}: {}", options_.node, st.error().ToString());
      continue;
    }
    // Another daemon sharing the database that stopped beating died with its runs.
    auto nodes = store_.ListNodes();
    if (!nodes.ok()) continue;
    const int64_t cutoff = NowMs() - options_.node_timeout.count();
    for (const store::NodeRecord& n : *nodes) {
      if (n.name == options_.node || n.last_heartbeat_ms >= cutoff) continue;
      auto stale = store_.RecoverStale(n.name);
      if (!stale.ok()) continue;
      for (const std::string& id : *stale) {
        (void)events_.Record(id, "its recovery",
                     RecoveredWrites(id, {{"node", n.name}, {"by", options_.node}}));
        spdlog::warn("run {}: its node {} stopped beating; marked FAILED", id, n.name);
      }
    }
  }
}

Result<RunRecord> RunManager::Approve(std::string_view run_id, const Principal& who) {
  if (who.role == Role::kSubmitter) {
    return MakeError(ErrorCode::kPermissionDenied, "approving needs the reviewer role");
  }
  auto current = store_.GetRun(run_id);
  if (!current.ok()) return current;
  if (current->submitter == who.name) {
    return MakeError(ErrorCode::kPermissionDenied, "a submitter cannot approve its own run");
  }
  store::RunUpdate update;
  update.approval = store::Approval{who.name, 0, "review"};
  auto now = std::chrono::system_clock::now().time_since_epoch();
  update.approval->approved_at_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now).count();
  auto run = Move(run_id, {RunState::kAwaitingReview}, RunState::kQueued, update, who,
                  "run.approved");
  if (run.ok()) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      ++wakeups_;
    }
    work_.notify_one();
  }
  return run;
}

Result<RunRecord> RunManager::Reject(std::string_view run_id, const Principal& who,
                                     const std::string& reason) {
  if (who.role == Role::kSubmitter) {
    return MakeError(ErrorCode::kPermissionDenied, "rejecting needs the reviewer role");
  }
  store::RunUpdate update;
  update.result = store::RunResult{};
  update.result->reason = "rejected" + (reason.empty() ? "" : ": " + reason);
  return Move(run_id, {RunState::kAwaitingReview}, RunState::kCancelled, update, who,
              "run.rejected", /*ends_run=*/true);
}

Result<RunRecord> RunManager::Cancel(std::string_view run_id, const Principal& who) {
  {
    // A run this node is executing is finished by its worker, after its last bytes of output.
    std::lock_guard<std::mutex> lk(mu_);
    auto it = running_.find(std::string(run_id));
    if (it != running_.end()) {
      cancel_requested_[it->first] = true;
      if (it->second != nullptr) it->second->Cancel();
      events_.Audit(who, "run.cancel_requested", run_id, {});
      return store_.GetRun(run_id);
    }
  }
  store::RunUpdate update;
  update.result = store::RunResult{};
  update.result->reason = "cancelled";
  return Move(run_id, store::NonTerminalRunStates(), RunState::kCancelled, update, who,
              "run.cancelled", /*ends_run=*/true);
}

void RunManager::Worker() {
  uint64_t seen = 0;
  for (;;) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stopping_) return;
      seen = wakeups_;
    }
    auto claimed = store_.ClaimNextQueued(options_.node);
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

void RunManager::Execute(RunRecord run) {
  const std::string id = run.id;
  const auto claimed_at = std::chrono::steady_clock::now();
  const Principal daemon{"sandboxd", Role::kAdmin};
  {
    std::lock_guard<std::mutex> lk(mu_);
    running_[id] = nullptr;
  }
  {
    std::vector<store::Write> started;
    started.push_back(store::EventWrite{
        id, EventType::kRunStatus, {{"state", "RUNNING"}, {"node", options_.node}}});
    started.push_back(AuditOf(daemon, "run.started", id, {{"node", options_.node}}));
    (void)events_.Record(id, "its start", started);
  }

  store::RunResult result;
  bool cancelled = false;
  std::vector<ArtifactInfo> artifacts;  // what the program left in /artifacts
  std::string diff;                     // the copy-on-write workspace's changes
  auto finish = [&](RunState state) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      running_.erase(id);
      cancel_requested_.erase(id);
    }
    store::RunUpdate update;
    update.result = result;
    const nlohmann::json data = {{"state", store::RunStateName(state)},
                                 {"reason", result.reason},
                                 {"exit_code", result.exit_code ? nlohmann::json(*result.exit_code)
                                                                : nlohmann::json(nullptr)}};
    std::vector<store::Write> ended;
    ended.push_back(store::TransitionWrite{id, {RunState::kRunning}, state, update});
    ended.push_back(store::EventWrite{id, EventType::kRunStatus, data});
    ended.push_back(AuditOf(daemon, "run.finished", id, data));
    if (!result.seccomp_denials.empty()) {
      ended.push_back(
          AuditOf(daemon, "run.seccomp_denials", id,
                  {{"denials", SeccompDenialsJson(result.seccomp_denials)},
                   {"summary", DenialSummary(result.seccomp_denials)},
                   {"profile", run.seccomp_profile.empty() ? "default" : run.seccomp_profile}}));
    }
    auto done = events_.Record(id, "its end", ended);
    if (!done.ok()) return;
    // Every artifact exists, and is announced, before run.completed (in the same commit).
    std::vector<store::Write> completed;
    for (const ArtifactInfo& a :
         WriteEndArtifacts(done->runs.front(), std::move(diff), artifacts)) {
      completed.push_back(
          store::EventWrite{id,
                            EventType::kArtifactCreated,
                            {{"name", a.name}, {"size", a.size}, {"sha256", a.sha256}}});
    }
    completed.push_back(store::EventWrite{id, EventType::kRunCompleted, data});
    (void)events_.Record(id, "its completion", completed);
  };
  auto is_cancelled = [&] {
    std::lock_guard<std::mutex> lk(mu_);
    return cancel_requested_.count(id) > 0;
  };

  // Where its output goes, besides the events.
  std::string dir = fmt::format("{}/runs/{}", options_.data_dir, id);
  // 0711: the sandbox's init (an unprivileged host uid) passes through to its mount points; it
  // cannot list the directory, and the logs in it are 0600.
  if (::mkdir(dir.c_str(), 0711) < 0 && errno != EEXIST) {
    result.reason = fmt::format("setup_failed: mkdir {}: {}", dir, std::strerror(errno));
    return finish(RunState::kFailed);
  }
  // The logs: each chunk is appended to its stream's file, and its step.log event records where
  // (offset, length) and when (the event's ts), so the store holds no copy of the bytes.
  std::optional<LogAppender> logs[2];
  for (int i = 0; i < 2; ++i) {
    auto log = LogAppender::Open(dir + (i == 0 ? "/stdout" : "/stderr"));
    if (!log.ok()) {
      result.reason = "setup_failed: " + log.error().ToString();
      return finish(RunState::kFailed);
    }
    logs[i].emplace(std::move(*log));
  }

  auto base = BaseSpec(run.limits, run.seccomp_profile);
  if (!base.ok()) {
    result.reason = "setup_failed: " + base.error().ToString();
    return finish(RunState::kFailed);
  }
  isolate::SandboxSpec spec = std::move(*base);
  spec.id = id;
  // Which backend runs it: what it asked for, where that is available.
  SandboxRequest request;
  auto chosen = SelectBackend(run.backend.empty() ? options_.default_backend : run.backend,
                              options_.native.get(), options_.docker.get());
  if (!chosen.ok()) {
    result.reason = "setup_failed: " + chosen.error().message;
    spdlog::error("run {}: {}", id, result.reason);
    return finish(RunState::kFailed);
  }
  Backend* backend = *chosen;
  result.backend = BackendKindName(backend->kind());
  if (backend->kind() == BackendKind::kDocker) {
    auto text = SeccompJson(run.seccomp_profile);
    if (!text.ok()) {
      result.reason = "setup_failed: seccomp profile: " + text.error().ToString();
      return finish(RunState::kFailed);
    }
    request.seccomp_json = std::move(*text);
    request.image = run.image;
  }
  if (is_cancelled()) {
    result.reason = "cancelled";
    return finish(RunState::kCancelled);
  }
  // Host-side mounts: /artifacts always, /workspace when asked for. They outlive the sandbox
  // until the artifacts and the diff have been taken.
  std::optional<ResolvedWorkspace> workspace;
  WorkspaceMode ws_mode = WorkspaceMode::kReadOnly;
  if (run.workspace) {
    auto ws = ResolveWorkspace(run.workspace->path, options_.limits.workspace_roots);
    auto mode = ParseWorkspaceMode(run.workspace->mode);
    if (!ws.ok() || !mode.ok()) {
      result.reason = "setup_failed: workspace: " +
                      (ws.ok() ? mode.error().ToString() : ws.error().ToString());
      return finish(RunState::kFailed);
    }
    workspace = std::move(*ws);
    ws_mode = *mode;
  }
  // A warm sandbox when one of this run's shape is waiting: it comes with its own /artifacts.
  std::unique_ptr<WarmSandbox> warm;
  if (warm_ && backend == options_.native.get() && !workspace &&
      (run.seccomp_profile.empty() || run.seccomp_profile == "default")) {
    warm = warm_->Take(spec);
  }
  std::optional<RunMounts> mounts;
  if (warm) {
    mounts = std::move(warm->mounts);
    warm->mounts.reset();
  } else {
    auto prepared = RunMounts::Prepare(dir, workspace ? &*workspace : nullptr, ws_mode,
                                       options_.limits.artifacts_quota_bytes,
                                       spec.host_id_base + spec.uid, spec.host_id_base + spec.gid);
    if (!prepared.ok()) {
      result.reason = "setup_failed: " + prepared.error().ToString();
      spdlog::error("run {}: {}", id, result.reason);
      return finish(RunState::kFailed);
    }
    mounts.emplace(std::move(*prepared));
    for (auto& b : mounts->Binds()) spec.binds.push_back(std::move(b));
  }
  // After the sandbox is gone: what the program left, the workspace's changes, the unmounts.
  auto take_outputs = [&] {
    const std::string artifact_dir = ArtifactDir(options_.data_dir, id);
    if (::mkdir(artifact_dir.c_str(), 0700) < 0 && errno != EEXIST) {
      spdlog::error("run {}: mkdir {}: {}", id, artifact_dir, std::strerror(errno));
    }
    auto files = mounts->CollectArtifacts(artifact_dir + "/files");
    if (files.ok()) {
      for (const auto& f : files->files) {
        artifacts.push_back({"files/" + f.path, f.size, f.sha256});
      }
      for (const auto& s : files->skipped) {
        spdlog::warn("run {}: artifact {} skipped: {}", id, s.path, s.reason);
      }
    } else {
      spdlog::error("run {}: collecting artifacts: {}", id, files.error().ToString());
    }
    if (workspace && ws_mode == WorkspaceMode::kCopyOnWrite) {
      auto d = mounts->Diff(kMaxDiffBytes);
      if (d.ok()) {
        diff = std::move(*d);
      } else {
        spdlog::error("run {}: workspace diff: {}", id, d.error().ToString());
      }
    }
    if (Status st = mounts->Teardown(); !st.ok()) {
      spdlog::error("run {}: unmounting: {}", id, st.error().ToString());
    }
  };
  std::vector<store::Step> steps =
      run.steps.empty() ? std::vector<store::Step>{{"main", run.argv}} : run.steps;
  request.spec = std::move(spec);
  request.processes = steps.size();
  Result<std::unique_ptr<RunSandbox>> sb =
      warm ? Result<std::unique_ptr<RunSandbox>>(std::move(warm->sandbox)) : backend->Create(request);
  if (warm) spdlog::debug("run {}: in warm sandbox {}", id, warm->id);
  if (!sb.ok()) {
    result.reason = "setup_failed: " + sb.error().ToString();
    spdlog::error("run {}: {}", id, result.reason);
    take_outputs();
    return finish(RunState::kFailed);
  }
  if (options_.metrics != nullptr) {
    options_.metrics->SandboxStarted(std::chrono::steady_clock::now() - claimed_at,
                                     warm != nullptr);
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    running_[id] = sb->get();
    if (cancel_requested_.count(id)) (*sb)->Cancel();
  }

  // stdin: the request's bytes, the same for each step.
  UniqueFd stdin_fd;
  if (!run.stdin_data.empty()) {
    stdin_fd.reset(::memfd_create("sbx-stdin", MFD_CLOEXEC));
    if (stdin_fd) (void)WriteAll(stdin_fd.get(), run.stdin_data);
  }
  std::vector<std::string> env;
  for (const auto& [k, v] : run.env) env.push_back(k + "=" + v);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::seconds(run.limits.timeout_s.value_or(600));
  uint64_t output_left = static_cast<uint64_t>(run.limits.output_bytes.value_or(16 << 20));
  bool all_ok = true;

  for (const store::Step& step : steps) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    isolate::ProcessSpec p;
    p.argv = step.argv;
    p.env = env;
    p.timeout_ms = left.count() > 0 ? static_cast<uint64_t>(left.count()) : 1;
    p.output_limit_bytes = output_left;
    if (stdin_fd) {
      ::lseek(stdin_fd.get(), 0, SEEK_SET);
      p.stdin_fd = stdin_fd.get();
    }
    (void)events_.Emit(id, EventType::kStepStarted, {{"step", step.name}, {"argv", step.argv}});
    auto sink = [&](int stream, std::string_view data) {
      LogAppender& log = *logs[stream == 1 ? 0 : 1];
      nlohmann::json ev = {{"step", step.name}, {"stream", stream == 1 ? "stdout" : "stderr"}};
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
    auto r = (*sb)->Run(p, sink);
    store::StepResult sr;
    sr.name = step.name;
    if (!r.ok()) {
      sr.reason = "setup_failed: " + r.error().ToString();
    } else {
      sr.reason = isolate::EndReasonName(r->reason);
      if (r->reason == isolate::EndReason::kSetupFailed && r->error) {
        sr.reason += ": " + r->error->message;
      }
      sr.exit_code = r->exit_code;
      sr.signal = r->signal;
      sr.wall_ms = static_cast<int64_t>(r->wall_ms);
      sr.cpu_ms = static_cast<int64_t>(r->cpu_ms);
      sr.memory_peak_bytes = static_cast<int64_t>(r->memory_peak_bytes);
      for (const auto& d : r->seccomp_denials) {
        sr.seccomp_denials.push_back({d.name, static_cast<int64_t>(d.count)});
      }
      if (r->output_truncated) result.output_truncated = true;
      uint64_t used = r->stdout_bytes + r->stderr_bytes;
      output_left = used >= output_left ? 0 : output_left - used;
      cancelled = r->reason == isolate::EndReason::kCancelled;
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
  {
    std::lock_guard<std::mutex> lk(mu_);
    running_[id] = nullptr;
  }
  if (Status st = (*sb)->Destroy(); !st.ok()) {
    spdlog::warn("run {}: sandbox cleanup: {}", id, st.error().ToString());
  }
  if (options_.metrics != nullptr) options_.metrics->SandboxEnded();
  take_outputs();
  if (cancelled || is_cancelled()) {
    bool by_user = false;
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = cancel_requested_.find(id);
      by_user = it != cancel_requested_.end() && it->second;
    }
    if (!by_user) {
      // SIGTERM while it ran: it did not finish, and nobody cancelled it.
      result.reason = "supervisor_shutdown";
      return finish(RunState::kFailed);
    }
    result.reason = "cancelled";
    return finish(RunState::kCancelled);
  }
  finish(all_ok ? RunState::kSucceeded : RunState::kFailed);
}

std::vector<ArtifactInfo> RunManager::WriteEndArtifacts(const store::RunRecord& run,
                                                        std::string diff,
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
  add("report.md", RenderReport(run, LogTail(dir + "/stdout", 40, 16 << 10),
                                LogTail(dir + "/stderr", 40, 16 << 10)));
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
