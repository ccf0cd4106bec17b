#include "api/v1/node_proxy.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "api/ws_client/ws_client.h"
#include "base/http_url.h"
#include "base/unique_fd.h"

#include <spdlog/spdlog.h>

namespace sbx::api {
namespace {

constexpr int kConnectMs = 5000;
constexpr int kHeadMs = 30'000;
constexpr size_t kMaxHead = 64 << 10;
constexpr size_t kMaxErrorBody = 1 << 20;

Reply Unavailable(const std::string& message) {
  return ErrorResponse(503, "unavailable", message);
}

// Waits for `events` on `fd` for at most `ms`; whether it came.
bool WaitFor(int fd, short events, int ms) {
  pollfd p{fd, events, 0};
  int n;
  while ((n = ::poll(&p, 1, ms)) < 0 && errno == EINTR) {
  }
  return n == 1;
}

Result<UniqueFd> Connect(const HttpUrl& u) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(u.host.c_str(), u.port.c_str(), &hints, &found); rc != 0) {
    return MakeError(ErrorCode::kUnavailable, "{}: {}", u.host, ::gai_strerror(rc));
  }
  std::string last = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    UniqueFd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) continue;
    if (::connect(fd.get(), a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = std::strerror(errno);
      continue;
    }
    int err = ETIMEDOUT;
    socklen_t len = sizeof err;
    if (WaitFor(fd.get(), POLLOUT, kConnectMs)) {
      (void)::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    }
    if (err != 0) {
      last = std::strerror(err);
      continue;
    }
    ::freeaddrinfo(found);
    return fd;
  }
  ::freeaddrinfo(found);
  return MakeError(ErrorCode::kUnavailable, "{}:{}: {}", u.host, u.port, last);
}

bool SendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    if (!WaitFor(fd, POLLOUT, kHeadMs)) return false;
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// One read of what is there (after waiting up to `ms`): >0 bytes, 0 at the end, -1 on an error,
// -2 when nothing came in time.
ssize_t ReadSome(int fd, char* buf, size_t size, int ms) {
  if (!WaitFor(fd, POLLIN, ms)) return -2;
  ssize_t n;
  while ((n = ::recv(fd, buf, size, 0)) < 0 && errno == EINTR) {
  }
  if (n < 0 && errno == EAGAIN) return -2;
  return n;
}

std::string HeaderValue(std::string_view head, std::string_view name) {
  size_t at = 0;
  while ((at = head.find("\r\n", at)) != std::string_view::npos) {
    at += 2;
    std::string_view line = head.substr(at, head.find("\r\n", at) - at);
    if (line.size() > name.size() && line[name.size()] == ':' &&
        strncasecmp(line.data(), name.data(), name.size()) == 0) {
      std::string_view v = line.substr(name.size() + 1);
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      return std::string(v);
    }
  }
  return "";
}

// Copies the rest of the owner's body into the client's stream, pacing itself on the sink, and
// stops when either side ends.
void Pump(UniqueFd fd, std::string first, std::shared_ptr<StreamSink> sink) {
  // Shared with the sink's callback, which may outlive this call.
  struct Room {
    std::mutex mu;
    std::condition_variable writable;
    bool ready = false;
  };
  auto room = std::make_shared<Room>();
  auto write = [&](std::string_view bytes) {
    for (;;) {
      switch (sink->Write(bytes)) {
        case StreamSink::WriteResult::kOk:
          return true;
        case StreamSink::WriteResult::kClosed:
          return false;
        case StreamSink::WriteResult::kBackoff: {
          {
            std::lock_guard<std::mutex> lk(room->mu);
            room->ready = false;
          }
          sink->OnWritable([room] {
            std::lock_guard<std::mutex> lk(room->mu);
            room->ready = true;
            room->writable.notify_all();
          });
          std::unique_lock<std::mutex> lk(room->mu);
          while (!room->ready && !sink->closed()) {
            room->writable.wait_for(lk, std::chrono::seconds(1));
          }
          if (sink->closed()) return false;
        }
      }
    }
  };
  if (!write(first)) return;
  std::string buf(64 << 10, '\0');
  for (;;) {
    // A quiet stream (a followed log of a run that prints nothing) is waited on, checking every
    // second whether the client is still there.
    ssize_t n = ReadSome(fd.get(), buf.data(), buf.size(), 1000);
    if (n == -2) {
      if (sink->closed()) return;
      continue;
    }
    if (n <= 0) break;
    if (!write(std::string_view(buf.data(), static_cast<size_t>(n)))) return;
  }
  sink->Finish();
}

