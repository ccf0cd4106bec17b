#include "api/v1/sandbox_routes.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "api/v1/node_proxy.h"
#include "api/v1/route_util.h"
#include "api/v1/sandbox_json.h"
#include "base/random.h"
#include "supervisor/observability/log.h"
#include "supervisor/workspace/text.h"

namespace sbx::api {
namespace {

using nlohmann::json;
using supervisor::ProcessEvent;
using supervisor::ProcessEventType;
using supervisor::ProcessOutput;
using supervisor::SandboxService;

using Ctx = SandboxRouteContext;

Reply Fail(const Error& e) { return ErrorResponseWithRetry(e); }

supervisor::Principal Who(const Ctx& c, const Request& req) { return ToPrincipal(*c.config, req); }

std::string Id(const Request& req) { return std::string(req.PathParam("id")); }
std::string Pid(const Request& req) { return std::string(req.PathParam("pid")); }

// {"reason": "…"} or an empty body.
Result<std::string> ReasonBody(const Request& req) {
  auto fields = OptionalStringFields(req, {"reason"});
  if (!fields.ok()) return std::move(fields).error();
  return (*fields)["reason"];
}

Reply SandboxReply(const Ctx& c, int status, const Result<store::SandboxRecord>& r) {
  if (!r.ok()) return Fail(r.error());
  return JsonResponse(status, SandboxToJson(*r, c.sandboxes->Live(r->id)));
}

Reply ProcessReply(const Result<store::ProcessRecord>& r, int status = 200) {
  if (!r.ok()) return Fail(r.error());
  return JsonResponse(status, ProcessToJson(*r));
}

// ---- Lifecycle ---------------------------------------------------------------------------

Reply CreateSandbox(const Ctx& c, const Request& req) {
  auto body = ParseBody(req, true);
  if (!body.ok()) return Fail(body.error());
  auto request = SandboxRequestFromJson(*body);
  if (!request.ok()) return Fail(request.error());
  if (auto key = req.headers.Get("Idempotency-Key")) request->idempotency_key = std::string(*key);
  auto created = c.sandboxes->Create(std::move(*request), Who(c, req));
  if (!created.ok()) return Fail(created.error());
  return JsonResponse(created->created ? 201 : 200,
                      SandboxToJson(created->sandbox, c.sandboxes->Live(created->sandbox.id)));
}

Reply ListSandboxes(const Ctx& c, const Request& req) {
  store::SandboxFilter f;
  for (auto s : req.query.GetAll("state")) {
    auto st = store::ParseSandboxState(s);
    if (!st.ok()) return Fail(FieldError("state", st.error().message));
    f.states.push_back(*st);
  }
  for (auto l : req.query.GetAll("label")) {
    size_t eq = l.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return Fail(FieldError("label", "use label=KEY=VALUE"));
    }
    f.labels[std::string(l.substr(0, eq))] = std::string(l.substr(eq + 1));
  }
  f.submitter = OwnerFilter(req);
  f.cursor = std::string(req.query.Get("cursor").value_or(""));
  auto limit = NonNegativeParam(req, "limit", 50);
  if (!limit.ok()) return Fail(limit.error());
  if (*limit < 1 || *limit > 1000) return Fail(FieldError("limit", "1 to 1000"));
  f.limit = static_cast<int>(*limit);
  auto page = c.sandboxes->List(std::move(f), Who(c, req));
  if (!page.ok()) return Fail(page.error());
  json out = json::array();
  for (const auto& s : page->sandboxes) out.push_back(SandboxToJson(s, c.sandboxes->Live(s.id)));
  return JsonResponse(200, {{"sandboxes", out},
                            {"next_cursor", page->next_cursor.empty()
                                                ? json(nullptr)
                                                : json(page->next_cursor)}});
}

// ---- Processes ---------------------------------------------------------------------------

// Waiters for ?wait=true run on threads of their own, not on the worker pool: a wait may last
// as long as the process (minutes), and the pool is a handful of threads every route shares.
std::atomic<int> active_waiters{0};
constexpr int kMaxWaiters = 64;
constexpr size_t kWaitOutputBytes = 1 << 20;

// How long ?wait=true waits: the process's own timeout and a margin for its end to be
// recorded, else 10 minutes.
std::chrono::milliseconds WaitTimeout(const store::ProcessRecord& p) {
  constexpr int64_t kMaxSeconds = 7 * 24 * 3600;
  if (!p.timeout_s) return std::chrono::minutes(10);
  return std::chrono::seconds(std::min(*p.timeout_s, kMaxSeconds) + 5);
}

Reply StartProcess(const Ctx& c, const Request& req) {
  auto wait = FlagParam(req, "wait");
  if (!wait.ok()) return Fail(wait.error());
  auto body = ParseBody(req, false);
  if (!body.ok()) return Fail(body.error());
  auto request = ProcessRequestFromJson(*body);
  if (!request.ok()) return Fail(request.error());
  if (*wait && active_waiters.load() >= kMaxWaiters) {
    return Fail(MakeError(ErrorCode::kResourceExhausted,
                          "{} requests already wait for their processes; start it without "
                          "wait=true and follow its events",
                          kMaxWaiters));
  }
  const supervisor::Principal who = Who(c, req);
  auto started = c.sandboxes->StartProcess(Id(req), std::move(*request), who);
  if (!started.ok()) return Fail(started.error());
  // A process waiting for review cannot be waited for here: a reviewer may take days.
  if (!*wait || started->state == store::ProcessState::kAwaitingReview) {
    return JsonResponse(201, ProcessToJson(*started));
  }
  StreamResponse sr;
  sr.content_type = "application/json";
  SandboxService* service = c.sandboxes;
  store::ProcessRecord process = std::move(*started);
  sr.start = [service, process, who](std::shared_ptr<StreamSink> sink) {
    ++active_waiters;
    std::thread([service, process, who, sink] {
      auto outcome = service->WaitProcess(process.sandbox_id, process.id, WaitTimeout(process),
                                          kWaitOutputBytes, who);
      json body;
      if (outcome.ok()) {
        body = ProcessOutcomeToJson(*outcome);
      } else {
        // The head (200) is sent: the body says what became of the wait.
        body = ProcessToJson(process);
        body["wait_error"] = {{"code", ErrorCodeName(outcome.error().code)},
                              {"message", outcome.error().message}};
      }
      // The body is up to a few MiB: written whole as the client takes it (this thread is
      // ours to block).
      (void)WriteWhole(sink, DumpJson(body));
      sink->Finish();
      --active_waiters;
    }).detach();
  };
  return sr;
}

Reply ListProcesses(const Ctx& c, const Request& req) {
  store::ProcessFilter f;
  if (auto tag = req.query.Get("tag")) {
    if (!IsValidProcessTag(*tag)) return Fail(FieldError("tag", "not a valid tag"));
    f.tag = std::string(*tag);
  }
  for (auto s : req.query.GetAll("state")) {
    auto st = store::ParseProcessState(s);
    if (!st.ok()) return Fail(FieldError("state", st.error().message));
    f.states.push_back(*st);
  }
  auto after = NonNegativeParam(req, "after");
  if (!after.ok()) return Fail(after.error());
  f.after_id = *after;
  auto limit = NonNegativeParam(req, "limit", 100);
  if (!limit.ok()) return Fail(limit.error());
  if (*limit < 1 || *limit > 1000) return Fail(FieldError("limit", "1 to 1000"));
  f.limit = static_cast<int>(*limit);
  auto list = c.sandboxes->ListProcesses(Id(req), std::move(f), Who(c, req));
  if (!list.ok()) return Fail(list.error());
  json out = json::array();
  for (const auto& p : *list) out.push_back(ProcessToJson(p));
  return JsonResponse(200, {{"processes", out}});
}

Reply SignalProcess(const Ctx& c, const Request& req) {
  auto body = ParseBody(req, false);
  if (!body.ok()) return Fail(body.error());
  if (!body->is_object()) return Fail(FieldError("body", "must be a JSON object {\"signal\"}"));
  for (auto it = body->begin(); it != body->end(); ++it) {
    if (it.key() != "signal") return Fail(FieldError(it.key(), "unknown field (signal)"));
  }
  if (!body->contains("signal")) return Fail(FieldError("signal", "is required"));
  auto sig = ParseSignal((*body)["signal"]);
  if (!sig.ok()) return Fail(sig.error());
  Status st = c.sandboxes->Signal(Id(req), Pid(req), *sig, Who(c, req));
  if (!st.ok()) return Fail(st.error());
  return ProcessReply(c.sandboxes->GetProcess(Id(req), Pid(req), Who(c, req)), 202);
}

Result<isolate::PtySize> PtySizeFrom(const json& body) {
  if (!body.is_object()) return FieldError("body", "must be a JSON object {\"cols\", \"rows\"}");
  isolate::PtySize size;
  for (auto it = body.begin(); it != body.end(); ++it) {
    if (it.key() == "type") continue;
    if (it.key() != "cols" && it.key() != "rows") {
      return FieldError(it.key(), "unknown field (cols, rows)");
    }
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 1 ||
        it.value().get<int64_t>() > 1000) {
      return FieldError(it.key(), "must be an integer from 1 to 1000");
    }
    (it.key() == "cols" ? size.cols : size.rows) =
        static_cast<uint16_t>(it.value().get<int64_t>());
  }
  if (!body.contains("cols") || !body.contains("rows")) {
    return FieldError("body", "give cols and rows");
  }
  return size;
}

