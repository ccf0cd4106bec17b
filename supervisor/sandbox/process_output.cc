#include "supervisor/sandbox/process_output.h"
#include "base/clock.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

#include "base/fs.h"

namespace sbx::supervisor {
namespace {

Result<UniqueFd> CreateFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return ErrnoError("creating {}", path);
  return UniqueFd(fd);
}

Result<ProcessEvent> EventFromJson(const nlohmann::json& j) {
  ProcessEvent e;
  try {
    e.seq = j.at("seq").get<int64_t>();
    e.ts_ms = j.at("ts").get<int64_t>();
    const std::string type = j.at("type").get<std::string>();
    if (type == "process.started") {
      e.type = ProcessEventType::kStarted;
    } else if (type == "process.log") {
      e.type = ProcessEventType::kLog;
      e.stream = j.at("stream").get<std::string>() == "stderr" ? 2 : 1;
      e.offset = j.at("offset").get<int64_t>();
      e.length = j.at("length").get<int64_t>();
    } else if (type == "process.finished") {
      e.type = ProcessEventType::kFinished;
      e.result = j.value("result", nlohmann::json::object());
    } else {
      return MakeError(ErrorCode::kInvalidArgument, "unknown event type '{}'", type);
    }
  } catch (const nlohmann::json::exception& ex) {
    return MakeError(ErrorCode::kInvalidArgument, "malformed event: {}", ex.what());
  }
  return e;
}

}  // namespace

const char* ProcessEventTypeName(ProcessEventType type) {
  switch (type) {
    case ProcessEventType::kStarted:
      return "process.started";
    case ProcessEventType::kLog:
      return "process.log";
    case ProcessEventType::kFinished:
      return "process.finished";
  }
  return "";
}

nlohmann::json ProcessEventHead(const ProcessEvent& event) {
  nlohmann::json j = {{"type", ProcessEventTypeName(event.type)},
                      {"seq", event.seq},
                      {"ts", event.ts_ms}};
  if (event.type == ProcessEventType::kLog) {
    j["stream"] = event.stream == 2 ? "stderr" : "stdout";
    j["offset"] = event.offset;
    j["length"] = event.length;
  } else if (event.type == ProcessEventType::kFinished) {
    j["result"] = event.result;
  }
  return j;
}

std::string ProcessOutput::StreamPath(const std::string& dir, int stream) {
  return dir + (stream == 2 ? "/stderr" : "/stdout");
}

Result<std::unique_ptr<ProcessOutput>> ProcessOutput::Create(std::string dir, uint64_t cap_bytes) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoError("mkdir {}", dir);
  std::unique_ptr<ProcessOutput> out(new ProcessOutput());
  auto o = CreateFile(StreamPath(dir, 1));
  if (!o.ok()) return std::move(o).error();
  auto e = CreateFile(StreamPath(dir, 2));
  if (!e.ok()) return std::move(e).error();
  auto ev = CreateFile(dir + "/events");
  if (!ev.ok()) return std::move(ev).error();
  out->out_ = std::move(*o);
  out->err_ = std::move(*e);
  out->events_ = std::move(*ev);
  out->dir_ = std::move(dir);
  out->cap_ = cap_bytes;
  return out;
}

void ProcessOutput::AppendEvent(ProcessEvent event) {
  // mu_ held.
  event.seq = static_cast<int64_t>(events_list_.size()) + 1;
  event.ts_ms = NowMs();
  std::string line = ProcessEventHead(event).dump();
  line += '\n';
  // The events file is the record after the daemon has gone; a failed write loses the record of
  // this event there, never the bytes of the output (those are in their own file).
  (void)WriteAll(events_.get(), line);
  events_list_.push_back(event);
  for (auto& [token, listener] : listeners_) listener(events_list_.back());
}

void ProcessOutput::Started() {
  std::lock_guard lock(mu_);
  ProcessEvent e;
  e.type = ProcessEventType::kStarted;
  AppendEvent(std::move(e));
}

size_t ProcessOutput::Append(int stream, std::string_view bytes) {
  std::lock_guard lock(mu_);
  if (finished_ || bytes.empty()) return 0;
  const uint64_t used = sizes_[0] + sizes_[1];
  const uint64_t room = used >= cap_ ? 0 : cap_ - used;
  const size_t keep = static_cast<size_t>(std::min<uint64_t>(room, bytes.size()));
  dropped_ += bytes.size() - keep;
  if (keep == 0) return 0;
  const int fd = stream == 2 ? err_.get() : out_.get();
  if (!WriteAll(fd, bytes.substr(0, keep)).ok()) {
    dropped_ += keep;
    return 0;
  }
  uint64_t& size = sizes_[stream == 2 ? 1 : 0];
  ProcessEvent e;
  e.type = ProcessEventType::kLog;
  e.stream = stream == 2 ? 2 : 1;
  e.offset = static_cast<int64_t>(size);
  e.length = static_cast<int64_t>(keep);
  size += keep;
  AppendEvent(std::move(e));
  return keep;
}

void ProcessOutput::Finished(const nlohmann::json& result) {
  std::lock_guard lock(mu_);
  if (finished_) return;
  ProcessEvent e;
  e.type = ProcessEventType::kFinished;
  e.result = result;
  AppendEvent(std::move(e));
  finished_ = true;
  listeners_.clear();
  // No fsync: like the run logs and the store (WAL, synchronous=NORMAL), the events survive a
  // daemon crash through the page cache; a sync per process end cost every start milliseconds.
}

ProcessOutput::Subscription ProcessOutput::Subscribe(int64_t after, Listener listener) {
  std::lock_guard lock(mu_);
  Subscription s;
  const size_t from = after <= 0 ? 0 : static_cast<size_t>(after);
  if (from < events_list_.size()) {
    s.history.assign(events_list_.begin() + static_cast<std::ptrdiff_t>(from), events_list_.end());
  }
  s.finished = finished_;
  if (!finished_ && listener) {
    s.token = next_token_++;
    listeners_.emplace(s.token, std::move(listener));
  }
  return s;
}

void ProcessOutput::Unsubscribe(uint64_t token) {
  std::lock_guard lock(mu_);
  listeners_.erase(token);
}

uint64_t ProcessOutput::stored_bytes(int stream) const {
  std::lock_guard lock(mu_);
  return sizes_[stream == 2 ? 1 : 0];
}

bool ProcessOutput::truncated() const {
  std::lock_guard lock(mu_);
  return dropped_ > 0;
}

Result<std::vector<ProcessEvent>> ReadProcessEvents(const std::string& dir, int64_t after,
                                                    size_t limit) {
  // The events of an ended process: a few dozen bytes each, so 64 MiB is well past the largest
  // file a capped output can produce in practice.
  auto text = ReadFile(dir + "/events", 64u << 20);
  if (!text.ok()) {
    if (text.error().sys_errno == ENOENT) return std::vector<ProcessEvent>{};
    return std::move(text).error();
  }
  std::vector<ProcessEvent> out;
  size_t pos = 0;
  while (pos < text->size() && out.size() < limit) {
    size_t nl = text->find('\n', pos);
    if (nl == std::string::npos) break;  // a line cut short by a crash: not an event
    std::string_view line(text->data() + pos, nl - pos);
    pos = nl + 1;
    auto parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) break;
    auto e = EventFromJson(parsed);
    if (!e.ok()) break;
    if (e->seq > after) out.push_back(std::move(*e));
  }
  return out;
}

}  // namespace sbx::supervisor