// The owner's answer to GET `target`, its head read: status, type, the connection and the
// body's first bytes.
struct Upstream {
  int status = 0;
  std::string type;
  UniqueFd fd;
  std::string rest;
};

// Where node `owner` keeps its runs' files: its own address, or, for an outbound runner, that of
// the node its link is on.
Result<std::string> OwnerAddress(const RouteContext& ctx, const std::string& owner,
                                 const std::string& run_id) {
  auto nodes = ctx.store->ListNodes();
  if (!nodes.ok()) return std::move(nodes).error();
  for (const auto& n : *nodes) {
    if (n.name == owner && !n.address.empty()) return n.address;
  }
  return MakeError(ErrorCode::kUnavailable,
                   "run {} ran on node {}, which keeps its logs and artifacts; that node's "
                   "address is not known (node_address in its configuration)",
                   run_id, owner);
}

// Sends `req` to node `node` at `address`; its answer's head read, the rest left on the fd.
Result<Upstream> AskNode(const RouteContext& ctx, const std::string& node,
                         const std::string& address, const ForwardedRequest& req) {
  const std::string& self = ctx.runs->options().node;
  auto url = ParseHttpUrl(address, "node_address");
  if (!url.ok()) return MakeError(ErrorCode::kUnavailable, "{}", url.error().message);
  auto fd = Connect(*url);
  if (!fd.ok()) {
    return MakeError(ErrorCode::kUnavailable, "node {}, at {}: {}", node, address,
                     fd.error().message);
  }
  // HTTP/1.0: the node answers a stream as raw bytes ended by closing the connection.
  std::string head = fmt::format("{} {} HTTP/1.0\r\nHost: {}:{}\r\nX-Sandboxd-Proxied: {}\r\n",
                                 req.method, req.target, url->host, url->port, self);
  for (const auto& [name, value] : req.headers) head += fmt::format("{}: {}\r\n", name, value);
  if (!req.body.empty() || req.method != "GET") {
    head += fmt::format("Content-Length: {}\r\n", req.body.size());
  }
  head += "\r\n";
  if (!SendAll(fd->get(), head) || !SendAll(fd->get(), req.body)) {
    return MakeError(ErrorCode::kUnavailable, "node {} at {} stopped answering", node, address);
  }
  std::string got;
  size_t end;
  char buf[16 << 10];
  while ((end = got.find("\r\n\r\n")) == std::string::npos) {
    ssize_t n = ReadSome(fd->get(), buf, sizeof buf, kHeadMs);
    if (n <= 0 || got.size() > kMaxHead) {
      return MakeError(ErrorCode::kUnavailable, "node {} at {} did not answer", node, address);
    }
    got.append(buf, static_cast<size_t>(n));
  }
  const std::string_view status_line = std::string_view(got).substr(0, got.find("\r\n"));
  Upstream up;
  if (status_line.size() < 12 || !status_line.starts_with("HTTP/1.") ||
      std::sscanf(std::string(status_line.substr(9, 3)).c_str(), "%d", &up.status) != 1) {
    return MakeError(ErrorCode::kUnavailable, "node {} answered something else than HTTP", node);
  }
  up.type = HeaderValue(std::string_view(got).substr(0, end + 2), "Content-Type");
  if (up.type.empty()) up.type = "application/octet-stream";
  up.rest = got.substr(end + 4);
  up.fd = std::move(*fd);
  return up;
}

Result<Upstream> AskOwner(const RouteContext& ctx, const std::string& owner,
                          const std::string& run_id, const ForwardedRequest& req) {
  auto address = OwnerAddress(ctx, owner, run_id);
  if (!address.ok()) return std::move(address).error();
  auto up = AskNode(ctx, owner, *address, req);
  if (!up.ok()) {
    return WithContext(std::move(up).error(),
                       fmt::format("run {}'s logs and artifacts are on node {}", run_id, owner));
  }
  return up;
}

// The owner's answer, to the client: an error whole, anything else streamed.
Reply StreamBack(Upstream up) {
  if (up.status < 200 || up.status >= 300) {
    // An error is small: the owner's JSON, as it said it.
    char buf[16 << 10];
    while (up.rest.size() <= kMaxErrorBody) {
      ssize_t n = ReadSome(up.fd.get(), buf, sizeof buf, kHeadMs);
      if (n <= 0) break;
      up.rest.append(buf, static_cast<size_t>(n));
    }
    Response r;
    r.status = up.status;
    r.content_type = up.type;
    r.body = std::move(up.rest);
    return Reply(std::move(r));
  }
  StreamResponse sr;
  sr.status = up.status;
  sr.content_type = up.type;
  auto held = std::make_shared<Upstream>(std::move(up));
  sr.start = [held](std::shared_ptr<StreamSink> sink) {
    // A thread of its own: a followed log can last as long as its run.
    std::thread(Pump, std::move(held->fd), std::move(held->rest), std::move(sink)).detach();
  };
  return Reply(std::move(sr));
}

}  // namespace

