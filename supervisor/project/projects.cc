#include "supervisor/project/projects.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/sha256.h"
#include "supervisor/plan/planner.h"
#include "supervisor/plan/project_summary.h"
#include "supervisor/policy/decision_json.h"
#include "supervisor/workspace/workspace.h"

namespace sbx::supervisor {

using nlohmann::json;
using store::PlanRecord;
using store::ProjectRecord;

namespace {

constexpr size_t kMaxRepoBytes = 4096;

bool IsProjectName(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!(alnum || (i > 0 && (c == '_' || c == '.' || c == '-')))) return false;
  }
  return true;
}

bool IsKeyName(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

// "make test", for messages.
std::string JoinArgv(const std::vector<std::string>& argv) {
  std::string out;
  for (const std::string& a : argv) out += (out.empty() ? "" : " ") + a;
  return out;
}

bool SeesEverything(const Principal& who) { return who.role != Role::kSubmitter; }

Status NeedAdmin(const Principal& who, std::string_view what) {
  if (who.role == Role::kAdmin) return Ok();
  return MakeError(ErrorCode::kPermissionDenied, "{} needs the admin role", what);
}

// Limits the request leaves unset take the project's defaults, no workspace takes the project's
// directory in its default mode, and the project's labels come under the request's own.
void InheritDefaults(const ProjectRecord& p, store::RunRequest& request) {
  const store::Limits d = ProjectLimitsFromJson(p.default_limits);
  store::Limits& l = request.limits;
  if (!l.cpus) l.cpus = d.cpus;
  if (!l.memory_bytes) l.memory_bytes = d.memory_bytes;
  if (!l.pids) l.pids = d.pids;
  if (!l.timeout_s) l.timeout_s = d.timeout_s;
  if (!l.output_bytes) l.output_bytes = d.output_bytes;
  if (!request.workspace && !p.root_path.empty()) {
    request.workspace = store::Workspace{p.root_path, p.default_workspace_mode};
  }
  for (const auto& [k, v] : p.labels) request.labels.emplace(k, v);
  request.project_id = p.id;
}

void Apply(const ProjectInput& in, ProjectRecord& p) {
  if (in.name) p.name = *in.name;
  if (in.root_path) p.root_path = *in.root_path;
  if (in.repo) p.repo = *in.repo;
  if (in.default_limits) p.default_limits = store::LimitsToJson(*in.default_limits);
  if (in.default_workspace_mode) p.default_workspace_mode = *in.default_workspace_mode;
  if (in.labels) p.labels = *in.labels;
  if (in.members) p.members = *in.members;
}

}  // namespace

store::Limits ProjectLimitsFromJson(const json& j) {
  store::Limits l;
  if (!j.is_object()) return l;
  if (auto it = j.find("cpus"); it != j.end() && it->is_number()) l.cpus = it->get<double>();
  auto int_at = [&](const char* k, std::optional<int64_t>& out) {
    if (auto it = j.find(k); it != j.end() && it->is_number_integer()) out = it->get<int64_t>();
  };
  int_at("memory_bytes", l.memory_bytes);
  int_at("pids", l.pids);
  int_at("timeout_s", l.timeout_s);
  int_at("output_bytes", l.output_bytes);
  return l;
}

std::string PlanDocumentSha256(const json& plan) {
  // nlohmann's objects keep their keys sorted: the text is canonical.
  return Sha256Hex(plan.dump(-1, ' ', false, json::error_handler_t::replace));
}

Projects::Projects(store::Store& store, EventBus& events, Review& review, ProjectOptions options)
    : store_(store), events_(events), review_(review), options_(std::move(options)) {}

