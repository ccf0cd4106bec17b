// The SQLite backend: one connection per Store, in WAL mode so readers never wait for the writer;
// write transactions start with BEGIN IMMEDIATE so that two connections never both read and then
// race to upgrade to the write lock (the upgrade would fail with SQLITE_BUSY without waiting,
// https://www.sqlite.org/lang_transaction.html). Every sqlite3 call of sbx_store is in this file.
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "supervisor/store/sql_store.h"

namespace sbx::store::internal {
namespace {

constexpr int kBusyTimeoutMs = 10'000;

// Frozen once released: a change to the schema is a new migration, never an edit of an old one.
constexpr Migration kMigrations[] = {
    {1, "runs, events, audit, nodes", R"sql(
CREATE TABLE runs (
  row_no INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  submitter TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('PENDING', 'PLANNED', 'AWAITING_REVIEW', 'QUEUED',
                                       'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
  argv TEXT NOT NULL,
  steps TEXT NOT NULL,
  limits TEXT NOT NULL,
  network TEXT NOT NULL,
  seccomp_profile TEXT NOT NULL,
  env TEXT NOT NULL,
  stdin BLOB NOT NULL,
  workspace TEXT NOT NULL,
  labels TEXT NOT NULL,
  idempotency_key TEXT,
  policy TEXT,
  approval TEXT,
  node TEXT,
  created_at INTEGER NOT NULL,
  queued_at INTEGER,
  started_at INTEGER,
  finished_at INTEGER,
  result TEXT,
  last_event_seq INTEGER NOT NULL DEFAULT 0,
  UNIQUE (submitter, idempotency_key)
);
CREATE INDEX runs_by_queue ON runs (state, queued_at, row_no);
CREATE INDEX runs_by_node ON runs (node, state);
CREATE TABLE run_labels (
  run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (run_id, key)
);
CREATE INDEX run_labels_by_value ON run_labels (key, value);
CREATE TABLE events (
  run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  type TEXT NOT NULL,
  ts INTEGER NOT NULL,
  data TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)
);
CREATE TABLE audit (
  id INTEGER PRIMARY KEY,
  ts INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  run_id TEXT,
  details TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX audit_by_run ON audit (run_id, id);
CREATE TABLE nodes (
  name TEXT PRIMARY KEY,
  last_heartbeat INTEGER NOT NULL
);
)sql"},
    {2, "audit is append-only", R"sql(
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
)sql"},
    {3, "a cursor over every run's events", R"sql(
CREATE TABLE event_counter (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  value INTEGER NOT NULL
);
ALTER TABLE events ADD COLUMN gseq INTEGER;
UPDATE events SET gseq = rowid;
INSERT INTO event_counter (id, value) SELECT 1, COALESCE(MAX(gseq), 0) FROM events;
CREATE UNIQUE INDEX events_by_gseq ON events (gseq);
)sql"},
    {4, "a run's backend and image", R"sql(
ALTER TABLE runs ADD COLUMN backend TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN image TEXT NOT NULL DEFAULT '';
)sql"},
    // A sandbox's variable parts are one JSON document (doc); the columns are what queries
    // filter on. next_process_id is the id its next process gets.
    {5, "long-lived sandboxes and their processes", R"sql(
CREATE TABLE sandboxes (
  row_no INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  submitter TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('PENDING', 'AWAITING_REVIEW', 'STARTING', 'RUNNING',
                                       'PAUSED', 'STOPPED', 'FAILED')),
  node TEXT,
  idempotency_key TEXT,
  created_at INTEGER NOT NULL,
  doc TEXT NOT NULL,
  next_process_id INTEGER NOT NULL DEFAULT 1,
  UNIQUE (submitter, idempotency_key)
);
CREATE INDEX sandboxes_by_node ON sandboxes (node, state);
CREATE TABLE sandbox_labels (
  sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (sandbox_id, key)
);
CREATE INDEX sandbox_labels_by_value ON sandbox_labels (key, value);
CREATE TABLE sandbox_processes (
  sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
  id INTEGER NOT NULL,
  tag TEXT,
  state TEXT NOT NULL CHECK (state IN ('AWAITING_REVIEW', 'RUNNING', 'FINISHED', 'REJECTED',
                                       'CANCELLED')),
  created_at INTEGER NOT NULL,
  doc TEXT NOT NULL,
  stdin BLOB NOT NULL,
  PRIMARY KEY (sandbox_id, id)
);
CREATE INDEX sandbox_processes_by_tag ON sandbox_processes (sandbox_id, tag, id);
)sql"},
    // Projects and their plans: the variable parts in doc, the columns what queries filter on.
    // A run names its project in project_id (no foreign key: a deleted project's runs stay).
    {6, "projects, plans, and the project of a run", R"sql(
CREATE TABLE projects (
  row_no INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL UNIQUE,
  version INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  doc TEXT NOT NULL
);
CREATE TABLE project_members (
  project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  key_name TEXT NOT NULL,
  PRIMARY KEY (project_id, key_name)
);
CREATE INDEX project_members_by_key ON project_members (key_name);
CREATE TABLE plans (
  row_no INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL,
  doc TEXT NOT NULL
);
CREATE INDEX plans_by_project ON plans (project_id, row_no);
ALTER TABLE runs ADD COLUMN project_id TEXT;
CREATE INDEX runs_by_project ON runs (project_id, row_no);
)sql"},
    // Nodes carry what routing and `GET /v1/nodes` need; a run says where it may run, whether it
    // may run again after its node is lost, and how many times it was claimed.
    {7, "nodes: state, labels and capacity; runs: node_selector, retry_on_node_loss, attempt", R"sql(
ALTER TABLE nodes ADD COLUMN state TEXT NOT NULL DEFAULT 'ready';
ALTER TABLE nodes ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE nodes ADD COLUMN capacity INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN version TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN address TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN started_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN node_selector TEXT NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN retry_on_node_loss INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_running_by_node ON runs (node, state);
)sql"},
    // Outbound runners: their tokens (as SHA-256) and the last outbox entry committed.
    {8, "runners", R"sql(
CREATE TABLE runners (
  name TEXT PRIMARY KEY,
  token_sha256 TEXT NOT NULL UNIQUE,
  created_by TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER,
  revoked_by TEXT NOT NULL DEFAULT '',
  applied_seq INTEGER NOT NULL DEFAULT 0
);
)sql"},
};

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// The start of a statement, for error messages: the whole INSERT of a run is a screenful.
std::string_view Abbreviate(std::string_view sql) {
  while (!sql.empty() && (sql.front() == '\n' || sql.front() == ' ')) sql.remove_prefix(1);
  return sql.substr(0, std::min(sql.find('\n'), size_t{80}));
}

Error SqliteError(sqlite3* db, int rc, std::string_view what) {
  ErrorCode code = ErrorCode::kInternal;
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      code = (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
                 ? ErrorCode::kAlreadyExists
                 : ErrorCode::kInvalidArgument;
      break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      code = ErrorCode::kUnavailable;
      break;
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      code = ErrorCode::kPermissionDenied;
      break;
    default:
      break;
  }
  std::string detail = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  if (rc == SQLITE_BUSY) {
    detail += fmt::format(" (still locked after {} ms; another process holds the write lock)",
                          kBusyTimeoutMs);
  }
  return Error{code, 0, fmt::format("sqlite: {} (in `{}`)", detail, Abbreviate(what)), {}};
}

// The connection's prepared statements, by their text. Preparing is parsing and planning: with
// every statement prepared afresh, sqlite3_prepare_v2 was a third of the daemon's store time
// under load (16 clients of /bin/true runs). The statements are few and fixed, bar the filters
// of a listing; bounded all the same, past kMax the cache starts over.
class StatementCache {
 public:
  static constexpr size_t kMax = 64;

