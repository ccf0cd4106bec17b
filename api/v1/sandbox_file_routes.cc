// The files of a sandbox (docs/sandboxes.md, "Files"): every path is the sandbox's own and is
// resolved inside its root by supervisor/files (RESOLVE_IN_ROOT, the sandbox user's ids), so
// "..", symlinks and magic links never reach the host. The handlers block on file-system I/O
// on the worker pool; the watch WebSocket's inotify descriptors are polled by one thread of
// their own.
#include <sys/epoll.h>

#include <charconv>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>

#include "api/v1/route_util.h"
#include "api/v1/sandbox_routes.h"
#include "supervisor/files/files.h"
#include "supervisor/files/tar.h"
#include "supervisor/files/watch.h"
#include "supervisor/observability/log.h"

namespace sbx::api {
namespace {

using nlohmann::json;
using Ctx = SandboxRouteContext;

Reply Fail(const Error& e) { return ErrorResponseWithRetry(e); }

Result<std::string> PathParam(const Request& req, const char* name = "path") {
  auto p = req.query.Get(name);
  if (!p || p->empty()) return FieldError(name, "is required (a path inside the sandbox)");
  return std::string(*p);
}

Result<files::SandboxRoot> Root(const Ctx& c, const Request& req) {
  return c.sandboxes->Files(req.PathParam("id"), ToPrincipal(*c.config, req));
}

std::string ModeText(uint32_t mode) { return fmt::format("{:04o}", mode & 07777); }

json InfoToJson(const files::FileInfo& f, bool with_target) {
  json j = {{"name", f.name},
            {"type", files::FileTypeName(f.type)},
            {"size", f.size},
            {"mode", ModeText(f.mode)},
            {"mtime", f.mtime_ns / 1'000'000}};
  if (with_target) {
    j["link_target"] = f.type == files::FileType::kSymlink ? json(f.link_target) : json(nullptr);
  }
  return j;
}

json ListingToJson(const files::DirListing& l) {
  json entries = json::array();
  for (const auto& e : l.entries) entries.push_back(InfoToJson(e, false));
  return {{"entries", entries}, {"truncated", l.truncated}};
}

// ?mode=0644: octal permission bits, 0777 at most.
Result<std::optional<uint32_t>> ModeParam(const Request& req) {
  auto m = req.query.Get("mode");
  if (!m) return std::optional<uint32_t>();
  uint32_t mode = 0;
  auto [end, ec] = std::from_chars(m->data(), m->data() + m->size(), mode, 8);
  if (m->empty() || m->size() > 4 || ec != std::errc() || end != m->data() + m->size() ||
      mode > 0777) {
    return FieldError("mode", "octal permission bits, 0000 to 0777 (e.g. 0644)");
  }
  return std::optional<uint32_t>(mode);
}

// What a files request names: ?path=, the query parameters the handler takes, and the sandbox's
// files, read in that order (a missing path is told before a bad parameter, both before an
// unknown sandbox).
struct Takes {
  bool mode = false;       // ?mode=0644
  bool parents = false;    // ?parents=true
  bool recursive = false;  // ?recursive=true
};
struct Target {
  std::string path;
  std::optional<uint32_t> mode;
  bool parents = false;
  bool recursive = false;
  files::SandboxRoot root;
};
Result<Target> OpenTarget(const Ctx& c, const Request& req, Takes takes = {}) {
  auto path = PathParam(req);
  if (!path.ok()) return std::move(path).error();
  std::optional<uint32_t> mode;
  if (takes.mode) {
    auto m = ModeParam(req);
    if (!m.ok()) return std::move(m).error();
    mode = *m;
  }
  bool parents = false, recursive = false;
  for (auto [wanted, name, out] : {std::tuple{takes.parents, "parents", &parents},
                                   std::tuple{takes.recursive, "recursive", &recursive}}) {
    if (!wanted) continue;
    auto flag = FlagParam(req, name);
    if (!flag.ok()) return std::move(flag).error();
    *out = *flag;
  }
  auto root = Root(c, req);
  if (!root.ok()) return std::move(root).error();
  return Target{std::move(*path), mode, parents, recursive, std::move(*root)};
}

// A single "bytes=" range of a file of `size` bytes: [first, last]. nullopt: no Range header,
// or one this server ignores (several ranges, another unit), so the whole file goes out.
// kFailedPrecondition: unsatisfiable (416).
struct ByteRange {
  uint64_t first = 0, last = 0;
};
Result<std::optional<ByteRange>> ParseRange(std::optional<std::string_view> header,
                                            uint64_t size) {
  if (!header) return std::optional<ByteRange>();
  std::string_view h = *header;
  if (!h.starts_with("bytes=") || h.find(',') != std::string_view::npos) {
    return std::optional<ByteRange>();
  }
  h.remove_prefix(6);
  size_t dash = h.find('-');
  if (dash == std::string_view::npos) return std::optional<ByteRange>();
  auto number = [](std::string_view s, uint64_t* out) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
    return !s.empty() && ec == std::errc() && end == s.data() + s.size();
  };
  std::string_view a = h.substr(0, dash), b = h.substr(dash + 1);
  uint64_t first = 0, last = 0;
  auto unsatisfiable = [] {
    return MakeError(ErrorCode::kFailedPrecondition, "the range is outside the file");
  };
  if (a.empty()) {  // the last N bytes
    uint64_t n = 0;
    if (!number(b, &n)) return std::optional<ByteRange>();
    if (n == 0 || size == 0) return unsatisfiable();
    first = size - std::min(n, size);
    last = size - 1;
  } else {
    if (!number(a, &first)) return std::optional<ByteRange>();
    if (b.empty()) {
      last = size == 0 ? 0 : size - 1;
    } else if (!number(b, &last) || last < first) {
      return std::optional<ByteRange>();
    }
    if (first >= size) return unsatisfiable();
    last = std::min(last, size - 1);
  }
  return std::optional<ByteRange>(ByteRange{first, last});
}

Reply GetFile(const Ctx& c, const Request& req) {
  auto t = OpenTarget(c, req);
  if (!t.ok()) return Fail(t.error());
  auto read = t->root.Read(t->path);
  if (!read.ok()) return Fail(read.error());
  if (read->listing) return JsonResponse(200, ListingToJson(*read->listing));
  const uint64_t size = read->info.size;
  auto range = ParseRange(req.headers.Get("Range"), size);
  if (!range.ok()) {
    Response r = ErrorResponse(416, "range_not_satisfiable", range.error().message);
    r.headers.Add("Content-Range", fmt::format("bytes */{}", size));
    return r;
  }
  uint64_t first = 0, length = size;
  int status = 200;
  HeaderList headers;
  headers.Add("Accept-Ranges", "bytes");
  if (*range) {
    first = (*range)->first;
    length = (*range)->last - first + 1;
    status = 206;
    headers.Add("Content-Range", fmt::format("bytes {}-{}/{}", first, (*range)->last, size));
  }
  constexpr uint64_t kInlineBytes = 1 << 20;
  if (length <= kInlineBytes) {
    auto bytes = ReadAt(read->file.get(), first, static_cast<size_t>(length));
    if (!bytes.ok()) return Fail(bytes.error());
    Response r;
    r.status = status;
    r.content_type = "application/octet-stream";
    r.headers = std::move(headers);
    r.body = std::move(*bytes);
    return r;
  }
  StreamResponse sr;
  sr.status = status;
  sr.headers = std::move(headers);
  auto fd = std::make_shared<const UniqueFd>(std::move(read->file));
  sr.start = [fd, first, length](std::shared_ptr<StreamSink> sink) {
    std::make_shared<FileStreamer>(std::move(sink), fd, first, length)->Pump();
  };
  return sr;
}

Reply PutFile(const Ctx& c, const Request& req) {
  auto t = OpenTarget(c, req, {.mode = true, .parents = true});
  if (!t.ok()) return Fail(t.error());
  files::WriteOptions options;
  options.mode = t->mode;
  options.make_parents = t->parents;
  auto upload = t->root.BeginWrite(t->path, options);
  if (!upload.ok()) return Fail(upload.error());
  // Nothing replaces the file unless every byte was taken: a failed Append or Commit leaves
  // the old file as it was and the data discarded.
  if (Status st = upload->Append(req.body); !st.ok()) return Fail(st.error());
  if (Status st = upload->Commit(); !st.ok()) return Fail(st.error());
  return JsonResponse(200, {{"path", t->path}, {"size", req.body.size()}});
}

Reply StatFile(const Ctx& c, const Request& req) {
  auto t = OpenTarget(c, req);
  if (!t.ok()) return Fail(t.error());
  auto info = t->root.Stat(t->path);
  if (!info.ok()) return Fail(info.error());
  return JsonResponse(200, InfoToJson(*info, true));
}

Reply MakeDir(const Ctx& c, const Request& req) {
  auto t = OpenTarget(c, req, {.mode = true});
  if (!t.ok()) return Fail(t.error());
  if (Status st = t->root.MakeDirectories(t->path, t->mode.value_or(0755)); !st.ok()) {
    return Fail(st.error());
  }
  return JsonResponse(200, {{"path", t->path}});
}

Reply DeleteFile(const Ctx& c, const Request& req) {
  auto t = OpenTarget(c, req, {.recursive = true});
  if (!t.ok()) return Fail(t.error());
  if (Status st = t->root.Remove(t->path, t->recursive); !st.ok()) return Fail(st.error());
  return JsonResponse(200, {{"path", t->path}, {"deleted", true}});
}

Reply MoveFile(const Ctx& c, const Request& req) {
  auto body = ParseBody(req, false);
  if (!body.ok()) return Fail(body.error());
  if (!body->is_object()) return Fail(FieldError("body", "must be {\"from\", \"to\"}"));
  std::string from, to;
  bool replace = false;
  for (auto it = body->begin(); it != body->end(); ++it) {
    if (it.key() == "from" || it.key() == "to") {
      if (!it.value().is_string() || it.value().get<std::string>().empty()) {
        return Fail(FieldError(it.key(), "must be a path inside the sandbox"));
      }
      (it.key() == "from" ? from : to) = it.value().get<std::string>();
    } else if (it.key() == "replace") {
      if (!it.value().is_boolean()) return Fail(FieldError("replace", "must be true or false"));
      replace = it.value().get<bool>();
    } else {
      return Fail(FieldError(it.key(), "unknown field (from, to, replace)"));
    }
  }
  if (from.empty() || to.empty()) return Fail(FieldError("body", "give from and to"));
  auto root = Root(c, req);
  if (!root.ok()) return Fail(root.error());
  if (Status st = root->Move(from, to, replace); !st.ok()) return Fail(st.error());
  return JsonResponse(200, {{"from", from}, {"to", to}});
}

// GET files:tar: the directory as a tar stream. WriteTar pushes on this thread (it holds the
// sandbox user's ids while it walks); a full response buffer makes it wait here, woken by
// OnWritable or, when every worker is busy and that callback cannot run yet, by a short poll.
Reply TarOut(const Ctx& c, const Request& req) {
  auto t = OpenTarget(c, req);
  if (!t.ok()) return Fail(t.error());
  // Refused before the head goes out: a missing path or one that is no directory or file.
  auto info = t->root.Stat(t->path);
  if (!info.ok()) return Fail(info.error());
  StreamResponse sr;
  sr.content_type = "application/x-tar";
  auto shared = std::make_shared<files::SandboxRoot>(std::move(t->root));
  std::string sandbox_id(req.PathParam("id"));
  sr.start = [shared, p = t->path, sandbox_id](std::shared_ptr<StreamSink> sink) {
    struct Gate {
      std::mutex mu;
      std::condition_variable cv;
      bool writable = false;
    };
    auto gate = std::make_shared<Gate>();
    files::ByteSink out = [sink, gate](std::string_view data) -> Status {
      for (;;) {
        switch (sink->Write(data)) {
          case StreamSink::WriteResult::kOk:
            return Ok();
          case StreamSink::WriteResult::kClosed:
            return MakeError(ErrorCode::kUnavailable, "the client went away");
          case StreamSink::WriteResult::kBackoff:
            break;
        }
        {
          std::lock_guard lock(gate->mu);
          gate->writable = false;
        }
        sink->OnWritable([gate] {
          std::lock_guard lock(gate->mu);
          gate->writable = true;
          gate->cv.notify_all();
        });
        std::unique_lock lock(gate->mu);
        gate->cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return gate->writable; });
      }
    };
    auto stats = files::WriteTar(*shared, p, out);
    if (!stats.ok()) {
      // The body so far lacks the archive's end blocks: a tar reader reports it truncated.
      log::Warning({.sandbox_id = sandbox_id}, "sandbox {}: tar of {} ended early: {}",
                   sandbox_id, p, stats.error().ToString());
    }
    sink->Finish();
  };
  return sr;
}