// GET …/logs?stream=stdout|stderr&offset=N: the stored bytes from N on, streamed from the file.
Reply ProcessLogs(const Ctx& c, const Request& req) {
  std::string stream(req.query.Get("stream").value_or("stdout"));
  if (stream != "stdout" && stream != "stderr") {
    return Fail(FieldError("stream", "use stdout or stderr"));
  }
  auto offset = NonNegativeParam(req, "offset");
  if (!offset.ok()) return Fail(offset.error());
  auto out = c.sandboxes->Output(Id(req), Pid(req), Who(c, req));
  if (!out.ok()) return Fail(out.error());
  const std::string path = ProcessOutput::StreamPath(out->dir, stream == "stderr" ? 2 : 1);
  Response empty;
  empty.content_type = "application/octet-stream";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    if (errno == ENOENT) return empty;  // never started: nothing was stored
    return Fail(ErrnoError("open the {} of process {}", stream, Pid(req)));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0 || !S_ISREG(st.st_mode)) {
    return Fail(MakeError(ErrorCode::kInternal, "the {} of process {} is not a file", stream,
                          Pid(req)));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const uint64_t from = std::min<uint64_t>(static_cast<uint64_t>(*offset), size);
  constexpr uint64_t kInlineBytes = 1 << 20;
  if (size - from <= kInlineBytes) {
    auto bytes = ReadAt(fd.get(), from, static_cast<size_t>(size - from));
    if (!bytes.ok()) return Fail(bytes.error());
    empty.body = std::move(*bytes);
    return empty;
  }
  StreamResponse sr;
  auto shared = std::make_shared<const UniqueFd>(std::move(fd));
  sr.start = [shared, from, size](std::shared_ptr<StreamSink> sink) {
    std::make_shared<FileStreamer>(std::move(sink), shared, from, size - from)->Pump();
  };
  return sr;
}

