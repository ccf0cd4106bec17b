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
#include <variant>
#include <vector>

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
};

std::unique_ptr<Store> MakeSqlStore(std::unique_ptr<SqlConnection> conn);

// Backends, for Open().
Result<std::unique_ptr<SqlConnection>> OpenSqlite(const std::string& path);
Result<std::unique_ptr<SqlConnection>> OpenPostgres(const std::string& url);

}  // namespace sbx::store::internal
