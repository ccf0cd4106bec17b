// The runner half of the SQL store (store.h, "Runners"): one row per runner, its token's
// SHA-256 (unique), who issued and who revoked it, and the last outbox entry committed
// (RunnerAckWrite, applied inside Commit()).

#include <array>
#include <cctype>
#include <string>

#include "supervisor/store/record_codec.h"
#include "supervisor/store/sql_store.h"
#include "supervisor/store/store.h"

namespace sbx::store {

Status CheckRunnerName(std::string_view name) {
  auto plain = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  };
  if (name.empty() || name.size() > 63 || !std::isalnum(static_cast<unsigned char>(name[0])) ||
      !std::all_of(name.begin(), name.end(), plain)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'{}' is not a runner name (1 to 63 letters, digits, '.', '_', '-', "
                     "starting with a letter or digit)",
                     name.substr(0, 80));
  }
  return Ok();
}

namespace internal {
namespace {

constexpr std::array<ColumnKind, 7> kRunnerKinds = {
    ColumnKind::kText, ColumnKind::kText, ColumnKind::kText, ColumnKind::kInt,
    ColumnKind::kInt,  ColumnKind::kText, ColumnKind::kInt};
constexpr char kRunnerSelect[] =
    "SELECT name, token_sha256, created_by, created_at, revoked_at, revoked_by, applied_seq "
    "FROM runners";

RunnerRecord DecodeRunner(const SqlRow& row) {
  RunnerRecord r;
  r.name = TextAt(row, 0);
  r.token_sha256 = TextAt(row, 1);
  r.created_by = TextAt(row, 2);
  r.created_at_ms = IntAt(row, 3);
  if (!std::holds_alternative<std::monostate>(row[4])) r.revoked_at_ms = IntAt(row, 4);
  r.revoked_by = TextAt(row, 5);
  r.applied_seq = IntAt(row, 6);
  return r;
}

Status CheckDigest(std::string_view hex) {
  if (hex.size() != 64 || !std::all_of(hex.begin(), hex.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      })) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "a runner token's digest is 64 lowercase hex digits");
  }
  return Ok();
}

Result<std::vector<RunnerRecord>> Select(SqlTx& tx, std::string_view where,
                                         std::span<const SqlValue> params) {
  auto rows = tx.Query(std::string(kRunnerSelect) + std::string(where) + " ORDER BY name",
                       params, kRunnerKinds);
  if (!rows.ok()) return std::move(rows).error();
  std::vector<RunnerRecord> out;
  for (const SqlRow& row : *rows) out.push_back(DecodeRunner(row));
  return out;
}

}  // namespace

Result<RunnerRecord> SqlRunners::PutRunner(std::string_view name, std::string_view token_sha256,
                                           std::string_view by) {
  SBX_TRY(CheckRunnerName(name));
  SBX_TRY(CheckDigest(token_sha256));
  SBX_TRY(EncodeJson(std::string(by), "runner issuer"));
  std::array<SqlValue, 4> p = {std::string(name), std::string(token_sha256), std::string(by),
                               NowMs()};
  RunnerRecord out;
  SBX_TRY(conn_.Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
    SBX_TRY(tx.Exec(
        "INSERT INTO runners (name, token_sha256, created_by, created_at, revoked_at, "
        "revoked_by, applied_seq) VALUES ($1, $2, $3, $4, NULL, '', 0) ON CONFLICT (name) DO "
        "UPDATE SET token_sha256 = excluded.token_sha256, created_by = excluded.created_by, "
        "created_at = excluded.created_at, revoked_at = NULL, revoked_by = ''",
        p));
    auto got = Select(tx, " WHERE name = $1", std::span(p).first(1));
    if (!got.ok()) return std::move(got).error();
    if (got->empty()) return MakeError(ErrorCode::kInternal, "runner {} vanished", name);
    out = std::move(got->front());
    return Ok();
  }));
  return out;
}

Result<RunnerRecord> SqlRunners::GetRunner(std::string_view name) {
  std::array<SqlValue, 1> p = {std::string(name)};
  RunnerRecord out;
  SBX_TRY(conn_.Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
    auto got = Select(tx, " WHERE name = $1", p);
    if (!got.ok()) return std::move(got).error();
    if (got->empty()) return MakeError(ErrorCode::kNotFound, "no runner named '{}'", name);
    out = std::move(got->front());
    return Ok();
  }));
  return out;
}

Result<std::optional<RunnerRecord>> SqlRunners::FindRunnerByToken(std::string_view token_sha256) {
  SBX_TRY(CheckDigest(token_sha256));
  std::array<SqlValue, 1> p = {std::string(token_sha256)};
  std::optional<RunnerRecord> out;
  SBX_TRY(conn_.Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
    auto got = Select(tx, " WHERE token_sha256 = $1 AND revoked_at IS NULL", p);
    if (!got.ok()) return std::move(got).error();
    if (!got->empty()) out = std::move(got->front());
    return Ok();
  }));
  return out;
}

Result<RunnerRecord> SqlRunners::RevokeRunner(std::string_view name, std::string_view by) {
  SBX_TRY(EncodeJson(std::string(by), "runner revoker"));
  std::array<SqlValue, 3> p = {std::string(name), NowMs(), std::string(by)};
  RunnerRecord out;
  SBX_TRY(conn_.Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
    SBX_TRY(tx.Exec(
        "UPDATE runners SET revoked_at = $2, revoked_by = $3 WHERE name = $1 AND revoked_at IS "
        "NULL",
        p));
    auto got = Select(tx, " WHERE name = $1", std::span(p).first(1));
    if (!got.ok()) return std::move(got).error();
    if (got->empty()) return MakeError(ErrorCode::kNotFound, "no runner named '{}'", name);
    out = std::move(got->front());
    return Ok();
  }));
  return out;
}

Result<std::vector<RunnerRecord>> SqlRunners::ListRunners() {
  std::vector<RunnerRecord> out;
  SBX_TRY(conn_.Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
    auto got = Select(tx, "", {});
    if (!got.ok()) return std::move(got).error();
    out = std::move(*got);
    return Ok();
  }));
  return out;
}

Status ApplyRunnerAck(SqlTx& tx, const RunnerAckWrite& ack) {
  if (ack.seq < 1) return MakeError(ErrorCode::kInvalidArgument, "an outbox entry's seq is >= 1");
  std::array<SqlValue, 2> p = {ack.runner, ack.seq};
  auto changed = tx.Exec(
      "UPDATE runners SET applied_seq = $2 WHERE name = $1 AND applied_seq = $2 - 1 AND "
      "revoked_at IS NULL",
      p);
  if (!changed.ok()) return std::move(changed).error();
  if (*changed == 1) return Ok();
  auto got = Select(tx, " WHERE name = $1", std::span(p).first(1));
  if (!got.ok()) return std::move(got).error();
  if (got->empty()) return MakeError(ErrorCode::kNotFound, "no runner named '{}'", ack.runner);
  if (got->front().revoked_at_ms) {
    return MakeError(ErrorCode::kAborted, "runner {}'s token is revoked", ack.runner);
  }
  return MakeError(ErrorCode::kAborted,
                   "runner {}'s outbox entry {} is not next: {} was the last committed",
                   ack.runner, ack.seq, got->front().applied_seq);
}

}  // namespace internal
}  // namespace sbx::store