// PUT files:tar: a tar stream into the directory (with ?parents=true created first). The whole
// stream is checked before anything is written (files/tar.h): one refused entry, such as a
// "../" name, changes nothing.
Reply TarIn(const Ctx& c, const Request& req) {
  auto t = OpenTarget(c, req, {.parents = true});
  if (!t.ok()) return Fail(t.error());
  size_t pos = 0;
  const std::string& body = req.body;
  files::ByteSource source = [&body, &pos](char* buf, size_t n) -> Result<size_t> {
    size_t take = std::min(n, body.size() - pos);
    std::memcpy(buf, body.data() + pos, take);
    pos += take;
    return take;
  };
  files::ExtractOptions options;
  options.make_dir = t->parents;
  auto stats = files::ExtractTar(t->root, t->path, source, options);
  if (!stats.ok()) return Fail(stats.error());
  return JsonResponse(200, {{"path", t->path},
                            {"entries", stats->entries},
                            {"bytes", stats->bytes},
                            {"skipped", stats->skipped}});
}

// The watch sessions' inotify descriptors, polled by one thread with epoll: each readable one
// has its events read (Watcher::Read never blocks) and sent. A session's watcher is driven
// under its own lock, by this thread alone, until the session ends.
class WatchSession {
 public:
  WatchSession(std::shared_ptr<WebSocket> ws, files::SandboxRoot root,
               std::unique_ptr<files::Watcher> watcher)
      : ws_(std::move(ws)), root_(std::move(root)), watcher_(std::move(watcher)) {}

