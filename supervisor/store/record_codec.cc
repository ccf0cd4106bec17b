#include "supervisor/store/record_codec.h"

#include <array>
#include <exception>
#include <utility>

#include "base/sha256.h"

namespace sbx::store::internal {
namespace {

using nlohmann::json;

constexpr std::array<ColumnSpec, 27> kRunColumns = {{
    {"id", ColumnKind::kText},
    {"submitter", ColumnKind::kText},
    {"state", ColumnKind::kText},
    {"argv", ColumnKind::kText},
    {"steps", ColumnKind::kText},
    {"limits", ColumnKind::kText},
    {"network", ColumnKind::kText},
    {"seccomp_profile", ColumnKind::kText},
    {"env", ColumnKind::kText},
    {"stdin", ColumnKind::kBlob},
    {"workspace", ColumnKind::kText},
    {"labels", ColumnKind::kText},
    {"idempotency_key", ColumnKind::kText},
    {"policy", ColumnKind::kText},
    {"approval", ColumnKind::kText},
    {"node", ColumnKind::kText},
    {"created_at", ColumnKind::kInt},
    {"queued_at", ColumnKind::kInt},
    {"started_at", ColumnKind::kInt},
    {"finished_at", ColumnKind::kInt},
    {"result", ColumnKind::kText},
    {"backend", ColumnKind::kText},
    {"image", ColumnKind::kText},
    {"project_id", ColumnKind::kText},
    {"node_selector", ColumnKind::kText},
    {"retry_on_node_loss", ColumnKind::kInt},
    {"attempt", ColumnKind::kInt},
}};
// Column indexes into kRunColumns, in order.
enum RunCol : size_t {
  kId,
  kSubmitter,
  kState,
  kArgv,
  kSteps,
  kLimits,
  kNetwork,
  kSeccompProfile,
  kEnv,
  kStdin,
  kWorkspace,
  kLabels,
  kIdempotencyKey,
  kPolicy,
  kApproval,
  kNode,
  kCreatedAt,
  kQueuedAt,
  kStartedAt,
  kFinishedAt,
  kResult,
  kBackend,
  kImage,
  kProjectId,
  kNodeSelector,
  kRetryOnNodeLoss,
  kAttempt,
  kRowNo,
};

constexpr std::array<ColumnKind, 6> kEventKinds = {ColumnKind::kText, ColumnKind::kInt,
                                                   ColumnKind::kText, ColumnKind::kInt,
                                                   ColumnKind::kText, ColumnKind::kInt};
constexpr std::array<ColumnKind, 8> kAuditKinds = {
    ColumnKind::kInt,  ColumnKind::kInt,  ColumnKind::kText, ColumnKind::kText,
    ColumnKind::kText, ColumnKind::kText, ColumnKind::kText, ColumnKind::kText};

bool IsNull(const SqlRow& row, size_t i) {
  return i >= row.size() || std::holds_alternative<std::monostate>(row[i]);
}

SqlValue OptText(const std::optional<std::string>& s) {
  if (!s) return std::monostate{};
  return *s;
}

SqlValue OptInt(const std::optional<int64_t>& v) {
  if (!v) return std::monostate{};
  return *v;
}

template <typename T>
std::optional<T> OptAt(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return it->get<T>();
}

Limits LimitsFromJson(const json& j) {
  Limits l;
  l.cpus = OptAt<double>(j, "cpus");
  l.memory_bytes = OptAt<int64_t>(j, "memory_bytes");
  l.pids = OptAt<int64_t>(j, "pids");
  l.timeout_s = OptAt<int64_t>(j, "timeout_s");
  l.output_bytes = OptAt<int64_t>(j, "output_bytes");
  return l;
}

json StepsToJson(const std::vector<Step>& steps) {
  json j = json::array();
  for (const auto& s : steps) j.push_back({{"name", s.name}, {"argv", s.argv}});
  return j;
}

std::vector<Step> StepsFromJson(const json& j) {
  std::vector<Step> steps;
  for (const auto& s : j) {
    steps.push_back(
        {s.at("name").get<std::string>(), s.at("argv").get<std::vector<std::string>>()});
  }
  return steps;
}

// "required" and "votes" only when a review asked for them, so single approvals are stored as
// before.
json ApprovalToJson(const Approval& a) {
  json j = {{"approved_by", a.approved_by}, {"approved_at_ms", a.approved_at_ms}, {"rule", a.rule}};
  if (a.required != 1) j["required"] = a.required;
  if (!a.votes.empty()) {
    json votes = json::array();
    for (const ReviewVote& v : a.votes) votes.push_back(ReviewVoteJson(v));
    j["votes"] = std::move(votes);
  }
  return j;
}

Approval ApprovalFromJson(const json& j) {
  Approval a{j.at("approved_by").get<std::string>(), j.at("approved_at_ms").get<int64_t>(),
             j.at("rule").get<std::string>()};
  if (auto it = j.find("required"); it != j.end()) a.required = it->get<int>();
  if (auto it = j.find("votes"); it != j.end()) {
    for (const json& v : *it) {
      a.votes.push_back({v.at("by").get<std::string>(), v.at("at_ms").get<int64_t>(),
                         v.value("comment", ""), v.value("plan_sha256", "")});
    }
  }
  return a;
}

void OutcomeToJson(json& j, const EndReason& reason, std::optional<int> exit_code,
                   std::optional<int> signal, int64_t wall_ms, int64_t cpu_ms, int64_t mem) {
  j["reason"] = RenderEndReason(reason);
  j["exit_code"] = exit_code ? json(*exit_code) : json(nullptr);
  j["signal"] = signal ? json(*signal) : json(nullptr);
  j["wall_ms"] = wall_ms;
  j["cpu_ms"] = cpu_ms;
  j["memory_peak_bytes"] = mem;
}

// Absent when empty, so results without denials are stored as before.
void DenialsToJson(json& j, const std::vector<SeccompDenial>& denials) {
  if (denials.empty()) return;
  json a = json::array();
  for (const auto& d : denials) a.push_back({{"syscall", d.syscall}, {"count", d.count}});
  j["seccomp_denials"] = std::move(a);
}

std::vector<SeccompDenial> DenialsFromJson(const json& j) {
  std::vector<SeccompDenial> out;
  if (auto it = j.find("seccomp_denials"); it != j.end() && it->is_array()) {
    for (const auto& d : *it) {
      out.push_back({d.at("syscall").get<std::string>(), d.value("count", int64_t{0})});
    }
  }
  return out;
}

json ResultToJson(const RunResult& r) {
  json j = json::object();
  OutcomeToJson(j, r.reason, r.exit_code, r.signal, r.wall_ms, r.cpu_ms, r.memory_peak_bytes);
  if (r.output_truncated) j["output_truncated"] = true;
  if (!r.backend.empty()) j["backend"] = r.backend;
  j["steps"] = json::array();
  for (const auto& s : r.steps) {
    json sj = {{"name", s.name}};
    OutcomeToJson(sj, s.reason, s.exit_code, s.signal, s.wall_ms, s.cpu_ms, s.memory_peak_bytes);
    DenialsToJson(sj, s.seccomp_denials);
    j["steps"].push_back(std::move(sj));
  }
  DenialsToJson(j, r.seccomp_denials);
  if (!r.isolation.is_null()) j["isolation"] = r.isolation;
  if (!r.timeline.empty()) {
    json t = json::array();
    for (const PhaseTime& p : r.timeline) t.push_back({{"phase", p.phase}, {"us", p.us}});
    j["timeline"] = std::move(t);
  }
  return j;
}

template <typename T>
void OutcomeFromJson(const json& j, T& out) {
  out.reason = ParseEndReason(j.at("reason").get<std::string>());
  out.exit_code = OptAt<int>(j, "exit_code");
  out.signal = OptAt<int>(j, "signal");
  out.wall_ms = j.value("wall_ms", int64_t{0});
  out.cpu_ms = j.value("cpu_ms", int64_t{0});
  out.memory_peak_bytes = j.value("memory_peak_bytes", int64_t{0});
}

RunResult ResultFromJson(const json& j) {
  RunResult r;
  OutcomeFromJson(j, r);
  r.output_truncated = j.value("output_truncated", false);
  r.backend = j.value("backend", "");
  if (auto it = j.find("steps"); it != j.end()) {
    for (const auto& sj : *it) {
      StepResult s;
      s.name = sj.at("name").get<std::string>();
      OutcomeFromJson(sj, s);
      s.seccomp_denials = DenialsFromJson(sj);
      r.steps.push_back(std::move(s));
    }
  }
  r.seccomp_denials = DenialsFromJson(j);
  if (auto it = j.find("isolation"); it != j.end()) r.isolation = *it;
  if (auto it = j.find("timeline"); it != j.end()) {
    for (const json& p : *it) {
      r.timeline.push_back({p.at("phase").get<std::string>(), p.at("us").get<int64_t>()});
    }
  }
  return r;
}

std::string Join(std::span<const ColumnSpec> cols) {
  std::string out;
  for (const auto& c : cols) {
    if (!out.empty()) out += ", ";
    out += c.name;
  }
  return out;
}

}  // namespace

int64_t IntAt(const SqlRow& row, size_t i) {
  if (IsNull(row, i)) return 0;
  if (const auto* v = std::get_if<int64_t>(&row[i])) return *v;
  return 0;
}

std::string TextAt(const SqlRow& row, size_t i) {
  if (IsNull(row, i)) return {};
  if (const auto* s = std::get_if<std::string>(&row[i])) return *s;
  if (const auto* b = std::get_if<Blob>(&row[i])) return b->bytes;
  return {};
}

std::span<const ColumnSpec> RunColumns() { return kRunColumns; }

const std::string& RunSelectList() {
  static const std::string list = Join(kRunColumns) + ", row_no";
  return list;
}

std::span<const ColumnKind> RunSelectKinds() {
  static const auto kinds = [] {
    std::array<ColumnKind, kRunColumns.size() + 1> k;
    for (size_t i = 0; i < kRunColumns.size(); ++i) k[i] = kRunColumns[i].kind;
    k[kRunColumns.size()] = ColumnKind::kInt;
    return k;
  }();
  return kinds;
}

Result<std::string> EncodeJson(const json& value, std::string_view what) {
  try {
    return value.dump();
  } catch (const std::exception& e) {
    // dump() throws type_error 316 on a string that is not UTF-8.
    return MakeError(ErrorCode::kInvalidArgument, "{} cannot be stored: {}", what, e.what());
  }
}

Result<std::string> EncodeLimits(const Limits& limits) {
  return EncodeJson(LimitsToJson(limits), "limits");
}
Result<std::string> EncodeApproval(const Approval& approval) {
  return EncodeJson(ApprovalToJson(approval), "approval");
}
Result<std::string> EncodeResult(const RunResult& result) {
  return EncodeJson(ResultToJson(result), "result");
}

Result<SqlRow> EncodeRun(const RunRecord& run) {
  SqlRow row(kRunColumns.size());
  auto put_json = [&](size_t col, const json& value) -> Status {
    auto text = EncodeJson(value, kRunColumns[col].name);
    if (!text.ok()) return std::move(text).error();
    row[col] = std::move(*text);
    return Ok();
  };
  row[kId] = run.id;
  row[kSubmitter] = run.submitter;
  row[kState] = std::string(RunStateName(run.state));
  SBX_TRY(put_json(kArgv, json(run.argv)));
  SBX_TRY(put_json(kSteps, StepsToJson(run.steps)));
  SBX_TRY(put_json(kLimits, LimitsToJson(run.limits)));
  row[kNetwork] = run.network;
  row[kSeccompProfile] = run.seccomp_profile;
  SBX_TRY(put_json(kEnv, json(run.env)));
  row[kStdin] = Blob{run.stdin_data};
  if (run.workspace) {
    json ws = {{"path", run.workspace->path}, {"mode", run.workspace->mode}};
    if (!run.workspace->sha.empty()) {
      ws["repo"] = run.workspace->repo;
      ws["sha"] = run.workspace->sha;
    }
    SBX_TRY(put_json(kWorkspace, ws));
  } else {
    row[kWorkspace] = std::string();
  }
  SBX_TRY(put_json(kLabels, json(run.labels)));
  row[kIdempotencyKey] = OptText(run.idempotency_key);
  if (!run.policy.is_null()) SBX_TRY(put_json(kPolicy, run.policy));
  if (run.approval) SBX_TRY(put_json(kApproval, ApprovalToJson(*run.approval)));
  row[kNode] = OptText(run.node);
  row[kCreatedAt] = run.created_at_ms;
  row[kQueuedAt] = OptInt(run.queued_at_ms);
  row[kStartedAt] = OptInt(run.started_at_ms);
  row[kFinishedAt] = OptInt(run.finished_at_ms);
  if (run.result) SBX_TRY(put_json(kResult, ResultToJson(*run.result)));
  row[kBackend] = run.backend;
  row[kImage] = run.image;
  row[kProjectId] = run.project_id.empty() ? SqlValue() : SqlValue(run.project_id);
  SBX_TRY(put_json(kNodeSelector, json(run.node_selector)));
  row[kRetryOnNodeLoss] = int64_t{run.retry_on_node_loss ? 1 : 0};
  row[kAttempt] = run.attempt;
  // The plain text columns must be UTF-8 too: PostgreSQL refuses anything else.
  for (size_t col : {kId, kSubmitter, kNetwork, kSeccompProfile, kWorkspace, kIdempotencyKey,
                     kNode, kBackend, kImage, kProjectId}) {
    if (const auto* s = std::get_if<std::string>(&row[col])) {
      auto checked = EncodeJson(json(*s), kRunColumns[col].name);
      if (!checked.ok()) return std::move(checked).error();
    }
  }
  return row;
}

Result<DecodedRun> DecodeRun(const SqlRow& row) {
  DecodedRun out;
  RunRecord& r = out.run;
  r.id = TextAt(row, kId);
  const char* column = "state";
  try {
    r.submitter = TextAt(row, kSubmitter);
    auto state = ParseRunState(TextAt(row, kState));
    if (!state.ok()) return WithContext(std::move(state).error(), "run " + r.id);
    r.state = *state;
    column = "argv";
    r.argv = json::parse(TextAt(row, kArgv)).get<std::vector<std::string>>();
    column = "steps";
    r.steps = StepsFromJson(json::parse(TextAt(row, kSteps)));
    column = "limits";
    r.limits = LimitsFromJson(json::parse(TextAt(row, kLimits)));
    r.network = TextAt(row, kNetwork);
    r.seccomp_profile = TextAt(row, kSeccompProfile);
    column = "env";
    r.env = json::parse(TextAt(row, kEnv)).get<std::map<std::string, std::string>>();
    r.stdin_data = TextAt(row, kStdin);
    column = "workspace";
    if (std::string ws = TextAt(row, kWorkspace); !ws.empty()) {
      json wj = json::parse(ws);
      r.workspace = Workspace{wj.at("path").get<std::string>(), wj.at("mode").get<std::string>(),
                              wj.value("repo", ""), wj.value("sha", "")};
    }
    column = "labels";
    r.labels = json::parse(TextAt(row, kLabels)).get<std::map<std::string, std::string>>();
    if (!IsNull(row, kIdempotencyKey)) r.idempotency_key = TextAt(row, kIdempotencyKey);
    column = "policy";
    if (!IsNull(row, kPolicy)) r.policy = json::parse(TextAt(row, kPolicy));
    column = "approval";
    if (!IsNull(row, kApproval)) r.approval = ApprovalFromJson(json::parse(TextAt(row, kApproval)));
    if (!IsNull(row, kNode)) r.node = TextAt(row, kNode);
    r.created_at_ms = IntAt(row, kCreatedAt);
    if (!IsNull(row, kQueuedAt)) r.queued_at_ms = IntAt(row, kQueuedAt);
    if (!IsNull(row, kStartedAt)) r.started_at_ms = IntAt(row, kStartedAt);
    if (!IsNull(row, kFinishedAt)) r.finished_at_ms = IntAt(row, kFinishedAt);
    column = "result";
    if (!IsNull(row, kResult)) r.result = ResultFromJson(json::parse(TextAt(row, kResult)));
    r.backend = TextAt(row, kBackend);
    r.image = TextAt(row, kImage);
    if (!IsNull(row, kProjectId)) r.project_id = TextAt(row, kProjectId);
    column = "node_selector";
    r.node_selector =
        json::parse(TextAt(row, kNodeSelector)).get<std::map<std::string, std::string>>();
    r.retry_on_node_loss = IntAt(row, kRetryOnNodeLoss) != 0;
    r.attempt = IntAt(row, kAttempt);
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "stored run {} has a malformed {} column: {}", r.id,
                     column, e.what());
  }
  out.row_no = IntAt(row, kRowNo);
  return out;
}

