#include "supervisor/runner/coordinator.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <spdlog/spdlog.h>

#include "base/unique_fd.h"
#include "supervisor/events/audit.h"
#include "supervisor/runner/protocol.h"
#include "supervisor/store/wire_json.h"
#include "supervisor/workspace/run_logs.h"

namespace sbx::supervisor::runner {
namespace {

using nlohmann::json;
using store::RunState;

// A file of a run is at most this large: far above any output or artifact quota.
constexpr uint64_t kMaxFileBytes = uint64_t{4} << 30;

// Opens (creating) <run dir>/<file>, each directory component made 0700 and none followed if it
// is a symlink; `file` passed CheckRunFileName.
Result<UniqueFd> OpenRunFile(const std::string& run_dir, const std::string& file) {
  if (::mkdir(run_dir.c_str(), 0711) < 0 && errno != EEXIST) {
    return ErrnoError("mkdir {}", run_dir);
  }
  UniqueFd dir(::open(run_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return ErrnoError("open {}", run_dir);
  std::string_view rest = file;
  for (size_t slash; (slash = rest.find('/')) != rest.npos; rest.remove_prefix(slash + 1)) {
    const std::string part(rest.substr(0, slash));
    if (::mkdirat(dir.get(), part.c_str(), 0700) < 0 && errno != EEXIST) {
      return ErrnoError("mkdir {}/{}", run_dir, part);
    }
    UniqueFd next(
        ::openat(dir.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next) return ErrnoError("open {}/{}", run_dir, file);
    dir = std::move(next);
  }
  UniqueFd fd(::openat(dir.get(), std::string(rest).c_str(),
                       O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return ErrnoError("open {}/{}", run_dir, file);
  return fd;
}

}  // namespace

RunnerLink::RunnerLink(store::Store& store, RunManager& manager, store::RunnerRecord runner,
                       CoordinatorOptions options, Transport transport)
    : store_(store),
      manager_(manager),
      runner_(std::move(runner)),
      options_(std::move(options)),
      transport_(std::move(transport)) {}

RunnerLink::~RunnerLink() { Stop(); }

void RunnerLink::Stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  // OnHello starts these under mu_ unless stopping_: after the lock above, neither changes.
  if (queued_token_ != 0) manager_.UnsubscribeQueued(queued_token_);
  if (claimer_.joinable()) claimer_.join();
}

void RunnerLink::Send(const json& m) { (void)transport_.send(m.dump()); }

void RunnerLink::Fail(std::string why) {
  spdlog::warn("runner {}: {}", runner_.name, why);
  {
    // No claim, and nothing the runner sends taken, after this: the link is ending.
    std::lock_guard<std::mutex> lk(mu_);
    failed_ = true;
  }
  transport_.close(std::move(why));
}

void RunnerLink::OnText(std::string_view text) {
  json m = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!m.is_object() || !m.contains("type") || !m["type"].is_string()) {
    return Fail("a message that is not a JSON object with a type");
  }
  const std::string type = m["type"].get<std::string>();
  bool welcomed;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (failed_ || stopping_) return;
    welcomed = welcomed_;
  }
  if (type != "hello" && !welcomed) return Fail("the first message must be hello");
  Status st = Ok();
  try {
    if (type == "hello") {
      st = welcomed ? MakeError(ErrorCode::kInvalidArgument, "a second hello") : OnHello(m);
    } else if (type == "beat") {
      st = OnBeat(m);
    } else if (type == "batch") {
      st = OnBatch(m);
    } else if (type == "accepted") {
      std::lock_guard<std::mutex> lk(mu_);
      const std::string id = m.at("run_id").get<std::string>();
      if (auto it = handed_over_.find(id); it != handed_over_.end()) {
        running_.insert(id);
        handed_over_.erase(it);
      }
    } else {
      st = MakeError(ErrorCode::kInvalidArgument, "unknown message type '{}'", type);
    }
  } catch (const std::exception& e) {
    st = MakeError(ErrorCode::kInvalidArgument, "a malformed {}: {}", type, e.what());
  }
  if (!st.ok()) Fail(st.error().message);
}

Status RunnerLink::OnHello(const json& m) {
  const std::string name = m.at("name").get<std::string>();
  if (name != runner_.name) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "this token is runner {}'s; the runner calls itself {}", runner_.name, name);
  }
  if (m.value("protocol", 0) != kProtocolVersion) {
    return MakeError(ErrorCode::kInvalidArgument, "runner protocol {} is not {}",
                     m.value("protocol", 0), kProtocolVersion);
  }
  auto labels = m.value("labels", std::map<std::string, std::string>());
  labels["node"] = runner_.name;
  labels["runner"] = "true";
  SBX_TRY(store::CheckNodeLabels(labels, "runner labels"));
  const int64_t capacity = m.at("capacity").get<int64_t>();
  if (capacity < 1 || capacity > 1024) {
    return MakeError(ErrorCode::kInvalidArgument, "a runner's capacity is 1 to 1024");
  }
  // Whether the runner was declared lost while it was away: what it still runs is not its own.
  bool fence = false;
  auto nodes = store_.ListNodes();
  if (!nodes.ok()) return std::move(nodes).error();
  for (const store::NodeRecord& n : *nodes) {
    if (n.name == runner_.name) fence = n.state == store::NodeState::kLost;
  }
  auto registered = store_.RegisterNode({.name = runner_.name,
                                         .labels = labels,
                                         .capacity = capacity,
                                         .version = m.value("version", ""),
                                         .address = options_.address ? options_.address() : ""});
  if (!registered.ok()) return std::move(registered).error();
  auto record = store_.GetRunner(runner_.name);
  if (!record.ok()) return std::move(record).error();
  if (record->revoked_at_ms) return MakeError(ErrorCode::kPermissionDenied, "token revoked");
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) return MakeError(ErrorCode::kUnavailable, "the link ended");
    welcomed_ = true;
    last_beat_ = std::chrono::steady_clock::now();
    capacity_ = capacity;
    labels_ = labels;
    applied_seq_ = record->applied_seq;
    ready_ = registered->state == store::NodeState::kReady;
  }
  spdlog::info("runner {} connected (capacity {}, {} outbox entries committed){}", runner_.name,
               capacity, record->applied_seq, fence ? "; it was lost: fencing it" : "");
  Send({{"type", "welcome"},
        {"name", runner_.name},
        {"applied_seq", record->applied_seq},
        {"heartbeat_ms", options_.heartbeat_interval.count()},
        {"node_timeout_ms", options_.node_timeout.count()},
        {"fence", fence},
        {"beat_echo", true}});
  std::lock_guard<std::mutex> lk(mu_);
  if (stopping_) return Ok();  // Stop() ran meanwhile: nothing to start
  queued_token_ = manager_.SubscribeQueued([this] { wake_.notify_all(); });
  claimer_ = std::thread([this] { Claimer(); });
  return Ok();
}

