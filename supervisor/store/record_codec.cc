#include "supervisor/store/record_codec.h"

#include <array>
#include <exception>
#include <utility>

#include "base/sha256.h"

namespace sbx::store::internal {
namespace {

using nlohmann::json;

constexpr std::array<ColumnSpec, 23> kRunColumns = {{
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

json LimitsToJson(const Limits& l) {
  json j = json::object();
  if (l.cpus) j["cpus"] = *l.cpus;
  if (l.memory_bytes) j["memory_bytes"] = *l.memory_bytes;
  if (l.pids) j["pids"] = *l.pids;
  if (l.timeout_s) j["timeout_s"] = *l.timeout_s;
  if (l.output_bytes) j["output_bytes"] = *l.output_bytes;
  return j;
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

json ApprovalToJson(const Approval& a) {
  return {{"approved_by", a.approved_by}, {"approved_at_ms", a.approved_at_ms}, {"rule", a.rule}};
}

Approval ApprovalFromJson(const json& j) {
  return {j.at("approved_by").get<std::string>(), j.at("approved_at_ms").get<int64_t>(),
          j.at("rule").get<std::string>()};
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
    SBX_TRY(put_json(kWorkspace, json{{"path", run.workspace->path}, {"mode", run.workspace->mode}}));
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
  // The plain text columns must be UTF-8 too: PostgreSQL refuses anything else.
  for (size_t col : {kId, kSubmitter, kNetwork, kSeccompProfile, kWorkspace, kIdempotencyKey,
                     kNode, kBackend, kImage}) {
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
      r.workspace = Workspace{wj.at("path").get<std::string>(), wj.at("mode").get<std::string>()};
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
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "stored run {} has a malformed {} column: {}", r.id,
                     column, e.what());
  }
  out.row_no = IntAt(row, kRowNo);
  return out;
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