namespace {

constexpr std::array<ColumnKind, 8> kSandboxKinds = {
    ColumnKind::kText, ColumnKind::kText, ColumnKind::kText, ColumnKind::kText,
    ColumnKind::kText, ColumnKind::kInt,  ColumnKind::kText, ColumnKind::kInt};
constexpr std::array<ColumnKind, 7> kProcessKinds = {
    ColumnKind::kText, ColumnKind::kInt,  ColumnKind::kText, ColumnKind::kText,
    ColumnKind::kInt,  ColumnKind::kText, ColumnKind::kBlob};

// A text column must be UTF-8: PostgreSQL refuses anything else, and the API shows it as JSON.
Status CheckUtf8(const std::optional<std::string>& text, std::string_view what) {
  if (!text) return Ok();
  auto checked = EncodeJson(json(*text), what);
  if (!checked.ok()) return std::move(checked).error();
  return Ok();
}

template <typename T>
void PutOpt(json& j, const char* key, const std::optional<T>& v) {
  if (v) j[key] = *v;
}

json SandboxApprovalToJson(const SandboxApproval& a) {
  return {{"approved_by", a.approved_by}, {"approved_at_ms", a.approved_at_ms}, {"rule", a.rule}};
}

std::optional<SandboxApproval> SandboxApprovalFromJson(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return SandboxApproval{it->at("approved_by").get<std::string>(),
                         it->at("approved_at_ms").get<int64_t>(),
                         it->at("rule").get<std::string>()};
}

json ProcessResultToJson(const ProcessResult& r) {
  json j = {{"reason", RenderEndReason(r.reason)},
            {"wall_ms", r.wall_ms},
            {"cpu_ms", r.cpu_ms},
            {"stdout_bytes", r.stdout_bytes},
            {"stderr_bytes", r.stderr_bytes},
            {"output_truncated", r.output_truncated}};
  j["exit_code"] = r.exit_code ? json(*r.exit_code) : json(nullptr);
  j["signal"] = r.signal ? json(*r.signal) : json(nullptr);
  return j;
}

ProcessResult ProcessResultFromJson(const json& j) {
  ProcessResult r;
  r.reason = ParseEndReason(j.at("reason").get<std::string>());
  r.exit_code = OptAt<int>(j, "exit_code");
  r.signal = OptAt<int>(j, "signal");
  r.wall_ms = j.value("wall_ms", int64_t{0});
  r.cpu_ms = j.value("cpu_ms", int64_t{0});
  r.stdout_bytes = j.value("stdout_bytes", int64_t{0});
  r.stderr_bytes = j.value("stderr_bytes", int64_t{0});
  r.output_truncated = j.value("output_truncated", false);
  return r;
}

}  // namespace