Status RunnerLink::OnBeat(const json& m) {
  // Revoked through another node: this link ends at the next beat.
  auto record = store_.GetRunner(runner_.name);
  if (!record.ok()) return std::move(record).error();
  if (record->revoked_at_ms || record->token_sha256 != runner_.token_sha256) {
    return MakeError(ErrorCode::kPermissionDenied, "this runner's token was revoked or replaced");
  }
  auto state = store_.Heartbeat(runner_.name);
  if (!state.ok()) return std::move(state).error();
  if (*state == store::NodeState::kLost) {
    // Declared lost while its beats did not arrive: others took its runs.
    Send({{"type", "fence"}});
    auto again = store_.RegisterNode({.name = runner_.name,
                                      .labels = labels_,
                                      .capacity = capacity_,
                                      .address = options_.address ? options_.address() : ""});
    if (!again.ok()) return std::move(again).error();
  }
  // The beat is in the store: the runner counts its liveness from the beats confirmed.
  Send({{"type", "beat"}, {"n", m.value("n", int64_t{0})}});
  std::set<std::string> running;
  std::vector<std::pair<std::string, int64_t>> reported;
  for (const json& r : m.at("running")) {
    reported.emplace_back(r.at("run_id").get<std::string>(), r.at("attempt").get<int64_t>());
    running.insert(reported.back().first);
  }
  // A run cancelled or taken over meanwhile is killed; the store is asked each time.
  for (const auto& [id, attempt] : reported) {
    auto run = store_.GetRun(id);
    if (!run.ok() && run.error().code != ErrorCode::kNotFound) return std::move(run).error();
    if (!run.ok() || run->node != runner_.name || run->attempt != attempt ||
        run->state != RunState::kRunning) {
      Send({{"type", "kill"}, {"run_id", id}, {"why", "it is no longer this runner's to run"}});
    }
  }
  bool reconcile = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    running_ = running;
    last_beat_ = std::chrono::steady_clock::now();
    for (const std::string& id : running) handed_over_.erase(id);
    ready_ = *state != store::NodeState::kDraining;
    reconcile = !reconciled_ && m.value("pending", int64_t{1}) == 0;
    if (reconcile) reconciled_ = true;
  }
  if (reconcile) Reconcile(running);
  wake_.notify_all();
  return Ok();
}

