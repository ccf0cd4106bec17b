// The sandbox and process half of the SQL store (store.h, "Long-lived sandboxes and their
// processes"). A change of state reads the row under its lock (SELECT … FOR UPDATE on PostgreSQL;
// on SQLite the write transaction, BEGIN IMMEDIATE, excludes every other writer), checks that it
// is in an expected state, and writes it back: a compare-and-set that two daemons sharing one
// database never both win. Locks are taken in one order, a sandbox's row before its processes'
// rows, so the calls never deadlock each other.
#include <array>
#include <charconv>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "supervisor/store/record_codec.h"
#include "supervisor/store/sql_store.h"

namespace sbx::store::internal {
namespace {

constexpr std::array<ColumnKind, 1> kOneInt = {ColumnKind::kInt};
constexpr std::array<ColumnKind, 1> kOneText = {ColumnKind::kText};

const char* Name(SandboxState s) { return SandboxStateName(s); }
const char* Name(ProcessState s) { return ProcessStateName(s); }

// "(" $n, … ")" for `state IN …`, the names as parameters.
template <typename State>
std::string InList(Params& p, const std::vector<State>& states) {
  std::string out = "(";
  for (size_t i = 0; i < states.size(); ++i) {
    out += (i ? ", " : "") + p.Add(std::string(Name(states[i])));
  }
  return out + ")";
}

// "RUNNING, PAUSED", for messages.
template <typename State>
std::string StateList(const std::vector<State>& states) {
  std::string out;
  for (State s : states) {
    if (!out.empty()) out += ", ";
    out += Name(s);
  }
  return out;
}

template <typename State>
bool Contains(const std::vector<State>& states, State s) {
  for (State x : states) {
    if (x == s) return true;
  }
  return false;
}

Error SandboxNotFound(std::string_view sandbox_id) {
  return MakeError(ErrorCode::kNotFound, "sandbox {} not found", sandbox_id);
}

// Whether all of `text` is decimal digits: a process id rather than a tag.
bool IsDecimal(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

Result<std::optional<SandboxRecord>> FirstSandbox(Result<std::vector<SqlRow>> rows) {
  if (!rows.ok()) return std::move(rows).error();
  if (rows->empty()) return std::optional<SandboxRecord>();
  auto decoded = DecodeSandbox(rows->front());
  if (!decoded.ok()) return std::move(decoded).error();
  return std::optional<SandboxRecord>(std::move(decoded->sandbox));
}

// The sandbox `where` selects; `suffix` follows the WHERE clause (a lock clause).
Result<std::optional<SandboxRecord>> SelectSandbox(SqlTx& tx, std::string_view where,
                                                   const Params& p, std::string_view suffix = "") {
  return FirstSandbox(tx.Query("SELECT " + SandboxSelectList() + " FROM sandboxes WHERE " +
                                   std::string(where) + " " + std::string(suffix),
                               p.values(), SandboxSelectKinds()));
}

Result<std::optional<ProcessRecord>> FirstProcess(Result<std::vector<SqlRow>> rows) {
  if (!rows.ok()) return std::move(rows).error();
  if (rows->empty()) return std::optional<ProcessRecord>();
  auto decoded = DecodeProcess(rows->front());
  if (!decoded.ok()) return std::move(decoded).error();
  return std::optional<ProcessRecord>(std::move(*decoded));
}

// kNotFound for a process that is not there, naming what is missing: the sandbox or the process.
Error ProcessNotFound(SqlTx& tx, std::string_view sandbox_id, std::string_view id_or_tag) {
  std::array<SqlValue, 1> id = {std::string(sandbox_id)};
  auto rows = tx.Query("SELECT id FROM sandboxes WHERE id = $1", id, kOneText);
  if (!rows.ok()) return std::move(rows).error();
  if (rows->empty()) return SandboxNotFound(sandbox_id);
  return MakeError(ErrorCode::kNotFound, "sandbox {} has no process {}", sandbox_id, id_or_tag);
}

// Writes back a sandbox read under its lock; returns it as stored.
Result<SandboxRecord> WriteSandbox(SqlTx& tx, const SandboxRecord& sandbox) {
  auto row = EncodeSandbox(sandbox);
  if (!row.ok()) return std::move(row).error();
  std::array<SqlValue, 4> p = {std::move(row->state), row->node ? SqlValue(*row->node) : SqlValue(),
                               std::move(row->doc), sandbox.id};
  auto stored = FirstSandbox(
      tx.Query("UPDATE sandboxes SET state = $1, node = $2, doc = $3 WHERE id = $4 RETURNING " +
                   SandboxSelectList(),
               p, SandboxSelectKinds()));
  if (!stored.ok()) return std::move(stored).error();
  if (!*stored) return MakeError(ErrorCode::kInternal, "sandbox {} vanished on update", sandbox.id);
  return std::move(**stored);
}

// Writes back a process read under its lock; returns it as stored.
Result<ProcessRecord> WriteProcess(SqlTx& tx, const ProcessRecord& process) {
  auto row = EncodeProcess(process);
  if (!row.ok()) return std::move(row).error();
  std::array<SqlValue, 4> p = {std::move(row->state), std::move(row->doc), row->sandbox_id,
                               row->id};
  auto stored = FirstProcess(
      tx.Query("UPDATE sandbox_processes SET state = $1, doc = $2 WHERE sandbox_id = $3 AND id = "
               "$4 RETURNING " +
                   ProcessSelectList(),
               p, ProcessSelectKinds()));
  if (!stored.ok()) return std::move(stored).error();
  if (!*stored) {
    return MakeError(ErrorCode::kInternal, "process {} of sandbox {} vanished on update",
                     process.id, process.sandbox_id);
  }
  return std::move(**stored);
}

// The process's state and the timestamps that come with it: started_at on entering RUNNING,
// finished_at on a terminal state.
void MoveProcess(ProcessRecord& process, ProcessState to, int64_t now) {
  process.state = to;
  if (to == ProcessState::kRunning && !process.started_at_ms) process.started_at_ms = now;
  if (IsTerminal(to) && !process.finished_at_ms) process.finished_at_ms = now;
}

}  // namespace

Result<CreateSandboxResult> SqlSandboxes::CreateSandbox(const SandboxRecord& input) {
  SandboxRecord sandbox = input;
  if (sandbox.submitter.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "a sandbox needs a submitter");
  }
  if (sandbox.state != SandboxState::kPending) {
    return MakeError(ErrorCode::kInvalidArgument, "a new sandbox starts in PENDING, not {}",
                     SandboxStateName(sandbox.state));
  }
  if (sandbox.idempotency_key && sandbox.idempotency_key->empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "an idempotency key must not be empty");
  }
  if (sandbox.id.empty()) sandbox.id = NewSandboxId();
  SBX_TRY(CheckId(sandbox.id, "sandbox"));
  if (sandbox.created_at_ms == 0) sandbox.created_at_ms = NowMs();
  if (sandbox.last_activity_ms == 0) sandbox.last_activity_ms = sandbox.created_at_ms;
  auto row = EncodeSandbox(sandbox);
  if (!row.ok()) return std::move(row).error();

