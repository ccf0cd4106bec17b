// Persistence for runs, their events and the audit trail, behind one interface with a SQLite and
// a PostgreSQL backend.
//
// A run moves through exactly these states:
//
//   PENDING -> PLANNED -> AWAITING_REVIEW -> QUEUED -> RUNNING -> SUCCEEDED
//                                                             \-> FAILED
//   any non-terminal state -> CANCELLED      any non-terminal state -> FAILED
//
// (IsLegalTransition() is the table.) Every state change is a compare-and-set: Transition()
// names the states it expects the run to be in, and changes nothing when it is in another one.
// Several daemons may share one PostgreSQL database; ClaimNextQueued() hands each QUEUED run to
// exactly one of them, one whose labels match the run's node_selector. One more edge exists for
// them: a RUNNING run whose node was declared lost goes back to QUEUED when it asked for that
// (retry_on_node_loss, with an idempotency key); each claim counts an attempt.
//
// Thread safety: a Store is safe to use from several threads; each instance holds one database
// connection and serialises its own calls on it. For parallelism, open several Stores.
// Timestamps are milliseconds since the Unix epoch, taken from the store host's clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/result.h"
#include "supervisor/store/end_reason.h"
#include "supervisor/store/project_records.h"
#include "supervisor/store/runner_records.h"
#include "supervisor/store/sandbox_records.h"