bool RunnerLink::Owns(const std::string& run_id, std::optional<int64_t> attempt) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (dropped_.count(run_id) != 0) return false;
    if (auto it = owned_.find(run_id); it != owned_.end() && (!attempt || it->second == *attempt)) {
      return true;
    }
  }
  // Its end is committed before its artifacts are announced: a run that ended is still the
  // runner's to finish recording.
  auto run = store_.GetRun(run_id);
  if (!run.ok() || run->node != runner_.name || (attempt && run->attempt != *attempt)) {
    return false;
  }
  std::lock_guard<std::mutex> lk(mu_);
  owned_[run_id] = run->attempt;
  return true;
}

bool RunnerLink::OwnsBatch(const std::string& run_id, int64_t attempt, bool after_end) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (dropped_.count(run_id) != 0) return false;
  }
  auto run = store_.GetRun(run_id);
  if (!run.ok() || run->node != runner_.name || run->attempt != attempt) return false;
  if (run->state == RunState::kRunning) return true;
  // What a run records after its end (its artifacts, run.completed) is taken only when the end
  // was the runner's own, not a cancel or a takeover here.
  if (!after_end || !store::IsTerminal(run->state)) return false;
  auto audit = store_.ListAudit({.run_id = run_id, .limit = 1000});
  if (!audit.ok()) return false;
  for (const store::AuditRecord& a : *audit) {
    if (a.action == "run.finished" && a.details.is_object() &&
        a.details.value("runner", "") == runner_.name) {
      return true;
    }
  }
  return false;
}

void RunnerLink::OnBinary(std::string_view bytes) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (failed_ || stopping_) return;
  }
  auto chunk = DecodeFileChunk(bytes);
  if (!chunk.ok()) return Fail(chunk.error().message);
  if (chunk->offset + chunk->bytes.size() > kMaxFileBytes) {
    return Fail(fmt::format("run {}: {} would be larger than 4 GiB", chunk->run_id, chunk->file));
  }
  // Bytes of a run that is no longer the runner's are dropped; its batch says so.
  if (!Owns(chunk->run_id, std::nullopt)) return;
  // The runner's stdout and stderr are those of the attempt it was handed.
  std::string file = chunk->file;
  if (file == "stdout" || file == "stderr") {
    std::lock_guard<std::mutex> lk(mu_);
    if (auto it = owned_.find(chunk->run_id); it != owned_.end()) {
      file = LogFileName(file, it->second);
    }
  }
  auto fd = OpenRunFile(RunDir(options_.data_dir, chunk->run_id), file);
  if (!fd.ok()) return Fail(fmt::format("run {}: {}", chunk->run_id, fd.error().message));
  const char* p = chunk->bytes.data();
  size_t left = chunk->bytes.size();
  off_t at = static_cast<off_t>(chunk->offset);
  while (left > 0) {
    const ssize_t n = ::pwrite(fd->get(), p, left, at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return Fail(fmt::format("run {}: writing {}: {}", chunk->run_id, chunk->file,
                              std::strerror(errno)));
    }
    p += n;
    left -= static_cast<size_t>(n);
    at += n;
  }
}