// ---- The events and terminal WebSockets --------------------------------------------------

// Feeds one process's events to a WebSocket at the client's pace: the history first (from
// memory while the process is live here, else from its events file), then each new event.
// Nothing runs on the output thread that appends events: its listener queues the event (a few
// dozen bytes; the bytes stay in the stream files) and wakes the feed, whose Drain runs on the
// worker pool and reads the bytes while it sends. The queue is bounded: past kMaxPending, new
// events are not queued, and once the queue has drained the feed subscribes again from the
// last event it queued (the history of a live process is in memory), so a slow client lags but
// never misses an event and never costs more than the bound.
class EventFeed : public std::enable_shared_from_this<EventFeed> {
 public:
  enum class Mode {
    kJson,    // text messages of JSON
    kBinary,  // process.log as binary messages (a JSON line, a newline, the bytes)
    kPty,     // stdout's bytes alone, as binary messages; the last 64 KiB first
  };

  EventFeed(std::shared_ptr<WebSocket> ws, SandboxService::OutputHandle handle, Mode mode,
            int64_t after)
      : ws_(std::move(ws)),
        sandbox_id_(handle.process.sandbox_id),
        process_id_(handle.process.id),
        dir_(handle.dir),
        live_(std::move(handle.live)),
        mode_(mode),
        streams_(dir_),
        last_sent_(after),
        last_queued_(after) {}

  void Start() {
    ws_->OnClose([self = shared_from_this()](WebSocket::CloseReason) { self->Stop(); });
    if (!live_) {
      if (mode_ == Mode::kPty) {
        // An ended terminal: what it showed last, and the end.
        SendScrollback(-1);
        ws_->Close();
        return;
      }
      {
        std::lock_guard lock(mu_);
        from_file_ = true;
      }
      return Drain();
    }
    // Start is the drainer until the subscription is in place: a listener's wake-up meanwhile
    // only marks that there is more (the scrollback goes out before any live byte).
    {
      std::lock_guard lock(mu_);
      draining_ = true;
    }
    Subscribe(mode_ == Mode::kPty ? 0 : last_queued_);
    {
      std::lock_guard lock(mu_);
      draining_ = false;
    }
    Drain();
  }

  void Stop() {
    uint64_t token = 0;
    {
      std::lock_guard lock(mu_);
      stopped_ = true;
      pending_.clear();
      token = std::exchange(token_, 0);
    }
    if (token != 0 && live_) live_->Unsubscribe(token);
  }

 private:
  static constexpr size_t kMaxPending = 4096;
  static constexpr int64_t kScrollbackBytes = 64 << 10;