namespace sbx::store {

enum class RunState {
  kPending,
  kPlanned,
  kAwaitingReview,
  kQueued,
  kRunning,
  kSucceeded,
  kFailed,
  kCancelled,
};

// "PENDING", "AWAITING_REVIEW", … (the spelling stored in the database and shown by the API).
const char* RunStateName(RunState state);
Result<RunState> ParseRunState(std::string_view name);
bool IsTerminal(RunState state);
// Whether the state machine allows `from` -> `to` (never `from` -> `from`).
bool IsLegalTransition(RunState from, RunState to);
// Every state, in lifecycle order; and the non-terminal ones (the states a cancel may start from).
const std::vector<RunState>& AllRunStates();
const std::vector<RunState>& NonTerminalRunStates();

// "run_" followed by 20 random base32 characters (100 bits from getrandom(2)).
std::string NewRunId();

struct Step {
  std::string name;
  std::vector<std::string> argv;
  bool operator==(const Step&) const = default;
};

// Unset means "the daemon's default".
// A host directory shown at /workspace: read-only ("ro") or copy-on-write ("cow": the run's
// writes land in its own overlay layer, never in the host directory).
// A pinned checkout instead (sha set): the tree of commit `sha` of `repo` (a URL or a local
// path), made for the run and removed after it; path is then "". "ro": a change the run makes
// to it fails the run (checkout_dirty); "cow": its changes come back as diff.patch.
struct Workspace {
  std::string path;
  std::string mode = "ro";
  std::string repo;
  std::string sha;  // 40 lowercase hex; "" for a host directory
  bool operator==(const Workspace&) const = default;
};

struct Limits {
  std::optional<double> cpus;
  std::optional<int64_t> memory_bytes;
  std::optional<int64_t> pids;
  std::optional<int64_t> timeout_s;
  std::optional<int64_t> output_bytes;
  bool operator==(const Limits&) const = default;
};
// {"cpus", "memory_bytes", "pids", "timeout_s", "output_bytes"}, only those set: as stored.
nlohmann::json LimitsToJson(const Limits& limits);

// One reviewer's approval of a run that needs several.
struct ReviewVote {
  std::string by;  // the reviewer's API key name
  int64_t at_ms = 0;
  std::string comment;
  std::string plan_sha256;  // the plan the reviewer saw (PlanSha256), "" when not given
  bool operator==(const ReviewVote&) const = default;
};
// {"by", "at_ms", "comment", "plan_sha256"}: as stored, and as the API shows it.
nlohmann::json ReviewVoteJson(const ReviewVote& vote);

struct Approval {
  // An API key name, or "policy" for an automatic approval; "" while the run still waits for
  // more of the `required` votes.
  std::string approved_by;
  int64_t approved_at_ms = 0;
  std::string rule;  // the policy rule or review that approved it
  int required = 1;  // distinct reviewers the policy asked for
  std::vector<ReviewVote> votes;  // the reviewers' approvals so far, in order
  bool operator==(const Approval&) const = default;
};

// A syscall the run's seccomp profile refused with an error, and how often.
struct SeccompDenial {
  std::string syscall;
  int64_t count = 0;
  bool operator==(const SeccompDenial&) const = default;
};

struct StepResult {
  std::string name;
  EndReason reason;  // how the step ended: exited, signaled, timed_out, oom_killed, …
  std::optional<int> exit_code;
  std::optional<int> signal;
  int64_t wall_ms = 0;
  int64_t cpu_ms = 0;
  int64_t memory_peak_bytes = 0;
  std::vector<SeccompDenial> seccomp_denials;  // most frequent first
  bool operator==(const StepResult&) const = default;
};

// How long one phase of a run's execution took (Executor's phases: "queued", "start",
// "dir_and_logs", "choose_backend", "workspace", "create_sandbox", "steps", "release_sandbox",
// "take_outputs", "settle_cancel"; the end's own commit is timed in the metrics only).
struct PhaseTime {
  std::string phase;
  int64_t us = 0;
  bool operator==(const PhaseTime&) const = default;
};

// How a run ended. `reason` is set for every terminal run ("supervisor_restart" for one
// recovered by RecoverStale()).
struct RunResult {
  EndReason reason;
  std::string backend;  // the backend that ran it ("native", "docker"); "" when none did
  bool output_truncated = false;  // output past limits.output_bytes was discarded
  std::optional<int> exit_code;
  std::optional<int> signal;
  int64_t wall_ms = 0;
  int64_t cpu_ms = 0;
  int64_t memory_peak_bytes = 0;
  std::vector<StepResult> steps;
  std::vector<SeccompDenial> seccomp_denials;  // every step's, added up; most frequent first
  // The layers the run's sandbox had (namespaces, network, cgroup, seccomp profile, user,
  // capabilities), as the engine reported them; null when no sandbox was built.
  nlohmann::json isolation;
  std::vector<PhaseTime> timeline;  // in order; what ran before the end was recorded
  bool operator==(const RunResult&) const = default;
};

// What a client asks for. The idempotency check compares requests whole: the same key must
// mean the same request.
struct RunRequest {
  // Either argv (one command) or steps (an ordered list of commands).
  std::vector<std::string> argv;
  std::vector<Step> steps;
  Limits limits;
  std::string network;  // network mode name, e.g. "none"
  std::string seccomp_profile;
  std::map<std::string, std::string> env;
  std::string stdin_data;  // bytes fed to the program's stdin; may hold NULs
  std::optional<Workspace> workspace;
  std::map<std::string, std::string> labels;
  std::optional<std::string> idempotency_key;  // unique per submitter
  std::string backend;  // the backend asked for: "native", "docker", "auto" ("" = the default)
  std::string image;    // Docker: the image to run in; "" = none named
  std::string project_id;  // the project it belongs to; "" = none
  // Only a node carrying every one of these labels (key=value) may run it; empty: any node.
  std::map<std::string, std::string> node_selector;
  // When its node is lost while it runs: back to QUEUED (it must carry an idempotency key, so
  // that running it again is what the client asked for) instead of FAILED (node_lost).
  bool retry_on_node_loss = false;
  bool operator==(const RunRequest&) const = default;
};

// What the store keeps of a run: its request (as the review resolved it: defaults filled in)
// and what became of it.
struct RunRecord : RunRequest {
  std::string id;         // empty in CreateRun: NewRunId() is used
  std::string submitter;  // API key name
  RunState state = RunState::kPending;
  nlohmann::json policy;  // the policy decision, as the policy engine wrote it; null until planned
  std::optional<Approval> approval;
  std::optional<std::string> node;  // the daemon host that claimed it
  int64_t created_at_ms = 0;
  std::optional<int64_t> queued_at_ms;
  std::optional<int64_t> started_at_ms;
  std::optional<int64_t> finished_at_ms;
  std::optional<RunResult> result;
  // How many times a node claimed it (1 for a run that ran once; more after a requeue). A
  // node's writes about its execution carry it (TransitionWrite::if_attempt), so a node that
  // lost the run to another cannot end it.
  int64_t attempt = 0;