Status Projects::Check(ProjectRecord& p) {
  if (!IsProjectName(p.name)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "name: '{}' is not a project name ([a-z0-9][a-z0-9_.-]{{0,63}})", p.name);
  }
  if (p.root_path.empty() && p.repo.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "a project needs a root_path (a directory under the workspace roots) or a "
                     "repo");
  }
  if (p.default_workspace_mode != "ro" && p.default_workspace_mode != "cow") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "default_workspace_mode: '{}'; use \"ro\" (read-only) or \"cow\" "
                     "(copy-on-write)",
                     p.default_workspace_mode);
  }
  if (!p.root_path.empty()) {
    auto ws = CheckWorkspaceRequest(p.root_path, p.default_workspace_mode, options_.limits, {},
                                    "project", options_.data_dir, /*allow_rw=*/false);
    if (!ws.ok()) return WithContext(std::move(ws).error(), "root_path");
    p.root_path = ws->path;
  }
  if (!p.repo.empty()) {
    const bool url = p.repo.find("://") != std::string::npos;
    if (p.repo.size() > kMaxRepoBytes || p.repo.find('\0') != std::string::npos ||
        (!url && p.repo.front() != '/')) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "repo: an absolute path or a URL of at most {} bytes", kMaxRepoBytes);
    }
  }
  auto limits = ResolveLimits(ProjectLimitsFromJson(p.default_limits), options_.limits);
  if (!limits.ok()) return WithContext(std::move(limits).error(), "default_limits");
  for (const auto& [k, v] : p.labels) {
    if (k.empty() || k.find('=') != std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument, "labels: '{}' is not a label name", k);
    }
  }
  for (const std::string& m : p.members) {
    if (!IsKeyName(m)) {
      return MakeError(ErrorCode::kInvalidArgument, "members: '{}' is not an API key name", m);
    }
  }
  return Ok();
}

Result<ProjectRecord> Projects::Create(const ProjectInput& input, const Principal& who) {
  SBX_TRY(NeedAdmin(who, "creating a project"));
  ProjectRecord p;
  p.created_by = who.name;
  Apply(input, p);
  SBX_TRY(Check(p));
  auto made = store_.CreateProject(p);
  if (!made.ok()) return made;
  events_.Audit(who, "project.created", "",
                {{"project_id", made->id},
                 {"name", made->name},
                 {"root_path", made->root_path},
                 {"repo", made->repo},
                 {"members", made->members}});
  return made;
}

Result<ProjectRecord> Projects::Visible(std::string_view id_or_name, const Principal& who) {
  auto p = store_.GetProject(id_or_name);
  if (!p.ok()) return p;
  if (!SeesEverything(who) &&
      std::find(p->members.begin(), p->members.end(), who.name) == p->members.end()) {
    // The store's own words for a project that does not exist: nothing tells the two apart.
    return MakeError(ErrorCode::kNotFound, "project {} not found", id_or_name);
  }
  return p;
}

Result<ProjectRecord> Projects::Get(std::string_view id_or_name, const Principal& who) {
  return Visible(id_or_name, who);
}

Result<store::ProjectPage> Projects::List(store::ProjectFilter filter, const Principal& who) {
  if (!SeesEverything(who)) filter.member = who.name;
  return store_.ListProjects(filter);
}

Result<ProjectRecord> Projects::Update(std::string_view id_or_name, int64_t expected_version,
                                       const ProjectInput& patch, const Principal& who) {
  SBX_TRY(NeedAdmin(who, "changing a project"));
  auto current = store_.GetProject(id_or_name);
  if (!current.ok()) return current;
  ProjectRecord p = *current;
  Apply(patch, p);
  SBX_TRY(Check(p));
  auto updated =
      store_.UpdateProject(current->id, expected_version ? expected_version : current->version, p);
  if (!updated.ok()) return updated;
  events_.Audit(who, "project.updated", "",
                {{"project_id", updated->id},
                 {"name", updated->name},
                 {"version", updated->version},
                 {"root_path", updated->root_path},
                 {"members", updated->members}});
  return updated;
}