  Params insert;
  const std::string insert_sql =
      "INSERT INTO sandboxes (id, submitter, state, node, idempotency_key, created_at, doc) "
      "VALUES (" +
      insert.Add(row->id) + ", " + insert.Add(row->submitter) + ", " + insert.Add(row->state) +
      ", " + insert.Add(row->node ? SqlValue(*row->node) : SqlValue()) + ", " +
      insert.Add(row->idempotency_key ? SqlValue(*row->idempotency_key) : SqlValue()) + ", " +
      insert.Add(row->created_at) + ", " + insert.Add(row->doc) +
      ") ON CONFLICT (submitter, idempotency_key) DO NOTHING";

  CreateSandboxResult out;
  SBX_TRY(conn_.Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
    auto find_existing = [&]() -> Result<std::optional<SandboxRecord>> {
      Params p;
      std::string where = "submitter = " + p.Add(sandbox.submitter) +
                          " AND idempotency_key = " + p.Add(*sandbox.idempotency_key);
      return SelectSandbox(tx, where, p);
    };
    if (sandbox.idempotency_key) {
      auto existing = find_existing();
      if (!existing.ok()) return std::move(existing).error();
      if (*existing) {
        out.sandbox = std::move(**existing);
        return Ok();
      }
    }
    auto inserted = tx.Exec(insert_sql, insert.values());
    if (!inserted.ok()) {
      Error e = std::move(inserted).error();
      if (e.code == ErrorCode::kAlreadyExists) e.message = "sandbox id " + sandbox.id + " is taken";
      return e;
    }
    if (*inserted == 0) {
      if (!sandbox.idempotency_key) {
        return MakeError(ErrorCode::kInternal, "insert of sandbox {} changed no row", sandbox.id);
      }
      // Another daemon inserted the same key between our SELECT and INSERT; it committed
      // before ON CONFLICT gave way, so the row is visible now.
      auto existing = find_existing();
      if (!existing.ok()) return std::move(existing).error();
      if (!*existing) {
        return MakeError(ErrorCode::kInternal,
                         "idempotency key of sandbox {} conflicted, but no sandbox holds it",
                         sandbox.id);
      }
      out.sandbox = std::move(**existing);
      return Ok();
    }
    for (const auto& [key, value] : sandbox.labels) {
      std::array<SqlValue, 3> p = {sandbox.id, key, value};
      SBX_TRY(
          tx.Exec("INSERT INTO sandbox_labels (sandbox_id, key, value) VALUES ($1, $2, $3)", p));
    }
    Params p;
    auto stored = SelectSandbox(tx, "id = " + p.Add(sandbox.id), p);
    if (!stored.ok()) return std::move(stored).error();
    if (!*stored) {
      return MakeError(ErrorCode::kInternal, "sandbox {} vanished on insert", sandbox.id);
    }
    out.sandbox = std::move(**stored);
    out.created = true;
    return Ok();
  }));
  return out;
}