  const RunRequest& request() const { return *this; }
};

// Fields a Transition() sets together with the state; unset ones keep their value. The
// timestamps are set by the store: queued_at on entering QUEUED, started_at on RUNNING,
// finished_at on any terminal state.
struct RunUpdate {
  std::optional<nlohmann::json> policy;
  std::optional<Approval> approval;
  std::optional<Limits> limits;  // e.g. the planner filled in defaults
  std::optional<std::string> node;
  std::optional<RunResult> result;
};

struct RunFilter {
  std::vector<RunState> states;               // any of these; empty: every state
  std::map<std::string, std::string> labels;  // every key=value must match
  std::optional<std::string> submitter;
  std::optional<std::string> project_id;
  std::string cursor;  // next_cursor of the previous page; empty: the newest run
  int limit = 50;      // 1..1000
};

struct RunPage {
  std::vector<RunRecord> runs;  // newest first
  std::string next_cursor;      // empty when this is the last page
};

struct CreateRunResult {
  RunRecord run;
  bool created = false;  // false: the submitter's idempotency key named an existing run
};

enum class EventType {
  kRunStatus,        // "run.status"
  kStepStarted,      // "step.started"
  kStepLog,          // "step.log"
  kStepFinished,     // "step.finished"
  kArtifactCreated,  // "artifact.created"
  kRunCompleted,     // "run.completed"
};
const char* EventTypeName(EventType type);
Result<EventType> ParseEventType(std::string_view name);

struct EventRecord {
  std::string run_id;
  int64_t seq = 0;  // 1, 2, 3, … per run, without gaps
  // Position among every run's events (ListAllEvents): strictly increasing in commit order, also
  // across daemons sharing the database.
  int64_t cursor = 0;
  EventType type = EventType::kRunStatus;
  int64_t ts_ms = 0;
  nlohmann::json data;
};

// One entry of the append-only audit trail. hash = hex(SHA-256(prev_hash + "\n" + canonical))
// where canonical is the compact JSON object {action, actor, details, id, run_id, ts} with sorted
// keys (AuditCanonical()). The first record's prev_hash is 64 zeros.
struct AuditRecord {
  int64_t id = 0;  // 1, 2, 3, … in chain order
  int64_t ts_ms = 0;
  std::string actor;
  std::string action;
  std::optional<std::string> run_id;
  nlohmann::json details;
  std::string prev_hash;
  std::string hash;
};

struct AuditFilter {
  std::optional<std::string> run_id;
  int64_t after_id = 0;  // oldest first, starting after this id
  int limit = 100;       // 1..1000
};

// What VerifyAudit() found. A deleted or edited record breaks the chain at that record or the
// next; a truncated tail cannot be seen from inside the database (compare the last hash with a
// copy kept elsewhere for that).
struct AuditVerification {
  bool ok = true;
  int64_t records_checked = 0;
  std::optional<int64_t> first_broken_id;
  std::string problem;  // what is wrong with first_broken_id
};

// A node: a daemon sharing the store. ready: takes work; draining: finishes what it runs and
// takes nothing new; lost: stopped beating, and what it ran was ended or requeued by another.
enum class NodeState { kReady, kDraining, kLost };
const char* NodeStateName(NodeState state);
Result<NodeState> ParseNodeState(std::string_view name);

struct NodeRecord {
  std::string name;
  int64_t last_heartbeat_ms = 0;
  NodeState state = NodeState::kReady;
  std::map<std::string, std::string> labels;  // matched against runs' node_selector
  int64_t capacity = 0;                       // runs it executes at once
  std::string version;                        // the daemon's
  std::string address;                        // where other nodes and clients reach its API
  int64_t started_at_ms = 0;                  // when it last registered
  int64_t running = 0;                        // ListNodes: its RUNNING runs now
};

// Node labels and node selectors: a key of 1 to 63 letters, digits, '.', '_', '-' or '/',
// starting with a letter or digit; a value of at most 63 of those or ':'. kInvalidArgument
// naming `field` and the offending key otherwise.
Status CheckNodeLabels(const std::map<std::string, std::string>& labels, std::string_view field);

// What DeclareNodeLost() did to the lost node's runs.
struct LostNodeRuns {
  std::vector<std::string> failed;    // RUNNING -> FAILED (node_lost)
  std::vector<std::string> requeued;  // RUNNING -> QUEUED (retry_on_node_loss)
};

struct MigrateResult {
  int from_version = 0;
  int to_version = 0;
};

// The writes Commit() applies together. Each is what Transition(), AppendEvent() or
// AppendAudit() writes alone.
struct TransitionWrite {
  std::string run_id;
  std::vector<RunState> from;
  RunState to = RunState::kPending;
  RunUpdate update;
  // Only if no event was appended to the run since LastEventSeq() answered this (kAborted
  // otherwise): a change computed from what was read, such as a reviewer's vote, is never
  // applied over another made meanwhile.
  std::optional<int64_t> if_last_event_seq;
  // Only if the run's attempt is this one (kAborted otherwise: it was requeued and claimed
  // again since).
  std::optional<int64_t> if_attempt;
};
struct EventWrite {
  std::string run_id;
  EventType type = EventType::kRunStatus;
  nlohmann::json data;
};
struct AuditWrite {
  std::string actor;
  std::string action;
  std::optional<std::string> run_id;  // nullopt: a record about the daemon, not a run
  nlohmann::json details;
};
// That a runner's outbox entry `seq` is committed with the other writes: only if the last one
// recorded is seq - 1 and the runner's token is not revoked (kAborted otherwise, and nothing of
// the commit is written), so an entry a dropped link made the runner send twice is applied once.
struct RunnerAckWrite {
  std::string runner;
  int64_t seq = 0;
};
using Write = std::variant<TransitionWrite, EventWrite, AuditWrite, RunnerAckWrite>;

// What Commit() wrote, each list in the order of its writes.
struct Committed {
  std::vector<RunRecord> runs;  // per TransitionWrite, the run after it
  std::vector<EventRecord> events;
  std::vector<AuditRecord> audits;
};

// The canonical text hashed for an audit record (see AuditRecord).
Result<std::string> AuditCanonical(const AuditRecord& record);
// hex(SHA-256(prev_hash + "\n" + AuditCanonical(record))).
Result<std::string> AuditHash(const AuditRecord& record);

// What other daemons sharing the database commit, as they commit it (Store::Watch).
struct StoreWatchCallbacks {
  std::function<void(const std::string& run_id)> events;  // events of this run were committed
  std::function<void()> queued;                           // a run entered QUEUED
};
class StoreWatch {
 public:
  virtual ~StoreWatch() = default;  // stops watching; no callback runs after it returns
};

class Store {
 public:
  virtual ~Store() = default;

