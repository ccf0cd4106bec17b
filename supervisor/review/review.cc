#include "supervisor/review/review.h"
#include "base/clock.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "base/sha256.h"
#include "supervisor/backend/backend.h"
#include "supervisor/checkout/repo_location.h"
#include "supervisor/policy/decision_json.h"
#include "supervisor/workspace/workspace.h"

namespace sbx::supervisor {

using store::EventType;
using store::RunRecord;
using store::RunState;

namespace {

Result<std::shared_ptr<const SeccompProfileSet>> LoadSeccompProfiles(const std::string& dir) {
  if (dir.empty()) return SeccompProfileSet::Builtin();
  auto set = SeccompProfileSet::LoadDir(dir);
  if (!set.ok() && set.error().code == ErrorCode::kNotFound) return SeccompProfileSet::Builtin();
  if (set.ok()) {
    // Loaded as runc, crun and Podman load them, but worth a word to whoever wrote the profile.
    for (const auto& p : (*set)->profiles()) {
      for (const std::string& line : p.program.shadowed) {
        spdlog::warn("seccomp profile {} ({}): {}", p.name, p.source, line);
      }
    }
  }
  return set;
}

}  // namespace

std::vector<store::Write> MoveWrites(std::string_view run_id, const std::vector<RunState>& from,
                                     RunState to, const store::RunUpdate& update,
                                     const Principal& who, std::string_view action, bool ends_run) {
  nlohmann::json data = {{"state", store::RunStateName(to)}};
  if (update.result) data["reason"] = store::RenderEndReason(update.result->reason);
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

Review::Review(store::Store& store, EventBus& events, ReviewOptions options)
    : store_(store), events_(events), options_(std::move(options)) {}

Result<std::unique_ptr<Review>> Review::Create(store::Store& store, EventBus& events,
                                               ReviewOptions options) {
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
  std::unique_ptr<Review> r(new Review(store, events, std::move(options)));
  r->policy_ = r->options_.command_policy;
  r->jobs_ = r->options_.jobs ? r->options_.jobs : policy::JobSet::Empty();
  if (seccomp_from_set) {
    auto set = LoadSeccompProfiles(r->options_.seccomp_profiles_dir);
    if (!set.ok()) return WithContext(std::move(set).error(), "seccomp_profiles_dir");
    r->seccomp_profiles_ = std::move(*set);
  }
  r->ScheduleExpiries();
  return r;
}

void Review::Queued() const {
  if (options_.on_queued) options_.on_queued();
}

Result<RunRecord> Review::Move(std::string_view run_id, const std::vector<RunState>& from,
                               RunState to, const store::RunUpdate& update, const Principal& who,
                               std::string_view action, bool ends_run) {
  std::vector<store::Write> writes = MoveWrites(run_id, from, to, update, who, action, ends_run);
  auto done = events_.Commit(writes);
  if (!done.ok()) return std::move(done).error();
  return std::move(done->runs.front());
}

Result<store::CreateRunResult> Review::Submit(store::RunRequest request, const Principal& who,
                                              const nlohmann::json* decided) {
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
  if (request.workspace && !request.workspace->sha.empty()) {
    SBX_TRY(CheckCheckout(*request.workspace, request.project_id, who));
  } else if (request.workspace) {
    auto ws = CheckWorkspaceRequest(request.workspace->path, request.workspace->mode,
                                    options_.limits, who.workspace_roots, who.name,
                                    options_.data_dir, /*allow_rw=*/false);
    if (!ws.ok()) return std::move(ws).error();
    request.workspace = store::Workspace{ws->path, ws->mode};
  }
  if (auto set = seccomp_profiles(); set && !who.permissive_seccomp) {
    const LoadedSeccompProfile* p = set->Find(request.seccomp_profile);
    if (p != nullptr && p->permissive) {
      return MakeError(ErrorCode::kPermissionDenied,
                       "seccomp profile '{}' is permissive (unlisted syscalls run); key '{}' may "
                       "not use it (api_keys: permissive_seccomp: true)",
                       request.seccomp_profile, who.name);
    }
  }
  auto limits = ResolveLimits(request.limits, options_.limits);
  if (!limits.ok()) return std::move(limits).error();
  request.limits = *limits;

  auto queued = store_.CountInState(RunState::kQueued);
  if (!queued.ok()) return std::move(queued).error();
  if (*queued >= options_.limits.max_queue) {
    return MakeError(ErrorCode::kResourceExhausted,
                     "the run queue is full ({} queued); retry later", *queued);
  }

  RunRecord record;
  static_cast<store::RunRequest&>(record) = request;
  record.submitter = who.name;
  record.state = RunState::kPending;
  auto created = store_.CreateRun(record);
  if (!created.ok()) return created;
  // (An existing run for this key is checked below.)
  if (!created->created) {
    // The same key must mean the same request; anything else is a client bug worth a 409.
    const RunRecord& old = created->run;
    if (old.request() != request) {
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
  auto run = Plan(created->run, who, std::move(submitted), decided);
  if (!run.ok()) return std::move(run).error();
  created->run = std::move(*run);
  return created;
}

Status Review::CheckCheckout(store::Workspace& ws, const std::string& project_id,
                             const Principal& who) const {
  if (!checkout::IsCommitSha(ws.sha)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "checkout.sha: '{}' is not a full commit id (40 lowercase hex digits)",
                     ws.sha);
  }
  if (ws.mode != "ro" && ws.mode != "cow") {
    return MakeError(ErrorCode::kInvalidArgument, "checkout.mode: \"ro\" or \"cow\", not '{}'",
                     ws.mode);
  }
  auto where = checkout::ParseRepo(ws.repo);
  if (!where.ok()) return WithContext(std::move(where).error(), "checkout.repo");
  if (where->kind == checkout::RepoLocation::Kind::kLocalPath) {
    // A repository on this host: under the workspace roots (and the key's), as a workspace is.
    auto dir =
        CheckWorkspaceRequest(where->url, "ro", options_.limits,
                              project_id.empty() ? who.workspace_roots : std::vector<std::string>{},
                              who.name, options_.data_dir, /*allow_rw=*/false);
    if (!dir.ok()) return WithContext(std::move(dir).error(), "checkout.repo");
    ws.repo = dir->path;
  } else if (project_id.empty()) {
    // What the daemon fetches from the network, an administrator names: a project's repo.
    return MakeError(ErrorCode::kPermissionDenied,
                     "checkout.repo: a repository URL is checked out through a project whose "
                     "repo it is (checkout: {{\"project\": …, \"sha\": …}})");
  } else {
    ws.repo = where->url;
  }
  ws.path.clear();
  return Ok();
}

policy::CommandInput Review::PolicyInput(const RunRecord& run) {
  policy::CommandInput in;
  if (!run.argv.empty()) in.argvs.push_back(run.argv);
  for (const auto& s : run.steps) in.argvs.push_back(s.argv);
  in.api_key_name = run.submitter;
  in.labels = run.labels;
  return in;
}

std::optional<policy::Decision> Review::Evaluate(const policy::CommandInput& input) const {
  std::shared_ptr<const policy::CommandPolicy> p;
  {
    std::lock_guard<std::mutex> lk(mu_);
    p = policy_;
  }
  if (!p) return std::nullopt;
  return p->Evaluate(input);
}

void Review::SetCommandPolicy(std::shared_ptr<const policy::CommandPolicy> policy) {
  std::lock_guard<std::mutex> lk(mu_);
  policy_ = std::move(policy);
}

std::shared_ptr<const policy::JobSet> Review::jobs() const {
  std::lock_guard<std::mutex> lk(mu_);
  return jobs_;
}

std::shared_ptr<const policy::CommandPolicy> Review::command_policy() const {
  std::lock_guard<std::mutex> lk(mu_);
  return policy_;
}

Status Review::ReloadCommandPolicy(const std::string& dir, const Principal& who) {
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
  // The jobs with it.
  std::shared_ptr<const policy::JobSet> next_jobs;
  if (auto jobs = policy::JobSet::LoadDir(dir); jobs.ok()) {
    next_jobs = std::move(*jobs);
  } else if (jobs.error().code == ErrorCode::kNotFound) {
    next_jobs = policy::JobSet::Empty();
  } else {
    events_.Audit(who, "policy.reload_refused", "", {{"error", jobs.error().ToString()}});
    return WithContext(std::move(jobs).error(),
                       "the command policy and the jobs in force are unchanged");
  }
  // The seccomp profiles with it: all are swapped, or none.
  std::shared_ptr<const SeccompProfileSet> next_profiles;
  if (seccomp_profiles() != nullptr) {
    auto profiles = LoadSeccompProfiles(options_.seccomp_profiles_dir);
    if (!profiles.ok()) {
      events_.Audit(who, "seccomp.reload_refused", "", {{"error", profiles.error().ToString()}});
      return WithContext(std::move(profiles).error(),
                         "the command policy and seccomp profiles in force are unchanged");
    }
    next_profiles = std::move(*profiles);
  }
  events_.Audit(who, "policy.reloaded", "",
                {{"source", next->source()},
                 {"jobs", next_jobs->jobs().size()},
                 {"jobs_source", next_jobs->source()}});
  spdlog::info("command policy reloaded from {}", next->source());
  if (next_profiles) {
    nlohmann::json names = nlohmann::json::array();
    for (const auto& p : next_profiles->profiles()) {
      names.push_back({{"name", p.name}, {"source", p.source}, {"sha256", p.sha256}});
    }
    events_.Audit(who, "seccomp.reloaded", "",
                  {{"source", next_profiles->source()}, {"profiles", names}});
    spdlog::info("seccomp profiles reloaded from {} ({})", next_profiles->source(),
                 next_profiles->profiles().size());
    std::lock_guard<std::mutex> lk(mu_);
    seccomp_profiles_ = std::move(next_profiles);
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    jobs_ = std::move(next_jobs);
  }
  SetCommandPolicy(std::move(next));
  return Ok();
}

std::shared_ptr<const SeccompProfileSet> Review::seccomp_profiles() const {
  std::lock_guard<std::mutex> lk(mu_);
  return seccomp_profiles_;
}

Result<seccomp::Program> Review::SeccompProgram(const std::string& name) const {
  auto set = seccomp_profiles();
  if (!set) return options_.seccomp(name);
  const LoadedSeccompProfile* p = set->Find(name);
  if (p == nullptr) {
    return MakeError(ErrorCode::kNotFound, "seccomp profile '{}' is not configured in {}", name,
                     set->source());
  }
  return p->program;
}

Result<seccomp::Program> Review::SeccompPlainProgram(const std::string& name) const {
  auto set = seccomp_profiles();
  if (!set) {
    auto p = options_.seccomp(name);
    if (p.ok() && p->notify != seccomp::NotifyMode::kNone) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "seccomp profile '{}' comes compiled to notify; long-lived sandboxes need "
                       "it without",
                       name);
    }
    return p;
  }
  const LoadedSeccompProfile* p = set->Find(name);
  if (p == nullptr) {
    return MakeError(ErrorCode::kNotFound, "seccomp profile '{}' is not configured in {}", name,
                     set->source());
  }
  return p->plain_program;
}

Result<std::string> Review::SeccompJson(const std::string& name) const {
  auto set = seccomp_profiles();
  if (!set) return options_.seccomp_json(name);
  const LoadedSeccompProfile* p = set->Find(name);
  if (p == nullptr) {
    return MakeError(ErrorCode::kNotFound, "seccomp profile '{}' is not configured in {}", name,
                     set->source());
  }
  return p->json;
}

Result<RunRecord> Review::Plan(const RunRecord& run, const Principal& who,
                               std::vector<store::Write> before, const nlohmann::json* decided) {
  const std::string& id = run.id;
  std::vector<store::Write> writes = before;
  nlohmann::json policy = run.policy;
  if (run.state == RunState::kPending) {
    auto decision = decided != nullptr ? std::nullopt : Evaluate(PolicyInput(run));
    store::RunUpdate update;
    update.policy = decided != nullptr ? *decided
                    : decision         ? policy::ToJson(*decision)
                                       : nlohmann::json{{"decision", "review"},
                                                        {"risk", nullptr},
                                                        {"reasons", nlohmann::json::array()},
                                                        {"rule", nullptr},
                                                        {"note", "no command policy: a reviewer decides"}};
    if (update.policy->value("decision", "review") == "review") {
      // How many reviewers, and until when: fixed with the decision, as the rule that asked.
      const auto current = command_policy();
      const policy::ReviewRules rules = current ? current->review() : policy::ReviewRules{};
      (*update.policy)["approvals_required"] =
          rules.ApprovalsFor(decision ? decision->risk : policy::Risk::kLow);
      if (rules.expire_after_s > 0) {
        (*update.policy)["review_expires_at_ms"] = NowMs() + rules.expire_after_s * 1000;
      }
    }
    // The hash over everything that decides what runs: an approval is bound to it.
    (*update.policy)["plan_sha256"] = PlanSha256(run);
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
    update.result->reason = {store::EndCode::kPolicyDenied, why};
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
  if (planned.state == RunState::kQueued) Queued();
  if (planned.state == RunState::kAwaitingReview) ScheduleExpiry(planned);
  return planned;
}

void Review::ReplanStalled() {
  store::RunFilter stalled;
  stalled.states = {RunState::kPending, RunState::kPlanned};
  stalled.limit = 1000;
  auto page = store_.ListRuns(stalled);
  if (!page.ok()) return;
  const int64_t cutoff = NowMs() - 30'000;
  for (const RunRecord& r : page->runs) {
    if (r.created_at_ms > cutoff) continue;
    spdlog::warn("run {}: found {} after a restart; planning it again", r.id,
                 store::RunStateName(r.state));
    (void)Plan(r, Principal{r.submitter, Role::kSubmitter});
  }
}

Result<RunRecord> Review::Approve(std::string_view run_id, const Principal& who,
                                  const ApproveInput& input) {
  if (who.role == Role::kSubmitter) {
    return MakeError(ErrorCode::kPermissionDenied, "approving needs the reviewer role");
  }
  if (input.comment.size() > kMaxReviewComment) {
    return MakeError(ErrorCode::kInvalidArgument, "comment: {} bytes; at most {}",
                     input.comment.size(), kMaxReviewComment);
  }
  // A vote is computed from the votes read: it is written only if the run has not changed since
  // (no event appended), else read again. Every vote appends an event.
  for (int attempt = 0;; ++attempt) {
    auto seq = store_.LastEventSeq(run_id);
    if (!seq.ok()) return std::move(seq).error();
    auto current = store_.GetRun(run_id);
    if (!current.ok()) return current;
    if (current->submitter == who.name) {
      return MakeError(ErrorCode::kPermissionDenied, "a submitter cannot approve its own run");
    }
    if (current->state != RunState::kAwaitingReview) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "run {} is {}; approving needs it to be AWAITING_REVIEW", run_id,
                       store::RunStateName(current->state));
    }
    const std::string plan = PlanSha256(*current);
    if (auto fixed = current->policy.find("plan_sha256");
        fixed != current->policy.end() && fixed->is_string() && *fixed != plan) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "run {} no longer matches the plan {} it was planned with (now {}); "
                       "it cannot be approved",
                       run_id, fixed->get<std::string>(), plan);
    }
    if (!input.plan_sha256.empty() && input.plan_sha256 != plan) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "run {}'s plan is {}, not the {} that was reviewed; read the run again",
                       run_id, plan, input.plan_sha256);
    }
    store::Approval approval = current->approval.value_or(store::Approval{});
    approval.required = 1;
    if (auto it = current->policy.find("approvals_required");
        it != current->policy.end() && it->is_number_integer()) {
      approval.required = std::clamp(it->get<int>(), 1, policy::kMaxApprovals);
    }
    for (const store::ReviewVote& v : approval.votes) {
      if (v.by == who.name) {
        return MakeError(ErrorCode::kAlreadyExists,
                         "{} approved run {} already; it needs {} more distinct reviewer(s)",
                         who.name, run_id, approval.required - approval.votes.size());
      }
    }
    const int64_t now = NowMs();
    approval.votes.push_back({who.name, now, input.comment, plan});
    const int have = static_cast<int>(approval.votes.size());
    store::RunUpdate update;
    std::vector<store::Write> writes;
    nlohmann::json audit = {{"plan_sha256", plan},
                            {"approvals", have},
                            {"approvals_required", approval.required}};
    if (!input.comment.empty()) audit["comment"] = input.comment;
    if (have >= approval.required) {
      approval.approved_by = who.name;
      approval.approved_at_ms = now;
      approval.rule = "review";
      update.approval = approval;
      writes = MoveWrites(run_id, {RunState::kAwaitingReview}, RunState::kQueued, update, who,
                          "run.approved");
    } else {
      update.approval = approval;
      writes.push_back(store::TransitionWrite{std::string(run_id), {RunState::kAwaitingReview},
                                              RunState::kAwaitingReview, update});
      writes.push_back(store::EventWrite{std::string(run_id),
                                         EventType::kRunStatus,
                                         {{"state", "AWAITING_REVIEW"},
                                          {"approvals", have},
                                          {"approvals_required", approval.required}}});
      writes.push_back(AuditOf(who, "run.approval_vote", run_id, nlohmann::json::object()));
    }
    for (store::Write& w : writes) {
      if (auto* t = std::get_if<store::TransitionWrite>(&w)) t->if_last_event_seq = *seq;
      if (auto* a = std::get_if<store::AuditWrite>(&w)) a->details.update(audit);
    }
    auto done = events_.Commit(writes);
    if (!done.ok()) {
      if (done.error().code == ErrorCode::kAborted && attempt < 8) continue;
      return std::move(done).error();
    }
    RunRecord run = std::move(done->runs.front());
    if (run.state == RunState::kQueued) Queued();
    return run;
  }
}