Status Projects::Delete(std::string_view id_or_name, const Principal& who) {
  SBX_TRY(NeedAdmin(who, "deleting a project"));
  auto current = store_.GetProject(id_or_name);
  if (!current.ok()) return std::move(current).error();
  SBX_TRY(store_.DeleteProject(current->id));
  events_.Audit(who, "project.deleted", "", {{"project_id", current->id}, {"name", current->name}});
  return Ok();
}

Result<PlanRecord> Projects::MakePlan(std::string_view project, std::string_view intent_text,
                                      const Principal& who, std::string_view planner) {
  auto p = Visible(project, who);
  if (!p.ok()) return std::move(p).error();
  if (intent_text.empty() || intent_text.size() > kMaxIntentBytes) {
    return MakeError(ErrorCode::kInvalidArgument, "intent_text: 1 to {} bytes", kMaxIntentBytes);
  }
  const PlannerConfig* external = nullptr;
  if (!planner.empty() && planner != "builtin") {
    for (const PlannerConfig& c : options_.planners) {
      if (c.name == planner) external = &c;
    }
    if (external == nullptr) {
      std::string names = "builtin";
      for (const PlannerConfig& c : options_.planners) names += ", " + c.name;
      return MakeError(ErrorCode::kNotFound, "no planner '{}' (configured: {})", planner, names);
    }
  }
  if (p->root_path.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "project {} has no root_path: the planner reads a project's directory",
                     p->name);
  }
  auto ws = ResolveWorkspace(p->root_path, options_.limits.workspace_roots);
  if (!ws.ok()) return WithContext(std::move(ws).error(), "project " + p->name + "'s root_path");
  auto summary = plan::InspectProject(ws->fd.get());
  if (!summary.ok()) return WithContext(std::move(summary).error(), "reading " + ws->path);
  auto limits = ResolveLimits(ProjectLimitsFromJson(p->default_limits), options_.limits);
  if (!limits.ok()) return WithContext(std::move(limits).error(), "default_limits");

  plan::Plan planned;
  if (external == nullptr) {
    auto built = plan::PlanFromIntent(intent_text, *summary);
    if (!built.ok()) return std::move(built).error();
    planned = std::move(*built);
  } else {
    const json input = {{"intent_text", std::string(intent_text)},
                        {"project", {{"id", p->id}, {"name", p->name}, {"root_path", ws->path}}},
                        {"summary", plan::SummaryToJson(*summary)}};
    auto answer = AskPlanner(*external, *p, input, who);
    if (!answer.ok()) return std::move(answer).error();
    auto steps = plan::ParsePlannerAnswer(*answer);
    if (!steps.ok()) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "planner '{}' answered something that is not a plan: {}", external->name,
                       steps.error().message);
    }
    planned.steps = std::move(*steps);
    planned.summary =
        fmt::format("Planned by '{}': {} step(s).", external->name, planned.steps.size());
  }

  // Each step's decision alone, and the run's as a whole (what the gate will decide). A plan
  // with a step the policy denies is no plan: its run could only be refused.
  store::RunRecord whole;
  whole.submitter = who.name;
  whole.labels = p->labels;
  json steps = json::array();
  for (const plan::PlannedStep& s : planned.steps) {
    store::RunRecord one = whole;
    one.steps = {{s.name, s.argv}};
    auto d = review_.Evaluate(Review::PolicyInput(one));
    json decision = d ? policy::ToJson(*d) : json{{"decision", "review"}};
    if (decision.value("decision", "") == "deny") {
      std::string why = "denied";
      if (auto r = decision.find("reasons"); r != decision.end() && r->is_array() && !r->empty()) {
        why = (*r)[0].value("message", why);
      }
      return MakeError(ErrorCode::kFailedPrecondition,
                       "the {} planner proposed step '{}' ({}), which the command policy denies: "
                       "{}",
                       external ? "'" + external->name + "'" : std::string("built-in"), s.name,
                       JoinArgv(s.argv), why);
    }
    steps.push_back({{"name", s.name}, {"argv", s.argv}, {"why", s.why}, {"decision", decision}});
    whole.steps.push_back({s.name, s.argv});
  }
  auto overall = review_.Evaluate(Review::PolicyInput(whole));
  json labels = p->labels;
  json doc = {{"project", {{"id", p->id}, {"name", p->name}, {"version", p->version}}},
              {"intent_text", std::string(intent_text)},
              {"planner", external ? "external:" + external->name : std::string("builtin")},
              {"goals", planned.goals},
              {"report", planned.report},
              {"summary", planned.summary},
              {"steps", std::move(steps)},
              {"decision", overall ? policy::ToJson(*overall)
                                   : json{{"decision", "review"}, {"note", "no command policy"}}},
              {"limits", store::LimitsToJson(*limits)},
              {"workspace", {{"path", ws->path}, {"mode", p->default_workspace_mode}}},
              {"labels", std::move(labels)},
              {"project_summary", plan::SummaryToJson(*summary)}};
  PlanRecord rec;
  rec.project_id = p->id;
  rec.created_by = who.name;
  rec.sha256 = PlanDocumentSha256(doc);
  rec.plan = std::move(doc);
  auto stored = store_.CreatePlan(rec);
  if (!stored.ok()) return stored;
  events_.Audit(who, "plan.created", "",
                {{"plan_id", stored->id},
                 {"project_id", p->id},
                 {"planner", stored->plan["planner"]},
                 {"sha256", stored->sha256}});
  return stored;
}