Result<SandboxRow> EncodeSandbox(const SandboxRecord& s) {
  json doc = json::object();
  PutOpt(doc, "cpus", s.cpus);
  PutOpt(doc, "memory_bytes", s.memory_bytes);
  PutOpt(doc, "pids", s.pids);
  PutOpt(doc, "timeout_s", s.timeout_s);
  PutOpt(doc, "output_bytes", s.output_bytes);
  PutOpt(doc, "idle_timeout_s", s.idle_timeout_s);
  doc["network"] = s.network;
  doc["seccomp_profile"] = s.seccomp_profile;
  doc["env"] = s.env;
  PutOpt(doc, "workspace_path", s.workspace_path);
  doc["workspace_mode"] = s.workspace_mode;
  doc["labels"] = s.labels;
  if (!s.node_selector.empty()) doc["node_selector"] = s.node_selector;
  doc["backend"] = s.backend;
  doc["image"] = s.image;
  PutOpt(doc, "from_snapshot", s.from_snapshot);
  doc["policy"] = s.policy;
  if (s.approval) doc["approval"] = SandboxApprovalToJson(*s.approval);
  PutOpt(doc, "started_at_ms", s.started_at_ms);
  PutOpt(doc, "ended_at_ms", s.ended_at_ms);
  doc["last_activity_ms"] = s.last_activity_ms;
  doc["reason"] = RenderEndReason(s.reason);
  doc["backend_used"] = s.backend_used;
  doc["info"] = s.info;

  SandboxRow row;
  auto text = EncodeJson(doc, "sandbox " + s.id);
  if (!text.ok()) return std::move(text).error();
  row.doc = std::move(*text);
  SBX_TRY(CheckUtf8(s.id, "sandbox id"));
  SBX_TRY(CheckUtf8(s.submitter, "submitter"));
  SBX_TRY(CheckUtf8(s.node, "node"));
  SBX_TRY(CheckUtf8(s.idempotency_key, "idempotency key"));
  row.id = s.id;
  row.submitter = s.submitter;
  row.state = SandboxStateName(s.state);
  row.node = s.node;
  row.idempotency_key = s.idempotency_key;
  row.created_at = s.created_at_ms;
  return row;
}