  // Registers the listener and queues the history (events with seq > after). Never called with
  // mu_ held: the listener runs under the output's own lock and takes mu_.
  void Subscribe(int64_t after) {
    uint64_t gen = 0;
    {
      std::lock_guard lock(mu_);
      gen = ++generation_;
      behind_ = false;
    }
    std::weak_ptr<EventFeed> weak = weak_from_this();
    auto sub = live_->Subscribe(after, [weak, gen](const ProcessEvent& e) {
      if (auto self = weak.lock()) self->OnEvent(e, gen);
    });
    std::vector<ProcessEvent> history = std::move(sub.history);
    if (mode_ == Mode::kPty && !scrollback_sent_) {
      // The bytes the history's stdout events cover end at `end`; the live events go on from
      // there, so the scrollback is the 64 KiB before it.
      int64_t end = 0;
      for (const auto& e : history) {
        if (e.type == ProcessEventType::kLog && e.stream == 1) {
          end = std::max(end, e.offset + e.length);
        }
      }
      SendScrollback(end);
      std::erase_if(history, [](const ProcessEvent& e) {
        return e.type != ProcessEventType::kFinished;
      });
    }
    {
      std::lock_guard lock(mu_);
      if (!stopped_) {
        token_ = sub.token;
        // Ended already: once the history is out there is nothing to wait for (a client that
        // resumes after the last event gets the close at once).
        output_finished_ = sub.finished;
        // The listener may have queued newer events already; the history goes before them.
        pending_.insert(pending_.begin(), history.begin(), history.end());
        for (const auto& e : pending_) last_queued_ = std::max(last_queued_, e.seq);
        return;
      }
    }
    // Stopped meanwhile. Unsubscribed without mu_ held: the listener takes mu_ under the
    // output's own lock.
    if (sub.token != 0) live_->Unsubscribe(sub.token);
  }

  // The last 64 KiB of stdout before `end` (-1: the file's end), as the first message.
  void SendScrollback(int64_t end) {
    scrollback_sent_ = true;
    if (end < 0) {
      struct stat st {};
      std::string path = ProcessOutput::StreamPath(dir_, 1);
      end = ::stat(path.c_str(), &st) == 0 ? st.st_size : 0;
    }
    const int64_t from = std::max<int64_t>(0, end - kScrollbackBytes);
    if (end > from) ws_->SendBinary(streams_.Read(1, from, end - from), std::nullopt);
  }

  void OnEvent(const ProcessEvent& e, uint64_t gen) {
    {
      std::lock_guard lock(mu_);
      if (stopped_ || gen != generation_ || behind_) return;
      if (pending_.size() >= kMaxPending) {
        behind_ = true;
        return;
      }
      pending_.push_back(e);
      last_queued_ = std::max(last_queued_, e.seq);
    }
    Wake();
  }

  // Drain on the worker pool (OnWritable runs it there, at once when the queue has room).
  void Wake() {
    std::weak_ptr<EventFeed> weak = weak_from_this();
    ws_->OnWritable([weak] {
      if (auto self = weak.lock()) self->Drain();
    });
  }

  // One drainer at a time; a wake during a drain makes it look again.
  void Drain() {
    {
      std::lock_guard lock(mu_);
      if (draining_) {
        again_ = true;
        return;
      }
      draining_ = true;
    }
    for (;;) {
      DrainOnce();
      std::lock_guard lock(mu_);
      if (!again_ || stopped_) {
        draining_ = false;
        return;
      }
      again_ = false;
    }
  }

  void DrainOnce() {
    for (;;) {
      ProcessEvent next;
      bool resubscribe = false;
      bool read_file = false;
      bool ended = false;
      {
        std::lock_guard lock(mu_);
        if (stopped_) return;
        if (pending_.empty()) {
          if (from_file_ && !file_done_) {
            read_file = true;
          } else if (from_file_) {
            // A process not live here: its history is all there is (none yet for one
            // awaiting review).
            stopped_ = true;
            ended = true;
          } else if (behind_) {
            resubscribe = true;
          } else if (output_finished_) {
            stopped_ = true;
            ended = true;
          } else {
            return;  // caught up: the listener wakes us
          }
        } else {
          next = pending_.front();
        }
      }
      if (ended) {
        ws_->Close();
        return;
      }
      if (read_file) {
        constexpr size_t kPage = 500;
        auto page = supervisor::ReadProcessEvents(dir_, last_queued_, kPage);
        std::lock_guard lock(mu_);
        if (!page.ok() || page->size() < kPage) file_done_ = true;
        if (page.ok()) {
          for (auto& e : *page) {
            last_queued_ = std::max(last_queued_, e.seq);
            pending_.push_back(std::move(e));
          }
        }
        continue;
      }
      if (resubscribe) {
        uint64_t token = 0;
        {
          std::lock_guard lock(mu_);
          token = std::exchange(token_, 0);
        }
        if (token != 0) live_->Unsubscribe(token);
        Subscribe(last_queued_);
        continue;
      }
      if (next.seq <= last_sent_) {  // never twice
        Pop();
        continue;
      }
      switch (Send(next)) {
        case SendOutcome::kSent:
          last_sent_ = next.seq;
          Pop();
          if (next.type == ProcessEventType::kFinished) {
            ws_->Close();
            Stop();
            return;
          }
          continue;
        case SendOutcome::kNoRoom:
          Wake();
          return;
        case SendOutcome::kClosed:
          Stop();
          return;
      }
    }
  }

