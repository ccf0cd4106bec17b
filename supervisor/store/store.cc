#include "supervisor/store/store.h"

#include "base/random.h"

#include <sys/random.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <set>
#include <string>
#include <utility>

#include "supervisor/store/sql_store.h"

namespace sbx::store {
namespace {

constexpr std::array<const char*, 8> kStateNames = {"PENDING", "PLANNED",  "AWAITING_REVIEW",
                                                    "QUEUED",  "RUNNING",  "SUCCEEDED",
                                                    "FAILED",  "CANCELLED"};

constexpr std::array<const char*, 7> kSandboxStateNames = {
    "PENDING", "AWAITING_REVIEW", "STARTING", "RUNNING", "PAUSED", "STOPPED", "FAILED"};

constexpr std::array<const char*, 5> kProcessStateNames = {"AWAITING_REVIEW", "RUNNING", "FINISHED",
                                                           "REJECTED", "CANCELLED"};

constexpr std::array<const char*, 6> kEventTypeNames = {
    "run.status", "step.started", "step.log", "step.finished", "artifact.created", "run.completed"};

// "postgresql://user:secret@host/db" -> "postgresql://user:***@host/db", for error messages.
std::string RedactUrl(std::string_view url) {
  std::string out(url);
  size_t scheme_end = out.find("://");
  if (scheme_end == std::string::npos) return out;
  size_t at = out.find('@', scheme_end + 3);
  if (at == std::string::npos) return out;
  size_t colon = out.find(':', scheme_end + 3);
  if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
  return out;
}

// `prefix` followed by 20 random base32 characters.
std::string NewRandomId(std::string prefix) {
  static constexpr char kBase32[] = "abcdefghijklmnopqrstuvwxyz234567";
  std::array<unsigned char, 20> bytes;
  RandomBytes(bytes);
  std::string id = std::move(prefix);
  for (unsigned char b : bytes) id.push_back(kBase32[b & 31]);
  return id;
}

}  // namespace

namespace internal {
const std::string& NotificationOrigin() {
  static const std::string origin = NewRandomId("p");
  return origin;
}
}  // namespace internal

const char* RunStateName(RunState state) { return kStateNames[static_cast<size_t>(state)]; }

Result<RunState> ParseRunState(std::string_view name) {
  for (size_t i = 0; i < kStateNames.size(); ++i) {
    if (name == kStateNames[i]) return static_cast<RunState>(i);
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown run state '{}'; expected one of PENDING, PLANNED, AWAITING_REVIEW, "
                   "QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED",
                   name);
}

namespace {
constexpr std::array<const char*, 3> kNodeStateNames = {"ready", "draining", "lost"};
}  // namespace

const char* NodeStateName(NodeState state) {
  return kNodeStateNames[static_cast<size_t>(state)];
}

Result<NodeState> ParseNodeState(std::string_view name) {
  for (size_t i = 0; i < kNodeStateNames.size(); ++i) {
    if (name == kNodeStateNames[i]) return static_cast<NodeState>(i);
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown node state '{}'; expected ready, draining or lost", name);
}

Status CheckNodeLabels(const std::map<std::string, std::string>& labels, std::string_view field) {
  auto plain = [](char c, bool colon) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ||
           c == '/' || (colon && c == ':');
  };
  for (const auto& [key, value] : labels) {
    if (key.empty() || key.size() > 63 || !std::isalnum(static_cast<unsigned char>(key[0])) ||
        !std::all_of(key.begin(), key.end(), [&](char c) { return plain(c, false); })) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "{}: '{}' is not a label key (1 to 63 letters, digits, '.', '_', '-', "
                       "'/', starting with a letter or digit)",
                       field, key.substr(0, 80));
    }
    if (value.size() > 63 ||
        !std::all_of(value.begin(), value.end(), [&](char c) { return plain(c, true); })) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "{}.{}: a label value is at most 63 letters, digits, '.', '_', '-', '/', "
                       "':'",
                       field, key);
    }
  }
  return Ok();
}

bool IsTerminal(RunState state) {
  return state == RunState::kSucceeded || state == RunState::kFailed ||
         state == RunState::kCancelled;
}

bool IsLegalTransition(RunState from, RunState to) {
  if (IsTerminal(from)) return false;
  // A failure or a cancel can end a run at any stage.
  if (to == RunState::kFailed || to == RunState::kCancelled) return true;
  switch (from) {
    case RunState::kPending:
      return to == RunState::kPlanned;
    case RunState::kPlanned:
      return to == RunState::kAwaitingReview;
    case RunState::kAwaitingReview:
      // To itself: a reviewer's vote while more are needed.
      return to == RunState::kQueued || to == RunState::kAwaitingReview;
    case RunState::kQueued:
      return to == RunState::kRunning;
    case RunState::kRunning:
      return to == RunState::kSucceeded;
    default:
      return false;
  }
}