Result<SandboxRecord> SqlSandboxes::GetSandbox(std::string_view sandbox_id) {
  std::optional<SandboxRecord> sandbox;
  SBX_TRY(conn_.Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
    Params p;
    auto r = SelectSandbox(tx, "id = " + p.Add(std::string(sandbox_id)), p);
    if (!r.ok()) return std::move(r).error();
    sandbox = std::move(*r);
    return Ok();
  }));
  if (!sandbox) return SandboxNotFound(sandbox_id);
  return std::move(*sandbox);
}

Result<SandboxPage> SqlSandboxes::ListSandboxes(const SandboxFilter& filter) {
  SBX_TRY(CheckLimit(filter.limit, "sandbox list"));
  Params p;
  std::string sql = "SELECT " + SandboxSelectList() + " FROM sandboxes s WHERE 1 = 1";
  if (!filter.cursor.empty()) {
    auto row_no = ParseCursor(filter.cursor);
    if (!row_no.ok()) return std::move(row_no).error();
    sql += " AND s.row_no < " + p.Add(*row_no);
  }
  if (!filter.states.empty()) sql += " AND s.state IN " + InList(p, filter.states);
  if (filter.submitter) sql += " AND s.submitter = " + p.Add(*filter.submitter);
  if (filter.node) sql += " AND s.node = " + p.Add(*filter.node);
  for (const auto& [key, value] : filter.labels) {
    sql += " AND EXISTS (SELECT 1 FROM sandbox_labels l WHERE l.sandbox_id = s.id AND l.key = " +
           p.Add(key) + " AND l.value = " + p.Add(value) + ")";
  }
  sql += " ORDER BY s.row_no DESC LIMIT " + p.Add(int64_t{filter.limit} + 1);

  SandboxPage page;
  SBX_TRY(conn_.Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
    auto rows = tx.Query(sql, p.values(), SandboxSelectKinds());
    if (!rows.ok()) return std::move(rows).error();
    int64_t last_row_no = 0;
    for (const SqlRow& row : *rows) {
      if (page.sandboxes.size() == static_cast<size_t>(filter.limit)) {
        page.next_cursor = std::to_string(last_row_no);
        break;
      }
      auto decoded = DecodeSandbox(row);
      if (!decoded.ok()) return std::move(decoded).error();
      page.sandboxes.push_back(std::move(decoded->sandbox));
      last_row_no = decoded->row_no;
    }
    return Ok();
  }));
  return page;
}