Status RunnerLink::OnBatch(const json& m) {
  const int64_t seq = m.at("seq").get<int64_t>();
  const std::string run_id = m.at("run_id").get<std::string>();
  const int64_t attempt = m.at("attempt").get<int64_t>();
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (seq <= applied_seq_) {
      Send({{"type", "ack"}, {"seq", applied_seq_}});  // sent again across a dropped link
      return Ok();
    }
    if (seq != applied_seq_ + 1) {
      return MakeError(ErrorCode::kInvalidArgument, "outbox entry {} after {}", seq, applied_seq_);
    }
  }
  auto writes = store::WritesFromJson(m.at("writes"));
  if (!writes.ok()) return std::move(writes).error();
  const bool owned = OwnsBatch(run_id, attempt, m.value("after_end", false));
  std::vector<store::Write> apply;
  if (owned) {
    for (store::Write& w : *writes) {
      if (auto* t = std::get_if<store::TransitionWrite>(&w)) {
        if (t->run_id != run_id) return MakeError(ErrorCode::kInvalidArgument, "a batch of two runs");
        // A runner ends the runs it runs, and says how they ended: nothing else of the run
        // (its policy decision, approval, limits) is its to change.
        if (t->from != std::vector<RunState>{RunState::kRunning} || !store::IsTerminal(t->to) ||
            t->update.policy || t->update.approval || t->update.limits) {
          return MakeError(ErrorCode::kPermissionDenied,
                           "run {}: a runner only ends a RUNNING run with its result", run_id);
        }
        // The runner's own store counts attempts and events of its own.
        t->if_attempt = attempt;
        t->if_last_event_seq.reset();
        t->update.node = runner_.name;
      } else if (auto* e = std::get_if<store::EventWrite>(&w)) {
        if (e->run_id != run_id) return MakeError(ErrorCode::kInvalidArgument, "a batch of two runs");
        // Its output is in the log files of this attempt here (OnBinary), whatever the runner's
        // own store counted.
        if (e->type == store::EventType::kStepLog && e->data.is_object()) {
          e->data.erase("attempt");
          if (attempt > 1) e->data["attempt"] = attempt;
        }
      } else if (auto* a = std::get_if<store::AuditWrite>(&w)) {
        if (a->run_id != run_id) continue;  // the runner's own records stay with it
        // Recorded as the runner's doing, whoever it says acted.
        if (!a->details.is_object()) a->details = {{"details", std::move(a->details)}};
        a->details["runner"] = runner_.name;
        a->actor = "runner:" + runner_.name;
      } else {
        return MakeError(ErrorCode::kInvalidArgument, "a runner does not send runner_ack");
      }
      apply.push_back(std::move(w));
    }
  }
  apply.push_back(store::RunnerAckWrite{runner_.name, seq});
  auto done = manager_.events().Commit(apply);
  bool kill = !owned;
  if (!done.ok() && owned && (done.error().code == ErrorCode::kAborted ||
                              done.error().code == ErrorCode::kFailedPrecondition)) {
    // The run changed meanwhile (a cancel, a takeover): only the entry is recorded.
    auto record = store_.GetRunner(runner_.name);
    if (record.ok() && record->applied_seq >= seq) {
      done = store::Committed{};
    } else {
      std::vector<store::Write> ack_only = {store::RunnerAckWrite{runner_.name, seq}};
      done = manager_.events().Commit(ack_only);
      kill = true;
    }
  }
  if (!done.ok()) {
    return WithContext(std::move(done).error(), fmt::format("committing outbox entry {}", seq));
  }
  if (kill) {
    std::lock_guard<std::mutex> lk(mu_);
    owned_.erase(run_id);
    dropped_.insert(run_id);
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    applied_seq_ = seq;
  }
  Send({{"type", "ack"}, {"seq", seq}});
  if (kill) Send({{"type", "kill"}, {"run_id", run_id}, {"why", "not this runner's"}});
  return Ok();
}

