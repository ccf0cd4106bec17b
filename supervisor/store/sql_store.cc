#include "supervisor/store/sql_store.h"
#include "base/clock.h"

#include <array>
#include <charconv>
#include <chrono>
#include <utility>

#include "supervisor/store/record_codec.h"

namespace sbx::store::internal {

Status CheckLimit(int limit, const char* what) {
  constexpr int kMaxPageSize = 1000;
  if (limit < 1 || limit > kMaxPageSize) {
    return MakeError(ErrorCode::kInvalidArgument, "{} limit {} is out of range; use 1..{}", what,
                     limit, kMaxPageSize);
  }
  return Ok();
}

Status CheckId(std::string_view id, const char* what) {
  bool ok = !id.empty() && id.size() <= 128;
  for (char c : id) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-');
  }
  if (!ok) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "{} id '{}' is malformed; use 1..128 of [A-Za-z0-9_-]", what, id);
  }
  return Ok();
}

Result<int64_t> ParseCursor(std::string_view cursor) {
  int64_t row_no = 0;
  const char* end = cursor.data() + cursor.size();
  auto [ptr, ec] = std::from_chars(cursor.data(), end, row_no);
  if (ec != std::errc() || ptr != end || row_no <= 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "cursor '{}' is malformed; pass next_cursor from the previous page", cursor);
  }
  return row_no;
}

namespace {

constexpr int kVerifyBatch = 500;
const std::string kGenesisHash(64, '0');
constexpr std::array<ColumnKind, 1> kOneInt = {ColumnKind::kInt};
constexpr std::array<ColumnKind, 1> kOneText = {ColumnKind::kText};
constexpr std::array<ColumnKind, 2> kIntText = {ColumnKind::kInt, ColumnKind::kText};
constexpr std::array<ColumnKind, 2> kTextInt = {ColumnKind::kText, ColumnKind::kInt};

std::string StateList(const std::vector<RunState>& states) {
  std::string out;
  for (RunState s : states) {
    if (!out.empty()) out += ", ";
    out += RunStateName(s);
  }
  return out;
}

Result<std::optional<RunRecord>> FirstRun(Result<std::vector<SqlRow>> rows) {
  if (!rows.ok()) return std::move(rows).error();
  if (rows->empty()) return std::optional<RunRecord>();
  auto decoded = DecodeRun(rows->front());
  if (!decoded.ok()) return std::move(decoded).error();
  return std::optional<RunRecord>(std::move(decoded->run));
}

Result<std::optional<RunRecord>> SelectRun(SqlTx& tx, std::string_view where, Params& p) {
  return FirstRun(tx.Query("SELECT " + RunSelectList() + " FROM runs WHERE " + std::string(where),
                           p.values(), RunSelectKinds()));
}

Error RunNotFound(std::string_view run_id) {
  return MakeError(ErrorCode::kNotFound, "run {} not found", run_id);
}

class SqlStore final : public Store {
 public:
  explicit SqlStore(std::unique_ptr<SqlConnection> conn)
      : conn_(std::move(conn)), sandboxes_(*conn_), projects_(*conn_), runners_(*conn_) {}