  void Pop() {
    std::lock_guard lock(mu_);
    if (!pending_.empty()) pending_.pop_front();
  }

  enum class SendOutcome { kSent, kNoRoom, kClosed };

  SendOutcome Send(const ProcessEvent& e) {
    if (ws_->closed()) return SendOutcome::kClosed;
    if (ws_->queue_space() == 0) return SendOutcome::kNoRoom;
    WebSocket::SendResult r = WebSocket::SendResult::kQueued;
    const bool log = e.type == ProcessEventType::kLog;
    if (mode_ == Mode::kPty) {
      // The terminal shows output alone: the bytes of stdout (a pty's output) and nothing else.
      if (!log || e.stream != 1) return SendOutcome::kSent;
      FileBytes range = streams_.Range(1, e.offset, e.length);
      if (!ws_->HasRoomFor(range.length)) return SendOutcome::kNoRoom;
      r = range.fd ? ws_->SendBinary("", std::move(range), e.seq)
                   : ws_->SendBinary(streams_.Read(1, e.offset, e.length), e.seq);
    } else if (mode_ == Mode::kBinary && log) {
      std::string head = ProcessEventBinaryHead(e, sandbox_id_, process_id_);
      FileBytes range = streams_.Range(e.stream, e.offset, e.length);
      if (!ws_->HasRoomFor(head.size() + static_cast<size_t>(std::max<int64_t>(0, e.length)))) {
        return SendOutcome::kNoRoom;
      }
      r = range.fd ? ws_->SendBinary(std::move(head), std::move(range), e.seq)
                   : ws_->SendBinary(head + streams_.Read(e.stream, e.offset, e.length), e.seq);
    } else {
      std::string text = DumpJson(ProcessEventToJson(e, sandbox_id_, process_id_, streams_));
      if (!ws_->HasRoomFor(text.size())) return SendOutcome::kNoRoom;
      r = ws_->Send(std::move(text), e.seq);
    }
    return r == WebSocket::SendResult::kQueued ? SendOutcome::kSent : SendOutcome::kClosed;
  }

  const std::shared_ptr<WebSocket> ws_;
  const std::string sandbox_id_;
  const int64_t process_id_;
  const std::string dir_;
  const std::shared_ptr<ProcessOutput> live_;
  const Mode mode_;
  ProcessStreams streams_;  // the drainer's (one at a time) and Start's, before any drain
  bool scrollback_sent_ = false;
  int64_t last_sent_;  // the drainer's

  std::mutex mu_;
  std::deque<ProcessEvent> pending_;
  int64_t last_queued_;
  uint64_t token_ = 0;
  uint64_t generation_ = 0;
  bool behind_ = false;
  bool from_file_ = false;
  bool file_done_ = false;
  bool output_finished_ = false;  // the live output had ended when subscribed
  bool draining_ = false;
  bool again_ = false;
  bool stopped_ = false;
};

Reply ProcessEvents(const Ctx& c, const Request& req) {
  auto after = NonNegativeParam(req, "after");
  if (!after.ok()) return Fail(after.error());
  EventFeed::Mode mode = EventFeed::Mode::kJson;
  if (auto f = req.query.Get("format")) {
    if (*f == "binary") {
      mode = EventFeed::Mode::kBinary;
    } else if (*f != "json") {
      return Fail(FieldError("format", "must be json or binary"));
    }
  }
  auto out = c.sandboxes->Output(Id(req), Pid(req), Who(c, req));
  if (!out.ok()) return Fail(out.error());
  WebSocketAccept accept;
  accept.resume_after = *after;
  SandboxService* service = c.sandboxes;
  const supervisor::Principal who = Who(c, req);
  accept.on_open = [service, who, handle = std::move(*out), mode,
                    after = *after](std::shared_ptr<WebSocket> ws) {
    // Input: a binary message is bytes for the process's stdin; a text message is
    // {"type": "stdin", "data" or "data_b64", "close": bool}. A failure is answered with an
    // error message; the stream goes on (the output may still be coming).
    const std::string sandbox_id = handle.process.sandbox_id;
    const std::string pid = std::to_string(handle.process.id);
    std::weak_ptr<WebSocket> weak = ws;
    ws->OnMessage([service, who, sandbox_id, pid, weak](std::string_view data, bool binary) {
      auto answer = [&](const std::string& message) {
        if (auto w = weak.lock()) w->Send(DumpJson({{"type", "error"}, {"message", message}}));
      };
      std::string bytes;
      bool close = false;
      if (binary) {
        bytes = std::string(data);
      } else {
        json j = json::parse(data, nullptr, /*allow_exceptions=*/false);
        if (!j.is_object() || j.value("type", json()) != "stdin") {
          return answer("a text message is {\"type\": \"stdin\", \"data\": …, \"close\": …}");
        }
        if (auto d = j.find("data"); d != j.end() && d->is_string()) {
          bytes = d->get<std::string>();
        } else if (auto b = j.find("data_b64"); b != j.end() && b->is_string()) {
          if (!IsStrictBase64(b->get<std::string>())) return answer("data_b64: not base64");
          bytes = supervisor::Base64Decode(b->get<std::string>());
        }
        if (auto cl = j.find("close"); cl != j.end()) {
          if (!cl->is_boolean()) return answer("close: must be true or false");
          close = cl->get<bool>();
        }
      }
      Status st = service->WriteStdin(sandbox_id, pid, bytes, close, who);
      if (!st.ok()) answer(st.error().message);
    });
    std::make_shared<EventFeed>(std::move(ws), handle, mode, after)->Start();
  };
  return accept;
}