const std::string& SandboxSelectList() {
  static const std::string list =
      "id, submitter, state, node, idempotency_key, created_at, doc, row_no";
  return list;
}
std::span<const ColumnKind> SandboxSelectKinds() { return kSandboxKinds; }

Result<DecodedSandbox> DecodeSandbox(const SqlRow& row) {
  DecodedSandbox out;
  SandboxRecord& s = out.sandbox;
  s.id = TextAt(row, 0);
  s.submitter = TextAt(row, 1);
  auto state = ParseSandboxState(TextAt(row, 2));
  if (!state.ok()) return WithContext(std::move(state).error(), "sandbox " + s.id);
  s.state = *state;
  if (!IsNull(row, 3)) s.node = TextAt(row, 3);
  if (!IsNull(row, 4)) s.idempotency_key = TextAt(row, 4);
  s.created_at_ms = IntAt(row, 5);
  out.row_no = IntAt(row, 7);
  try {
    const json doc = json::parse(TextAt(row, 6));
    s.cpus = OptAt<double>(doc, "cpus");
    s.memory_bytes = OptAt<int64_t>(doc, "memory_bytes");
    s.pids = OptAt<int64_t>(doc, "pids");
    s.timeout_s = OptAt<int64_t>(doc, "timeout_s");
    s.output_bytes = OptAt<int64_t>(doc, "output_bytes");
    s.idle_timeout_s = OptAt<int64_t>(doc, "idle_timeout_s");
    s.network = doc.value("network", "");
    s.seccomp_profile = doc.value("seccomp_profile", "");
    s.env = doc.value("env", std::map<std::string, std::string>());
    s.workspace_path = OptAt<std::string>(doc, "workspace_path");
    s.workspace_mode = doc.value("workspace_mode", "ro");
    s.labels = doc.value("labels", std::map<std::string, std::string>());
    s.node_selector = doc.value("node_selector", std::map<std::string, std::string>());
    s.backend = doc.value("backend", "");
    s.image = doc.value("image", "");
    s.from_snapshot = OptAt<std::string>(doc, "from_snapshot");
    s.policy = doc.value("policy", json());
    s.approval = SandboxApprovalFromJson(doc, "approval");
    s.started_at_ms = OptAt<int64_t>(doc, "started_at_ms");
    s.ended_at_ms = OptAt<int64_t>(doc, "ended_at_ms");
    s.last_activity_ms = doc.value("last_activity_ms", int64_t{0});
    s.reason = ParseEndReason(doc.value("reason", ""));
    s.backend_used = doc.value("backend_used", "");
    s.info = doc.value("info", json());
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "stored sandbox {} has a malformed doc column: {}", s.id,
                     e.what());
  }
  return out;
}

