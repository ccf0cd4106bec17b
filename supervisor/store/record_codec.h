// Rows <-> records for the SQL stores: which columns a table has, and how the structured parts
// of a run (argv, steps, limits, env, labels, policy, approval, result) are kept as JSON text.
// Every nlohmann_json exception is caught here. Internal to sbx_store.
#pragma once

#include <cstdint>
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

// events: run_id, seq, type, ts, data, gseq (the cursor).
const std::string& EventSelectList();
std::span<const ColumnKind> EventSelectKinds();
Result<EventRecord> DecodeEvent(const SqlRow& row);

// audit: id, ts, actor, action, run_id, details, prev_hash, hash.
const std::string& AuditSelectList();
std::span<const ColumnKind> AuditSelectKinds();
// Fails when a stored column is malformed (details that are not JSON: a sign of tampering).
Result<AuditRecord> DecodeAudit(const SqlRow& row);

// Column accessors that tolerate NULL.
int64_t IntAt(const SqlRow& row, size_t i);
std::string TextAt(const SqlRow& row, size_t i);

}  // namespace sbx::store::internal