// {"type": "resize", "cols": C, "rows": R}, or nullopt when `text` is not such a message.
std::optional<json> ResizeMessage(std::string_view text) {
  if (text.empty() || text.front() != '{') return std::nullopt;
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("type", json()) != "resize") return std::nullopt;
  return j;
}

Reply ProcessPty(const Ctx& c, const Request& req) {
  const supervisor::Principal who = Who(c, req);
  auto out = c.sandboxes->Output(Id(req), Pid(req), who);
  if (!out.ok()) return Fail(out.error());
  if (!out->process.pty) {
    return Fail(MakeError(ErrorCode::kFailedPrecondition,
                          "process {} has no terminal; start it with \"pty\" or follow its "
                          "events",
                          out->process.id));
  }
  WebSocketAccept accept;
  SandboxService* service = c.sandboxes;
  accept.on_open = [service, handle = std::move(*out), who](std::shared_ptr<WebSocket> ws) {
    const std::string sandbox_id = handle.process.sandbox_id;
    const std::string pid = std::to_string(handle.process.id);
    // Input: every message as keystrokes, except a resize. An error (the process ended, its
    // terminal closed) ends the session.
    std::weak_ptr<WebSocket> weak = ws;
    ws->OnMessage([service, sandbox_id, pid, who, weak](std::string_view data, bool binary) {
      Status st = Ok();
      std::optional<json> resize = binary ? std::nullopt : ResizeMessage(data);
      if (resize) {
        auto size = PtySizeFrom(*resize);
        if (!size.ok()) {
          if (auto w = weak.lock()) {
            w->Send(DumpJson({{"type", "error"}, {"message", size.error().message}}));
          }
          return;
        }
        st = service->Resize(sandbox_id, pid, *size, who);
      } else {
        st = service->WriteStdin(sandbox_id, pid, data, false, who);
      }
      if (!st.ok()) {
        log::Info({.sandbox_id = sandbox_id}, "sandbox {}: terminal of process {}: {}", sandbox_id,
                  pid, st.error().message);
        if (auto w = weak.lock()) w->Close();
      }
    });
    std::make_shared<EventFeed>(std::move(ws), handle, EventFeed::Mode::kPty, 0)->Start();
  };
  return accept;
}

Reply ProcessStdin(const Ctx& c, const Request& req) {
  auto close = FlagParam(req, "close");
  if (!close.ok()) return Fail(close.error());
  Status st = c.sandboxes->WriteStdin(Id(req), Pid(req), req.body, *close, Who(c, req));
  if (!st.ok()) return Fail(st.error());
  return JsonResponse(200, {{"written", req.body.size()}, {"closed", *close}});
}

Reply ProcessResize(const Ctx& c, const Request& req) {
  auto body = ParseBody(req, false);
  if (!body.ok()) return Fail(body.error());
  if (body->is_object() && body->contains("type")) {
    return Fail(FieldError("type", "unknown field (cols, rows)"));
  }
  auto size = PtySizeFrom(*body);
  if (!size.ok()) return Fail(size.error());
  Status st = c.sandboxes->Resize(Id(req), Pid(req), *size, Who(c, req));
  if (!st.ok()) return Fail(st.error());
  return JsonResponse(200, {{"cols", size->cols}, {"rows", size->rows}});
}

