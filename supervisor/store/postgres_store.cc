// The PostgreSQL backend, on libpqxx 6.4 (Debian 12; the 7.x API differs). One connection per
// Store behind a mutex. Transactions run at READ COMMITTED; the statements that must not race
// across daemons take row locks (claims, event seq) or transaction-scoped advisory locks
// (migrations, the audit chain). Every libpqxx exception of sbx_store is caught in this file.
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>

#include "base/unique_fd.h"
#include "supervisor/store/sql_store.h"

namespace sbx::store::internal {
namespace {

// Frozen once released: a change to the schema is a new migration, never an edit of an old one.
constexpr Migration kMigrations[] = {
    {1, "runs, events, audit, nodes", R"sql(
CREATE TABLE runs (
  id TEXT PRIMARY KEY,
  row_no BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
  submitter TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('PENDING', 'PLANNED', 'AWAITING_REVIEW', 'QUEUED',
                                       'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
  argv TEXT NOT NULL,
  steps TEXT NOT NULL,
  limits TEXT NOT NULL,
  network TEXT NOT NULL,
  seccomp_profile TEXT NOT NULL,
  env TEXT NOT NULL,
  stdin BYTEA NOT NULL,
  workspace TEXT NOT NULL,
  labels TEXT NOT NULL,
  idempotency_key TEXT,
  policy TEXT,
  approval TEXT,
  node TEXT,
  created_at BIGINT NOT NULL,
  queued_at BIGINT,
  started_at BIGINT,
  finished_at BIGINT,
  result TEXT,
  last_event_seq BIGINT NOT NULL DEFAULT 0,
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
  seq BIGINT NOT NULL,
  type TEXT NOT NULL,
  ts BIGINT NOT NULL,
  data TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)
);
CREATE TABLE audit (
  id BIGINT PRIMARY KEY,
  ts BIGINT NOT NULL,
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
  last_heartbeat BIGINT NOT NULL
);
)sql"},
    {2, "audit is append-only", R"sql(
CREATE FUNCTION sandboxd_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit is append-only';
END
$$;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
  FOR EACH ROW EXECUTE FUNCTION sandboxd_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
  FOR EACH STATEMENT EXECUTE FUNCTION sandboxd_audit_append_only();
)sql"},
    // One counter row, locked by each append until it commits: cursors are handed out in commit
    // order, so a reader that saw cursor N never sees a smaller one appear later.
    {3, "a cursor over every run's events", R"sql(
CREATE TABLE event_counter (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  value BIGINT NOT NULL
);
ALTER TABLE events ADD COLUMN gseq BIGINT;
UPDATE events SET gseq = numbered.n
  FROM (SELECT run_id, seq, row_number() OVER (ORDER BY ts, run_id, seq) AS n FROM events)
    AS numbered
  WHERE events.run_id = numbered.run_id AND events.seq = numbered.seq;
INSERT INTO event_counter (id, value) SELECT 1, COALESCE(MAX(gseq), 0) FROM events;
CREATE UNIQUE INDEX events_by_gseq ON events (gseq);
)sql"},
    {4, "a run's backend and image", R"sql(
ALTER TABLE runs ADD COLUMN backend TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN image TEXT NOT NULL DEFAULT '';
)sql"},
    // A sandbox's variable parts are one JSON document (doc); the columns are what queries
    // filter and lock on. next_process_id is the id its next process gets; the UPDATE that
    // takes it locks the sandbox's row, so two daemons never hand out the same one.
    {5, "long-lived sandboxes and their processes", R"sql(
CREATE TABLE sandboxes (
  id TEXT PRIMARY KEY,
  row_no BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
  submitter TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('PENDING', 'AWAITING_REVIEW', 'STARTING', 'RUNNING',
                                       'PAUSED', 'STOPPED', 'FAILED')),
  node TEXT,
  idempotency_key TEXT,
  created_at BIGINT NOT NULL,
  doc TEXT NOT NULL,
  next_process_id BIGINT NOT NULL DEFAULT 1,
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
  id BIGINT NOT NULL,
  tag TEXT,
  state TEXT NOT NULL CHECK (state IN ('AWAITING_REVIEW', 'RUNNING', 'FINISHED', 'REJECTED',
                                       'CANCELLED')),
  created_at BIGINT NOT NULL,
  doc TEXT NOT NULL,
  stdin BYTEA NOT NULL,
  PRIMARY KEY (sandbox_id, id)
);
CREATE INDEX sandbox_processes_by_tag ON sandbox_processes (sandbox_id, tag, id);
)sql"},
    // Projects and their plans: the variable parts in doc, the columns what queries filter on.
    // A run names its project in project_id (no foreign key: a deleted project's runs stay).
    {6, "projects, plans, and the project of a run", R"sql(
CREATE TABLE projects (
  id TEXT PRIMARY KEY,
  row_no BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
  name TEXT NOT NULL UNIQUE,
  version BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  doc TEXT NOT NULL
);
CREATE TABLE project_members (
  project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  key_name TEXT NOT NULL,
  PRIMARY KEY (project_id, key_name)
);
CREATE INDEX project_members_by_key ON project_members (key_name);
CREATE TABLE plans (
  id TEXT PRIMARY KEY,
  row_no BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
  project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  created_at BIGINT NOT NULL,
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
ALTER TABLE nodes ADD COLUMN capacity BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN version TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN address TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN started_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN node_selector TEXT NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN retry_on_node_loss INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN attempt BIGINT NOT NULL DEFAULT 0;
CREATE INDEX runs_running_by_node ON runs (node, state);
)sql"},
    // Outbound runners: their tokens (as SHA-256) and the last outbox entry committed.
    {8, "runners", R"sql(
CREATE TABLE runners (
  name TEXT PRIMARY KEY,
  token_sha256 TEXT NOT NULL UNIQUE,
  created_by TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT,
  revoked_by TEXT NOT NULL DEFAULT '',
  applied_seq BIGINT NOT NULL DEFAULT 0
);
)sql"},
};

// The start of a statement, for error messages: the whole INSERT of a run is a screenful.
std::string_view Abbreviate(std::string_view sql) {
  while (!sql.empty() && (sql.front() == '\n' || sql.front() == ' ')) sql.remove_prefix(1);
  return sql.substr(0, std::min(sql.find('\n'), size_t{80}));
}

// SQLSTATE classes and codes, https://www.postgresql.org/docs/15/errcodes-appendix.html.
Error PgError(const std::exception& e, std::string_view what) {
  ErrorCode code = ErrorCode::kInternal;
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    const std::string& state = sql->sqlstate();
    if (state == "23505") {
      code = ErrorCode::kAlreadyExists;  // unique_violation
    } else if (state.starts_with("23")) {
      code = ErrorCode::kInvalidArgument;  // other integrity constraints
    } else if (state.starts_with("08") || state == "57P01" || state == "57P03") {
      code = ErrorCode::kUnavailable;  // connection lost, server shutting down or starting
    } else if (state == "42501") {
      code = ErrorCode::kPermissionDenied;
    }
  } else if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
    code = ErrorCode::kUnavailable;
  }
  std::string message = e.what();
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  return Error{code, 0, fmt::format("postgresql: {} (in `{}`)", message, Abbreviate(what)), {}};
}

