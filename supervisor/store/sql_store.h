// The backend-neutral half of the SQL stores: one Store implementation written against a small
// connection interface that sqlite_store.cc and postgres_store.cc implement. Statements use
// $1, $2, … placeholders, which both SQLite and PostgreSQL accept. Internal to sbx_store.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "supervisor/store/store.h"

namespace sbx::store::internal {

// Bytes that may hold NULs: a BLOB in SQLite, a BYTEA in PostgreSQL.
struct Blob {
  std::string bytes;
};

// A parameter or column value. std::monostate is SQL NULL.
using SqlValue = std::variant<std::monostate, int64_t, std::string, Blob>;
using SqlRow = std::vector<SqlValue>;

// How to read a result column.
enum class ColumnKind { kInt, kText, kBlob };

class SqlTx {
 public:
  virtual ~SqlTx() = default;
  // Runs one statement and returns its rows, column i read as kinds[i] (a NULL stays NULL).
  virtual Result<std::vector<SqlRow>> Query(std::string_view sql, std::span<const SqlValue> params,
                                            std::span<const ColumnKind> kinds) = 0;
  // Runs one statement that returns no rows; returns the number of rows it changed.
  virtual Result<int64_t> Exec(std::string_view sql, std::span<const SqlValue> params) = 0;
  // Runs several ';'-separated statements without parameters (migrations).
  virtual Status ExecScript(std::string_view sql) = 0;
};

enum class TxMode {
  kRead,
  kWrite,  // takes the write lock up front where the database has one (SQLite BEGIN IMMEDIATE)
};

struct Migration {
  int version;
  const char* name;
  const char* sql;
};

// Keys for cross-daemon locks held until the end of a transaction.
enum class LockKey : int64_t {
  kMigrate = 0x73627801,
  kAudit = 0x73627802,
};

class SqlConnection {
 public:
  virtual ~SqlConnection() = default;
  // Runs `body` in one transaction, serialised with this connection's other calls: commits when
  // it returns OK, rolls back when it fails.
  virtual Status Transact(TxMode mode, const std::function<Status(SqlTx&)>& body) = 0;
  // The versioned schema, in order.
  virtual std::span<const Migration> Migrations() const = 0;
  // A statement that takes `key` until the transaction ends, or "" where the write transaction
  // already excludes every other writer (SQLite).
  virtual std::string LockStatement(LockKey key) const = 0;
  // Appended to the SELECT that picks the run to claim: "FOR UPDATE SKIP LOCKED" or "".
  virtual std::string_view ClaimLockClause() const = 0;
  // Appended to a SELECT of rows the transaction reads and then changes: "FOR UPDATE" (the rows
  // stay locked until it ends), or "" where the write transaction already excludes every other
  // writer (SQLite).
  virtual std::string_view RowLockClause() const = 0;
  // A condition true when the runs row's node_selector (a JSON object of strings) is contained
  // in `labels_param`, a parameter holding the node's labels as a JSON object.
  virtual std::string SelectorMatches(const std::string& labels_param) const = 0;
  // A statement that sends notification $2 on channel $1 when the transaction commits, or ""
  // where no other process can listen (SQLite).
  virtual std::string_view NotifyStatement() const = 0;
  // Store::Watch(): nullptr where NotifyStatement() is "". `origin` is this process's mark in
  // the notifications (NotificationOrigin()): those carrying it are not reported.
  virtual Result<std::unique_ptr<StoreWatch>> Watch(StoreWatchCallbacks callbacks) = 0;
};

// The channels and payloads of the notifications: "ORIGIN\nRUN_ID" on sbx_events, "ORIGIN" on
// sbx_queue. ORIGIN tells this process's own commits apart: random, fixed for its lifetime.
inline constexpr std::string_view kEventsChannel = "sbx_events";
inline constexpr std::string_view kQueueChannel = "sbx_queue";
const std::string& NotificationOrigin();

std::unique_ptr<Store> MakeSqlStore(std::unique_ptr<SqlConnection> conn);

// The sandbox and process calls of the SQL store (store.h, "Long-lived sandboxes and their
// processes"), on the connection of the Store that forwards them (sql_sandbox_store.cc).
class SqlSandboxes {
 public:
  explicit SqlSandboxes(SqlConnection& conn) : conn_(conn) {}