Result<SandboxRecord> SqlSandboxes::UpdateSandbox(std::string_view sandbox_id,
                                                  const std::vector<SandboxState>& from,
                                                  SandboxState to, const SandboxUpdate& update) {
  if (from.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "an update to {} needs expected states",
                     SandboxStateName(to));
  }
  for (SandboxState f : from) {
    if (f != to && !IsLegalSandboxTransition(f, to)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "sandbox state {} -> {} is not a legal transition", SandboxStateName(f),
                       SandboxStateName(to));
    }
  }
  SandboxRecord out;
  SBX_TRY(conn_.Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
    Params p;
    auto current =
        SelectSandbox(tx, "id = " + p.Add(std::string(sandbox_id)), p, conn_.RowLockClause());
    if (!current.ok()) return std::move(current).error();
    if (!*current) return SandboxNotFound(sandbox_id);
    SandboxRecord& s = **current;
    if (!Contains(from, s.state)) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "sandbox {} is {}; moving it to {} needs it to be {}", sandbox_id,
                       SandboxStateName(s.state), SandboxStateName(to), StateList(from));
    }
    const int64_t now = NowMs();
    s.state = to;
    if (to == SandboxState::kRunning && !s.started_at_ms) s.started_at_ms = now;
    if (IsTerminal(to) && !s.ended_at_ms) s.ended_at_ms = now;
    if (update.policy) s.policy = *update.policy;
    if (update.approval) s.approval = *update.approval;
    if (update.node) s.node = *update.node;
    if (update.last_activity_ms) s.last_activity_ms = *update.last_activity_ms;
    if (update.reason) s.reason = *update.reason;
    if (update.backend_used) s.backend_used = *update.backend_used;
    if (update.info) s.info = *update.info;
    auto stored = WriteSandbox(tx, s);
    if (!stored.ok()) return std::move(stored).error();
    out = std::move(*stored);
    return Ok();
  }));
  return out;
}

Result<ProcessRecord> SqlSandboxes::CreateProcess(const ProcessRecord& input) {
  ProcessRecord process = input;
  if (process.submitter.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "a process needs a submitter");
  }
  if (process.state != ProcessState::kAwaitingReview) {
    return MakeError(ErrorCode::kInvalidArgument, "a new process starts in AWAITING_REVIEW, not {}",
                     ProcessStateName(process.state));
  }
  if (process.id != 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "process id {} was given; leave it 0, the store numbers a sandbox's "
                     "processes",
                     process.id);
  }
  // GetProcess reads a string of digits as an id, so such a tag could never be looked up.
  if (IsDecimal(process.tag)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "tag '{}' is all digits and would read as a process id; use a tag with a "
                     "non-digit",
                     process.tag);
  }
  if (process.created_at_ms == 0) process.created_at_ms = NowMs();
  auto row = EncodeProcess(process);
  if (!row.ok()) return std::move(row).error();

  ProcessRecord out;
  SBX_TRY(conn_.Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
    // The row lock this UPDATE takes serialises the sandbox's id counter across connections,
    // and a sandbox that ended (committed) before it is not matched.
    Params p;
    std::string sql = "UPDATE sandboxes SET next_process_id = next_process_id + 1 WHERE id = " +
                      p.Add(process.sandbox_id) + " AND state IN " +
                      InList(p, NonTerminalSandboxStates()) + " RETURNING next_process_id - 1";
    auto next = tx.Query(sql, p.values(), kOneInt);
    if (!next.ok()) return std::move(next).error();
    if (next->empty()) {
      std::array<SqlValue, 1> id = {process.sandbox_id};
      auto state = tx.Query("SELECT state FROM sandboxes WHERE id = $1", id, kOneText);
      if (!state.ok()) return std::move(state).error();
      if (state->empty()) return SandboxNotFound(process.sandbox_id);
      return MakeError(ErrorCode::kFailedPrecondition,
                       "sandbox {} is {}; an ended sandbox takes no new processes",
                       process.sandbox_id, TextAt(state->front(), 0));
    }
    const int64_t id = IntAt(next->front(), 0);
    std::array<SqlValue, 7> values = {row->sandbox_id,
                                      id,
                                      row->tag ? SqlValue(*row->tag) : SqlValue(),
                                      row->state,
                                      row->created_at,
                                      row->doc,
                                      row->stdin_data};
    auto stored = FirstProcess(tx.Query("INSERT INTO sandbox_processes (" + ProcessSelectList() +
                                            ") VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING " +
                                            ProcessSelectList(),
                                        values, ProcessSelectKinds()));
    if (!stored.ok()) return std::move(stored).error();
    if (!*stored) {
      return MakeError(ErrorCode::kInternal, "insert of process {} of sandbox {} returned no row",
                       id, process.sandbox_id);
    }
    out = std::move(**stored);
    return Ok();
  }));
  return out;
}