Result<PlanRecord> Projects::GetPlan(std::string_view plan_id, const Principal& who) {
  auto plan = store_.GetPlan(plan_id);
  if (!plan.ok()) return plan;
  if (auto p = Visible(plan->project_id, who); !p.ok()) {
    return MakeError(ErrorCode::kNotFound, "plan {} not found", plan_id);
  }
  return plan;
}

Result<std::vector<PlanRecord>> Projects::ListPlans(std::string_view project, int limit,
                                                    const Principal& who) {
  auto p = Visible(project, who);
  if (!p.ok()) return std::move(p).error();
  return store_.ListPlans(p->id, limit);
}

Result<store::CreateRunResult> Projects::SubmitRun(std::string_view project,
                                                   store::RunRequest request, const Principal& who,
                                                   const json* decided) {
  auto p = Visible(project, who);
  if (!p.ok()) return std::move(p).error();
  Principal as = who;
  // Membership grants the project's own directory, whatever the key's roots.
  if (!request.workspace && !p->root_path.empty()) as.workspace_roots.clear();
  if (request.workspace && !request.workspace->sha.empty()) {
    // A checkout of the project's repository: the project names it, never the caller.
    if (p->repo.empty()) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "project {} has no repo to check out; an admin sets one", p->name);
    }
    if (!request.workspace->repo.empty() && request.workspace->repo != p->repo) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "checkout.repo: a run of project {} checks out the project's repo; leave "
                       "repo out, or name the project",
                       p->name);
    }
    request.workspace->repo = p->repo;
    as.workspace_roots.clear();
  }
  InheritDefaults(*p, request);
  return review_.Submit(std::move(request), as, decided);
}