  int fd() {
    std::lock_guard lock(mu_);
    return watcher_ ? watcher_->fd() : -1;
  }
  // Reads and sends what is waiting; false once the session is over.
  bool Poll() {
    std::lock_guard lock(mu_);
    if (!watcher_) return false;
    auto events = watcher_->Read();
    if (!events.ok()) {
      ws_->Send(DumpJson({{"type", "error"}, {"message", events.error().message}}));
      ws_->Close();
      watcher_.reset();
      return false;
    }
    for (const auto& e : *events) {
      json j = {{"type", files::WatchEventTypeName(e.type)}, {"path", e.path}};
      if (e.type == files::WatchEventType::kMoved) {
        j["from"] = e.from;
        j["to"] = e.path;
      }
      if (e.is_dir) j["is_dir"] = true;
      // Past the queue's bound the client is told to resume (it lists the tree again).
      if (ws_->Send(DumpJson(j)) != WebSocket::SendResult::kQueued) {
        watcher_.reset();
        return false;
      }
    }
    if (watcher_->ended()) {
      ws_->Send(DumpJson({{"type", "ended"}, {"path", ""}}));
      ws_->Close();
      watcher_.reset();
      return false;
    }
    return true;
  }
  void End() {
    std::lock_guard lock(mu_);
    watcher_.reset();
  }

