// The one file of sandboxctl that includes Beast and Asio. Synchronous operations only: the CLI
// does one thing at a time, and a blocked read is what "follow" means. Boost exceptions (an
// over-long socket path, a resolver failure, allocation) are caught at each public entry point.
#include "api/sandboxctl/client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/error.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <cerrno>
#include <deque>
#include <exception>
#include <limits>
#include <mutex>

namespace sbx::ctl {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using local = net::local::stream_protocol;
using error_code = boost::system::error_code;

constexpr uint64_t kMaxReplyBytes = 256ull << 20;
constexpr uint64_t kMaxErrorBodyBytes = 1 << 20;
constexpr size_t kMaxEventBytes = 64 << 20;
// The pieces an upload's body is gathered into before each write (one HTTP chunk each).
constexpr size_t kUploadChunkBytes = 64 << 10;
// Reconnections in a row that bring no new event before FollowEvents gives up.
constexpr int kMaxIdleReconnects = 20;

#ifndef SBX_CTL_VERSION
#define SBX_CTL_VERSION "0"
#endif
constexpr char kUserAgent[] = "sandboxctl/" SBX_CTL_VERSION;

Error ConnectError(const Endpoint& ep, const error_code& ec) {
  std::string why = ec.message();
  if (ep.kind == Endpoint::Kind::kUnix && ec.value() == ENOENT) {
    why = "the socket does not exist";
  } else if (ep.kind == Endpoint::Kind::kUnix && ec.value() == EACCES) {
    why = "permission denied (the socket is mode 0660: run as root or as a member of its group)";
  }
  return MakeError(ErrorCode::kUnavailable,
                   "cannot connect to sandboxd at {}: {}; is sandboxd running? (choose the "
                   "address with --host or SANDBOXD_HOST)",
                   ep.ToString(), why);
}

Error IoError(const Endpoint& ep, std::string_view what, const error_code& ec) {
  return MakeError(ErrorCode::kInternal, "{} {}: {}", what, ep.ToString(), ec.message());
}

std::string HostHeader(const Endpoint& ep) {
  if (ep.kind == Endpoint::Kind::kUnix) return "localhost";
  if (ep.host.find(':') != std::string::npos) return "[" + ep.host + "]:" + ep.port;
  return ep.host + ":" + ep.port;
}

// Connects a socket of the endpoint's kind on `ioc` and calls fn(socket); fn returns a Result or
// Status.
template <class R, class Fn>
R WithSocket(net::io_context& ioc, const Endpoint& ep, Fn&& fn) {
  error_code ec;
  if (ep.kind == Endpoint::Kind::kUnix) {
    local::socket s(ioc);
    s.connect(local::endpoint(ep.path), ec);
    if (ec) return ConnectError(ep, ec);
    return fn(s);
  }
  tcp::resolver resolver(ioc);
  auto results = resolver.resolve(ep.host, ep.port, ec);
  if (ec) return ConnectError(ep, ec);
  tcp::socket s(ioc);
  net::connect(s, results, ec);
  if (ec) return ConnectError(ep, ec);
  return fn(s);
}

// The same on an io_context of its own.
template <class R, class Fn>
R WithSocket(const Endpoint& ep, Fn&& fn) {
  net::io_context ioc;
  return WithSocket<R>(ioc, ep, std::forward<Fn>(fn));
}

template <class Socket>
Status WriteRequest(Socket& s, const Endpoint& ep, http::request<http::string_body>& req) {
  error_code ec;
  http::write(s, req, ec);
  if (ec) return IoError(ep, "sending a request to", ec);
  return Ok();
}

Result<http::verb> ParseVerb(std::string_view method) {
  http::verb verb = http::string_to_verb(method);
  if (verb == http::verb::unknown) {
    return MakeError(ErrorCode::kInvalidArgument, "unknown HTTP method '{}'", method);
  }
  return verb;
}

template <class Body = http::string_body>
http::request<Body> MakeRequest(const Endpoint& ep, const std::string& api_key, http::verb verb,
                                const std::string& target) {
  http::request<Body> req{verb, target, 11};
  req.set(http::field::host, HostHeader(ep));
  req.set(http::field::user_agent, kUserAgent);
  if (!api_key.empty()) req.set("x-api-key", api_key);
  req.keep_alive(false);
  return req;
}

// A request with `headers` and, when `json_body` is not null, that JSON as its body.
Result<http::request<http::string_body>> JsonRequest(
    const Endpoint& ep, const std::string& api_key, std::string_view method,
    const std::string& target, const nlohmann::json* json_body,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  auto verb = ParseVerb(method);
  if (!verb.ok()) return std::move(verb).error();
  auto req = MakeRequest(ep, api_key, *verb, target);
  for (const auto& [name, value] : headers) req.set(name, value);
  if (json_body != nullptr) {
    req.set(http::field::content_type, "application/json");
    req.body() = json_body->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  req.prepare_payload();
  return req;
}

// Reads a whole reply, up to kMaxReplyBytes.
template <class Socket>
Result<HttpReply> ReadReply(Socket& s, const Endpoint& ep) {
  beast::flat_buffer buf;
  http::response_parser<http::string_body> p;
  p.body_limit(kMaxReplyBytes);
  error_code ec;
  http::read(s, buf, p, ec);
  if (ec) return IoError(ep, "reading the reply from", ec);
  HttpReply r;
  r.status = static_cast<int>(p.get().result_int());
  r.content_type = std::string(p.get()[http::field::content_type]);
  for (const auto& field : p.get()) {
    r.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  r.body = std::move(p.get().body());
  return r;
}

// Sets the client's headers and the message limit on `ws` and upgrades to it at `target`; a
// refused upgrade is ApiError(), another failure names `what` ("the event stream").
template <class Socket>
Status OpenWebSocket(websocket::stream<Socket&>& ws, const Endpoint& ep, const std::string& api_key,
                     const std::string& target, std::string_view what) {
  ws.set_option(websocket::stream_base::decorator([api_key](websocket::request_type& req) {
    req.set(http::field::user_agent, kUserAgent);
    if (!api_key.empty()) req.set("x-api-key", api_key);
  }));
  ws.read_message_max(kMaxEventBytes);
  websocket::response_type res;
  error_code ec;
  ws.handshake(res, HostHeader(ep), target, ec);
  if (ec) {
    int status = static_cast<int>(res.result_int());
    if (status != 0 && status != 101) {
      return ApiError({status, std::string(res[http::field::content_type]), res.body()});
    }
    return IoError(ep, fmt::format("opening {} at", what), ec);
  }
  return Ok();
}

}  // namespace

std::string Endpoint::ToString() const {
  if (kind == Kind::kUnix) return "unix:" + path;
  return HostHeader(*this);
}

Result<Endpoint> ParseEndpoint(std::string_view spec) {
  Endpoint ep;
  if (spec.rfind("unix:", 0) == 0) {
    ep.kind = Endpoint::Kind::kUnix;
    ep.path = std::string(spec.substr(5));
    if (ep.path.empty() || ep.path[0] != '/') {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'{}': a Unix socket address is unix:/ABSOLUTE/PATH", spec);
    }
    return ep;
  }
  ep.kind = Endpoint::Kind::kTcp;
  size_t colon = spec.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == spec.size()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'{}' is neither HOST:PORT, [IPV6]:PORT nor unix:/PATH", spec);
  }
  ep.host = std::string(spec.substr(0, colon));
  ep.port = std::string(spec.substr(colon + 1));
  if (ep.host.size() >= 2 && ep.host.front() == '[' && ep.host.back() == ']') {
    ep.host = ep.host.substr(1, ep.host.size() - 2);
  } else if (ep.host.find(':') != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}': write an IPv6 address as [ADDR]:PORT",
                     spec);
  }
  for (char c : ep.port) {
    if (c < '0' || c > '9') {
      return MakeError(ErrorCode::kInvalidArgument, "'{}': the port must be a number", spec);
    }
  }
  return ep;
}