Result<store::CreateRunResult> Projects::SubmitJob(std::string_view job_name, const json& params,
                                                   std::optional<std::string> idempotency_key,
                                                   const Principal& who, const std::string& sha) {
  const auto jobs = review_.jobs();
  const policy::Job* job = jobs->Find(job_name);
  if (job == nullptr) {
    return MakeError(ErrorCode::kNotFound, "no job '{}' in {}", job_name,
                     jobs->source().empty() ? "jobs.yaml (there is none)" : jobs->source());
  }
  if (who.role != Role::kAdmin && !policy::MayStart(*job, who.name)) {
    return MakeError(ErrorCode::kPermissionDenied, "key '{}' may not start job '{}' ({}:{})",
                     who.name, job->name, jobs->source(), job->line);
  }
  auto argv = policy::InstantiateJob(*job, params);
  if (!argv.ok()) return std::move(argv).error();
  store::RunRequest request;
  request.argv = std::move(*argv);
  request.limits.cpus = job->cpus;
  request.limits.memory_bytes = job->memory_bytes;
  request.limits.pids = job->pids;
  request.limits.timeout_s = job->timeout_s;
  request.limits.output_bytes = job->output_bytes;
  if (!job->workspace_path.empty()) {
    request.workspace = store::Workspace{job->workspace_path, job->workspace_mode};
  }
  request.labels["job"] = job->name;
  request.idempotency_key = std::move(idempotency_key);
  // jobs.yaml decides its own runs: the command policy is not asked.
  const json decided = {
      {"decision", job->review ? "review" : "allow"},
      {"risk", nullptr},
      {"reasons", json::array()},
      {"rule", {{"file", jobs->source()}, {"line", job->line}, {"pattern", "job " + job->name}}},
      {"job", job->name},
      {"note", job->review ? "the job needs a reviewer" : "an allowlisted job: started as asked"}};
  // The job's own key list is its grant: the key's workspace roots do not narrow it.
  Principal as = who;
  as.workspace_roots.clear();
  if (!job->project.empty()) {
    // The job names the project, not the caller: membership is not asked.
    auto p = store_.GetProject(job->project);
    if (!p.ok()) {
      return WithContext(std::move(p).error(), fmt::format("job {}'s project ({}:{})", job->name,
                                                           jobs->source(), job->line));
    }
    if (!sha.empty()) {
      if (p->repo.empty()) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         "job {}'s project {} has no repo: a sha names a commit of it", job->name,
                         p->name);
      }
      // The commit's tree, read-only: a job that changes it fails checkout_dirty.
      request.workspace = store::Workspace{"", "ro", p->repo, sha};
    }
    InheritDefaults(*p, request);
  } else if (!sha.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "sha: job {} has no project whose repo it would name a commit of", job->name);
  }
  return review_.Submit(std::move(request), as, &decided);
}

Result<store::CreateRunResult> Projects::RunPlan(std::string_view project, std::string_view plan_id,
                                                 std::optional<std::string> idempotency_key,
                                                 const Principal& who) {
  auto p = Visible(project, who);
  if (!p.ok()) return std::move(p).error();
  auto plan = GetPlan(plan_id, who);
  if (!plan.ok()) return std::move(plan).error();
  if (plan->project_id != p->id) {
    return MakeError(ErrorCode::kInvalidArgument, "plan {} is not a plan of project {}", plan_id,
                     p->name);
  }
  const json& doc = plan->plan;
  if (PlanDocumentSha256(doc) != plan->sha256) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "plan {} no longer matches its sha256 {}: it was changed after it was made",
                     plan_id, plan->sha256);
  }
  store::RunRequest request;
  try {
    for (const json& s : doc.at("steps")) {
      request.steps.push_back(
          {s.at("name").get<std::string>(), s.at("argv").get<std::vector<std::string>>()});
    }
    request.limits = ProjectLimitsFromJson(doc.at("limits"));
    request.workspace = store::Workspace{doc.at("workspace").at("path").get<std::string>(),
                                         doc.at("workspace").at("mode").get<std::string>()};
    request.labels = doc.value("labels", std::map<std::string, std::string>());
  } catch (const json::exception& e) {
    return MakeError(ErrorCode::kInternal, "plan {} is malformed: {}", plan_id, e.what());
  }
  request.labels["plan"] = plan->id;
  request.labels["plan_sha256"] = plan->sha256;
  request.project_id = p->id;
  request.idempotency_key = std::move(idempotency_key);
  // Membership of the project is what grants its directory: the key's own workspace roots do
  // not apply to it (the daemon's do, checked again on submission).
  Principal as = who;
  as.workspace_roots.clear();
  return review_.Submit(std::move(request), as);
}

}  // namespace sbx::supervisor