std::optional<std::string> ToParam(const SqlValue& v) {
  if (std::holds_alternative<std::monostate>(v)) return std::nullopt;
  if (const auto* n = std::get_if<int64_t>(&v)) return std::to_string(*n);
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  // bytea in the hex input format, https://www.postgresql.org/docs/15/datatype-binary.html.
  static constexpr char kHex[] = "0123456789abcdef";
  const std::string& bytes = std::get<Blob>(v).bytes;
  std::string out = "\\x";
  out.reserve(2 + bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

class PgTx final : public SqlTx {
 public:
  explicit PgTx(pqxx::work& tx) : tx_(tx) {}

  Result<std::vector<SqlRow>> Query(std::string_view sql, std::span<const SqlValue> params,
                                    std::span<const ColumnKind> kinds) override {
    try {
      pqxx::result r = Run(sql, params);
      std::vector<SqlRow> rows;
      rows.reserve(r.size());
      for (const auto& pg_row : r) {
        SqlRow row(kinds.size());
        for (size_t i = 0; i < kinds.size() && i < pg_row.size(); ++i) {
          const pqxx::field f = pg_row[static_cast<pqxx::row::size_type>(i)];
          if (f.is_null()) continue;
          switch (kinds[i]) {
            case ColumnKind::kInt:
              row[i] = f.as<int64_t>();
              break;
            case ColumnKind::kText:
              row[i] = std::string(f.c_str(), f.size());
              break;
            case ColumnKind::kBlob:
              row[i] = Blob{pqxx::binarystring(f).str()};
              break;
          }
        }
        rows.push_back(std::move(row));
      }
      return rows;
    } catch (const std::exception& e) {
      return PgError(e, sql);
    }
  }

  Result<int64_t> Exec(std::string_view sql, std::span<const SqlValue> params) override {
    try {
      return static_cast<int64_t>(Run(sql, params).affected_rows());
    } catch (const std::exception& e) {
      return PgError(e, sql);
    }
  }

  Status ExecScript(std::string_view sql) override {
    try {
      tx_.exec(std::string(sql));
      return Ok();
    } catch (const std::exception& e) {
      return PgError(e, "script");
    }
  }

 private:
  pqxx::result Run(std::string_view sql, std::span<const SqlValue> params) {
    std::vector<std::optional<std::string>> values;
    values.reserve(params.size());
    for (const SqlValue& v : params) values.push_back(ToParam(v));
    return tx_.exec_params(std::string(sql), pqxx::prepare::make_dynamic_params(values));
  }

  pqxx::work& tx_;
};

// Store::Watch() on PostgreSQL: a connection of its own that LISTENs on the two channels, and a
// thread that waits on its socket (and an eventfd that stops it) and reports what others notify.
class PgWatch final : public StoreWatch {
 public:
  PgWatch(std::string url, StoreWatchCallbacks callbacks)
      : url_(std::move(url)), callbacks_(std::move(callbacks)) {}
  ~PgWatch() override {
    const uint64_t one = 1;
    if (stop_) (void)::write(stop_.get(), &one, sizeof one);
    if (thread_.joinable()) thread_.join();
  }

  Status Start() {
    stop_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!stop_) return MakeError(ErrorCode::kInternal, "eventfd: {}", std::strerror(errno));
    SBX_TRY(Connect());
    thread_ = std::thread([this] { Loop(); });
    return Ok();
  }

 private:
  class Receiver final : public pqxx::notification_receiver {
   public:
    Receiver(pqxx::connection& c, std::string_view channel, PgWatch& watch)
        : pqxx::notification_receiver(c, std::string(channel)), watch_(watch) {}
    void operator()(const std::string& payload, int) override {
      watch_.Deliver(channel(), payload);
    }

   private:
    PgWatch& watch_;
  };

  Status Connect() {
    receivers_.clear();
    conn_.reset();
    try {
      conn_ = std::make_unique<pqxx::connection>(url_);
      receivers_.push_back(std::make_unique<Receiver>(*conn_, kEventsChannel, *this));
      receivers_.push_back(std::make_unique<Receiver>(*conn_, kQueueChannel, *this));
      return Ok();
    } catch (const std::exception& e) {
      receivers_.clear();
      conn_.reset();
      return PgError(e, "LISTEN");
    }
  }

  void Deliver(const std::string& channel, const std::string& payload) {
    const size_t nl = payload.find('\n');
    if (payload.substr(0, nl) == NotificationOrigin()) return;  // this process's own commit
    if (channel == kQueueChannel) {
      if (callbacks_.queued) callbacks_.queued();
    } else if (nl != std::string::npos && callbacks_.events) {
      callbacks_.events(payload.substr(nl + 1));
    }
  }

  // True when asked to stop.
  bool WaitReadable(int fd, int timeout_ms) {
    pollfd p[2] = {{stop_.get(), POLLIN, 0}, {fd, POLLIN, 0}};
    const int n = ::poll(p, fd >= 0 ? 2 : 1, timeout_ms);
    return n > 0 && (p[0].revents & POLLIN) != 0;
  }

  void Loop() {
    int backoff_ms = 100;
    for (;;) {
      if (!conn_) {
        if (WaitReadable(-1, backoff_ms)) return;
        if (Status st = Connect(); !st.ok()) {
          // A connect to a server that cannot be reached takes its own time (connect_timeout):
          // no long pause on top, so that followers hear of commits soon after it is back.
          backoff_ms = std::min(backoff_ms * 2, 1000);
          continue;
        }
        backoff_ms = 100;
        // Notifications sent while it was down are gone: everyone looks again.
        if (callbacks_.queued) callbacks_.queued();
        if (callbacks_.events) callbacks_.events("");
      }
      if (WaitReadable(conn_->sock(), -1)) return;
      try {
        conn_->get_notifs();
      } catch (const std::exception&) {
        receivers_.clear();
        conn_.reset();
      }
    }
  }

  const std::string url_;
  const StoreWatchCallbacks callbacks_;
  UniqueFd stop_;
  std::unique_ptr<pqxx::connection> conn_;
  std::vector<std::unique_ptr<Receiver>> receivers_;  // before conn_ goes
  std::thread thread_;
};

// A connection, set up; kUnavailable when the server cannot be reached.
Result<std::unique_ptr<pqxx::connection>> Connect(const std::string& url) {
  try {
    auto conn = std::make_unique<pqxx::connection>(url);
    // Keep NOTICEs ("relation already exists, skipping") off the daemon's stderr.
    pqxx::nontransaction setup(*conn);
    setup.exec("SET client_min_messages TO warning");
    setup.commit();
    return conn;
  } catch (const std::exception& e) {
    Error err = PgError(e, "connect");
    err.code = ErrorCode::kUnavailable;
    err.message +=
        "; check that the server is running and the URL's host, port, user and "
        "database are right";
    return err;
  }
}

class PgConnection final : public SqlConnection {
 public:
  PgConnection(std::unique_ptr<pqxx::connection> conn, std::string url)
      : conn_(std::move(conn)), url_(std::move(url)) {}

  std::string_view NotifyStatement() const override { return "SELECT pg_notify($1, $2)"; }

  Result<std::unique_ptr<StoreWatch>> Watch(StoreWatchCallbacks callbacks) override {
    auto watch = std::make_unique<PgWatch>(url_, std::move(callbacks));
    SBX_TRY(watch->Start());
    return std::unique_ptr<StoreWatch>(std::move(watch));
  }

  Status Transact(TxMode, const std::function<Status(SqlTx&)>& body) override {
    std::lock_guard lock(mu_);
    std::optional<pqxx::work> work;
    try {
      work.emplace(*conn_);
    } catch (const std::exception&) {
      // A connection that broke while idle (a partition, a server restart) is found out when a
      // transaction begins. Nothing of this one was sent: it begins again on a new connection.
      auto fresh = Connect(url_);
      if (!fresh.ok()) return WithContext(std::move(fresh).error(), "reconnecting");
      conn_ = std::move(*fresh);
    }
    try {
      if (!work) work.emplace(*conn_);
      PgTx tx(*work);
      Status s = body(tx);
      if (!s.ok()) return s;  // ~work rolls back
      work->commit();
      return Ok();
    } catch (const pqxx::in_doubt_error& e) {
      Error err = PgError(e, "COMMIT");
      err.message += "; the connection broke during commit, so whether it took effect is unknown";
      return err;
    } catch (const std::exception& e) {
      return PgError(e, "transaction");
    }
  }

  std::span<const Migration> Migrations() const override { return kMigrations; }

  std::string LockStatement(LockKey key) const override {
    return "SELECT pg_advisory_xact_lock(" + std::to_string(static_cast<int64_t>(key)) + ")";
  }

  std::string_view ClaimLockClause() const override { return "FOR UPDATE SKIP LOCKED"; }

  std::string_view RowLockClause() const override { return "FOR UPDATE"; }
  std::string SelectorMatches(const std::string& labels_param) const override {
    return "runs.node_selector::jsonb <@ " + labels_param + "::jsonb";
  }

 private:
  std::mutex mu_;
  std::unique_ptr<pqxx::connection> conn_;
  const std::string url_;
};

}  // namespace

Result<std::unique_ptr<SqlConnection>> OpenPostgres(const std::string& url) {
  auto conn = Connect(url);
  if (!conn.ok()) return std::move(conn).error();
  return std::unique_ptr<SqlConnection>(std::make_unique<PgConnection>(std::move(*conn), url));
}

}  // namespace sbx::store::internal