Result<RunRecord> Review::Reject(std::string_view run_id, const Principal& who,
                                 const std::string& reason) {
  if (who.role == Role::kSubmitter) {
    return MakeError(ErrorCode::kPermissionDenied, "rejecting needs the reviewer role");
  }
  store::RunUpdate update;
  update.result = store::RunResult{};
  update.result->reason = {store::EndCode::kRejected, reason};
  return Move(run_id, {RunState::kAwaitingReview}, RunState::kCancelled, update, who,
              "run.rejected", /*ends_run=*/true);
}

Result<RunRecord> Review::Cancel(std::string_view run_id, const Principal& who) {
  store::RunUpdate update;
  update.result = store::RunResult{};
  update.result->reason = {store::EndCode::kCancelled};
  return Move(run_id, store::NonTerminalRunStates(), RunState::kCancelled, update, who,
              "run.cancelled", /*ends_run=*/true);
}

Review::~Review() {
  {
    std::lock_guard<std::mutex> lk(expiry_mu_);
    expiry_stop_ = true;
  }
  expiry_cv_.notify_all();
  if (expiry_thread_.joinable()) expiry_thread_.join();
}

void Review::ScheduleExpiry(const RunRecord& run) {
  auto it = run.policy.is_object() ? run.policy.find("review_expires_at_ms") : run.policy.end();
  if (it == run.policy.end() || !it->is_number_integer()) return;
  std::lock_guard<std::mutex> lk(expiry_mu_);
  if (expiry_stop_) return;
  const bool earliest = expiries_.empty() || it->get<int64_t>() < expiries_.begin()->first;
  expiries_.emplace(it->get<int64_t>(), run.id);
  if (!expiry_thread_.joinable()) {
    expiry_thread_ = std::thread([this] { ExpiryLoop(); });
  } else if (earliest) {
    expiry_cv_.notify_all();
  }
}