Result<ProcessRow> EncodeProcess(const ProcessRecord& p) {
  json doc = json::object();
  doc["argv"] = p.argv;
  doc["env"] = p.env;
  doc["cwd"] = p.cwd;
  doc["stdin_open"] = p.stdin_open;
  PutOpt(doc, "timeout_s", p.timeout_s);
  if (p.pty) doc["pty"] = {{"cols", p.pty->cols}, {"rows", p.pty->rows}};
  doc["submitter"] = p.submitter;
  doc["policy"] = p.policy;
  if (p.approval) doc["approval"] = SandboxApprovalToJson(*p.approval);
  PutOpt(doc, "started_at_ms", p.started_at_ms);
  PutOpt(doc, "finished_at_ms", p.finished_at_ms);
  if (p.result) doc["result"] = ProcessResultToJson(*p.result);

  ProcessRow row;
  auto text = EncodeJson(doc, "process");
  if (!text.ok()) return std::move(text).error();
  row.doc = std::move(*text);
  SBX_TRY(CheckUtf8(p.sandbox_id, "sandbox id"));
  if (!p.tag.empty()) {
    SBX_TRY(CheckUtf8(p.tag, "tag"));
    row.tag = p.tag;
  }
  row.sandbox_id = p.sandbox_id;
  row.id = p.id;
  row.state = ProcessStateName(p.state);
  row.created_at = p.created_at_ms;
  row.stdin_data = Blob{p.stdin_data};
  return row;
}