const std::vector<RunState>& AllRunStates() {
  static const std::vector<RunState> states = {
      RunState::kPending, RunState::kPlanned,   RunState::kAwaitingReview, RunState::kQueued,
      RunState::kRunning, RunState::kSucceeded, RunState::kFailed,         RunState::kCancelled};
  return states;
}

const std::vector<RunState>& NonTerminalRunStates() {
  static const std::vector<RunState> states = {RunState::kPending, RunState::kPlanned,
                                               RunState::kAwaitingReview, RunState::kQueued,
                                               RunState::kRunning};
  return states;
}

const char* EventTypeName(EventType type) { return kEventTypeNames[static_cast<size_t>(type)]; }

Result<EventType> ParseEventType(std::string_view name) {
  for (size_t i = 0; i < kEventTypeNames.size(); ++i) {
    if (name == kEventTypeNames[i]) return static_cast<EventType>(i);
  }
  return MakeError(ErrorCode::kInvalidArgument, "unknown event type '{}'", name);
}

std::string NewRunId() { return NewRandomId("run_"); }

nlohmann::json LimitsToJson(const Limits& l) {
  nlohmann::json j = nlohmann::json::object();
  if (l.cpus) j["cpus"] = *l.cpus;
  if (l.memory_bytes) j["memory_bytes"] = *l.memory_bytes;
  if (l.pids) j["pids"] = *l.pids;
  if (l.timeout_s) j["timeout_s"] = *l.timeout_s;
  if (l.output_bytes) j["output_bytes"] = *l.output_bytes;
  return j;
}

nlohmann::json ReviewVoteJson(const ReviewVote& vote) {
  return {{"by", vote.by},
          {"at_ms", vote.at_ms},
          {"comment", vote.comment},
          {"plan_sha256", vote.plan_sha256}};
}

std::string NewSandboxId() { return NewRandomId("sbx_"); }
std::string NewProjectId() { return NewRandomId("prj_"); }
std::string NewPlanId() { return NewRandomId("pln_"); }

const char* SandboxStateName(SandboxState state) {
  return kSandboxStateNames[static_cast<size_t>(state)];
}

Result<SandboxState> ParseSandboxState(std::string_view name) {
  for (size_t i = 0; i < kSandboxStateNames.size(); ++i) {
    if (name == kSandboxStateNames[i]) return static_cast<SandboxState>(i);
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown sandbox state '{}'; expected one of PENDING, AWAITING_REVIEW, "
                   "STARTING, RUNNING, PAUSED, STOPPED, FAILED",
                   name);
}

bool IsTerminal(SandboxState state) {
  return state == SandboxState::kStopped || state == SandboxState::kFailed;
}

bool IsLegalSandboxTransition(SandboxState from, SandboxState to) {
  if (IsTerminal(from)) return false;
  // A delete or a failure can end a sandbox at any stage.
  if (to == SandboxState::kStopped || to == SandboxState::kFailed) return true;
  switch (from) {
    case SandboxState::kPending:
      return to == SandboxState::kAwaitingReview;
    case SandboxState::kAwaitingReview:
      return to == SandboxState::kStarting;
    case SandboxState::kStarting:
      return to == SandboxState::kRunning;
    case SandboxState::kRunning:
      return to == SandboxState::kPaused;
    case SandboxState::kPaused:
      return to == SandboxState::kRunning;
    default:
      return false;
  }
}

const std::vector<SandboxState>& AllSandboxStates() {
  static const std::vector<SandboxState> states = {
      SandboxState::kPending, SandboxState::kAwaitingReview, SandboxState::kStarting,
      SandboxState::kRunning, SandboxState::kPaused,         SandboxState::kStopped,
      SandboxState::kFailed};
  return states;
}

const std::vector<SandboxState>& NonTerminalSandboxStates() {
  static const std::vector<SandboxState> states = {
      SandboxState::kPending, SandboxState::kAwaitingReview, SandboxState::kStarting,
      SandboxState::kRunning, SandboxState::kPaused};
  return states;
}

const char* ProcessStateName(ProcessState state) {
  return kProcessStateNames[static_cast<size_t>(state)];
}

Result<ProcessState> ParseProcessState(std::string_view name) {
  for (size_t i = 0; i < kProcessStateNames.size(); ++i) {
    if (name == kProcessStateNames[i]) return static_cast<ProcessState>(i);
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown process state '{}'; expected one of AWAITING_REVIEW, RUNNING, "
                   "FINISHED, REJECTED, CANCELLED",
                   name);
}