 private:
  std::shared_ptr<WebSocket> ws_;
  files::SandboxRoot root_;
  std::mutex mu_;
  std::unique_ptr<files::Watcher> watcher_;
};

class WatchPoller {
 public:
  // Never destroyed, like the event pump's delivery threads: nothing waits for its thread at
  // exit.
  static WatchPoller& Get() {
    static WatchPoller* instance = new WatchPoller;
    return *instance;
  }

  Status Add(const std::shared_ptr<WatchSession>& session) {
    if (!epoll_) return MakeError(ErrorCode::kUnavailable, "file watching is unavailable");
    std::lock_guard lock(mu_);
    uint64_t token = next_++;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = token;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, session->fd(), &ev) < 0) {
      return ErrnoError("epoll_ctl ADD (file watch)");
    }
    sessions_[token] = session;
    return Ok();
  }
  void Remove(const std::shared_ptr<WatchSession>& session) {
    std::lock_guard lock(mu_);
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
      if (it->second != session) continue;
      int fd = session->fd();
      if (fd >= 0) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
      session->End();
      sessions_.erase(it);
      return;
    }
  }

 private:
  WatchPoller() : epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (epoll_) std::thread([this] { Loop(); }).detach();
  }
  void Loop() {
    epoll_event events[64];
    for (;;) {
      int n = ::epoll_wait(epoll_.get(), events, 64, -1);
      for (int i = 0; i < n; ++i) {
        std::shared_ptr<WatchSession> s;
        {
          std::lock_guard lock(mu_);
          auto it = sessions_.find(events[i].data.u64);
          if (it != sessions_.end()) s = it->second;
        }
        if (s && !s->Poll()) Remove(s);
      }
    }
  }

  UniqueFd epoll_;
  std::mutex mu_;
  uint64_t next_ = 1;
  std::map<uint64_t, std::shared_ptr<WatchSession>> sessions_;
};