  // Reports what other processes sharing the database commit, on a thread of its own: their
  // events (the run named) and runs they queue, so that a node wakes the clients following a
  // run another node executes, and claims a run another node queued, when it happens. This
  // process's own commits are not reported (its event bus delivers them). nullptr where no
  // other process can share the database (SQLite). The watch reconnects after a broken
  // connection and then reports `queued` and an empty run id for `events` (anything may have
  // been missed).
  virtual Result<std::unique_ptr<StoreWatch>> Watch(StoreWatchCallbacks callbacks) = 0;

  // Creates or upgrades the schema, applying the missing versioned migrations in order in one
  // transaction; a no-op when the schema is current. Concurrent Migrate() calls from several
  // daemons are serialised. Fails with kFailedPrecondition when the database was migrated by a
  // newer sandboxd. Every other call needs a migrated database.
  virtual Result<MigrateResult> Migrate() = 0;

  // Stores a new run in PENDING (run.state must be kPending; id and created_at are filled in when
  // empty). When the submitter already has a run with this idempotency key, returns that run
  // unchanged with created = false. kInvalidArgument: no submitter, a malformed id, a non-PENDING
  // state or a string that is not UTF-8; kAlreadyExists: the id is taken.
  virtual Result<CreateRunResult> CreateRun(const RunRecord& run) = 0;
  // kNotFound when there is no such run.
  virtual Result<RunRecord> GetRun(std::string_view run_id) = 0;
  virtual Result<RunPage> ListRuns(const RunFilter& filter) = 0;