  Result<CreateSandboxResult> CreateSandbox(const SandboxRecord& sandbox);
  Result<SandboxRecord> GetSandbox(std::string_view sandbox_id);
  Result<SandboxPage> ListSandboxes(const SandboxFilter& filter);
  Result<SandboxRecord> UpdateSandbox(std::string_view sandbox_id,
                                      const std::vector<SandboxState>& from, SandboxState to,
                                      const SandboxUpdate& update);
  Result<ProcessRecord> CreateProcess(const ProcessRecord& process);
  Result<ProcessRecord> GetProcess(std::string_view sandbox_id, std::string_view id_or_tag);
  Result<std::vector<ProcessRecord>> ListProcesses(std::string_view sandbox_id,
                                                   const ProcessFilter& filter);
  Result<ProcessRecord> UpdateProcess(std::string_view sandbox_id, int64_t process_id,
                                      const std::vector<ProcessState>& from, ProcessState to,
                                      const ProcessUpdate& update);
  Result<std::vector<std::string>> RecoverStaleSandboxes(std::string_view node, EndCode reason);

 private:
  SqlConnection& conn_;
};

// The project and plan calls of the SQL store (store.h, "Projects and plans";
// sql_project_store.cc).
class SqlProjects {
 public:
  explicit SqlProjects(SqlConnection& conn) : conn_(conn) {}

  Result<ProjectRecord> CreateProject(const ProjectRecord& project);
  Result<ProjectRecord> GetProject(std::string_view id_or_name);
  Result<ProjectPage> ListProjects(const ProjectFilter& filter);
  Result<ProjectRecord> UpdateProject(std::string_view id, int64_t expected_version,
                                      const ProjectRecord& project);
  Status DeleteProject(std::string_view id);
  Result<PlanRecord> CreatePlan(const PlanRecord& plan);
  Result<PlanRecord> GetPlan(std::string_view plan_id);
  Result<std::vector<PlanRecord>> ListPlans(std::string_view project_id, int limit);

 private:
  SqlConnection& conn_;
};

// The runner calls of the SQL store (store.h, "Runners"; sql_runner_store.cc).
class SqlRunners {
 public:
  explicit SqlRunners(SqlConnection& conn) : conn_(conn) {}

  Result<RunnerRecord> PutRunner(std::string_view name, std::string_view token_sha256,
                                 std::string_view by);
  Result<RunnerRecord> GetRunner(std::string_view name);
  Result<std::optional<RunnerRecord>> FindRunnerByToken(std::string_view token_sha256);
  Result<RunnerRecord> RevokeRunner(std::string_view name, std::string_view by);
  Result<std::vector<RunnerRecord>> ListRunners();

 private:
  SqlConnection& conn_;
};
// Commit()'s RunnerAckWrite, inside its transaction.
Status ApplyRunnerAck(SqlTx& tx, const RunnerAckWrite& ack);

// ---- Helpers of the SQL store's files ------------------------------------------------------

using ::sbx::NowMs;  // base/clock.h
// kInvalidArgument unless 1 <= limit <= 1000; `what` names the listing ("run list").
Status CheckLimit(int limit, const char* what);
// kInvalidArgument unless `id` is 1..128 of [A-Za-z0-9_-]; `what` names it ("run", "sandbox").
Status CheckId(std::string_view id, const char* what);
// The row_no in a next_cursor, or kInvalidArgument.
Result<int64_t> ParseCursor(std::string_view cursor);

// Collects statement parameters and hands out their placeholders.
class Params {
 public:
  std::string Add(SqlValue v) {
    values_.push_back(std::move(v));
    return "$" + std::to_string(values_.size());
  }
  std::span<const SqlValue> values() const { return values_; }

 private:
  std::vector<SqlValue> values_;
};

// Backends, for Open().
Result<std::unique_ptr<SqlConnection>> OpenSqlite(const std::string& path);
Result<std::unique_ptr<SqlConnection>> OpenPostgres(const std::string& url);

}  // namespace sbx::store::internal