ForwardedRequest ForwardedRequest::Of(const Request& req) {
  ForwardedRequest f;
  f.method = req.method_name;
  f.target = req.target;
  for (const char* name :
       {"x-api-key", "authorization", "range", "content-type", "idempotency-key"}) {
    if (auto v = req.headers.Get(name)) f.headers.emplace_back(name, std::string(*v));
  }
  f.body = req.body;
  return f;
}

namespace {

// Whether `run`'s files are on another node that this request should go to.
bool ElsewhereFor(const RouteContext& ctx, const Request& req, const store::RunRecord& run) {
  if (!run.node || run.node->empty() || *run.node == ctx.runs->options().node) return false;
  if (req.headers.Get("x-sandboxd-proxied")) return false;
  // A runner whose link is on this node wrote its files here.
  if (auto here = OwnerAddress(ctx, *run.node, run.id);
      here.ok() && *here == ctx.runs->node_address()) {
    return false;
  }
  return true;
}

// The position an event message carries: "seq" of its JSON, or of a binary message's first line.
std::optional<int64_t> MessageSeq(const std::string& data, bool binary) {
  const std::string_view json = binary ? std::string_view(data).substr(0, data.find('\n'))
                                       : std::string_view(data);
  auto parsed = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) return std::nullopt;
  auto it = parsed.find("seq");
  if (it == parsed.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

// One relayed WebSocket: the owner's messages go to the client's session once it is open, in
// order; the client's go to the owner when the relay runs both ways.
struct WsRelay {
  std::mutex mu;
  std::shared_ptr<WebSocket> down;
  // The owner's messages before the client's session took them in order (live from then on).
  std::vector<std::pair<std::string, bool>> early;
  bool live = false;
  bool up_ended = false;
  std::shared_ptr<WsClient> up;

  // To the client; false when it cannot take it (the session ends then, with its position).
  static bool Forward(WebSocket& ws, std::string data, bool binary) {
    const auto seq = MessageSeq(data, binary);
    const auto sent =
        binary ? ws.SendBinary(std::move(data), seq) : ws.Send(std::move(data), seq);
    return sent == WebSocket::SendResult::kQueued;
  }
};

// The same WebSocket request of node `node` at `address`, relayed.
Result<WebSocketAccept> RelayTo(const RouteContext& ctx, const Request& req,
                                const std::string& address, std::optional<int64_t> resume_after,
                                bool both_ways) {
  auto url = ParseHttpUrl(address, "node_address");
  if (!url.ok()) return std::move(url).error();
  const std::string host = url->host.find(':') != std::string::npos ? "[" + url->host + "]"
                                                                     : url->host;
  WsClientOptions o;
  o.url = "ws://" + host + ":" + url->port + req.target;
  o.headers = ForwardedRequest::Of(req).headers;
  o.headers.emplace_back("X-Sandboxd-Proxied", ctx.runs->options().node);
  o.connect_timeout = std::chrono::milliseconds(kConnectMs);
  // A step.log event carries up to a chunk of log (1 MiB), escaped.
  o.max_message_bytes = 8 << 20;
  auto relay = std::make_shared<WsRelay>();
  std::weak_ptr<WsRelay> weak = relay;
  auto up = WsClient::Connect(
      o, {.on_message =
              [weak](std::string data, bool binary) {
                auto r = weak.lock();
                if (!r) return;
                std::shared_ptr<WebSocket> down;
                {
                  std::lock_guard<std::mutex> lk(r->mu);
                  if (!r->live) {
                    r->early.emplace_back(std::move(data), binary);
                    return;
                  }
                  down = r->down;
                }
                if (down && !WsRelay::Forward(*down, std::move(data), binary)) down->Close();
              },
          .on_close =
              [weak](std::string) {
                auto r = weak.lock();
                if (!r) return;
                std::shared_ptr<WebSocket> down;
                {
                  std::lock_guard<std::mutex> lk(r->mu);
                  r->up_ended = true;
                  if (r->live) down = r->down;  // else the session closes once it has them all
                }
                if (down) down->Close();  // after what was queued
              }});
  if (!up.ok()) return std::move(up).error();
  relay->up = std::shared_ptr<WsClient>(std::move(*up));
  WebSocketAccept accept;
  accept.resume_after = resume_after;
  accept.on_open = [relay, both_ways](std::shared_ptr<WebSocket> ws) {
    {
      std::lock_guard<std::mutex> lk(relay->mu);
      relay->down = ws;
    }
    if (both_ways) {
      ws->OnMessage([relay](std::string_view data, bool binary) {
        std::shared_ptr<WsClient> up;
        {
          std::lock_guard<std::mutex> lk(relay->mu);
          up = relay->up;
        }
        if (up) (void)(binary ? up->SendBinary(std::string(data)) : up->Send(std::string(data)));
      });
    }
    // The client's session gone: so is the link to the owner, closed and joined on a thread of
    // its own (a close handshake may take its time; the server's threads do not wait for it).
    ws->OnClose([relay](WebSocket::CloseReason) {
      std::shared_ptr<WsClient> up;
      {
        std::lock_guard<std::mutex> lk(relay->mu);
        up = std::move(relay->up);
        relay->down.reset();
      }
      if (up) std::thread([up = std::move(up)] {}).detach();
    });
    // What came before, in order, until nothing is left over; then live.
    for (;;) {
      std::vector<std::pair<std::string, bool>> early;
      bool ended = false;
      {
        std::lock_guard<std::mutex> lk(relay->mu);
        if (relay->early.empty()) {
          relay->live = true;
          ended = relay->up_ended;
        } else {
          early.swap(relay->early);
        }
      }
      if (early.empty()) {
        if (ended) ws->Close();
        return;
      }
      for (auto& [data, binary] : early) {
        if (!WsRelay::Forward(*ws, std::move(data), binary)) {
          ws->Close();
          return;
        }
      }
    }
  };
  return accept;
}

}  // namespace

std::optional<Reply> RelayEventsFromOwner(const RouteContext& ctx, const Request& req,
                                          const store::RunRecord& run,
                                          std::optional<int64_t> resume_after) {
  if (!ElsewhereFor(ctx, req, run)) return std::nullopt;
  // Served here, without the log bytes, when the owner is gone or cannot be asked: its events
  // are in the store all the same.
  auto nodes = ctx.store->ListNodes();
  if (!nodes.ok()) return std::nullopt;
  std::string address;
  for (const auto& n : *nodes) {
    if (n.name == *run.node && n.state != store::NodeState::kLost) address = n.address;
  }
  if (address.empty()) return std::nullopt;
  auto relayed = RelayTo(ctx, req, address, resume_after, /*both_ways=*/false);
  if (!relayed.ok()) {
    spdlog::warn("run {}: its events with their log bytes are on node {}, at {}: {}; serving "
                 "them here without",
                 run.id, *run.node, address, relayed.error().message);
    return std::nullopt;
  }
  return Reply(std::move(*relayed));
}

Reply RelayWebSocketToNode(const RouteContext& ctx, const Request& req, const std::string& node,
                           const std::string& address) {
  auto relayed = RelayTo(ctx, req, address, std::nullopt, /*both_ways=*/true);
  if (!relayed.ok()) {
    return Unavailable(fmt::format("node {}, at {}: {}", node, address, relayed.error().message));
  }
  return Reply(std::move(*relayed));
}

std::optional<Reply> ForwardToOwner(const RouteContext& ctx, const Request& req,
                                    const store::RunRecord& run) {
  if (!ElsewhereFor(ctx, req, run)) return std::nullopt;
  auto up = AskOwner(ctx, *run.node, run.id, ForwardedRequest::Of(req));
  if (!up.ok()) return Unavailable(up.error().message);
  return StreamBack(std::move(*up));
}

Reply ForwardToNode(const RouteContext& ctx, const Request& req, const std::string& node,
                    const std::string& address) {
  auto up = AskNode(ctx, node, address, ForwardedRequest::Of(req));
  if (!up.ok()) return Unavailable(up.error().message);
  return StreamBack(std::move(*up));
}

void ContinueFromOwner(const RouteContext& ctx, std::string owner, std::string run_id,
                       ForwardedRequest req, std::shared_ptr<StreamSink> sink) {
  std::thread([ctx, owner = std::move(owner), run_id = std::move(run_id), req = std::move(req),
               sink = std::move(sink)]() mutable {
    auto up = AskOwner(ctx, owner, run_id, req);
    if (!up.ok() || up->status != 200) {
      spdlog::warn("run {}: following its log on node {}: {}", run_id, owner,
                   up.ok() ? fmt::format("HTTP {}", up->status) : up.error().message);
      sink->Finish();
      return;
    }
    Pump(std::move(up->fd), std::move(up->rest), std::move(sink));
  }).detach();
}

}  // namespace sbx::api