  // Compare-and-set: moves the run to `to` and applies `update` only when its current state is
  // one of `from`; returns the updated run. kFailedPrecondition (an HTTP 409) when it is in
  // another state, and then nothing changed; kNotFound when there is no such run;
  // kInvalidArgument when some `from` -> `to` is not a legal transition.
  Result<RunRecord> Transition(std::string_view run_id, const std::vector<RunState>& from,
                               RunState to, const RunUpdate& update);
  // Transition(run_id, NonTerminalRunStates(), kCancelled) with result.reason = "cancelled".
  Result<RunRecord> Cancel(std::string_view run_id);

  // Atomically takes the oldest QUEUED run (by queued_at) whose node_selector `labels` satisfy,
  // moves it to RUNNING with node = `node` and attempt + 1, and returns it; nullopt when there is
  // none. Two callers, in this process or on other daemons sharing the database, never get the
  // same run.
  virtual Result<std::optional<RunRecord>> ClaimNextQueued(
      std::string_view node, const std::map<std::string, std::string>& labels = {}) = 0;
  // Every state, with 0 for the empty ones.
  virtual Result<std::map<RunState, int64_t>> CountByState() = 0;
  // How many runs are in `state`; unlike CountByState(), its cost follows that count, not the
  // number of runs in the database.
  virtual Result<int64_t> CountInState(RunState state) = 0;

  // Appends an event with the run's next seq (atomically, also against other daemons).
  // kNotFound when there is no such run.
  Result<EventRecord> AppendEvent(std::string_view run_id, EventType type,
                                  const nlohmann::json& data);
  // Events with seq > after_seq, oldest first, at most `limit` (1..1000). kNotFound when there
  // is no such run.
  virtual Result<std::vector<EventRecord>> ListEvents(std::string_view run_id, int64_t after_seq,
                                                      int limit) = 0;
  // Every run's events with cursor > after_cursor, in cursor order, at most `limit` (1..1000).
  virtual Result<std::vector<EventRecord>> ListAllEvents(int64_t after_cursor, int limit) = 0;
  // The cursor of the last event committed (0 when there is none): ListAllEvents from it gives
  // only what is committed afterwards.
  virtual Result<int64_t> LatestEventCursor() = 0;
  // The seq of the run's last event (0 before any); kNotFound when there is no such run. Read
  // it before the run itself to make a TransitionWrite conditional on both.
  virtual Result<int64_t> LastEventSeq(std::string_view run_id) = 0;

  // Appends to the hash chain (serialised across daemons). run_id may name a run that does not
  // exist (any more).
  Result<AuditRecord> AppendAudit(std::string_view actor, std::string_view action,
                                  std::optional<std::string_view> run_id,
                                  const nlohmann::json& details);

  // Applies `writes` in order, in one transaction: every one of them, or (when one fails, with
  // its error) none. A state change and the event and audit record that tell of it land
  // together, and a run's few records of one moment cost one commit instead of several. Every
  // transition and event names the same run (kInvalidArgument otherwise); audit records may
  // name any.
  virtual Result<Committed> Commit(std::span<const Write> writes) = 0;
  virtual Result<std::vector<AuditRecord>> ListAudit(const AuditFilter& filter) = 0;
  // Walks the whole chain in id order. A broken chain is a successful call with ok = false; an
  // error means the walk itself failed.
  virtual Result<AuditVerification> VerifyAudit() = 0;