void Review::ExpiryLoop() {
  std::unique_lock<std::mutex> lk(expiry_mu_);
  while (!expiry_stop_) {
    if (expiries_.empty()) {
      expiry_cv_.wait(lk);
      continue;
    }
    const auto first = expiries_.begin();
    const int64_t now = NowMs();
    if (first->first > now) {
      expiry_cv_.wait_until(lk, std::chrono::system_clock::time_point(
                                    std::chrono::milliseconds(first->first)));
      continue;
    }
    std::string id = first->second;
    expiries_.erase(first);
    lk.unlock();
    Expire(id);
    lk.lock();
  }
}

void Review::Expire(const std::string& run_id) {
  store::RunUpdate update;
  update.result = store::RunResult{};
  update.result->reason = {store::EndCode::kReviewExpired, ""};
  auto r = Move(run_id, {RunState::kAwaitingReview}, RunState::kCancelled, update,
                Principal{"policy", Role::kAdmin}, "run.review_expired", /*ends_run=*/true);
  // Decided (or cancelled) in time: nothing to do.
  if (r.ok()) spdlog::info("run {}: nobody decided in time; cancelled (review_expired)", run_id);
}

void Review::ScheduleExpiries() {
  store::RunFilter waiting;
  waiting.states = {RunState::kAwaitingReview};
  waiting.limit = 1000;
  for (;;) {
    auto page = store_.ListRuns(waiting);
    if (!page.ok()) {
      spdlog::warn("review expiry: cannot list the runs awaiting review: {}",
                   page.error().ToString());
      return;
    }
    for (const RunRecord& r : page->runs) ScheduleExpiry(r);
    if (page->next_cursor.empty()) return;
    waiting.cursor = page->next_cursor;
  }
}