// GET /v1/events/sandboxes (WebSocket): every change of state of the caller's sandboxes and
// their processes from now on (a reviewer's or an admin's: everyone's), one JSON message each:
//   {"type": "sandbox.state" | "process.state", "sandbox_id", "process_id" (processes),
//    "submitter", "state", "reason" (once ended), "ts"}
// Live only (no replay): a client subscribes, then lists, then applies the changes. A client
// that falls behind is closed with 1013 and lists again.
Reply SandboxChanges(const Ctx& c, const Request& req) {
  const supervisor::Principal who = Who(c, req);
  SandboxService* service = c.sandboxes;
  WebSocketAccept accept;
  accept.on_open = [service, who](std::shared_ptr<WebSocket> ws) {
    std::weak_ptr<WebSocket> weak = ws;
    const bool everyone = who.role != supervisor::Role::kSubmitter;
    const uint64_t token = service->SubscribeChanges(
        [weak, everyone, name = who.name](const supervisor::SandboxChange& ch) {
          if (!everyone && ch.submitter != name) return;
          auto socket = weak.lock();
          if (!socket) return;
          json j = {{"type", ch.process_id ? "process.state" : "sandbox.state"},
                    {"sandbox_id", ch.sandbox_id},
                    {"submitter", ch.submitter},
                    {"state", ch.state},
                    {"ts", std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count()}};
          if (ch.process_id) j["process_id"] = *ch.process_id;
          if (!ch.reason.empty()) j["reason"] = ch.reason;
          (void)socket->Send(DumpJson(j));  // past the queue's bound: closed with 1013
        });
    ws->OnClose([service, token](WebSocket::CloseReason) { service->UnsubscribeChanges(token); });
  };
  return accept;
}

}  // namespace


std::optional<Reply> SandboxElsewhere(const SandboxRouteContext& c, const Request& req,
                                      bool websocket) {
  if (!c.cluster || req.headers.Get("x-sandboxd-proxied")) return std::nullopt;
  const RouteContext& rc = *c.cluster;
  const std::string& self = rc.runs->options().node;
  const std::string id(req.PathParam("id"));
  if (!id.empty() && c.sandboxes->Hosts(id)) return std::nullopt;  // the common case: no read
  auto nodes = rc.store->ListNodes();
  if (!nodes.ok()) return std::nullopt;
  std::map<std::string, std::string> selector;
  if (id.empty()) {
    // POST /v1/sandboxes: where it starts is its node_selector's to say (the body is checked
    // where it lands).
    if (req.method != Method::kPost) return std::nullopt;
    const json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    auto it = body.is_object() ? body.find("node_selector") : body.end();
    if (it == body.end() || !it->is_object()) return std::nullopt;
    for (const auto& [key, value] : it->items()) {
      if (!value.is_string()) return std::nullopt;
      selector[key] = value.get<std::string>();
    }
  } else {
    auto sb = rc.store->GetSandbox(id);
    if (!sb.ok()) return std::nullopt;  // answered here: 404 as for any missing sandbox
    if (sb->node && !sb->node->empty()) {
      if (*sb->node == self) return std::nullopt;
      for (const auto& n : *nodes) {
        if (n.name != *sb->node || n.state == store::NodeState::kLost || n.address.empty()) {
          continue;
        }
        return websocket ? RelayWebSocketToNode(rc, req, n.name, n.address)
                         : ForwardToNode(rc, req, n.name, n.address);
      }
      return std::nullopt;  // its node is gone: its record is here, and it ends node_lost
    }
    // Not started yet: only its approval starts it, on a node its selector accepts.
    if (!req.path.ends_with(":approve")) return std::nullopt;
    selector = sb->node_selector;
  }
  auto carries = [&selector](const std::map<std::string, std::string>& labels) {
    for (const auto& [key, value] : selector) {
      auto it = labels.find(key);
      if (it == labels.end() || it->second != value) return false;
    }
    return true;
  };
  if (selector.empty() || carries(rc.runs->NodeLabels())) return std::nullopt;
  // A ready serve node that carries them, picked at random among those that do (a runner runs
  // no sandboxes).
  std::vector<const store::NodeRecord*> fit;
  for (const auto& n : *nodes) {
    if (n.name != self && n.state == store::NodeState::kReady && !n.address.empty() &&
        n.labels.count("runner") == 0 && carries(n.labels)) {
      fit.push_back(&n);
    }
  }
  if (fit.empty()) {
    std::string wanted;
    for (const auto& [key, value] : selector) {
      wanted += (wanted.empty() ? "" : ",") + key + "=" + value;
    }
    return ErrorResponse(409, "failed_precondition",
                         "no ready node carries node_selector " + wanted);
  }
  uint32_t pick = 0;
  RandomBytes(std::span(reinterpret_cast<unsigned char*>(&pick), sizeof pick));
  const store::NodeRecord& to = *fit[pick % fit.size()];
  return ForwardToNode(rc, req, to.name, to.address);
}