Error ApiError(const HttpReply& reply) {
  ErrorCode code = ErrorCode::kInternal;
  switch (reply.status) {
    case 400:
      code = ErrorCode::kInvalidArgument;
      break;
    case 401:
    case 403:
      code = ErrorCode::kPermissionDenied;
      break;
    case 404:
      code = ErrorCode::kNotFound;
      break;
    case 409:
      code = ErrorCode::kFailedPrecondition;
      break;
    case 429:
      code = ErrorCode::kResourceExhausted;
      break;
    case 503:
      code = ErrorCode::kUnavailable;
      break;
    default:
      break;
  }
  std::string api_code, message;
  auto j = nlohmann::json::parse(reply.body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("error") && j["error"].is_object()) {
    const auto& e = j["error"];
    if (e.contains("code") && e["code"].is_string()) api_code = e["code"].get<std::string>();
    if (e.contains("message") && e["message"].is_string()) {
      message = e["message"].get<std::string>();
    }
  }
  if (message.empty()) {
    message = reply.body.substr(0, 200);
    while (!message.empty() && (message.back() == '\n' || message.back() == '\r')) {
      message.pop_back();
    }
  }
  if (message.empty()) message = fmt::format("the server answered HTTP {}", reply.status);
  Error e = MakeError(code, "{}", message);
  e.context = api_code.empty() ? fmt::format("HTTP {}", reply.status)
                               : fmt::format("HTTP {} {}", reply.status, api_code);
  return e;
}