bool IsTerminal(ProcessState state) {
  return state == ProcessState::kFinished || state == ProcessState::kRejected ||
         state == ProcessState::kCancelled;
}

bool IsLegalProcessTransition(ProcessState from, ProcessState to) {
  switch (from) {
    case ProcessState::kAwaitingReview:
      return to == ProcessState::kRunning || to == ProcessState::kRejected ||
             to == ProcessState::kCancelled;
    case ProcessState::kRunning:
      return to == ProcessState::kFinished;
    default:
      return false;
  }
}

Result<RunRecord> Store::Cancel(std::string_view run_id) {
  RunUpdate update;
  update.result = RunResult{.reason = {EndCode::kCancelled}};
  return Transition(run_id, NonTerminalRunStates(), RunState::kCancelled, update);
}

Result<RunRecord> Store::Transition(std::string_view run_id, const std::vector<RunState>& from,
                                    RunState to, const RunUpdate& update) {
  const Write w = TransitionWrite{std::string(run_id), from, to, update};
  auto done = Commit(std::span(&w, 1));
  if (!done.ok()) return std::move(done).error();
  return std::move(done->runs.front());
}

Result<EventRecord> Store::AppendEvent(std::string_view run_id, EventType type,
                                       const nlohmann::json& data) {
  const Write w = EventWrite{std::string(run_id), type, data};
  auto done = Commit(std::span(&w, 1));
  if (!done.ok()) return std::move(done).error();
  return std::move(done->events.front());
}

Result<AuditRecord> Store::AppendAudit(std::string_view actor, std::string_view action,
                                       std::optional<std::string_view> run_id,
                                       const nlohmann::json& details) {
  const Write w = AuditWrite{std::string(actor), std::string(action),
                             run_id ? std::optional<std::string>(*run_id) : std::nullopt, details};
  auto done = Commit(std::span(&w, 1));
  if (!done.ok()) return std::move(done).error();
  return std::move(done->audits.front());
}

std::string WithPeerTimeout(std::string_view url, std::chrono::milliseconds peer_timeout) {
  std::string out(url);
  if (peer_timeout.count() <= 0 ||
      !(url.starts_with("postgresql://") || url.starts_with("postgres://"))) {
    return out;
  }
  // The query's keys, as given (libpq's names are lower case, and so are ours).
  std::set<std::string> given;
  if (size_t q = url.find('?'); q != std::string_view::npos) {
    std::string_view query = url.substr(q + 1);
    while (!query.empty()) {
      const size_t amp = query.find('&');
      const std::string_view pair = query.substr(0, amp);
      given.emplace(pair.substr(0, pair.find('=')));
      if (amp == std::string_view::npos) break;
      query.remove_prefix(amp + 1);
    }
  }
  const int64_t t = peer_timeout.count();
  const std::pair<const char*, std::string> params[] = {
      {"connect_timeout", std::to_string(std::max<int64_t>(2, (t + 999) / 1000))},
      {"tcp_user_timeout", std::to_string(t)},
      {"keepalives", "1"},
      {"keepalives_idle", std::to_string(std::max<int64_t>(1, t / 3000))},
      {"keepalives_interval", "1"},
      {"options",
       "-c%20idle_in_transaction_session_timeout%3D" + std::to_string(std::max<int64_t>(1, t / 2))},
  };
  char sep = out.find('?') == std::string::npos ? '?' : '&';
  for (const auto& [key, value] : params) {
    if (given.count(key) != 0) continue;
    out += sep;
    out += key;
    out += '=';
    out += value;
    sep = '&';
  }
  return out;
}

Result<std::unique_ptr<Store>> Open(std::string_view given, const OpenOptions& options) {
  const std::string with = WithPeerTimeout(given, options.peer_timeout);
  const std::string_view url = with;
  constexpr std::string_view kSqlite = "sqlite://";
  if (url.starts_with(kSqlite)) {
    std::string path(url.substr(kSqlite.size()));
    if (path.empty() || path[0] != '/') {
      return MakeError(ErrorCode::kInvalidArgument,
                       "store URL '{}' needs an absolute path: sqlite:///var/lib/sandboxd/db", url);
    }
    auto conn = internal::OpenSqlite(path);
    if (!conn.ok()) return std::move(conn).error();
    return internal::MakeSqlStore(std::move(*conn));
  }
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) {
    auto conn = internal::OpenPostgres(std::string(url));
    if (!conn.ok()) return WithContext(std::move(conn).error(), RedactUrl(given));
    return internal::MakeSqlStore(std::move(*conn));
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unsupported store URL '{}'; use sqlite:///abs/path.db or "
                   "postgresql://user@host/dbname",
                   RedactUrl(given));
}

}  // namespace sbx::store