  // A daemon's start: stores `self` (labels, capacity, version, address) with started_at and
  // last_heartbeat now. A new node, or one declared lost, is ready; a draining one stays
  // draining. Returns the node as stored.
  virtual Result<NodeRecord> RegisterNode(const NodeRecord& self) = 0;
  // Records that `node` is alive now (registering it, ready, when it is unknown) and returns the
  // state it had: kLost tells a node that others took its runs while it was unreachable.
  virtual Result<NodeState> Heartbeat(std::string_view node) = 0;
  // Every node, by name, with its running count.
  virtual Result<std::vector<NodeRecord>> ListNodes() = 0;
  // ready <-> draining (kInvalidArgument for kLost). kNotFound for an unknown node;
  // kFailedPrecondition for a lost one (it is ready again when it registers).
  virtual Result<NodeRecord> SetNodeState(std::string_view node, NodeState state) = 0;
  // Declares `node` lost when its last heartbeat is older than `stale_before_ms` and it is not
  // lost already, and in the same transaction ends its RUNNING runs: back to QUEUED those with
  // retry_on_node_loss and an idempotency key, FAILED (node_lost) the others. nullopt when it
  // is not stale or another caller declared it first: of several nodes noticing, one acts, once.
  virtual Result<std::optional<LostNodeRuns>> DeclareNodeLost(std::string_view node,
                                                              int64_t stale_before_ms) = 0;
  // Crash recovery: moves every RUNNING run of `node` to FAILED with result.reason
  // "supervisor_restart" and returns their ids. Call it for the local node at start, before
  // claiming, or for a node whose heartbeat stopped. The caller appends the events.
  // `reason`: kSupervisorRestart, or kNodeLost for the runs a fenced node (exec/heartbeat.h)
  // killed and could not end itself.
  virtual Result<std::vector<std::string>> RecoverStale(
      std::string_view node, EndCode reason = EndCode::kSupervisorRestart) = 0;

  // ---- Long-lived sandboxes and their processes (sandbox_records.h) ----------------------------
  // Stores a new sandbox in PENDING (id, created_at and last_activity filled in when empty). With
  // the submitter's idempotency key already used, returns that sandbox with created = false.
  // kInvalidArgument: no submitter, a malformed id, a state other than PENDING, a string that is
  // not UTF-8; kAlreadyExists: the id is taken.
  virtual Result<CreateSandboxResult> CreateSandbox(const SandboxRecord& sandbox) = 0;
  // kNotFound when there is no such sandbox.
  virtual Result<SandboxRecord> GetSandbox(std::string_view sandbox_id) = 0;
  virtual Result<SandboxPage> ListSandboxes(const SandboxFilter& filter) = 0;
  // Compare-and-set: when the sandbox is in one of `from`, moves it to `to` and applies
  // `update`. `to` may be one of `from` (an update without a state change: a touch, new info).
  // kFailedPrecondition (nothing changed) when it is in another state; kNotFound; and
  // kInvalidArgument for a `from` -> `to` that is not legal (other than staying).
  virtual Result<SandboxRecord> UpdateSandbox(std::string_view sandbox_id,
                                              const std::vector<SandboxState>& from,
                                              SandboxState to, const SandboxUpdate& update) = 0;
  // Stores a new process of a sandbox with the sandbox's next id (1, 2, 3, …; atomically),
  // created_at filled in. kNotFound without the sandbox; kFailedPrecondition when the sandbox is
  // STOPPED or FAILED; kInvalidArgument as for CreateSandbox.
  virtual Result<ProcessRecord> CreateProcess(const ProcessRecord& process) = 0;
  // `id_or_tag`: the decimal id, or a tag (the newest process carrying it). kNotFound.
  virtual Result<ProcessRecord> GetProcess(std::string_view sandbox_id,
                                           std::string_view id_or_tag) = 0;
  // Oldest first. kNotFound without the sandbox.
  virtual Result<std::vector<ProcessRecord>> ListProcesses(std::string_view sandbox_id,
                                                           const ProcessFilter& filter) = 0;
  // Compare-and-set, as UpdateSandbox (but `to` must differ from the current state). Entering
  // RUNNING sets started_at; a terminal state sets finished_at.
  virtual Result<ProcessRecord> UpdateProcess(std::string_view sandbox_id, int64_t process_id,
                                              const std::vector<ProcessState>& from,
                                              ProcessState to, const ProcessUpdate& update) = 0;
  // Crash recovery: every STARTING, RUNNING or PAUSED sandbox of `node` ends FAILED with reason
  // supervisor_restart; its RUNNING processes end FINISHED (supervisor_restart) and those
  // awaiting review CANCELLED. Returns the sandboxes' ids.
  // `reason`: kSupervisorRestart (the node restarted) or kNodeLost (another noticed it gone).
  virtual Result<std::vector<std::string>> RecoverStaleSandboxes(
      std::string_view node, EndCode reason = EndCode::kSupervisorRestart) = 0;