Result<ProcessRecord> SqlSandboxes::GetProcess(std::string_view sandbox_id,
                                               std::string_view id_or_tag) {
  Params p;
  std::string sql = "SELECT " + ProcessSelectList() +
                    " FROM sandbox_processes WHERE sandbox_id = " + p.Add(std::string(sandbox_id));
  if (IsDecimal(id_or_tag)) {
    int64_t id = 0;
    auto [ptr, ec] = std::from_chars(id_or_tag.data(), id_or_tag.data() + id_or_tag.size(), id);
    if (ec != std::errc()) {
      return MakeError(ErrorCode::kNotFound, "sandbox {} has no process {}", sandbox_id, id_or_tag);
    }
    sql += " AND id = " + p.Add(id);
  } else {
    sql += " AND tag = " + p.Add(std::string(id_or_tag)) + " ORDER BY id DESC LIMIT 1";
  }
  std::optional<ProcessRecord> process;
  SBX_TRY(conn_.Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
    auto r = FirstProcess(tx.Query(sql, p.values(), ProcessSelectKinds()));
    if (!r.ok()) return std::move(r).error();
    if (!*r) return ProcessNotFound(tx, sandbox_id, id_or_tag);
    process = std::move(*r);
    return Ok();
  }));
  return std::move(*process);
}

Result<std::vector<ProcessRecord>> SqlSandboxes::ListProcesses(std::string_view sandbox_id,
                                                               const ProcessFilter& filter) {
  SBX_TRY(CheckLimit(filter.limit, "process list"));
  Params p;
  std::string sql = "SELECT " + ProcessSelectList() +
                    " FROM sandbox_processes WHERE sandbox_id = " + p.Add(std::string(sandbox_id)) +
                    " AND id > " + p.Add(filter.after_id);
  if (filter.tag) {
    // "" is no tag, kept as NULL.
    sql += filter.tag->empty() ? " AND tag IS NULL" : " AND tag = " + p.Add(*filter.tag);
  }
  if (!filter.states.empty()) sql += " AND state IN " + InList(p, filter.states);
  sql += " ORDER BY id LIMIT " + p.Add(int64_t{filter.limit});

  std::vector<ProcessRecord> out;
  SBX_TRY(conn_.Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
    auto rows = tx.Query(sql, p.values(), ProcessSelectKinds());
    if (!rows.ok()) return std::move(rows).error();
    for (const SqlRow& row : *rows) {
      auto process = DecodeProcess(row);
      if (!process.ok()) return std::move(process).error();
      out.push_back(std::move(*process));
    }
    if (out.empty()) {
      std::array<SqlValue, 1> id = {std::string(sandbox_id)};
      auto sandbox = tx.Query("SELECT id FROM sandboxes WHERE id = $1", id, kOneText);
      if (!sandbox.ok()) return std::move(sandbox).error();
      if (sandbox->empty()) return SandboxNotFound(sandbox_id);
    }
    return Ok();
  }));
  return out;
}