Client::Client(Endpoint endpoint, std::string api_key)
    : endpoint_(std::move(endpoint)), api_key_(std::move(api_key)) {}


Result<HttpReply> Client::Call(std::string_view method, const std::string& target,
                               const nlohmann::json* json_body,
                               const std::vector<std::pair<std::string, std::string>>& headers) {
  try {
    auto req = JsonRequest(endpoint_, api_key_, method, target, json_body, headers);
    if (!req.ok()) return std::move(req).error();
    return WithSocket<Result<HttpReply>>(endpoint_, [&](auto& s) -> Result<HttpReply> {
      SBX_TRY(WriteRequest(s, endpoint_, *req));
      return ReadReply(s, endpoint_);
    });
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "request to {}: {}", endpoint_.ToString(), e.what());
  }
}

Result<nlohmann::json> Client::CallJson(std::string_view method, const std::string& target,
                                        const nlohmann::json* json_body) {
  auto reply = Call(method, target, json_body);
  if (!reply.ok()) return std::move(reply).error();
  if (reply->status < 200 || reply->status > 299) return ApiError(*reply);
  auto j = nlohmann::json::parse(reply->body, nullptr, false);
  if (j.is_discarded()) {
    return MakeError(ErrorCode::kInternal, "{} {}: the server's answer is not JSON", method,
                     target);
  }
  return j;
}

Result<Client::Created> Client::CallCreate(const std::string& target, const nlohmann::json& body,
                                           std::string_view what) {
  auto reply = Call("POST", target, &body);
  if (!reply.ok()) return std::move(reply).error();
  if (reply->status != 200 && reply->status != 201) return ApiError(*reply);
  Created c;
  c.resource = nlohmann::json::parse(reply->body, nullptr, false);
  c.created = reply->status == 201;
  const auto& r = c.resource;
  if (!r.is_object() || !r.contains("id") || !r["id"].is_string() ||
      r["id"].get<std::string>().empty()) {
    return MakeError(ErrorCode::kInternal, "the server's answer to POST {} is not {}", target,
                     what);
  }
  return c;
}

Status Client::Exchange(std::string_view method, const std::string& target,
                        const nlohmann::json* json_body,
                        const std::vector<std::pair<std::string, std::string>>& headers,
                        const std::function<Status(const HttpReply& head)>& on_head,
                        const BodySink& sink) {
  try {
    auto req = JsonRequest(endpoint_, api_key_, method, target, json_body, headers);
    if (!req.ok()) return std::move(req).error();
    return WithSocket<Status>(endpoint_, [&](auto& s) -> Status {
      SBX_TRY(WriteRequest(s, endpoint_, *req));
      beast::flat_buffer buf;
      http::response_parser<http::buffer_body> p;
      p.body_limit(std::numeric_limits<uint64_t>::max());
      error_code ec;
      http::read_header(s, buf, p, ec);
      if (ec) return IoError(endpoint_, "reading the reply from", ec);
      HttpReply head;
      head.status = static_cast<int>(p.get().result_int());
      head.content_type = std::string(p.get()[http::field::content_type]);
      for (const auto& field : p.get()) {
        head.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
      }
      SBX_TRY(on_head(head));
      char chunk[64 * 1024];
      while (!p.is_done()) {
        p.get().body().data = chunk;
        p.get().body().size = sizeof chunk;
        // read_some returns as soon as the parser made progress, so each piece is handed on
        // when it arrives instead of when the buffer is full.
        http::read_some(s, buf, p, ec);
        if (ec == http::error::need_buffer) ec = {};
        if (ec) return IoError(endpoint_, "reading the reply from", ec);
        size_t n = sizeof chunk - p.get().body().size;
        if (n == 0) continue;
        SBX_TRY(sink(std::string_view(chunk, n)));
      }
      return Ok();
    });
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "request to {}: {}", endpoint_.ToString(), e.what());
  }
}