Status AddSandboxRoutes(Router& router, const SandboxRouteContext& ctx) {
  const Ctx c = ctx;
  using M = Method;
  auto add = [&router, c](Method m, std::string_view pattern, Access access,
                          Reply (*handler)(const Ctx&, const Request&)) {
    return router.Add(m, pattern, access, [c, handler](const Request& req) -> Reply {
      if (auto elsewhere = SandboxElsewhere(c, req, /*websocket=*/false)) {
        return std::move(*elsewhere);
      }
      return handler(c, req);
    });
  };
  auto add_ws = [&router, c](std::string_view pattern,
                             Reply (*handler)(const Ctx&, const Request&)) {
    return router.AddWebSocket(pattern, Access::kSubmitter, [c, handler](const Request& req) -> Reply {
      if (auto elsewhere = SandboxElsewhere(c, req, /*websocket=*/true)) {
        return std::move(*elsewhere);
      }
      return handler(c, req);
    });
  };
  const std::string base = "/v1/sandboxes";
  const std::string one = base + "/{id}";
  const std::string procs = one + "/processes";
  const std::string proc = procs + "/{pid}";

  SBX_TRY(add(M::kPost, base, Access::kSubmitter, CreateSandbox));
  SBX_TRY(add(M::kGet, base, Access::kSubmitter, ListSandboxes));
  SBX_TRY(add(M::kGet, one, Access::kSubmitter, [](const Ctx& c, const Request& req) -> Reply {
    return SandboxReply(c, 200, c.sandboxes->Get(Id(req), Who(c, req)));
  }));
  SBX_TRY(add(M::kDelete, one, Access::kSubmitter, [](const Ctx& c, const Request& req) -> Reply {
    return SandboxReply(c, 200, c.sandboxes->Delete(Id(req), Who(c, req)));
  }));
  SBX_TRY(add(M::kPost, one + ":approve", Access::kReviewer,
              [](const Ctx& c, const Request& req) -> Reply {
                return SandboxReply(c, 200, c.sandboxes->Approve(Id(req), Who(c, req)));
              }));
  SBX_TRY(add(M::kPost, one + ":reject", Access::kReviewer,
              [](const Ctx& c, const Request& req) -> Reply {
                auto reason = ReasonBody(req);
                if (!reason.ok()) return Fail(reason.error());
                return SandboxReply(c, 200, c.sandboxes->Reject(Id(req), Who(c, req), *reason));
              }));
  SBX_TRY(add(M::kPost, one + ":pause", Access::kSubmitter,
              [](const Ctx& c, const Request& req) -> Reply {
                return SandboxReply(c, 200, c.sandboxes->Pause(Id(req), Who(c, req)));
              }));
  SBX_TRY(add(M::kPost, one + ":resume", Access::kSubmitter,
              [](const Ctx& c, const Request& req) -> Reply {
                return SandboxReply(c, 200, c.sandboxes->Resume(Id(req), Who(c, req)));
              }));
  SBX_TRY(add(M::kPost, one + ":touch", Access::kSubmitter,
              [](const Ctx& c, const Request& req) -> Reply {
                return SandboxReply(c, 200, c.sandboxes->Touch(Id(req), Who(c, req)));
              }));

  SBX_TRY(add(M::kPost, procs, Access::kSubmitter, StartProcess));
  SBX_TRY(add(M::kGet, procs, Access::kSubmitter, ListProcesses));
  SBX_TRY(add(M::kGet, proc, Access::kSubmitter, [](const Ctx& c, const Request& req) -> Reply {
    return ProcessReply(c.sandboxes->GetProcess(Id(req), Pid(req), Who(c, req)));
  }));
  SBX_TRY(add(M::kPost, proc + ":signal", Access::kSubmitter, SignalProcess));
  SBX_TRY(add(M::kPost, proc + ":kill", Access::kSubmitter,
              [](const Ctx& c, const Request& req) -> Reply {
                Status st = c.sandboxes->Kill(Id(req), Pid(req), Who(c, req));
                if (!st.ok()) return Fail(st.error());
                return ProcessReply(c.sandboxes->GetProcess(Id(req), Pid(req), Who(c, req)), 202);
              }));
  SBX_TRY(add(M::kPost, proc + ":approve", Access::kReviewer,
              [](const Ctx& c, const Request& req) -> Reply {
                return ProcessReply(c.sandboxes->ApproveProcess(Id(req), Pid(req), Who(c, req)));
              }));
  SBX_TRY(add(M::kPost, proc + ":reject", Access::kReviewer,
              [](const Ctx& c, const Request& req) -> Reply {
                auto reason = ReasonBody(req);
                if (!reason.ok()) return Fail(reason.error());
                return ProcessReply(
                    c.sandboxes->RejectProcess(Id(req), Pid(req), Who(c, req), *reason));
              }));
  SBX_TRY(add(M::kPost, proc + ":stdin", Access::kSubmitter, ProcessStdin));
  SBX_TRY(add(M::kPost, proc + ":resize", Access::kSubmitter, ProcessResize));
  SBX_TRY(add(M::kGet, proc + "/logs", Access::kSubmitter, ProcessLogs));
  SBX_TRY(add_ws(proc + "/events", ProcessEvents));
  SBX_TRY(add_ws(proc + "/pty", ProcessPty));
  SBX_TRY(router.AddWebSocket("/v1/events/sandboxes", Access::kSubmitter,
                              [c](const Request& req) -> Reply { return SandboxChanges(c, req); }));
  SBX_TRY(AddSnapshotRoutes(router, ctx));
  return AddSandboxFileRoutes(router, ctx);
}

}  // namespace sbx::api
