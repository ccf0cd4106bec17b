#include "supervisor/runner/uplink.h"

#include <dirent.h>

#include <algorithm>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "base/fs.h"
#include "base/unique_fd.h"
#include "supervisor/events/audit.h"
#include "supervisor/exec/heartbeat.h"
#include "supervisor/runner/protocol.h"
#include "supervisor/store/wire_json.h"
#include "supervisor/workspace/run_logs.h"

namespace sbx::supervisor::runner {
namespace {

using nlohmann::json;
using store::RunState;

// Entries sent ahead of the coordinator's acknowledgements, and bytes queued on the link,
// before the sender waits.
constexpr int64_t kWindow = 256;
constexpr size_t kQueuedBytesHigh = 8 << 20;

const std::string* RunOf(const store::Write& w) {
  if (const auto* t = std::get_if<store::TransitionWrite>(&w)) return &t->run_id;
  if (const auto* e = std::get_if<store::EventWrite>(&w)) return &e->run_id;
  if (const auto* a = std::get_if<store::AuditWrite>(&w); a && a->run_id) return &*a->run_id;
  return nullptr;
}

// Regular files under <dir>/<rel>, as "rel/name" (symlinks and anything else are skipped).
void ListFiles(const std::string& dir, const std::string& rel, std::vector<std::string>& out,
               int depth = 0) {
  if (depth > 16) return;
  DIR* d = ::opendir((dir + "/" + rel).c_str());
  if (d == nullptr) return;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.empty() || name.front() == '.') continue;
    struct stat st {};
    const std::string path = rel + "/" + name;
    if (::lstat((dir + "/" + path).c_str(), &st) < 0) continue;
    if (S_ISREG(st.st_mode)) out.push_back(path);
    if (S_ISDIR(st.st_mode)) ListFiles(dir, path, out, depth + 1);
  }
  ::closedir(d);
}

}  // namespace

Result<std::unique_ptr<Uplink>> Uplink::Open(UplinkOptions options, store::Store& local) {
  auto outbox = Outbox::Open(options.data_dir + "/outbox");
  if (!outbox.ok()) return WithContext(std::move(outbox).error(), "opening the runner's outbox");
  return std::unique_ptr<Uplink>(new Uplink(std::move(options), local, std::move(*outbox)));
}

Uplink::Uplink(UplinkOptions options, store::Store& local, std::unique_ptr<Outbox> outbox)
    : options_(std::move(options)), local_(local), outbox_(std::move(outbox)) {
  outbox_->SetNotify([this] { cv_.notify_all(); });
  fencer_ = std::thread([this] { Fencer(); });
}

Uplink::~Uplink() {
  Stop();
  fencer_.join();
}

std::optional<std::chrono::steady_clock::time_point> Uplink::SilentSince() const {
  if (echoes_) return confirmed_;
  if (linked_ && welcomed_) return std::nullopt;
  return unlinked_since_;
}

void Uplink::Fencer() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!stopping_) {
    const auto since = SilentSince();
    if (!since || fenced_ || !node_timeout_ || manager_ == nullptr) {
      cv_.wait(lk);
      continue;
    }
    const auto deadline = *since + FenceAfter(heartbeat_, *node_timeout_);
    if (std::chrono::steady_clock::now() < deadline) {
      cv_.wait_until(lk, deadline);
      continue;
    }
    fenced_ = true;
    RunManager* manager = manager_;
    lk.unlock();
    const size_t killed = manager->FenceNode();
    spdlog::warn(
        "runner: the coordinator confirmed no beat for {} ms: killed {} run(s), which may be "
        "running elsewhere now; taking nothing until it answers again",
        FenceAfter(heartbeat_, *node_timeout_).count(), killed);
    lk.lock();
  }
}

void Uplink::Attach(RunManager* manager) {
  std::lock_guard<std::mutex> lk(mu_);
  manager_ = manager;
}