Reply Watch(const Ctx& c, const Request& req) {
  auto t = OpenTarget(c, req);
  if (!t.ok()) return Fail(t.error());
  auto watcher = files::Watcher::Open(t->root, t->path);
  if (!watcher.ok()) return Fail(watcher.error());
  auto root_shared = std::make_shared<files::SandboxRoot>(std::move(t->root));
  auto watcher_shared = std::make_shared<std::unique_ptr<files::Watcher>>(std::move(*watcher));
  WebSocketAccept accept;
  accept.on_open = [root_shared, watcher_shared](std::shared_ptr<WebSocket> ws) {
    auto session =
        std::make_shared<WatchSession>(ws, std::move(*root_shared), std::move(*watcher_shared));
    if (Status st = WatchPoller::Get().Add(session); !st.ok()) {
      ws->Send(DumpJson({{"type", "error"}, {"message", st.error().message}}));
      ws->Close();
      return;
    }
    ws->OnClose([session](WebSocket::CloseReason) { WatchPoller::Get().Remove(session); });
  };
  return accept;
}

}  // namespace

Status AddSandboxFileRoutes(Router& router, const SandboxRouteContext& ctx) {
  const Ctx c = ctx;
  auto add = [&router, c](Method m, std::string_view pattern,
                          Reply (*handler)(const Ctx&, const Request&)) {
    return router.Add(m, pattern, Access::kSubmitter, [c, handler](const Request& req) -> Reply {
      if (auto elsewhere = SandboxElsewhere(c, req, /*websocket=*/false)) {
        return std::move(*elsewhere);
      }
      return handler(c, req);
    });
  };
  const std::string base = "/v1/sandboxes/{id}/files";
  SBX_TRY(add(Method::kGet, base, GetFile));
  SBX_TRY(add(Method::kPut, base, PutFile));
  SBX_TRY(add(Method::kDelete, base, DeleteFile));
  SBX_TRY(add(Method::kGet, base + ":stat", StatFile));
  SBX_TRY(add(Method::kPost, base + ":mkdir", MakeDir));
  SBX_TRY(add(Method::kPost, base + ":move", MoveFile));
  SBX_TRY(add(Method::kGet, base + ":tar", TarOut));
  SBX_TRY(add(Method::kPut, base + ":tar", TarIn));
  SBX_TRY(router.AddWebSocket(base + ":watch", Access::kSubmitter, [c](const Request& req) -> Reply {
    if (auto elsewhere = SandboxElsewhere(c, req, /*websocket=*/true)) return std::move(*elsewhere);
    return Watch(c, req);
  }));
  return Ok();
}

}  // namespace sbx::api