const std::string& ProcessSelectList() {
  static const std::string list = "sandbox_id, id, tag, state, created_at, doc, stdin";
  return list;
}
std::span<const ColumnKind> ProcessSelectKinds() { return kProcessKinds; }

Result<ProcessRecord> DecodeProcess(const SqlRow& row) {
  ProcessRecord p;
  p.sandbox_id = TextAt(row, 0);
  p.id = IntAt(row, 1);
  p.tag = TextAt(row, 2);
  auto state = ParseProcessState(TextAt(row, 3));
  if (!state.ok()) {
    return WithContext(std::move(state).error(),
                       "process " + std::to_string(p.id) + " of sandbox " + p.sandbox_id);
  }
  p.state = *state;
  p.created_at_ms = IntAt(row, 4);
  p.stdin_data = TextAt(row, 6);
  try {
    const json doc = json::parse(TextAt(row, 5));
    p.argv = doc.value("argv", std::vector<std::string>());
    p.env = doc.value("env", std::map<std::string, std::string>());
    p.cwd = doc.value("cwd", "");
    p.stdin_open = doc.value("stdin_open", false);
    p.timeout_s = OptAt<int64_t>(doc, "timeout_s");
    if (auto it = doc.find("pty"); it != doc.end() && !it->is_null()) {
      p.pty = PtyRequest{it->at("cols").get<int>(), it->at("rows").get<int>()};
    }
    p.submitter = doc.value("submitter", "");
    p.policy = doc.value("policy", json());
    p.approval = SandboxApprovalFromJson(doc, "approval");
    p.started_at_ms = OptAt<int64_t>(doc, "started_at_ms");
    p.finished_at_ms = OptAt<int64_t>(doc, "finished_at_ms");
    if (auto it = doc.find("result"); it != doc.end() && !it->is_null()) {
      p.result = ProcessResultFromJson(*it);
    }
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal,
                     "stored process {} of sandbox {} has a malformed doc column: {}", p.id,
                     p.sandbox_id, e.what());
  }
  return p;
}