Result<int> Client::Stream(const std::string& target, const BodySink& sink) {
  HttpReply head;
  bool ok = false;
  Status st = Exchange(
      "GET", target, nullptr, {},
      [&](const HttpReply& h) {
        head = h;
        ok = h.status >= 200 && h.status <= 299;
        return Ok();
      },
      [&](std::string_view bytes) -> Status {
        if (ok) return sink(bytes);
        if (head.body.size() < kMaxErrorBodyBytes) head.body.append(bytes);
        return Ok();
      });
  if (!st.ok()) return std::move(st).error();
  if (!ok) return ApiError(head);
  return head.status;
}

Status Client::FollowEvents(const std::function<std::string(int64_t after)>& make_target,
                            int64_t after,
                            const std::function<EventAction(const nlohmann::json&)>& on_event) {
  int64_t last = after;
  int idle_reconnects = 0;
  for (;;) {
    // One connection: Ok(true) to reconnect from `last`, Ok(false) when done.
    Result<bool> again = MakeError(ErrorCode::kInternal, "unreached");
    int64_t last_before = last;
    try {
      again = WithSocket<Result<bool>>(endpoint_, [&](auto& s) -> Result<bool> {
        websocket::stream<std::remove_reference_t<decltype(s)>&> ws(s);
        SBX_TRY(OpenWebSocket(ws, endpoint_, api_key_, make_target(last), "the event stream"));
        error_code ec;
        for (;;) {
          beast::flat_buffer buf;
          ws.read(buf, ec);
          if (ec == websocket::error::closed) {
            auto code = ws.reason().code;
            if (code == websocket::close_code::normal) return false;
            if (code == websocket::close_code::try_again_later) return true;
            return MakeError(ErrorCode::kUnavailable,
                             "the server closed the event stream (code {}{}{})",
                             static_cast<unsigned>(code), ws.reason().reason.empty() ? "" : ": ",
                             std::string(ws.reason().reason.data(), ws.reason().reason.size()));
          }
          // The connection broke (the server gave up on a reader that stalled past its write
          // timeout, a proxy hung up): pick up where we were.
          if (ec) return true;
          auto j = nlohmann::json::parse(beast::buffers_to_string(buf.data()), nullptr, false);
          if (j.is_discarded() || !j.is_object()) continue;  // not an event of ours
          if (j.value("type", "") == "overflow") {
            // Our reader fell behind; the server dropped what it had queued and closes with
            // 1013. Drop this connection and start over from what we have seen.
            return true;
          }
          if (j.contains("seq") && j["seq"].is_number_integer()) {
            int64_t seq = j["seq"].template get<int64_t>();
            if (seq <= last) continue;  // already seen before a reconnection
            last = seq;
          }
          if (on_event(j) == EventAction::kStop) {
            error_code ignored;
            ws.close(websocket::close_code::normal, ignored);
            return false;
          }
        }
      });
    } catch (const std::exception& e) {
      return MakeError(ErrorCode::kInternal, "event stream from {}: {}", endpoint_.ToString(),
                       e.what());
    }
    if (!again.ok()) return std::move(again).error();
    if (!*again) return Ok();
    idle_reconnects = last == last_before ? idle_reconnects + 1 : 0;
    if (idle_reconnects > kMaxIdleReconnects) {
      return MakeError(ErrorCode::kUnavailable,
                       "the event stream from {} keeps closing without progress (after seq {})",
                       endpoint_.ToString(), last);
    }
  }
}