  // ---- Runners (runner_records.h) -------------------------------------------------------------
  // Issues `token_sha256` to runner `name`: a new runner, or a new token for a known one (its
  // old token stops working and a revoked runner is active again; applied_seq is kept).
  virtual Result<RunnerRecord> PutRunner(std::string_view name, std::string_view token_sha256,
                                         std::string_view by) = 0;
  virtual Result<RunnerRecord> GetRunner(std::string_view name) = 0;  // kNotFound
  // The runner holding this token, if its token is not revoked.
  virtual Result<std::optional<RunnerRecord>> FindRunnerByToken(std::string_view token_sha256) = 0;
  // Revokes the runner's token (kNotFound for an unknown runner; a revoked one stays as it was).
  virtual Result<RunnerRecord> RevokeRunner(std::string_view name, std::string_view by) = 0;
  virtual Result<std::vector<RunnerRecord>> ListRunners() = 0;  // by name

  // ---- Projects and plans (project_records.h) -------------------------------------------------
  // Stores a new project (id, created_at, updated_at filled in; version 1). kAlreadyExists when
  // the name or id is taken; kInvalidArgument for a malformed id or a string that is not UTF-8.
  virtual Result<ProjectRecord> CreateProject(const ProjectRecord& project) = 0;
  // By id ("prj_…") or by name. kNotFound.
  virtual Result<ProjectRecord> GetProject(std::string_view id_or_name) = 0;
  virtual Result<ProjectPage> ListProjects(const ProjectFilter& filter) = 0;
  // Compare-and-set on the version: replaces the project's fields (not id, created_*) with
  // `project`'s when its version is `expected_version` (0: whatever it is), bumps the version
  // and updated_at. kFailedPrecondition (nothing changed) for another version; kNotFound;
  // kAlreadyExists when the new name is another project's.
  virtual Result<ProjectRecord> UpdateProject(std::string_view id, int64_t expected_version,
                                              const ProjectRecord& project) = 0;
  // Removes the project and its plans; its runs keep its id. kNotFound.
  virtual Status DeleteProject(std::string_view id) = 0;
  // Stores a plan of an existing project (id and created_at filled in). kNotFound without the
  // project.
  virtual Result<PlanRecord> CreatePlan(const PlanRecord& plan) = 0;
  // kNotFound.
  virtual Result<PlanRecord> GetPlan(std::string_view plan_id) = 0;
  // The project's plans, newest first, at most `limit` (1..1000).
  virtual Result<std::vector<PlanRecord>> ListPlans(std::string_view project_id, int limit) = 0;
};

// Opens a store; call Migrate() next.
//   sqlite:///abs/path.db   one file (created when missing) in WAL mode, with a busy timeout and
//                           foreign keys on
//   postgresql://…  postgres://…   a libpq connection URI
// kInvalidArgument for another scheme or a relative SQLite path; kUnavailable when the database
// cannot be reached (the message names the host, never the password).
struct OpenOptions {
  // PostgreSQL: how long the database or this node may go unheard before a connection counts
  // as dead (the nodes' node_timeout). A partition drops packets rather than resetting
  // anything, and libpq's and the server's defaults then wait for hours. Unless the URL sets
  // them itself, a positive value T adds to the URL:
  //   tcp_user_timeout=T         data unacknowledged that long breaks the connection (the node
  //                              then reconnects at once when the network heals, rather than
  //                              waiting for TCP's next retransmission)
  //   keepalives after T/3 idle  so does a silent peer on an idle connection
  //   connect_timeout=T (s, at least 2)
  //   options=-c idle_in_transaction_session_timeout=T/2
  //                              the server ends a session whose client went silent inside a
  //                              transaction, so the row locks it held do not stop the other
  //                              nodes (their own heartbeats wait behind those locks)
  // Zero: the URL as given.
  std::chrono::milliseconds peer_timeout{0};
};
Result<std::unique_ptr<Store>> Open(std::string_view url, const OpenOptions& options = {});

// The URL Open() connects with for `options` (PostgreSQL URLs; others are returned as given).
std::string WithPeerTimeout(std::string_view url, std::chrono::milliseconds peer_timeout);

}  // namespace sbx::store
