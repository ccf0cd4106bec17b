// Rows <-> records for the SQL stores: which columns a table has, and how the structured parts
// of a run (argv, steps, limits, env, labels, policy, approval, result), and of a sandbox or a
// process everything but the columns queries filter on, are kept as JSON text.
// Every nlohmann_json exception is caught here. Internal to sbx_store.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "base/result.h"
#include "supervisor/store/sql_store.h"
#include "supervisor/store/store.h"

namespace sbx::store::internal {

struct ColumnSpec {
  const char* name;
  ColumnKind kind;
};

// The columns of `runs` that CreateRun writes, in EncodeRun() order.
std::span<const ColumnSpec> RunColumns();
// "id, submitter, …, row_no": RunColumns() and then the insertion counter, for SELECT/RETURNING.
const std::string& RunSelectList();
std::span<const ColumnKind> RunSelectKinds();
Result<SqlRow> EncodeRun(const RunRecord& run);
struct DecodedRun {
  RunRecord run;
  int64_t row_no = 0;
};
Result<DecodedRun> DecodeRun(const SqlRow& row);

// The JSON text kept in a column, for Transition().
Result<std::string> EncodeLimits(const Limits& limits);
Result<std::string> EncodeApproval(const Approval& approval);
Result<std::string> EncodeResult(const RunResult& result);
Result<std::string> EncodeJson(const nlohmann::json& value, std::string_view what);

// A sandbox as the columns of `sandboxes` hold it: what queries filter on, and the rest of the
// record as the JSON text in doc.
struct SandboxRow {
  std::string id;
  std::string submitter;
  std::string state;
  std::optional<std::string> node;
  std::optional<std::string> idempotency_key;
  int64_t created_at = 0;
  std::string doc;
};
// kInvalidArgument when a string of the record is not UTF-8.
Result<SandboxRow> EncodeSandbox(const SandboxRecord& sandbox);
// "id, submitter, state, node, idempotency_key, created_at, doc, row_no", for SELECT/RETURNING.
const std::string& SandboxSelectList();
std::span<const ColumnKind> SandboxSelectKinds();
struct DecodedSandbox {
  SandboxRecord sandbox;
  int64_t row_no = 0;
};
Result<DecodedSandbox> DecodeSandbox(const SqlRow& row);

// A process as the columns of `sandbox_processes` hold it; tag is NULL for none.
struct ProcessRow {
  std::string sandbox_id;
  int64_t id = 0;
  std::optional<std::string> tag;
  std::string state;
  int64_t created_at = 0;
  std::string doc;
  Blob stdin_data;
};
// kInvalidArgument when a string of the record is not UTF-8 (stdin_data may be any bytes).
Result<ProcessRow> EncodeProcess(const ProcessRecord& process);
// "sandbox_id, id, tag, state, created_at, doc, stdin".
const std::string& ProcessSelectList();
std::span<const ColumnKind> ProcessSelectKinds();
Result<ProcessRecord> DecodeProcess(const SqlRow& row);

// events: run_id, seq, type, ts, data, gseq (the cursor).
const std::string& EventSelectList();
std::span<const ColumnKind> EventSelectKinds();
Result<EventRecord> DecodeEvent(const SqlRow& row);

// audit: id, ts, actor, action, run_id, details, prev_hash, hash.
const std::string& AuditSelectList();
std::span<const ColumnKind> AuditSelectKinds();
// Fails when a stored column is malformed (details that are not JSON: a sign of tampering).
Result<AuditRecord> DecodeAudit(const SqlRow& row);

// The JSON of a run's structured parts, as their columns hold it (the *FromJson* ones throw
// nlohmann_json's exceptions on a malformed value).
nlohmann::json RunResultJson(const RunResult& result);
RunResult RunResultFromJson(const nlohmann::json& j);
nlohmann::json ApprovalJson(const Approval& approval);
Approval ApprovalFromJsonValue(const nlohmann::json& j);
Limits LimitsFromJsonValue(const nlohmann::json& j);

// Column accessors that tolerate NULL.
int64_t IntAt(const SqlRow& row, size_t i);
std::string TextAt(const SqlRow& row, size_t i);

}  // namespace sbx::store::internal