void Uplink::OnCommit(std::span<const store::Write> writes) {
  const std::string* run = nullptr;
  for (const store::Write& w : writes) {
    if ((run = RunOf(w)) != nullptr) break;
  }
  if (run == nullptr) return;  // the runner's own records
  int64_t attempt = 0;
  bool ended = false;
  bool after_end = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = attempts_.find(*run);
    if (it == attempts_.end()) return;  // not handed over (an earlier instance's run)
    attempt = it->second;
    after_end = running_.count(*run) == 0;
    for (const store::Write& w : writes) {
      if (const auto* t = std::get_if<store::TransitionWrite>(&w); t && store::IsTerminal(t->to)) {
        ended = running_.erase(*run) > 0;
      }
    }
    if (ended) beat_now_ = true;
  }
  auto seq = outbox_->Append({{"run_id", *run},
                              {"attempt", attempt},
                              {"after_end", after_end},
                              {"writes", store::WritesToJson(writes)}});
  if (!seq.ok()) {
    spdlog::error("run {}: cannot keep a commit for the coordinator: {}", *run,
                  seq.error().ToString());
  }
}

json Uplink::Beat() {
  json running = json::array();
  std::lock_guard<std::mutex> lk(mu_);
  for (const std::string& id : running_) {
    running.push_back({{"run_id", id}, {"attempt", attempts_.at(id)}});
  }
  ++beat_n_;
  // Kept for its echo; a coordinator that does not echo beats keeps none. Bounded: the oldest
  // of a link that stopped echoing are let go (the link ends long before).
  if (echoes_) {
    beats_in_flight_.emplace_back(beat_n_, std::chrono::steady_clock::now());
    if (beats_in_flight_.size() > 1024) beats_in_flight_.pop_front();
  }
  return {{"type", "beat"},
          {"n", beat_n_},
          {"running", std::move(running)},
          {"free", std::max<int64_t>(0, options_.capacity - int64_t(running_.size()))},
          {"pending", outbox_->pending()}};
}

Status Uplink::Session(Transport t, std::chrono::milliseconds welcome_timeout) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    linked_ = true;
    welcomed_ = false;
    shipped_.clear();  // the coordinator may be another, or have lost the tail: from the start
    beats_in_flight_.clear();
    hello_sent_ = std::chrono::steady_clock::now();
  }
  t.send_text(json{{"type", "hello"},
                   {"name", options_.name},
                   {"labels", options_.labels},
                   {"capacity", options_.capacity},
                   {"version", options_.version},
                   {"protocol", kProtocolVersion}}
                  .dump());
  std::unique_lock<std::mutex> lk(mu_);
  if (!cv_.wait_for(lk, welcome_timeout, [&] { return welcomed_ || !linked_ || stopping_; })) {
    linked_ = false;
    return MakeError(ErrorCode::kUnavailable, "the coordinator did not answer hello within {} ms",
                     welcome_timeout.count());
  }
  if (!welcomed_) {
    linked_ = false;
    return MakeError(ErrorCode::kUnavailable, "the link ended before the coordinator's welcome");
  }
  if (fenced_ && manager_ != nullptr) {
    manager_->UnfenceNode();
    fenced_ = false;
    spdlog::info("runner: the coordinator answers again: taking runs");
  }
  int64_t sent = acked_;
  auto next_beat = std::chrono::steady_clock::now();
  while (linked_ && !stopping_) {
    const auto now = std::chrono::steady_clock::now();
    if (echoes_ && node_timeout_ && now - confirmed_ > FenceAfter(heartbeat_, *node_timeout_)) {
      // A link that stalled (a partition drops packets rather than resetting anything): the
      // coordinator's side declares this runner lost by now, and a new link is needed.
      spdlog::warn("runner: the coordinator confirmed no beat for {} ms: leaving the link",
                   FenceAfter(heartbeat_, *node_timeout_).count());
      break;
    }
    if (beat_now_ || now >= next_beat) {
      beat_now_ = false;
      next_beat = now + heartbeat_;
      lk.unlock();
      t.send_text(Beat().dump());
      lk.lock();
      continue;
    }
    sent = std::max(sent, acked_);
    bool backlog = false;
    if (sent - acked_ < kWindow) {
      lk.unlock();
      for (auto& [seq, entry] : outbox_->After(sent, static_cast<size_t>(kWindow))) {
        if (t.queued_bytes() > kQueuedBytesHigh) {
          backlog = true;
          break;
        }
        const std::string run_id = entry.value("run_id", "");
        if (!SyncFiles(run_id, t)) break;
        entry["type"] = "batch";
        entry["seq"] = seq;
        if (!t.send_text(entry.dump())) break;
        sent = seq;
      }
      lk.lock();
    }
    if (!linked_ || stopping_) break;
    if (backlog) {
      // The link's queue is full: it drains at the network's pace, and says nothing when.
      cv_.wait_for(lk, std::chrono::milliseconds(20));
      continue;
    }
    cv_.wait_until(lk, next_beat, [&] {
      return !linked_ || stopping_ || beat_now_ || outbox_->last_seq() > sent;
    });
  }
  if (welcomed_) unlinked_since_ = std::chrono::steady_clock::now();
  welcomed_ = false;
  linked_ = false;
  cv_.notify_all();
  return Ok();
}