Result<HttpReply> Client::Upload(std::string_view method, const std::string& target,
                                 const std::string& content_type, std::optional<uint64_t> length,
                                 const BodyProducer& produce) {
  try {
    auto verb = ParseVerb(method);
    if (!verb.ok()) return std::move(verb).error();
    auto req = MakeRequest<http::buffer_body>(endpoint_, api_key_, *verb, target);
    req.set(http::field::content_type, content_type);
    if (length) {
      req.content_length(*length);
    } else {
      req.chunked(true);
    }
    return WithSocket<Result<HttpReply>>(endpoint_, [&](auto& s) -> Result<HttpReply> {
      // A write that fails may be the server having answered early and closed: its answer,
      // when there is one, says more than the broken pipe.
      auto write_failed = [&](const error_code& ec) -> Result<HttpReply> {
        auto early = ReadReply(s, endpoint_);
        if (early.ok()) return early;
        return IoError(endpoint_, "sending a request body to", ec);
      };
      req.body().data = nullptr;
      req.body().size = 0;
      req.body().more = true;
      http::request_serializer<http::buffer_body> sr{req};
      error_code ec;
      http::write_header(s, sr, ec);
      if (ec) return write_failed(ec);
      std::string pending;
      uint64_t sent = 0;
      bool broken = false;
      error_code broken_ec;
      auto flush = [&]() -> Status {
        if (pending.empty()) return Ok();
        if (length && sent + pending.size() > *length) {
          return MakeError(ErrorCode::kInternal,
                           "the body grew past the {} bytes announced (a file that changed while "
                           "it was sent?)",
                           *length);
        }
        req.body().data = pending.data();
        req.body().size = pending.size();
        req.body().more = true;
        error_code wec;
        http::write(s, sr, wec);
        // The serializer took all the bytes and wants more: not an error.
        if (wec == http::error::need_buffer) wec = {};
        if (wec) {
          broken = true;
          broken_ec = wec;
          return IoError(endpoint_, "sending a request body to", wec);
        }
        sent += pending.size();
        pending.clear();
        return Ok();
      };
      Status produced = produce([&](std::string_view bytes) -> Status {
        pending.append(bytes);
        if (pending.size() >= kUploadChunkBytes) return flush();
        return Ok();
      });
      if (produced.ok()) produced = flush();
      if (broken) return write_failed(broken_ec);
      if (!produced.ok()) return std::move(produced).error();
      if (length && sent != *length) {
        return MakeError(ErrorCode::kInternal,
                         "the body ended after {} of the {} bytes announced (a file that changed "
                         "while it was sent?)",
                         sent, *length);
      }
      req.body().data = nullptr;
      req.body().size = 0;
      req.body().more = false;
      http::write(s, sr, ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) return write_failed(ec);
      return ReadReply(s, endpoint_);
    });
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "request to {}: {}", endpoint_.ToString(), e.what());
  }
}

namespace {

// One Duplex session: the WebSocket, its outbound queue and its result. Runs on the io_context's
// one thread (the one calling Duplex).
template <class Socket>
class DuplexSession : public std::enable_shared_from_this<DuplexSession<Socket>> {
 public:
  struct Message {
    std::string data;
    bool binary = false;
    bool close = false;
  };

  DuplexSession(net::io_context& ioc, Socket& socket) : ioc_(ioc), ws_(socket) {}

  websocket::stream<Socket&>& ws() { return ws_; }

  void Start(std::function<Status(std::string_view, bool)> on_message) {
    on_message_ = std::move(on_message);
    Read();
  }

  void Queue(Message m) {
    if (done_ || closing_) return;
    queue_.push_back(std::move(m));
    if (!writing_) WriteNext();
  }

  Status result = Ok();

 private:
  void WriteNext() {
    if (queue_.empty() || done_) {
      writing_ = false;
      return;
    }
    writing_ = true;
    if (queue_.front().close) {
      closing_ = true;
      queue_.clear();
      ws_.async_close(websocket::close_code::normal,
                      [self = this->shared_from_this()](error_code) { self->writing_ = false; });
      return;
    }
    ws_.binary(queue_.front().binary);
    ws_.async_write(
        net::buffer(queue_.front().data), [self = this->shared_from_this()](error_code ec, size_t) {
          if (!self->queue_.empty()) self->queue_.pop_front();
          if (ec == websocket::error::closed) return self->End(Ok());
          if (ec) {
            return self->End(MakeError(ErrorCode::kInternal, "writing to the terminal stream: {}",
                                       ec.message()));
          }
          self->WriteNext();
        });
  }