  explicit StatementCache(sqlite3* db) : db_(db) {}

  // A statement ready to bind and step (reset, no bindings), or the error of preparing it.
  Result<sqlite3_stmt*> Get(std::string_view sql) {
    std::string key(sql);
    if (auto it = stmts_.find(key); it != stmts_.end()) return it->second.get();
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    StmtPtr stmt(raw);
    if (rc != SQLITE_OK) return SqliteError(db_, rc, sql);
    if (stmts_.size() >= kMax) stmts_.clear();
    return stmts_.emplace(std::move(key), std::move(stmt)).first->second.get();
  }

 private:
  sqlite3* db_;
  std::unordered_map<std::string, StmtPtr> stmts_;
};

// Returns a cached statement to its unused state when its user is done with it, whatever the
// outcome: a statement left mid-step would hold its read of the database open.
class StatementLease {
 public:
  explicit StatementLease(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~StatementLease() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  StatementLease(const StatementLease&) = delete;
  StatementLease& operator=(const StatementLease&) = delete;
  sqlite3_stmt* get() const { return stmt_; }

 private:
  sqlite3_stmt* stmt_;
};

// Steps a cached statement that returns no rows (BEGIN, COMMIT, ROLLBACK) once.
int StepOnce(StatementCache& cache, sqlite3* db, const char* sql) {
  auto stmt = cache.Get(sql);
  if (!stmt.ok()) return sqlite3_errcode(db) != SQLITE_OK ? sqlite3_errcode(db) : SQLITE_ERROR;
  StatementLease lease(*stmt);
  int rc = sqlite3_step(lease.get());
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

class SqliteTx final : public SqlTx {
 public:
  SqliteTx(sqlite3* db, StatementCache& cache) : db_(db), cache_(cache) {}

  Result<std::vector<SqlRow>> Query(std::string_view sql, std::span<const SqlValue> params,
                                    std::span<const ColumnKind> kinds) override {
    auto prepared = Prepare(sql, params);
    if (!prepared.ok()) return std::move(prepared).error();
    StatementLease stmt(*prepared);
    std::vector<SqlRow> rows;
    for (;;) {
      int rc = sqlite3_step(stmt.get());
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return SqliteError(db_, rc, sql);
      SqlRow row(kinds.size());
      for (size_t i = 0; i < kinds.size(); ++i) {
        const int col = static_cast<int>(i);
        if (sqlite3_column_type(stmt.get(), col) == SQLITE_NULL) continue;
        switch (kinds[i]) {
          case ColumnKind::kInt:
            row[i] = static_cast<int64_t>(sqlite3_column_int64(stmt.get(), col));
            break;
          case ColumnKind::kText: {
            const auto* text = sqlite3_column_text(stmt.get(), col);
            int n = sqlite3_column_bytes(stmt.get(), col);
            row[i] = std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(n));
            break;
          }
          case ColumnKind::kBlob: {
            const void* blob = sqlite3_column_blob(stmt.get(), col);
            int n = sqlite3_column_bytes(stmt.get(), col);
            row[i] = Blob{n > 0 ? std::string(static_cast<const char*>(blob), n) : std::string()};
            break;
          }
        }
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  Result<int64_t> Exec(std::string_view sql, std::span<const SqlValue> params) override {
    auto prepared = Prepare(sql, params);
    if (!prepared.ok()) return std::move(prepared).error();
    StatementLease stmt(*prepared);
    int rc;
    while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    }
    if (rc != SQLITE_DONE) return SqliteError(db_, rc, sql);
    return static_cast<int64_t>(sqlite3_changes(db_));
  }

  Status ExecScript(std::string_view sql) override {
    std::string text(sql);
    int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db_, rc, "script");
    return Ok();
  }

 private:
  // The cached statement with `params` bound, $N by name: SQLite numbers named parameters by
  // first appearance, which need not be N. Reset on any error here.
  Result<sqlite3_stmt*> Prepare(std::string_view sql, std::span<const SqlValue> params) {
    auto cached = cache_.Get(sql);
    if (!cached.ok()) return std::move(cached).error();
    sqlite3_stmt* raw = *cached;
    int rc = SQLITE_OK;
    for (size_t i = 0; i < params.size(); ++i) {
      // "$N" in a buffer: `"$" + std::to_string(n)` draws a bogus -Wrestrict from GCC 12 at -O3
      // (GCC PR 105329).
      char name[24];
      std::snprintf(name, sizeof name, "$%zu", i + 1);
      int idx = sqlite3_bind_parameter_index(raw, name);
      if (idx == 0) continue;  // not used by this statement
      const SqlValue& v = params[i];
      if (std::holds_alternative<std::monostate>(v)) {
        rc = sqlite3_bind_null(raw, idx);
      } else if (const auto* n = std::get_if<int64_t>(&v)) {
        rc = sqlite3_bind_int64(raw, idx, *n);
      } else if (const auto* s = std::get_if<std::string>(&v)) {
        rc = sqlite3_bind_text64(raw, idx, s->data(), s->size(), SQLITE_TRANSIENT, SQLITE_UTF8);
      } else {
        const std::string& bytes = std::get<Blob>(v).bytes;
        rc = sqlite3_bind_blob64(raw, idx, bytes.data(), bytes.size(), SQLITE_TRANSIENT);
      }
      if (rc != SQLITE_OK) {
        Error e = SqliteError(db_, rc, sql);
        StatementLease reset(raw);
        return e;
      }
    }
    return raw;
  }

  sqlite3* db_;
  StatementCache& cache_;
};

class SqliteConnection final : public SqlConnection {
 public:
  explicit SqliteConnection(std::unique_ptr<sqlite3, DbCloser> db)
      : db_(std::move(db)), cache_(std::make_unique<StatementCache>(db_.get())) {}
  ~SqliteConnection() override { cache_.reset(); }  // the statements go before their database

  Status Transact(TxMode mode, const std::function<Status(SqlTx&)>& body) override {
    std::lock_guard lock(mu_);
    sqlite3* db = db_.get();
    const char* begin = mode == TxMode::kWrite ? "BEGIN IMMEDIATE" : "BEGIN";
    int rc = StepOnce(*cache_, db, begin);
    if (rc != SQLITE_OK) return SqliteError(db, rc, begin);
    SqliteTx tx(db, *cache_);
    Status s = body(tx);
    if (s.ok()) {
      rc = StepOnce(*cache_, db, "COMMIT");
      if (rc == SQLITE_OK) return Ok();
      s = SqliteError(db, rc, "COMMIT");
    }
    // After some errors SQLite has rolled back already; ROLLBACK then fails harmlessly.
    if (!sqlite3_get_autocommit(db)) (void)StepOnce(*cache_, db, "ROLLBACK");
    return s;
  }

  std::span<const Migration> Migrations() const override { return kMigrations; }
  std::string LockStatement(LockKey) const override { return ""; }
  std::string_view ClaimLockClause() const override { return ""; }
  std::string_view RowLockClause() const override { return ""; }
  std::string_view NotifyStatement() const override { return ""; }
  Result<std::unique_ptr<StoreWatch>> Watch(StoreWatchCallbacks) override {
    return std::unique_ptr<StoreWatch>();
  }
  std::string SelectorMatches(const std::string& labels_param) const override {
    // Label keys are plain (no quote can reach the path: the API refuses them).
    return "NOT EXISTS (SELECT 1 FROM json_each(runs.node_selector) s WHERE json_extract(" +
           labels_param + ", '$.\"' || s.key || '\"') IS NOT s.value)";
  }

 private:
  std::mutex mu_;
  std::unique_ptr<sqlite3, DbCloser> db_;
  std::unique_ptr<StatementCache> cache_;
};

// Statement journals (the undo of one statement inside a transaction, which SQLite keeps for
// every INSERT and UPDATE here) stay in memory, in 1 KiB pieces. By default they are built of
// 64 KiB pieces and spill to a file past that: each statement then took a 64 KiB block from the
// top of its thread's malloc arena and gave it back, and glibc trimmed the arena every time,
// a madvise with a TLB shoot-down on every CPU. While a run streamed its output, that was an
// eighth of the time of the thread writing its log. Our statements change a row or a few; the
// largest journal is that of a one-time schema migration. Must precede sqlite3_initialize();
// refused (and harmless) once SQLite is initialized.
void ConfigureSqliteOnce() {
  static std::once_flag once;
  std::call_once(once, [] { (void)sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, -1); });
}

}  // namespace

Result<std::unique_ptr<SqlConnection>> OpenSqlite(const std::string& path) {
  ConfigureSqliteOnce();
  // Runs hold env and stdin, which may carry secrets: the file (and the -wal and -shm files,
  // which SQLite creates with the database file's mode) is for sandboxd's user only.
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    Error e = ErrnoError("open {}", path);
    e.message += "; check that the directory exists and is writable by sandboxd";
    return e;
  }
  close(fd);
  sqlite3* raw = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<sqlite3, DbCloser> db(raw);
  if (rc != SQLITE_OK) {
    Error e = SqliteError(raw, rc, "open");
    e.message += "; check that the directory exists and is writable by sandboxd";
    e.context = path;
    return e;
  }
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, kBusyTimeoutMs);
  // journal_mode=WAL persists in the file; foreign_keys is per connection. synchronous=NORMAL is
  // durable against a crash of the process in WAL mode, and loses at most the last commits on
  // power loss (https://www.sqlite.org/pragma.html#pragma_synchronous).
  rc = sqlite3_exec(raw,
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; "
                    "PRAGMA foreign_keys = ON;",
                    nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    Error e = SqliteError(raw, rc, "configure");
    e.context = path;
    return e;
  }
  return std::unique_ptr<SqlConnection>(std::make_unique<SqliteConnection>(std::move(db)));
}

}  // namespace sbx::store::internal