bool Uplink::SyncFiles(const std::string& run_id, const Transport& t) {
  const std::string dir = RunDir(options_.data_dir, run_id);
  std::vector<std::string> files;
  for (const char* f : {"stdout", "stderr", "artifacts.json"}) files.push_back(f);
  std::vector<std::string> artifacts;
  ListFiles(dir, "artifacts", artifacts);
  files.insert(files.end(), artifacts.begin(), artifacts.end());
  for (const std::string& file : files) {
    UniqueFd fd(::open((dir + "/" + file).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) continue;
    struct stat st {};
    if (::fstat(fd.get(), &st) < 0 || !S_ISREG(st.st_mode)) continue;
    uint64_t from;
    {
      std::lock_guard<std::mutex> lk(mu_);
      from = shipped_[run_id][file];
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    std::string buf;
    while (from < size) {
      buf.resize(std::min<uint64_t>(kChunkBytes, size - from));
      auto n = ReadAllAt(fd.get(), buf.data(), buf.size(), from);
      if (!n.ok() || *n == 0) break;
      buf.resize(*n);
      if (!t.send_binary(EncodeFileChunk(run_id, file, from, buf))) return false;
      from += *n;
    }
    std::lock_guard<std::mutex> lk(mu_);
    shipped_[run_id][file] = from;
  }
  return true;
}

void Uplink::OnMessage(const std::string& text) {
  json m = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!m.is_object()) return;
  const std::string type = m.value("type", "");
  try {
    if (type == "welcome") {
      const int64_t applied = m.at("applied_seq").get<int64_t>();
      if (applied > outbox_->acked_seq() && applied <= outbox_->last_seq()) {
        (void)outbox_->Ack(applied);
      }
      if (m.value("fence", false)) Kill("", "the coordinator declared this runner lost");
      std::lock_guard<std::mutex> lk(mu_);
      acked_ = outbox_->acked_seq();
      welcomed_ = true;
      echoes_ = m.value("beat_echo", false);
      // Registered at the hello: alive as of the moment it was sent.
      confirmed_ = hello_sent_;
      heartbeat_ = std::chrono::milliseconds(
          std::clamp<int64_t>(m.value("heartbeat_ms", int64_t{2'000}), 100, 60'000));
      node_timeout_ = std::chrono::milliseconds(
          std::clamp<int64_t>(m.value("node_timeout_ms", int64_t{6'000}), 500, 3'600'000));
    } else if (type == "ack") {
      const int64_t seq = m.at("seq").get<int64_t>();
      if (seq > outbox_->acked_seq() && seq <= outbox_->last_seq()) {
        if (Status st = outbox_->Ack(seq); !st.ok()) {
          spdlog::error("runner: outbox: {}", st.error().ToString());
        }
      }
      std::lock_guard<std::mutex> lk(mu_);
      acked_ = outbox_->acked_seq();
    } else if (type == "assign") {
      OnAssign(m.at("run"));
    } else if (type == "kill") {
      Kill(m.at("run_id").get<std::string>(), m.value("why", "the coordinator asked"));
    } else if (type == "beat") {
      const int64_t n = m.at("n").get<int64_t>();
      std::lock_guard<std::mutex> lk(mu_);
      while (!beats_in_flight_.empty() && beats_in_flight_.front().first <= n) {
        if (beats_in_flight_.front().first == n) confirmed_ = beats_in_flight_.front().second;
        beats_in_flight_.pop_front();
      }
    } else if (type == "fence") {
      Kill("", "the coordinator declared this runner lost");
    }
  } catch (const std::exception& e) {
    spdlog::warn("runner: a malformed {} from the coordinator: {}", type, e.what());
  }
  cv_.notify_all();
}

void Uplink::OnAssign(const json& wire) {
  auto run = store::RunFromWire(wire);
  if (!run.ok()) {
    spdlog::error("runner: a run the coordinator handed over: {}", run.error().ToString());
    return;
  }
  const int64_t attempt = run->attempt;
  const std::string id = run->id;
  // The local copy: queued here without the review gate (the coordinator's passed it), for
  // this node whatever its selector said.
  store::RunRecord copy = std::move(*run);
  copy.state = RunState::kPending;
  copy.node.reset();
  copy.attempt = 0;
  copy.result.reset();
  copy.queued_at_ms.reset();
  copy.started_at_ms.reset();
  copy.finished_at_ms.reset();
  copy.node_selector.clear();
  copy.idempotency_key.reset();
  copy.retry_on_node_loss = false;
  copy.project_id.clear();
  {
    std::lock_guard<std::mutex> lk(mu_);
    attempts_[id] = attempt;
    running_.insert(id);
  }
  auto created = local_.CreateRun(copy);
  Status st = created.ok() ? Ok() : Status(std::move(created).error());
  for (auto [from, to] : {std::pair{RunState::kPending, RunState::kPlanned},
                          std::pair{RunState::kPlanned, RunState::kAwaitingReview},
                          std::pair{RunState::kAwaitingReview, RunState::kQueued}}) {
    if (!st.ok()) break;
    auto moved = local_.Transition(id, {from}, to, {});
    if (!moved.ok()) st = std::move(moved).error();
  }
  if (!st.ok()) {
    spdlog::error("run {}: cannot queue it here: {}", id, st.error().ToString());
    std::lock_guard<std::mutex> lk(mu_);
    running_.erase(id);
    beat_now_ = true;  // the coordinator finds it unreported and ends it
    return;
  }
  spdlog::info("run {}: taken from the coordinator (attempt {})", id, attempt);
  RunManager* manager;
  {
    std::lock_guard<std::mutex> lk(mu_);
    manager = manager_;
    beat_now_ = true;
  }
  if (manager != nullptr) manager->WakeWorkers();
}

void Uplink::Kill(const std::string& run_id, const std::string& why) {
  std::vector<std::string> ids;
  RunManager* manager;
  {
    std::lock_guard<std::mutex> lk(mu_);
    manager = manager_;
    if (run_id.empty()) {
      ids.assign(running_.begin(), running_.end());
    } else if (running_.count(run_id) != 0) {
      ids.push_back(run_id);
    }
  }
  if (manager == nullptr) return;
  for (const std::string& id : ids) {
    spdlog::warn("run {}: killed: {}", id, why);
    (void)manager->Cancel(id, Daemon());
  }
}

void Uplink::LinkClosed(std::string why) {
  spdlog::warn("runner: the link to the coordinator ended: {}", why);
  {
    std::lock_guard<std::mutex> lk(mu_);
    // The link that was up ended now; a connect that never got a welcome changes nothing.
    if (welcomed_) unlinked_since_ = std::chrono::steady_clock::now();
    welcomed_ = false;
    linked_ = false;
  }
  cv_.notify_all();
}

void Uplink::Stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
}

}  // namespace sbx::supervisor::runner