  Result<MigrateResult> Migrate() override {
    MigrateResult out;
    std::span<const Migration> migrations = conn_->Migrations();
    const int latest = migrations.empty() ? 0 : migrations.back().version;
    SBX_TRY(conn_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
      if (std::string lock = conn_->LockStatement(LockKey::kMigrate); !lock.empty()) {
        SBX_TRY(tx.Query(lock, {}, {}));
      }
      SBX_TRY(tx.ExecScript(
          "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
          "name TEXT NOT NULL, applied_at BIGINT NOT NULL)"));
      auto rows = tx.Query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", {}, kOneInt);
      if (!rows.ok()) return std::move(rows).error();
      const int current = rows->empty() ? 0 : static_cast<int>(IntAt(rows->front(), 0));
      out.from_version = current;
      out.to_version = current;
      if (current > latest) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         "the database schema is at version {}, newer than this sandboxd knows "
                         "({}); upgrade sandboxd or point it at another database",
                         current, latest);
      }
      for (const Migration& m : migrations) {
        if (m.version <= current) continue;
        Status applied = tx.ExecScript(m.sql);
        if (!applied.ok()) {
          return WithContext(std::move(applied).error(),
                             "migration " + std::to_string(m.version) + " (" + m.name + ")");
        }
        std::array<SqlValue, 3> params = {int64_t{m.version}, std::string(m.name), NowMs()};
        SBX_TRY(
            tx.Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    params));
        out.to_version = m.version;
      }
      return Ok();
    }));
    return out;
  }

  Result<CreateRunResult> CreateRun(const RunRecord& input) override {
    RunRecord run = input;
    if (run.submitter.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "a run needs a submitter");
    }
    if (run.state != RunState::kPending) {
      return MakeError(ErrorCode::kInvalidArgument, "a new run starts in PENDING, not {}",
                       RunStateName(run.state));
    }
    if (run.idempotency_key && run.idempotency_key->empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "an idempotency key must not be empty");
    }
    if (run.retry_on_node_loss && !run.idempotency_key) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "retry_on_node_loss: needs an idempotency key (a run queued again after its "
                       "node is lost runs a second time, which only an idempotent request may "
                       "ask for)");
    }
    if (run.id.empty()) run.id = NewRunId();
    SBX_TRY(CheckId(run.id, "run"));
    // Matched inside SQL at every claim (SQLite reads keys as JSON paths).
    SBX_TRY(CheckNodeLabels(run.node_selector, "node_selector"));
    if (run.created_at_ms == 0) run.created_at_ms = NowMs();
    auto row = EncodeRun(run);
    if (!row.ok()) return std::move(row).error();

    std::string columns, placeholders;
    Params insert;
    for (size_t i = 0; i < row->size(); ++i) {
      if (i > 0) {
        columns += ", ";
        placeholders += ", ";
      }
      columns += RunColumns()[i].name;
      placeholders += insert.Add(std::move((*row)[i]));
    }
    const std::string insert_sql = "INSERT INTO runs (" + columns + ") VALUES (" + placeholders +
                                   ") ON CONFLICT (submitter, idempotency_key) DO NOTHING";

    CreateRunResult out;
    SBX_TRY(conn_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
      auto find_existing = [&]() -> Result<std::optional<RunRecord>> {
        Params p;
        std::string where = "submitter = " + p.Add(run.submitter) +
                            " AND idempotency_key = " + p.Add(*run.idempotency_key);
        return SelectRun(tx, where, p);
      };
      if (run.idempotency_key) {
        auto existing = find_existing();
        if (!existing.ok()) return std::move(existing).error();
        if (*existing) {
          out.run = std::move(**existing);
          return Ok();
        }
      }
      auto inserted = tx.Exec(insert_sql, insert.values());
      if (!inserted.ok()) {
        Error e = std::move(inserted).error();
        if (e.code == ErrorCode::kAlreadyExists) e.message = "run id " + run.id + " is taken";
        return e;
      }
      if (*inserted == 0) {
        if (!run.idempotency_key) {
          return MakeError(ErrorCode::kInternal, "insert of run {} changed no row", run.id);
        }
        // Another daemon inserted the same key between our SELECT and INSERT; it committed
        // before ON CONFLICT gave way, so the row is visible now.
        auto existing = find_existing();
        if (!existing.ok()) return std::move(existing).error();
        if (!*existing) {
          return MakeError(ErrorCode::kInternal,
                           "idempotency key of run {} conflicted, but no "
                           "run holds it",
                           run.id);
        }
        out.run = std::move(**existing);
        return Ok();
      }
      for (const auto& [key, value] : run.labels) {
        std::array<SqlValue, 3> p = {run.id, key, value};
        SBX_TRY(tx.Exec("INSERT INTO run_labels (run_id, key, value) VALUES ($1, $2, $3)", p));
      }
      Params p;
      std::string where = "id = " + p.Add(run.id);
      auto stored = SelectRun(tx, where, p);
      if (!stored.ok()) return std::move(stored).error();
      if (!*stored) return MakeError(ErrorCode::kInternal, "run {} vanished on insert", run.id);
      out.run = std::move(**stored);
      out.created = true;
      return Ok();
    }));
    return out;
  }

  Result<RunRecord> GetRun(std::string_view run_id) override {
    std::optional<RunRecord> run;
    SBX_TRY(conn_->Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
      Params p;
      std::string where = "id = " + p.Add(std::string(run_id));
      auto r = SelectRun(tx, where, p);
      if (!r.ok()) return std::move(r).error();
      run = std::move(*r);
      return Ok();
    }));
    if (!run) return RunNotFound(run_id);
    return std::move(*run);
  }

  Result<RunPage> ListRuns(const RunFilter& filter) override {
    SBX_TRY(CheckLimit(filter.limit, "run list"));
    Params p;
    std::string sql = "SELECT " + RunSelectList() + " FROM runs r WHERE 1 = 1";
    if (!filter.cursor.empty()) {
      auto row_no = ParseCursor(filter.cursor);
      if (!row_no.ok()) return std::move(row_no).error();
      sql += " AND r.row_no < " + p.Add(*row_no);
    }
    if (!filter.states.empty()) {
      sql += " AND r.state IN (";
      for (size_t i = 0; i < filter.states.size(); ++i) {
        sql += (i ? ", " : "") + p.Add(std::string(RunStateName(filter.states[i])));
      }
      sql += ")";
    }
    if (filter.submitter) sql += " AND r.submitter = " + p.Add(*filter.submitter);
    if (filter.project_id) sql += " AND r.project_id = " + p.Add(*filter.project_id);
    for (const auto& [key, value] : filter.labels) {
      sql += " AND EXISTS (SELECT 1 FROM run_labels l WHERE l.run_id = r.id AND l.key = " +
             p.Add(key) + " AND l.value = " + p.Add(value) + ")";
    }
    sql += " ORDER BY r.row_no DESC LIMIT " + p.Add(int64_t{filter.limit} + 1);

    RunPage page;
    SBX_TRY(conn_->Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
      auto rows = tx.Query(sql, p.values(), RunSelectKinds());
      if (!rows.ok()) return std::move(rows).error();
      int64_t last_row_no = 0;
      for (const SqlRow& row : *rows) {
        if (page.runs.size() == static_cast<size_t>(filter.limit)) {
          page.next_cursor = std::to_string(last_row_no);
          break;
        }
        auto decoded = DecodeRun(row);
        if (!decoded.ok()) return std::move(decoded).error();
        page.runs.push_back(std::move(decoded->run));
        last_row_no = decoded->row_no;
      }
      return Ok();
    }));
    return page;
  }

  Result<std::optional<RunRecord>> ClaimNextQueued(
      std::string_view node, const std::map<std::string, std::string>& labels) override {
    if (node.empty()) return MakeError(ErrorCode::kInvalidArgument, "claiming needs a node name");
    SBX_TRY(CheckNodeLabels(labels, "node labels"));
    auto labels_json = EncodeJson(nlohmann::json(labels), "node labels");
    if (!labels_json.ok()) return std::move(labels_json).error();
    // PostgreSQL: the subquery locks the oldest matching QUEUED row no other transaction holds
    // (SKIP LOCKED), so concurrent claimers each get a different run instead of queueing behind
    // one. SQLite: the write transaction (BEGIN IMMEDIATE) excludes every other claimer.
    const std::string sql =
        "UPDATE runs SET state = 'RUNNING', node = $1, started_at = $2, attempt = attempt + 1 "
        "WHERE id = (SELECT id FROM runs WHERE state = 'QUEUED' AND (runs.node_selector = '{}' "
        "OR " +
        conn_->SelectorMatches("$3") + ") ORDER BY queued_at, row_no LIMIT 1 " +
        std::string(conn_->ClaimLockClause()) + ") AND state = 'QUEUED' RETURNING " +
        RunSelectList();
    std::array<SqlValue, 3> params = {std::string(node), NowMs(), std::move(*labels_json)};
    std::optional<RunRecord> claimed;
    SBX_TRY(conn_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
      auto r = FirstRun(tx.Query(sql, params, RunSelectKinds()));
      if (!r.ok()) return std::move(r).error();
      claimed = std::move(*r);
      return Ok();
    }));
    return claimed;
  }

  Result<int64_t> CountInState(RunState state) override {
    int64_t count = 0;
    SBX_TRY(conn_->Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
      std::array<SqlValue, 1> p = {std::string(RunStateName(state))};
      auto rows = tx.Query("SELECT COUNT(*) FROM runs WHERE state = $1", p, kOneInt);
      if (!rows.ok()) return std::move(rows).error();
      count = rows->empty() ? 0 : IntAt(rows->front(), 0);
      return Ok();
    }));
    return count;
  }

  Result<std::map<RunState, int64_t>> CountByState() override {
    std::map<RunState, int64_t> counts;
    for (RunState s : AllRunStates()) counts[s] = 0;
    SBX_TRY(conn_->Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
      auto rows = tx.Query("SELECT state, COUNT(*) FROM runs GROUP BY state", {}, kTextInt);
      if (!rows.ok()) return std::move(rows).error();
      for (const SqlRow& row : *rows) {
        auto state = ParseRunState(TextAt(row, 0));
        if (!state.ok()) return std::move(state).error();
        counts[*state] = IntAt(row, 1);
      }
      return Ok();
    }));
    return counts;
  }

  Result<std::vector<EventRecord>> ListEvents(std::string_view run_id, int64_t after_seq,
                                              int limit) override {
    SBX_TRY(CheckLimit(limit, "event list"));
    std::vector<EventRecord> events;
    SBX_TRY(conn_->Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
      std::array<SqlValue, 3> p = {std::string(run_id), after_seq, int64_t{limit}};
      auto rows = tx.Query("SELECT " + EventSelectList() +
                               " FROM events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                           p, EventSelectKinds());
      if (!rows.ok()) return std::move(rows).error();
      for (const SqlRow& row : *rows) {
        auto e = DecodeEvent(row);
        if (!e.ok()) return std::move(e).error();
        events.push_back(std::move(*e));
      }
      if (events.empty()) {
        std::array<SqlValue, 1> id = {std::string(run_id)};
        auto run = tx.Query("SELECT id FROM runs WHERE id = $1", id, kOneText);
        if (!run.ok()) return std::move(run).error();
        if (run->empty()) return RunNotFound(run_id);
      }
      return Ok();
    }));
    return events;
  }

  Result<std::vector<EventRecord>> ListAllEvents(int64_t after_cursor, int limit) override {
    SBX_TRY(CheckLimit(limit, "event list"));
    std::vector<EventRecord> events;
    SBX_TRY(conn_->Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
      std::array<SqlValue, 2> p = {after_cursor, int64_t{limit}};
      auto rows = tx.Query("SELECT " + EventSelectList() +
                               " FROM events WHERE gseq > $1 ORDER BY gseq LIMIT $2",
                           p, EventSelectKinds());
      if (!rows.ok()) return std::move(rows).error();
      for (const SqlRow& row : *rows) {
        auto e = DecodeEvent(row);
        if (!e.ok()) return std::move(e).error();
        events.push_back(std::move(*e));
      }
      return Ok();
    }));
    return events;
  }

  Result<int64_t> LastEventSeq(std::string_view run_id) override {
    std::optional<int64_t> seq;
    SBX_TRY(conn_->Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
      std::array<SqlValue, 1> p = {std::string(run_id)};
      auto rows = tx.Query("SELECT last_event_seq FROM runs WHERE id = $1", p, kOneInt);
      if (!rows.ok()) return std::move(rows).error();
      if (!rows->empty()) seq = IntAt(rows->front(), 0);
      return Ok();
    }));
    if (!seq) return RunNotFound(run_id);
    return *seq;
  }

  Result<int64_t> LatestEventCursor() override {
    int64_t cursor = 0;
    SBX_TRY(conn_->Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
      auto rows = tx.Query("SELECT COALESCE(MAX(gseq), 0) FROM events", {}, kOneInt);
      if (!rows.ok()) return std::move(rows).error();
      cursor = rows->empty() ? 0 : IntAt(rows->front(), 0);
      return Ok();
    }));
    return cursor;
  }

  Result<Committed> Commit(std::span<const Write> writes) override {
    const std::string* run_id = nullptr;
    bool audits = false;
    for (const Write& w : writes) {
      const std::string* named = nullptr;
      if (const auto* t = std::get_if<TransitionWrite>(&w)) named = &t->run_id;
      if (const auto* e = std::get_if<EventWrite>(&w)) named = &e->run_id;
      if (std::holds_alternative<AuditWrite>(w)) audits = true;
      if (named == nullptr) continue;
      if (run_id != nullptr && *run_id != *named) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "one commit changes one run; it names {} and {}", *run_id, *named);
      }
      run_id = named;
    }
    Committed out;
    SBX_TRY(conn_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
      out = Committed{};  // a retried transaction starts afresh
      // Locks in one order everywhere, so commits never deadlock: the audit chain's (taken
      // first, for the whole transaction), the run's row, the event counter.
      if (std::string lock = conn_->LockStatement(LockKey::kAudit); audits && !lock.empty()) {
        SBX_TRY(tx.Query(lock, {}, {}));
      }
      bool queued = false;
      for (const Write& w : writes) {
        if (const auto* t = std::get_if<TransitionWrite>(&w)) {
          auto run = ApplyTransition(tx, *t);
          if (!run.ok()) return std::move(run).error();
          queued = queued || t->to == RunState::kQueued;
          out.runs.push_back(std::move(*run));
        } else if (const auto* e = std::get_if<EventWrite>(&w)) {
          auto event = ApplyEvent(tx, *e);
          if (!event.ok()) return std::move(event).error();
          out.events.push_back(std::move(*event));
        } else if (const auto* a = std::get_if<AuditWrite>(&w)) {
          auto rec = ApplyAudit(tx, *a);
          if (!rec.ok()) return std::move(rec).error();
          out.audits.push_back(std::move(*rec));
        } else {
          SBX_TRY(ApplyRunnerAck(tx, std::get<RunnerAckWrite>(w)));
        }
      }
      // Other daemons learn of it when it commits.
      if (!out.events.empty()) SBX_TRY(Notify(tx, kEventsChannel, *run_id));
      if (queued) SBX_TRY(Notify(tx, kQueueChannel, ""));
      return Ok();
    }));
    return out;
  }

  Result<std::vector<AuditRecord>> ListAudit(const AuditFilter& filter) override {
    SBX_TRY(CheckLimit(filter.limit, "audit list"));
    Params p;
    std::string sql =
        "SELECT " + AuditSelectList() + " FROM audit WHERE id > " + p.Add(filter.after_id);
    if (filter.run_id) sql += " AND run_id = " + p.Add(*filter.run_id);
    sql += " ORDER BY id LIMIT " + p.Add(int64_t{filter.limit});
    std::vector<AuditRecord> out;
    SBX_TRY(conn_->Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
      auto rows = tx.Query(sql, p.values(), AuditSelectKinds());
      if (!rows.ok()) return std::move(rows).error();
      for (const SqlRow& row : *rows) {
        auto rec = DecodeAudit(row);
        if (!rec.ok()) return std::move(rec).error();
        out.push_back(std::move(*rec));
      }
      return Ok();
    }));
    return out;
  }

  Result<AuditVerification> VerifyAudit() override {
    AuditVerification v;
    std::string expected_prev = kGenesisHash;
    int64_t last_id = 0;
    auto broken = [&](int64_t id, std::string problem) {
      v.ok = false;
      v.first_broken_id = id;
      v.problem = std::move(problem);
    };
    while (v.ok) {
      std::vector<SqlRow> rows;
      SBX_TRY(conn_->Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
        std::array<SqlValue, 2> p = {last_id, int64_t{kVerifyBatch}};
        auto r = tx.Query(
            "SELECT " + AuditSelectList() + " FROM audit WHERE id > $1 ORDER BY id LIMIT $2", p,
            AuditSelectKinds());
        if (!r.ok()) return std::move(r).error();
        rows = std::move(*r);
        return Ok();
      }));
      if (rows.empty()) break;
      for (const SqlRow& row : rows) {
        const int64_t id = IntAt(row, 0);
        if (id != last_id + 1) {
          broken(id, last_id + 1 == id - 1 ? "record " + std::to_string(last_id + 1) + " is missing"
                                           : "records " + std::to_string(last_id + 1) + ".." +
                                                 std::to_string(id - 1) + " are missing");
          break;
        }
        auto rec = DecodeAudit(row);
        if (!rec.ok()) {
          broken(id, rec.error().message);
          break;
        }
        if (rec->prev_hash != expected_prev) {
          broken(id, "prev_hash does not match the hash of record " + std::to_string(last_id) +
                         ": that record was changed");
          break;
        }
        auto hash = AuditHash(*rec);
        if (!hash.ok()) {
          broken(id, hash.error().message);
          break;
        }
        if (*hash != rec->hash) {
          broken(id, "its contents do not match its hash: the record was changed");
          break;
        }
        ++v.records_checked;
        expected_prev = rec->hash;
        last_id = id;
      }
    }
    return v;
  }

  Result<NodeRecord> RegisterNode(const NodeRecord& self) override {
    if (self.name.empty()) return MakeError(ErrorCode::kInvalidArgument, "a node needs a name");
    SBX_TRY(CheckNodeLabels(self.labels, "node labels"));
    auto labels = EncodeJson(nlohmann::json(self.labels), "node labels");
    if (!labels.ok()) return std::move(labels).error();
    for (const std::string* text : {&self.name, &self.version, &self.address}) {
      SBX_TRY(EncodeJson(*text, "node"));
    }
    const int64_t now = NowMs();
    std::array<SqlValue, 7> p = {self.name,    now,           std::move(*labels),
                                 self.capacity, self.version, self.address,
                                 now};
    NodeRecord out;
    SBX_TRY(conn_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
      // A node that comes back after being declared lost is ready again; a drained one stays
      // drained until an operator says otherwise.
      SBX_TRY(tx.Exec(
          "INSERT INTO nodes (name, last_heartbeat, state, labels, capacity, version, address, "
          "started_at) VALUES ($1, $2, 'ready', $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE "
          "SET last_heartbeat = excluded.last_heartbeat, labels = excluded.labels, capacity = "
          "excluded.capacity, version = excluded.version, address = excluded.address, "
          "started_at = excluded.started_at, state = CASE WHEN nodes.state = 'draining' THEN "
          "'draining' ELSE 'ready' END",
          p));
      auto got = SelectNodes(tx, self.name);
      if (!got.ok()) return std::move(got).error();
      if (got->empty()) return MakeError(ErrorCode::kInternal, "node {} vanished", self.name);
      out = std::move(got->front());
      return Ok();
    }));
    return out;
  }

  Result<NodeState> Heartbeat(std::string_view node) override {
    if (node.empty()) return MakeError(ErrorCode::kInvalidArgument, "a heartbeat needs a node");
    SBX_TRY(EncodeJson(std::string(node), "node"));
    NodeState state = NodeState::kReady;
    SBX_TRY(conn_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
      // The time once connected and in the transaction: a beat that waited for the connection
      // (or the lock) is stamped when it is made, not when it was asked for.
      std::array<SqlValue, 2> p = {std::string(node), NowMs()};
      auto rows = tx.Query("UPDATE nodes SET last_heartbeat = $2 WHERE name = $1 RETURNING state",
                           p, kOneText);
      if (!rows.ok()) return std::move(rows).error();
      if (rows->empty()) {
        state = NodeState::kReady;
        SBX_TRY(tx.Exec("INSERT INTO nodes (name, last_heartbeat) VALUES ($1, $2)", p));
        return Ok();
      }
      auto parsed = ParseNodeState(TextAt(rows->front(), 0));
      if (!parsed.ok()) return std::move(parsed).error();
      state = *parsed;
      return Ok();
    }));
    return state;
  }

  Result<std::vector<NodeRecord>> ListNodes() override {
    std::vector<NodeRecord> nodes;
    SBX_TRY(conn_->Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
      auto got = SelectNodes(tx, std::nullopt);
      if (!got.ok()) return std::move(got).error();
      nodes = std::move(*got);
      return Ok();
    }));
    return nodes;
  }

  Result<NodeRecord> SetNodeState(std::string_view node, NodeState state) override {
    if (state == NodeState::kLost) {
      return MakeError(ErrorCode::kInvalidArgument, "a node is declared lost by DeclareNodeLost");
    }
    std::array<SqlValue, 2> p = {std::string(node), std::string(NodeStateName(state))};
    NodeRecord out;
    SBX_TRY(conn_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
      // A lost node leaves that state only by registering again (RegisterNode).
      auto rows = tx.Query(
          "UPDATE nodes SET state = $2 WHERE name = $1 AND state <> 'lost' RETURNING name", p,
          kOneText);
      if (!rows.ok()) return std::move(rows).error();
      if (rows->empty()) {
        auto existing = SelectNodes(tx, std::string(node));
        if (!existing.ok()) return std::move(existing).error();
        if (existing->empty()) return MakeError(ErrorCode::kNotFound, "no node named '{}'", node);
        return MakeError(ErrorCode::kFailedPrecondition,
                         "node {} is lost; it is ready again when it registers (its daemon "
                         "starts or reaches the database again)",
                         node);
      }
      auto got = SelectNodes(tx, std::string(node));
      if (!got.ok()) return std::move(got).error();
      out = std::move(got->front());
      return Ok();
    }));
    return out;
  }

  Result<std::optional<LostNodeRuns>> DeclareNodeLost(std::string_view node,
                                                      int64_t stale_before_ms) override {
    if (node.empty()) return MakeError(ErrorCode::kInvalidArgument, "recovery needs a node name");
    auto result = EncodeResult(RunResult{.reason = {EndCode::kNodeLost}});
    if (!result.ok()) return std::move(result).error();
    std::optional<LostNodeRuns> out;
    SBX_TRY(conn_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
      out.reset();  // a retried transaction starts afresh
      // The compare-and-set on the node's row: of several nodes noticing, one wins.
      std::array<SqlValue, 2> claim = {std::string(node), stale_before_ms};
      auto won = tx.Query(
          "UPDATE nodes SET state = 'lost' WHERE name = $1 AND state <> 'lost' AND "
          "last_heartbeat < $2 RETURNING name",
          claim, kOneText);
      if (!won.ok()) return std::move(won).error();
      if (won->empty()) return Ok();
      LostNodeRuns runs;
      const int64_t now = NowMs();
      std::array<SqlValue, 2> requeue = {std::string(node), now};
      auto requeued = tx.Query(
          "UPDATE runs SET state = 'QUEUED', node = NULL, queued_at = $2, started_at = NULL "
          "WHERE node = $1 AND state = 'RUNNING' AND retry_on_node_loss = 1 AND "
          "idempotency_key IS NOT NULL RETURNING id",
          requeue, kOneText);
      if (!requeued.ok()) return std::move(requeued).error();
      for (const SqlRow& row : *requeued) runs.requeued.push_back(TextAt(row, 0));
      if (!runs.requeued.empty()) SBX_TRY(Notify(tx, kQueueChannel, ""));
      std::array<SqlValue, 3> fail = {now, *result, std::string(node)};
      auto failed = tx.Query(
          "UPDATE runs SET state = 'FAILED', finished_at = $1, result = $2 WHERE node = $3 AND "
          "state = 'RUNNING' RETURNING id",
          fail, kOneText);
      if (!failed.ok()) return std::move(failed).error();
      for (const SqlRow& row : *failed) runs.failed.push_back(TextAt(row, 0));
      out = std::move(runs);
      return Ok();
    }));
    return out;
  }

  Result<std::unique_ptr<StoreWatch>> Watch(StoreWatchCallbacks callbacks) override {
    return conn_->Watch(std::move(callbacks));
  }

  Result<std::vector<std::string>> RecoverStale(std::string_view node, EndCode reason) override {
    if (node.empty()) return MakeError(ErrorCode::kInvalidArgument, "recovery needs a node name");
    auto result = EncodeResult(RunResult{.reason = {reason}});
    if (!result.ok()) return std::move(result).error();
    std::array<SqlValue, 3> p = {NowMs(), *result, std::string(node)};
    std::vector<std::string> ids;
    SBX_TRY(conn_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
      auto rows = tx.Query(
          "UPDATE runs SET state = 'FAILED', finished_at = $1, result = $2 WHERE node = $3 AND "
          "state = 'RUNNING' RETURNING id",
          p, kOneText);
      if (!rows.ok()) return std::move(rows).error();
      for (const SqlRow& row : *rows) ids.push_back(TextAt(row, 0));
      return Ok();
    }));
    return ids;
  }

  Result<CreateSandboxResult> CreateSandbox(const SandboxRecord& sandbox) override {
    return sandboxes_.CreateSandbox(sandbox);
  }
  Result<SandboxRecord> GetSandbox(std::string_view sandbox_id) override {
    return sandboxes_.GetSandbox(sandbox_id);
  }
  Result<SandboxPage> ListSandboxes(const SandboxFilter& filter) override {
    return sandboxes_.ListSandboxes(filter);
  }
  Result<SandboxRecord> UpdateSandbox(std::string_view sandbox_id,
                                      const std::vector<SandboxState>& from, SandboxState to,
                                      const SandboxUpdate& update) override {
    return sandboxes_.UpdateSandbox(sandbox_id, from, to, update);
  }
  Result<ProcessRecord> CreateProcess(const ProcessRecord& process) override {
    return sandboxes_.CreateProcess(process);
  }
  Result<ProcessRecord> GetProcess(std::string_view sandbox_id,
                                   std::string_view id_or_tag) override {
    return sandboxes_.GetProcess(sandbox_id, id_or_tag);
  }
  Result<std::vector<ProcessRecord>> ListProcesses(std::string_view sandbox_id,
                                                   const ProcessFilter& filter) override {
    return sandboxes_.ListProcesses(sandbox_id, filter);
  }
  Result<ProcessRecord> UpdateProcess(std::string_view sandbox_id, int64_t process_id,
                                      const std::vector<ProcessState>& from, ProcessState to,
                                      const ProcessUpdate& update) override {
    return sandboxes_.UpdateProcess(sandbox_id, process_id, from, to, update);
  }
  Result<std::vector<std::string>> RecoverStaleSandboxes(std::string_view node,
                                                         EndCode reason) override {
    return sandboxes_.RecoverStaleSandboxes(node, reason);
  }

  Result<RunnerRecord> PutRunner(std::string_view name, std::string_view token_sha256,
                                 std::string_view by) override {
    return runners_.PutRunner(name, token_sha256, by);
  }
  Result<RunnerRecord> GetRunner(std::string_view name) override {
    return runners_.GetRunner(name);
  }
  Result<std::optional<RunnerRecord>> FindRunnerByToken(std::string_view token_sha256) override {
    return runners_.FindRunnerByToken(token_sha256);
  }
  Result<RunnerRecord> RevokeRunner(std::string_view name, std::string_view by) override {
    return runners_.RevokeRunner(name, by);
  }
  Result<std::vector<RunnerRecord>> ListRunners() override { return runners_.ListRunners(); }

  Result<ProjectRecord> CreateProject(const ProjectRecord& project) override {
    return projects_.CreateProject(project);
  }
  Result<ProjectRecord> GetProject(std::string_view id_or_name) override {
    return projects_.GetProject(id_or_name);
  }
  Result<ProjectPage> ListProjects(const ProjectFilter& filter) override {
    return projects_.ListProjects(filter);
  }
  Result<ProjectRecord> UpdateProject(std::string_view id, int64_t expected_version,
                                      const ProjectRecord& project) override {
    return projects_.UpdateProject(id, expected_version, project);
  }
  Status DeleteProject(std::string_view id) override { return projects_.DeleteProject(id); }
  Result<PlanRecord> CreatePlan(const PlanRecord& plan) override {
    return projects_.CreatePlan(plan);
  }
  Result<PlanRecord> GetPlan(std::string_view plan_id) override {
    return projects_.GetPlan(plan_id);
  }
  Result<std::vector<PlanRecord>> ListPlans(std::string_view project_id, int limit) override {
    return projects_.ListPlans(project_id, limit);
  }

 private:
  // The notification of `channel` (with the run's id for events) for other processes.
  Status Notify(SqlTx& tx, std::string_view channel, const std::string& run_id) {
    const std::string_view sql = conn_->NotifyStatement();
    if (sql.empty()) return Ok();
    std::string payload = NotificationOrigin();
    if (!run_id.empty()) payload += "\n" + run_id;
    std::array<SqlValue, 2> p = {std::string(channel), std::move(payload)};
    SBX_TRY(tx.Query(sql, p, {}));
    return Ok();
  }

  // Every node, or the one named, with its RUNNING runs counted.
  static Result<std::vector<NodeRecord>> SelectNodes(SqlTx& tx,
                                                     const std::optional<std::string>& name) {
    static constexpr std::array<ColumnKind, 9> kinds = {
        ColumnKind::kText, ColumnKind::kInt, ColumnKind::kText, ColumnKind::kText,
        ColumnKind::kInt,  ColumnKind::kText, ColumnKind::kText, ColumnKind::kInt,
        ColumnKind::kInt};
    Params p;
    std::string sql =
        "SELECT n.name, n.last_heartbeat, n.state, n.labels, n.capacity, n.version, n.address, "
        "n.started_at, (SELECT COUNT(*) FROM runs r WHERE r.node = n.name AND r.state = "
        "'RUNNING') FROM nodes n";
    if (name) sql += " WHERE n.name = " + p.Add(*name);
    sql += " ORDER BY n.name";
    auto rows = tx.Query(sql, p.values(), kinds);
    if (!rows.ok()) return std::move(rows).error();
    std::vector<NodeRecord> nodes;
    for (const SqlRow& row : *rows) {
      NodeRecord n;
      n.name = TextAt(row, 0);
      n.last_heartbeat_ms = IntAt(row, 1);
      auto state = ParseNodeState(TextAt(row, 2));
      if (!state.ok()) return std::move(state).error();
      n.state = *state;
      try {
        n.labels = nlohmann::json::parse(TextAt(row, 3)).get<std::map<std::string, std::string>>();
      } catch (const std::exception& e) {
        return MakeError(ErrorCode::kInternal, "node {} has malformed labels: {}", n.name,
                         e.what());
      }
      n.capacity = IntAt(row, 4);
      n.version = TextAt(row, 5);
      n.address = TextAt(row, 6);
      n.started_at_ms = IntAt(row, 7);
      n.running = IntAt(row, 8);
      nodes.push_back(std::move(n));
    }
    return nodes;
  }

  static Result<RunRecord> ApplyTransition(SqlTx& tx, const TransitionWrite& w) {
    const std::string& run_id = w.run_id;
    const RunState to = w.to;
    const RunUpdate& update = w.update;
    if (w.from.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "a transition to {} needs expected states",
                       RunStateName(to));
    }
    for (RunState f : w.from) {
      if (!IsLegalTransition(f, to)) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "run state {} -> {} is not a legal "
                         "transition",
                         RunStateName(f), RunStateName(to));
      }
    }
    Params p;
    const int64_t now = NowMs();
    std::string sets = "state = " + p.Add(std::string(RunStateName(to)));
    if (to == RunState::kQueued) sets += ", queued_at = " + p.Add(now);
    if (to == RunState::kRunning) sets += ", started_at = " + p.Add(now);
    if (IsTerminal(to)) sets += ", finished_at = " + p.Add(now);
    auto set_json = [&](const char* column, Result<std::string> text) -> Status {
      if (!text.ok()) return std::move(text).error();
      sets += std::string(", ") + column + " = " + p.Add(std::move(*text));
      return Ok();
    };
    if (update.policy) SBX_TRY(set_json("policy", EncodeJson(*update.policy, "policy")));
    if (update.approval) SBX_TRY(set_json("approval", EncodeApproval(*update.approval)));
    if (update.limits) SBX_TRY(set_json("limits", EncodeLimits(*update.limits)));
    if (update.result) SBX_TRY(set_json("result", EncodeResult(*update.result)));
    if (update.node) {
      SBX_TRY(EncodeJson(*update.node, "node"));
      sets += ", node = " + p.Add(*update.node);
    }
    std::string sql =
        "UPDATE runs SET " + sets + " WHERE id = " + p.Add(run_id) + " AND state IN (";
    for (size_t i = 0; i < w.from.size(); ++i) {
      sql += (i ? ", " : "") + p.Add(std::string(RunStateName(w.from[i])));
    }
    sql += ")";
    if (w.if_last_event_seq) sql += " AND last_event_seq = " + p.Add(*w.if_last_event_seq);
    if (w.if_attempt) sql += " AND attempt = " + p.Add(*w.if_attempt);
    sql += " RETURNING " + RunSelectList();

    auto r = FirstRun(tx.Query(sql, p.values(), RunSelectKinds()));
    if (!r.ok()) return std::move(r).error();
    if (*r) return std::move(**r);
    std::array<SqlValue, 1> id = {run_id};
    auto rows = tx.Query("SELECT state, attempt FROM runs WHERE id = $1", id, kTextInt);
    if (!rows.ok()) return std::move(rows).error();
    if (rows->empty()) return RunNotFound(run_id);
    auto current = ParseRunState(TextAt(rows->front(), 0));
    const bool in_from =
        current.ok() && std::find(w.from.begin(), w.from.end(), *current) != w.from.end();
    if (in_from && w.if_attempt && IntAt(rows->front(), 1) != *w.if_attempt) {
      return MakeError(ErrorCode::kAborted,
                       "run {} was claimed again (attempt {}, not {}): another node runs it",
                       run_id, IntAt(rows->front(), 1), *w.if_attempt);
    }
    if (in_from && w.if_last_event_seq) {
      return MakeError(ErrorCode::kAborted, "run {} changed meanwhile; read it again", run_id);
    }
    return MakeError(ErrorCode::kFailedPrecondition,
                     "run {} is {}; moving it to {} needs it to be {}", run_id,
                     TextAt(rows->front(), 0), RunStateName(to), StateList(w.from));
  }

  static Result<EventRecord> ApplyEvent(SqlTx& tx, const EventWrite& w) {
    auto text = EncodeJson(w.data, "event data");
    if (!text.ok()) return std::move(text).error();
    EventRecord event{.run_id = w.run_id, .type = w.type, .ts_ms = NowMs(), .data = w.data};
    // The row lock taken by this UPDATE serialises appends to one run across connections.
    std::array<SqlValue, 1> id = {event.run_id};
    auto rows = tx.Query(
        "UPDATE runs SET last_event_seq = last_event_seq + 1 WHERE id = $1 "
        "RETURNING last_event_seq",
        id, kOneInt);
    if (!rows.ok()) return std::move(rows).error();
    if (rows->empty()) return RunNotFound(w.run_id);
    event.seq = IntAt(rows->front(), 0);
    // Taken after the run's row (always in this order, so appends never deadlock) and held
    // until commit: cursors follow commit order across connections.
    auto counter = tx.Query(
        "UPDATE event_counter SET value = value + 1 WHERE id = 1 RETURNING value", {}, kOneInt);
    if (!counter.ok()) return std::move(counter).error();
    if (counter->empty()) {
      return MakeError(ErrorCode::kInternal, "the event_counter row is missing");
    }
    event.cursor = IntAt(counter->front(), 0);
    std::array<SqlValue, 6> p = {event.run_id, event.seq,        std::string(EventTypeName(w.type)),
                                 event.ts_ms,  std::move(*text), event.cursor};
    SBX_TRY(
        tx.Exec("INSERT INTO events (run_id, seq, type, ts, data, gseq) VALUES ($1, $2, $3, "
                "$4, $5, $6)",
                p));
    return event;
  }

  // The caller holds the chain's lock (Commit takes it).
  static Result<AuditRecord> ApplyAudit(SqlTx& tx, const AuditWrite& w) {
    if (w.actor.empty() || w.action.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "an audit record needs an actor and action");
    }
    auto details_text = EncodeJson(w.details, "audit details");
    if (!details_text.ok()) return std::move(details_text).error();
    AuditRecord rec;
    rec.actor = w.actor;
    rec.action = w.action;
    rec.run_id = w.run_id;
    rec.details = w.details;
    auto last = tx.Query("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1", {}, kIntText);
    if (!last.ok()) return std::move(last).error();
    rec.id = last->empty() ? 1 : IntAt(last->front(), 0) + 1;
    rec.prev_hash = last->empty() ? kGenesisHash : TextAt(last->front(), 1);
    rec.ts_ms = NowMs();
    auto hash = AuditHash(rec);
    if (!hash.ok()) return std::move(hash).error();
    rec.hash = std::move(*hash);
    std::array<SqlValue, 8> p = {rec.id,
                                 rec.ts_ms,
                                 rec.actor,
                                 rec.action,
                                 rec.run_id ? SqlValue(*rec.run_id) : SqlValue(),
                                 std::move(*details_text),
                                 rec.prev_hash,
                                 rec.hash};
    SBX_TRY(tx.Exec(
        "INSERT INTO audit (" + AuditSelectList() + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        p));
    return rec;
  }

  std::unique_ptr<SqlConnection> conn_;
  SqlSandboxes sandboxes_;
  SqlProjects projects_;
  SqlRunners runners_;
};

}  // namespace

std::unique_ptr<Store> MakeSqlStore(std::unique_ptr<SqlConnection> conn) {
  return std::make_unique<SqlStore>(std::move(conn));
}

}  // namespace sbx::store::internal