std::string PlanSha256(const RunRecord& run) {
  nlohmann::json steps = nlohmann::json::array();
  if (!run.argv.empty()) steps.push_back({{"name", "main"}, {"argv", run.argv}});
  for (const store::Step& s : run.steps) steps.push_back({{"name", s.name}, {"argv", s.argv}});
  auto opt = [](const auto& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  nlohmann::json plan = {
      {"steps", steps},
      {"env", run.env},
      {"stdin_sha256", Sha256Hex(run.stdin_data)},
      {"limits",
       {{"cpus", opt(run.limits.cpus)},
        {"memory_bytes", opt(run.limits.memory_bytes)},
        {"pids", opt(run.limits.pids)},
        {"timeout_s", opt(run.limits.timeout_s)},
        {"output_bytes", opt(run.limits.output_bytes)}}},
      {"network", run.network},
      {"seccomp_profile", run.seccomp_profile},
      {"workspace", run.workspace ? nlohmann::json{{"path", run.workspace->path},
                                                   {"mode", run.workspace->mode},
                                                   {"repo", run.workspace->repo},
                                                   {"sha", run.workspace->sha}}
                                  : nlohmann::json(nullptr)},
      {"backend", run.backend},
      {"image", run.image},
      {"labels", run.labels}};
  // nlohmann's objects keep their keys sorted: the text is canonical.
  return Sha256Hex(plan.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace sbx::supervisor