void RunnerLink::Reconcile(const std::set<std::string>& running) {
  // The runner's outbox is empty: a run of it still RUNNING that it does not run died with an
  // earlier instance of the runner, or never reached it.
  store::RunFilter filter{.states = {RunState::kRunning}, .limit = 1000};
  auto page = store_.ListRuns(filter);
  if (!page.ok()) return;
  for (const store::RunRecord& run : page->runs) {
    if (run.node != runner_.name || running.count(run.id) != 0) continue;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (handed_over_.count(run.id) != 0) continue;
    }
    store::RunUpdate update;
    update.result = store::RunResult{
        .reason = {store::EndCode::kSupervisorRestart, "the runner restarted without it"}};
    const json data = {{"state", "FAILED"}, {"reason", "supervisor_restart"}};
    std::vector<store::Write> end = {
        store::TransitionWrite{.run_id = run.id,
                               .from = {RunState::kRunning},
                               .to = RunState::kFailed,
                               .update = update,
                               .if_attempt = run.attempt},
        store::EventWrite{run.id, store::EventType::kRunStatus, data},
        AuditOf(Daemon(), "run.finished", run.id,
                {{"ended_for_runner", runner_.name}, {"state", "FAILED"}})};
    if (auto done = manager_.events().Commit(end); done.ok()) {
      spdlog::warn("run {}: runner {} no longer runs it: FAILED (supervisor_restart)", run.id,
                   runner_.name);
    }
  }
}

void RunnerLink::Claimer() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!stopping_) {
    const int64_t busy = static_cast<int64_t>(running_.size() + handed_over_.size());
    const auto silent = std::chrono::steady_clock::now() - last_beat_;
    if (!failed_ && silent > options_.node_timeout) {
      // A partition drops packets rather than resetting anything: the link looks open and
      // carries nothing. The runner leaves it too, and dials again.
      lk.unlock();
      Fail(fmt::format("no beat for more than {} ms: the link has stalled",
                       options_.node_timeout.count()));
      lk.lock();
      continue;
    }
    const bool quiet =
        silent > std::max<std::chrono::nanoseconds>(2 * options_.heartbeat_interval,
                                                    options_.node_timeout / 2);
    if (!ready_ || failed_ || busy >= capacity_ || quiet) {
      wake_.wait_for(lk, options_.heartbeat_interval);
      continue;
    }
    const auto labels = labels_;
    lk.unlock();
    auto claimed = store_.ClaimNextQueued(runner_.name, labels);
    if (claimed.ok() && claimed->has_value()) {
      const store::RunRecord& run = **claimed;
      auto wire = store::RunToWire(run);
      lk.lock();
      handed_over_[run.id] = run.attempt;
      owned_[run.id] = run.attempt;
      lk.unlock();
      if (wire.ok()) {
        spdlog::info("run {}: handed to runner {} (attempt {})", run.id, runner_.name,
                     run.attempt);
        Send({{"type", "assign"}, {"run", *wire}});
      }
      lk.lock();
      continue;
    }
    if (!claimed.ok()) {
      spdlog::warn("runner {}: claiming: {}", runner_.name, claimed.error().ToString());
    }
    lk.lock();
    // Nothing queued for it: until a run is queued, or the next beat.
    wake_.wait_for(lk, options_.heartbeat_interval);
  }
}

}  // namespace sbx::supervisor::runner