  void Read() {
    buf_.clear();
    ws_.async_read(buf_, [self = this->shared_from_this()](error_code ec, size_t) {
      if (ec == websocket::error::closed) {
        const auto& reason = self->ws_.reason();
        if (reason.code == websocket::close_code::normal || self->closing_) {
          return self->End(Ok());
        }
        return self->End(MakeError(
            ErrorCode::kUnavailable, "the server closed the terminal stream (code {}{}{})",
            static_cast<unsigned>(reason.code), reason.reason.empty() ? "" : ": ",
            std::string(reason.reason.data(), reason.reason.size())));
      }
      if (ec) {
        // Our own close tears the read down too.
        if (self->closing_) return self->End(Ok());
        return self->End(
            MakeError(ErrorCode::kInternal, "the terminal stream broke: {}", ec.message()));
      }
      const auto data = self->buf_.cdata();
      Status st =
          self->on_message_(std::string_view(static_cast<const char*>(data.data()), data.size()),
                            self->ws_.got_binary());
      if (!st.ok()) return self->End(std::move(st));
      self->Read();
    });
  }

  void End(Status st) {
    if (done_) return;
    done_ = true;
    result = std::move(st);
    ioc_.stop();
  }

  net::io_context& ioc_;
  websocket::stream<Socket&> ws_;
  beast::flat_buffer buf_;
  std::function<Status(std::string_view, bool)> on_message_;
  std::deque<Message> queue_;
  bool writing_ = false;
  bool closing_ = false;
  bool done_ = false;
};

// What the caller holds: it posts onto the session's io_context while Duplex runs, and does
// nothing after (the io_context and the session are gone then; this outlives them).
template <class Socket>
class DuplexHandle : public DuplexChannel {
 public:
  using Session = DuplexSession<Socket>;

  DuplexHandle(net::io_context& ioc, std::shared_ptr<Session> session)
      : ioc_(&ioc), session_(std::move(session)) {}

  void SendBinary(std::string bytes) override {
    Post(typename Session::Message{std::move(bytes), true, false});
  }
  void SendText(std::string text) override {
    Post(typename Session::Message{std::move(text), false, false});
  }
  void Close() override { Post(typename Session::Message{{}, false, true}); }

  // Called by Duplex before the io_context goes.
  void Detach() {
    std::lock_guard lock(mu_);
    ioc_ = nullptr;
    session_.reset();
  }

 private:
  void Post(typename Session::Message m) {
    std::lock_guard lock(mu_);
    if (ioc_ == nullptr) return;
    net::post(*ioc_,
              [session = session_, m = std::move(m)]() mutable { session->Queue(std::move(m)); });
  }

  std::mutex mu_;
  net::io_context* ioc_;
  std::shared_ptr<Session> session_;
};

}  // namespace

Status Client::Duplex(const std::string& target,
                      const std::function<void(std::shared_ptr<DuplexChannel>)>& on_open,
                      const std::function<Status(std::string_view, bool)>& on_message) {
  try {
    // The socket must live on the io_context that runs the session.
    net::io_context ioc;
    auto run = [&](auto& s) -> Status {
      using Socket = std::remove_reference_t<decltype(s)>;
      auto session = std::make_shared<DuplexSession<Socket>>(ioc, s);
      SBX_TRY(OpenWebSocket(session->ws(), endpoint_, api_key_, target, "the terminal stream"));
      auto handle = std::make_shared<DuplexHandle<Socket>>(ioc, session);
      session->Start(on_message);
      on_open(handle);
      ioc.run();
      handle->Detach();
      // Let every operation still pending finish (aborted) so that no handler keeps the
      // session past the socket and the io_context.
      error_code ec;
      s.close(ec);
      ioc.restart();
      ioc.run();
      return session->result;
    };
    return WithSocket<Status>(ioc, endpoint_, run);
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "terminal stream from {}: {}", endpoint_.ToString(),
                     e.what());
  }
}

std::string PercentEncode(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string EncodePathSegments(std::string_view path) {
  std::string out;
  size_t start = 0;
  for (;;) {
    size_t slash = path.find('/', start);
    out += PercentEncode(
        path.substr(start, slash == std::string_view::npos ? path.npos : slash - start));
    if (slash == std::string_view::npos) return out;
    out.push_back('/');
    start = slash + 1;
  }
}

}  // namespace sbx::ctl