const std::string& EventSelectList() {
  static const std::string list = "run_id, seq, type, ts, data, gseq";
  return list;
}
std::span<const ColumnKind> EventSelectKinds() { return kEventKinds; }

Result<EventRecord> DecodeEvent(const SqlRow& row) {
  EventRecord e;
  e.run_id = TextAt(row, 0);
  e.seq = IntAt(row, 1);
  auto type = ParseEventType(TextAt(row, 2));
  if (!type.ok()) return WithContext(std::move(type).error(), "run " + e.run_id);
  e.type = *type;
  e.ts_ms = IntAt(row, 3);
  e.cursor = IntAt(row, 5);
  try {
    e.data = json::parse(TextAt(row, 4));
  } catch (const std::exception& ex) {
    return MakeError(ErrorCode::kInternal, "event {} of run {} has malformed data: {}", e.seq,
                     e.run_id, ex.what());
  }
  return e;
}

const std::string& AuditSelectList() {
  static const std::string list = "id, ts, actor, action, run_id, details, prev_hash, hash";
  return list;
}
std::span<const ColumnKind> AuditSelectKinds() { return kAuditKinds; }

Result<AuditRecord> DecodeAudit(const SqlRow& row) {
  AuditRecord a;
  a.id = IntAt(row, 0);
  a.ts_ms = IntAt(row, 1);
  a.actor = TextAt(row, 2);
  a.action = TextAt(row, 3);
  if (!IsNull(row, 4)) a.run_id = TextAt(row, 4);
  try {
    a.details = json::parse(TextAt(row, 5));
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "audit record {} has details that are not JSON: {}",
                     a.id, e.what());
  }
  a.prev_hash = TextAt(row, 6);
  a.hash = TextAt(row, 7);
  return a;
}