Result<ProcessRecord> SqlSandboxes::UpdateProcess(std::string_view sandbox_id, int64_t process_id,
                                                  const std::vector<ProcessState>& from,
                                                  ProcessState to, const ProcessUpdate& update) {
  if (from.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "a process update to {} needs expected states",
                     ProcessStateName(to));
  }
  for (ProcessState f : from) {
    if (!IsLegalProcessTransition(f, to)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "process state {} -> {} is not a legal transition", ProcessStateName(f),
                       ProcessStateName(to));
    }
  }
  ProcessRecord out;
  SBX_TRY(conn_.Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
    Params p;
    const std::string sql =
        "SELECT " + ProcessSelectList() +
        " FROM sandbox_processes WHERE sandbox_id = " + p.Add(std::string(sandbox_id)) +
        " AND id = " + p.Add(process_id) + " " + std::string(conn_.RowLockClause());
    auto current = FirstProcess(tx.Query(sql, p.values(), ProcessSelectKinds()));
    if (!current.ok()) return std::move(current).error();
    if (!*current) return ProcessNotFound(tx, sandbox_id, std::to_string(process_id));
    ProcessRecord& process = **current;
    if (!Contains(from, process.state)) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "process {} of sandbox {} is {}; moving it to {} needs it to be {}",
                       process_id, sandbox_id, ProcessStateName(process.state),
                       ProcessStateName(to), StateList(from));
    }
    MoveProcess(process, to, NowMs());
    if (update.approval) process.approval = *update.approval;
    if (update.result) process.result = *update.result;
    auto stored = WriteProcess(tx, process);
    if (!stored.ok()) return std::move(stored).error();
    out = std::move(*stored);
    return Ok();
  }));
  return out;
}

Result<std::vector<std::string>> SqlSandboxes::RecoverStaleSandboxes(std::string_view node,
                                                                    EndCode reason) {
  if (node.empty()) return MakeError(ErrorCode::kInvalidArgument, "recovery needs a node name");
  static const std::vector<SandboxState> kLive = {SandboxState::kStarting, SandboxState::kRunning,
                                                  SandboxState::kPaused};
  static const std::vector<ProcessState> kUnfinished = {ProcessState::kAwaitingReview,
                                                        ProcessState::kRunning};
  std::vector<std::string> ids;
  SBX_TRY(conn_.Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
    ids.clear();  // a retried transaction starts afresh
    const int64_t now = NowMs();
    Params p;
    std::string sql = "SELECT " + SandboxSelectList() +
                      " FROM sandboxes WHERE node = " + p.Add(std::string(node)) +
                      " AND state IN " + InList(p, kLive) + " ORDER BY row_no " +
                      std::string(conn_.RowLockClause());
    auto rows = tx.Query(sql, p.values(), SandboxSelectKinds());
    if (!rows.ok()) return std::move(rows).error();
    for (const SqlRow& row : *rows) {
      auto decoded = DecodeSandbox(row);
      if (!decoded.ok()) return std::move(decoded).error();
      SandboxRecord& s = decoded->sandbox;
      s.state = SandboxState::kFailed;
      s.reason = EndReason{reason, ""};
      if (!s.ended_at_ms) s.ended_at_ms = now;
      auto stored = WriteSandbox(tx, s);
      if (!stored.ok()) return std::move(stored).error();

      Params pp;
      std::string psql = "SELECT " + ProcessSelectList() +
                         " FROM sandbox_processes WHERE sandbox_id = " + pp.Add(s.id) +
                         " AND state IN " + InList(pp, kUnfinished) + " ORDER BY id " +
                         std::string(conn_.RowLockClause());
      auto processes = tx.Query(psql, pp.values(), ProcessSelectKinds());
      if (!processes.ok()) return std::move(processes).error();
      for (const SqlRow& prow : *processes) {
        auto process = DecodeProcess(prow);
        if (!process.ok()) return std::move(process).error();
        // A process that ran ended with its daemon; one awaiting review never will be run.
        MoveProcess(*process,
                    process->state == ProcessState::kRunning ? ProcessState::kFinished
                                                             : ProcessState::kCancelled,
                    now);
        if (!process->result) process->result.emplace();
        process->result->reason = EndReason{reason, ""};
        auto written = WriteProcess(tx, *process);
        if (!written.ok()) return std::move(written).error();
      }
      ids.push_back(s.id);
    }
    return Ok();
  }));
  return ids;
}

}  // namespace sbx::store::internal