json RunResultJson(const RunResult& result) { return ResultToJson(result); }
RunResult RunResultFromJson(const json& j) { return ResultFromJson(j); }
json ApprovalJson(const Approval& approval) { return ApprovalToJson(approval); }
Approval ApprovalFromJsonValue(const json& j) { return ApprovalFromJson(j); }
Limits LimitsFromJsonValue(const json& j) { return LimitsFromJson(j); }

}  // namespace sbx::store::internal

namespace sbx::store {

Result<std::string> AuditCanonical(const AuditRecord& record) {
  nlohmann::json j = {
      {"id", record.id},
      {"ts", record.ts_ms},
      {"actor", record.actor},
      {"action", record.action},
      {"run_id", record.run_id ? nlohmann::json(*record.run_id) : nlohmann::json(nullptr)},
      {"details", record.details},
  };
  // nlohmann::json keeps object keys sorted, and dump() without indent is compact: the same
  // record always gives the same text.
  return internal::EncodeJson(j, "audit record");
}

Result<std::string> AuditHash(const AuditRecord& record) {
  auto canonical = AuditCanonical(record);
  if (!canonical.ok()) return std::move(canonical).error();
  Sha256Hasher h;
  h.Update(record.prev_hash);
  h.Update("\n");
  h.Update(*canonical);
  return DigestHex(h.Final());
}

}  // namespace sbx::store
