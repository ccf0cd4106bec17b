// One HTTP/1.1 connection: read a request with a fresh parser, route, authenticate, run the
// handler on the worker pool, write the reply (whole, streamed, or hand over to WebSocket), and
// again while keep-alive holds. Everything runs on the connection's strand; Beast exceptions
// are caught here.
#include <spdlog/spdlog.h>
#include <strings.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <cctype>
#include <cerrno>
#include <exception>
#include <limits>
#include <utility>

#include "api/http/internal/fronts.h"
#include "api/http/internal/server_core.h"
#include "api/http/internal/ws_session.h"
#include "api/http/listen.h"

namespace sbx::api::internal {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using error_code = boost::system::error_code;

constexpr size_t kMaxLingerBytes = 16 << 20;
constexpr std::chrono::milliseconds kMaxLinger{2000};

bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IsFramingHeader(std::string_view name) {
  for (std::string_view f : {"content-length", "transfer-encoding", "connection", "upgrade"}) {
    if (name.size() == f.size() && strncasecmp(name.data(), f.data(), f.size()) == 0) return true;
  }
  return false;
}

// Why a handler's status or headers cannot be sent, or "" when they can.
std::string CheckReplyHead(int status, std::string_view content_type, const HeaderList& headers) {
  if (status < 200 || status > 599) return fmt::format("status {} is outside 200-599", status);
  auto bad_value = [](std::string_view v) {
    for (char c : v) {
      if (c == '\r' || c == '\n' || c == '\0') return true;
    }
    return false;
  };
  if (bad_value(content_type)) return "content type contains CR, LF or NUL";
  for (const auto& [name, value] : headers.items()) {
    if (name.empty() || !std::all_of(name.begin(), name.end(), IsTokenChar)) {
      return fmt::format("header name '{}' is not an HTTP token", name);
    }
    if (IsFramingHeader(name)) return fmt::format("header '{}' is set by the server", name);
    if (bad_value(value)) return fmt::format("header '{}' contains CR, LF or NUL", name);
  }
  return "";
}

template <class Message>
void SetHead(Message& m, int status, std::string_view content_type, const HeaderList& headers) {
  m.result(static_cast<unsigned>(status));
  m.set(http::field::server, "sandboxd");
  if (!content_type.empty()) m.set(http::field::content_type, content_type);
  for (const auto& [name, value] : headers.items()) m.insert(name, value);
}

class HttpSession final : public Session,
                          public Wakeable,
                          public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(std::shared_ptr<ServerCore> core, Socket socket, std::unique_ptr<ConnectionSlot> slot)
      : core_(std::move(core)),
        options_(core_->options()),
        socket_(std::move(socket)),
        strand_(socket_.get_executor()),
        timer_(strand_),
        slot_(std::move(slot)) {}

  ~HttpSession() override {
    if (sink_) sink_->Close(StreamSink::CloseReason::kClientGone);
    core_->Unregister(id_);
  }

  void Start() {
    id_ = core_->Register(weak_from_this());
    peer_ = DescribePeer(socket_.native_handle());
    over_address_cap_ = !slot_->JoinAddress(PeerAddress(peer_));
    net::dispatch(strand_, [self = shared_from_this()] { self->DoRead(); });
  }

  void BeginShutdown() override {
    net::post(strand_, [self = shared_from_this()] { self->OnShutdown(); });
  }
  void ForceClose() override {
    net::post(strand_, [self = shared_from_this()] {
      if (self->sink_) self->sink_->Close(StreamSink::CloseReason::kServerStopping);
      self->CloseSocket();
    });
  }
  void Detach() override {
    if (sink_) sink_->Detach();
  }
  void Wake() override {
    net::post(strand_, [self = shared_from_this()] { self->PumpStream(); });
  }

 private:
  enum class Phase { kReading, kHandling, kWriting, kStreaming, kClosing, kClosed };
  enum class TimerKind { kRead, kWrite, kLinger };

  // Also true for a connection accepted just before Stop() looked for sessions to wind down.
  bool Stopping() const { return shutting_down_ || core_->stopping(); }

  void ArmTimer(std::chrono::milliseconds d, TimerKind kind) {
    uint64_t gen = ++timer_gen_;
    timer_.expires_after(d);
    timer_.async_wait([self = shared_from_this(), gen, kind](error_code ec) {
      if (ec || gen != self->timer_gen_) return;
      if (kind == TimerKind::kRead) {
        self->read_timed_out_ = true;
        error_code ignored;
        self->socket_.cancel(ignored);  // the read completes with operation_aborted
      } else {
        self->CloseSocket();
      }
    });
  }
  void CancelTimer() {
    ++timer_gen_;
    timer_.cancel();
  }

  void CloseSocket() {
    CancelTimer();
    phase_ = Phase::kClosed;
    if (sink_) sink_->Close(StreamSink::CloseReason::kClientGone);
    error_code ignored;
    socket_.shutdown(net::socket_base::shutdown_both, ignored);
    socket_.close(ignored);
  }

  // Half-closes, then reads and discards what the client still sends for a moment, so that
  // closing with unread data does not turn into a reset that destroys the response in flight.
  void LingeringClose() {
    phase_ = Phase::kClosing;
    error_code ignored;
    socket_.shutdown(net::socket_base::shutdown_send, ignored);
    ArmTimer(std::min(kMaxLinger, options_.request_timeout), TimerKind::kLinger);
    DrainRead();
  }
  void DrainRead() {
    socket_.async_read_some(net::buffer(discard_),
                            [self = shared_from_this()](error_code ec, size_t n) {
                              self->drained_ += n;
                              if (ec || self->drained_ > kMaxLingerBytes) {
                                self->CloseSocket();
                              } else {
                                self->DrainRead();
                              }
                            });
  }

  void OnShutdown() {
    shutting_down_ = true;
    switch (phase_) {
      case Phase::kReading:
        if (!parser_ || (!parser_->got_some() && buffer_.size() == 0)) CloseSocket();
        break;
      case Phase::kStreaming:
        if (sink_) sink_->Stop();
        break;
      default:
        break;  // the exchange in progress ends with Connection: close
    }
  }

  // ---- reading ----

  void DoRead() {
    if (Stopping() || !socket_.is_open()) {
      CloseSocket();
      return;
    }
    phase_ = Phase::kReading;
    read_timed_out_ = false;
    request_start_ = std::chrono::steady_clock::now();
    req_ = {};
    version_ = 11;
    route_ = nullptr;
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(
        std::min<size_t>(options_.max_header_bytes, std::numeric_limits<uint32_t>::max())));
    parser_->body_limit(options_.max_body_bytes);
    ArmTimer(options_.request_timeout, TimerKind::kRead);
    http::async_read_header(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(error_code ec) {
    if (ec) return OnReadError(ec);
    request_start_ = std::chrono::steady_clock::now();
    // The route, the key and its role are checked on the head alone: a request that may not
    // be made is answered before its body is read, so an unauthenticated client never makes
    // the daemon take in max_body_bytes.
    if (!Admit()) return;
    const auto& req = parser_->get();
    if (!parser_->is_done() && beast::iequals(req[http::field::expect], "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      net::async_write(socket_, net::buffer(kContinue.data(), kContinue.size()),
                       [self = shared_from_this()](error_code wec, size_t) {
                         if (wec) return self->CloseSocket();
                         self->ReadBody();
                       });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    if (parser_->is_done()) return OnRequest();
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](error_code ec, size_t) {
                       if (ec) return self->OnReadError(ec);
                       self->OnRequest();
                     });
  }

  void OnReadError(error_code ec) {
    CancelTimer();
    if (phase_ != Phase::kReading) return CloseSocket();
    bool got_some = parser_->got_some() || buffer_.size() > 0;
    if (read_timed_out_) {
      if (!got_some) return CloseSocket();  // an idle keep-alive connection
      return SendError(
          408, "request_timeout",
          fmt::format("the request did not arrive within {} ms", options_.request_timeout.count()));
    }
    if (ec == http::error::body_limit) {
      return SendError(
          413, "payload_too_large",
          fmt::format("the request body is larger than {} bytes", options_.max_body_bytes));
    }
    if (ec == http::error::header_limit) {
      return SendError(
          431, "headers_too_large",
          fmt::format("the request head is larger than {} bytes", options_.max_header_bytes));
    }
    if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      return SendError(400, "bad_request", "malformed HTTP request: " + ec.message());
    }
    CloseSocket();  // the client went away
  }

  // ---- dispatch ----

  // Builds pending_ from the request's head and checks it: the route, the WebSocket upgrade,
  // the query, the key and its role. false: it was answered (and the connection closes when a
  // body was left unread).
  bool Admit() {
    const auto& head = parser_->get();
    req_ = {};
    req_.base() = head.base();  // what WriteResponse and Observe report
    version_ = head.version();
    keep_alive_ = head.keep_alive() && parser_->is_done();
    Request& r = pending_;
    r = {};
    r.method_name = std::string(head.method_string());
    r.method = ParseMethod(r.method_name);
    r.target = std::string(head.target());
    r.version = version_;
    r.peer = peer_;
    for (const auto& field : head) {
      std::string name(field.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers.Add(std::move(name), std::string(field.value()));
    }
    size_t q = r.target.find('?');
    r.path = r.target.substr(0, q);
    std::string_view query =
        q == std::string::npos ? std::string_view() : std::string_view(r.target).substr(q + 1);

    auto refuse = [&](Response res) {
      phase_ = Phase::kHandling;
      WriteResponse(std::move(res));
      return false;
    };
    if (over_address_cap_) {
      keep_alive_ = false;
      return refuse(ErrorResponse(
          429, "too_many_connections",
          fmt::format("{} has {} connections open already (max_connections_per_address); close "
                      "some or reuse them",
                      PeerAddress(peer_), options_.max_connections_per_address)));
    }
    if (r.path.empty() || r.path[0] != '/') {
      return refuse(ErrorResponse(400, "bad_request",
                                  "the request target must be an absolute path such as /v1/runs"));
    }
    RouteMatch m = core_->router().Find(r.method, r.path);
    switch (m.kind) {
      case RouteMatch::Kind::kFound:
        break;
      case RouteMatch::Kind::kBadPath:
        return refuse(ErrorResponse(400, "bad_request", m.error));
      case RouteMatch::Kind::kNotFound:
        return refuse(ErrorResponse(
            404, "not_found", fmt::format("no route for {} {}", r.method_name, r.path)));
      case RouteMatch::Kind::kMethodNotAllowed: {
        std::string allow;
        for (Method a : m.allowed)
          allow += (allow.empty() ? "" : ", ") + std::string(MethodName(a));
        Response res = ErrorResponse(
            405, "method_not_allowed",
            fmt::format("{} does not support {}; it supports {}", r.path, r.method_name, allow));
        res.headers.Add("Allow", allow);
        return refuse(std::move(res));
      }
    }
    route_ = m.route;
    r.path_params = std::move(m.params);
    if (route_->websocket && !beast::websocket::is_upgrade(head)) {
      Response res =
          ErrorResponse(426, "upgrade_required", fmt::format("{} is a WebSocket endpoint", r.path));
      res.headers.Add("Sec-WebSocket-Version", "13");
      return refuse(std::move(res));
    }
    Result<QueryParams> parsed = ParseQuery(query);
    if (!parsed.ok()) return refuse(ErrorResponse(400, "bad_request", parsed.error().message));
    r.query = std::move(*parsed);

    if (route_->access != Access::kPublic) {
      std::optional<std::string_view> key =
          ExtractApiKey(r.headers.Get("x-api-key"), r.headers.Get("authorization"));
      std::optional<std::string> offered;
      if (!key && route_->websocket) {
        if (auto offers = r.headers.Get("sec-websocket-protocol")) {
          offered = KeyFromWebSocketProtocols(*offers);
          if (offered) key = *offered;
        }
      }
      if (!key) {
        Response res = ErrorResponse(401, "unauthenticated",
                                     "this endpoint needs an API key: send 'x-api-key: KEY' or "
                                     "'Authorization: Bearer KEY'");
        res.headers.Add("WWW-Authenticate", "Bearer");
        return refuse(std::move(res));
      }
      r.principal = core_->authenticator().Authenticate(*key);
      if (!r.principal) {
        Response res = ErrorResponse(401, "unauthenticated", "the API key is not valid");
        res.headers.Add("WWW-Authenticate", "Bearer");
        return refuse(std::move(res));
      }
      if (!slot_->JoinKey(r.principal->key_name)) {
        keep_alive_ = false;
        return refuse(ErrorResponse(
            429, "too_many_connections",
            fmt::format("key '{}' has {} connections open already (max_connections_per_key); "
                        "close some or reuse them",
                        r.principal->key_name, options_.max_connections_per_key)));
      }
      if (!RoleAllows(r.principal->role, route_->access)) {
        return refuse(ErrorResponse(
            403, "permission_denied",
            fmt::format("key '{}' has role {}; {} {} needs {}", r.principal->key_name,
                        RoleName(r.principal->role), r.method_name, r.path,
                        AccessName(route_->access))));
      }
    }
    return true;  // the body is read under the request's deadline, still running
  }

  void OnRequest() {
    CancelTimer();
    phase_ = Phase::kHandling;
    req_ = parser_->release();
    parser_.reset();
    keep_alive_ = req_.keep_alive();
    Request r = std::move(pending_);
    pending_ = {};
    r.body = std::move(req_.body());
    req_.body().clear();

    core_->PostWork(
        [self = shared_from_this(), route = route_, request = std::move(r)]() mutable {
          Reply reply = Response{};
          try {
            reply = route->handler(request);
          } catch (const std::exception& e) {
            spdlog::error("api: handler {} {} failed: {}", request.method_name, request.path,
                          e.what());
            reply = ErrorResponse(500, "internal", "the request failed; see the server log");
          } catch (...) {
            spdlog::error("api: handler {} {} failed", request.method_name, request.path);
            reply = ErrorResponse(500, "internal", "the request failed; see the server log");
          }
          net::post(self->strand_, [self, reply = std::move(reply)]() mutable {
            self->OnReply(std::move(reply));
          });
        },
        "handler");
  }

  void OnReply(Reply reply) {
    if (phase_ != Phase::kHandling) return;  // closed meanwhile
    if (auto* res = std::get_if<Response>(&reply)) return WriteResponse(std::move(*res));
    if (auto* stream = std::get_if<StreamResponse>(&reply)) {
      if (route_->websocket) {
        return SendError(500, "internal", "the handler answered a WebSocket route with a stream");
      }
      return StartStream(std::move(*stream));
    }
    auto& accept = std::get<WebSocketAccept>(reply);
    if (!route_->websocket) {
      return SendError(500, "internal", "the handler answered a plain route with a WebSocket");
    }
    if (Stopping()) return SendError(503, "unavailable", "the server is shutting down");
    CancelTimer();
    phase_ = Phase::kClosed;
    Observe(101);
    StartWebSocketSession(core_, std::move(socket_), std::move(req_), std::move(accept),
                          std::move(slot_));
  }

  // Reports the answer to the request in progress (ServerOptions::on_response).
  void Observe(int status) {
    if (!options_.on_response) return;
    RequestOutcome o;
    o.method = MethodName(ParseMethod(std::string_view(req_.method_string())));
    if (route_ != nullptr) o.route = route_->pattern;
    o.status = status;
    o.latency = std::chrono::steady_clock::now() - request_start_;
    try {
      options_.on_response(o);
    } catch (const std::exception& e) {
      spdlog::error("api: response observer threw: {}", e.what());
    }
  }

  // ---- whole responses ----

  void SendError(int status, std::string_view code, std::string message, bool keep = false) {
    if (!keep) keep_alive_ = false;
    WriteResponse(ErrorResponse(status, code, message));
  }

  void WriteResponse(Response res) {
    std::string bad = CheckReplyHead(res.status, res.content_type, res.headers);
    if (!bad.empty()) {
      spdlog::error("api: {} {}: handler reply refused: {}", req_.method_string(), req_.target(),
                    bad);
      res = ErrorResponse(500, "internal", "the server produced an invalid response");
    }
    bool keep = keep_alive_ && !Stopping();
    Observe(res.status);
    try {
      res_ = std::make_unique<http::response<http::string_body>>();
      res_->version(version_ == 10 ? 10 : 11);
      SetHead(*res_, res.status, res.content_type, res.headers);
      res_->body() = std::move(res.body);
      res_->keep_alive(keep);
      res_->prepare_payload();
      if (req_.method() == http::verb::head) res_->body().clear();
    } catch (const std::exception& e) {
      spdlog::error("api: building a response failed: {}", e.what());
      return CloseSocket();
    }
    phase_ = Phase::kWriting;
    ArmTimer(options_.write_timeout, TimerKind::kWrite);
    http::async_write(socket_, *res_, [self = shared_from_this(), keep](error_code ec, size_t) {
      self->CancelTimer();
      self->res_.reset();
      if (ec) return self->CloseSocket();
      if (!keep || self->Stopping()) return self->LingeringClose();
      self->DoRead();
    });
  }

  // ---- streamed responses ----

  void StartStream(StreamResponse s) {
    std::string bad = CheckReplyHead(s.status, s.content_type, s.headers);
    if (!bad.empty()) {
      spdlog::error("api: {} {}: stream reply refused: {}", req_.method_string(), req_.target(),
                    bad);
      return SendError(500, "internal", "the server produced an invalid response");
    }
    Observe(s.status);
    // HTTP/1.0 has no chunked encoding: the body ends when the connection does.
    chunked_ = version_ >= 11;
    if (!chunked_) keep_alive_ = false;
    try {
      stream_head_ = std::make_unique<http::response<http::empty_body>>();
      stream_head_->version(version_ == 10 ? 10 : 11);
      SetHead(*stream_head_, s.status, s.content_type, s.headers);
      stream_head_->keep_alive(keep_alive_ && !Stopping());
      if (chunked_) stream_head_->chunked(true);
      stream_sr_ = std::make_unique<http::response_serializer<http::empty_body>>(*stream_head_);
    } catch (const std::exception& e) {
      spdlog::error("api: building a stream head failed: {}", e.what());
      return CloseSocket();
    }
    std::shared_ptr<ServerCore> core = core_;
    sink_ = std::make_shared<StreamFront>(
        weak_from_this(),
        [core](std::function<void()> fn) {
          return core->PostWork(std::move(fn), "stream callback");
        },
        options_.stream_buffer_bytes);
    start_ = std::move(s.start);
    phase_ = Phase::kStreaming;
    ArmTimer(options_.write_timeout, TimerKind::kWrite);
    http::async_write_header(
        socket_, *stream_sr_,
        [self = shared_from_this()](error_code ec, size_t) { self->OnStreamHead(ec); });
  }

  void OnStreamHead(error_code ec) {
    CancelTimer();
    if (ec || phase_ != Phase::kStreaming) return CloseSocket();
    WatchPeer();
    if (Stopping()) sink_->Stop();
    if (start_) {
      core_->PostWork([sink = sink_, start = std::move(start_)] { start(sink); },
                      "stream producer");
    } else {
      sink_->Finish();
    }
    PumpStream();
  }

  // The client sends nothing while a response streams, so readability means it has gone (EOF
  // or reset) or pipelined a request. Without this, a producer that has nothing to write would
  // not learn of a disconnect until its next write.
  void WatchPeer() {
    socket_.async_wait(
        net::socket_base::wait_read, [self = shared_from_this(), gen = watch_gen_](error_code ec) {
          if (gen != self->watch_gen_ || self->phase_ != Phase::kStreaming) return;
          if (ec) return;
          char c;
          ssize_t r = ::recv(self->socket_.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
          if (r > 0) return;  // pipelined bytes; a failed write will tell
          if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            return self->WatchPeer();
          }
          self->keep_alive_ = false;
          self->CloseSocket();
        });
  }

  void PumpStream() {
    if (phase_ != Phase::kStreaming || writing_chunk_ || !sink_) return;
    switch (sink_->Take(&chunk_)) {
      case StreamFront::Next::kIdle:
        return;
      case StreamFront::Next::kClosed:
        return CloseSocket();
      case StreamFront::Next::kData: {
        writing_chunk_ = true;
        ArmTimer(options_.write_timeout, TimerKind::kWrite);
        auto done = [self = shared_from_this()](error_code ec, size_t) {
          self->writing_chunk_ = false;
          self->CancelTimer();
          if (ec) return self->CloseSocket();
          if (self->sink_) self->sink_->Written(self->chunk_.size());
          self->chunk_.clear();
          self->PumpStream();
        };
        if (chunked_) {
          net::async_write(socket_, http::make_chunk(net::buffer(chunk_)), std::move(done));
        } else {
          net::async_write(socket_, net::buffer(chunk_), std::move(done));
        }
        return;
      }
      case StreamFront::Next::kEnd:
        writing_chunk_ = true;
        if (!chunked_) return EndStream();
        ArmTimer(options_.write_timeout, TimerKind::kWrite);
        net::async_write(socket_, http::make_chunk_last(),
                         [self = shared_from_this()](error_code ec, size_t) {
                           self->CancelTimer();
                           if (ec) return self->CloseSocket();
                           self->EndStream();
                         });
        return;
    }
  }

  void EndStream() {
    writing_chunk_ = false;
    sink_->Close(StreamSink::CloseReason::kFinished);
    sink_.reset();
    stream_sr_.reset();
    stream_head_.reset();
    ++watch_gen_;
    error_code ignored;
    socket_.cancel(ignored);  // the peer watch
    if (keep_alive_ && !Stopping() && chunked_) return DoRead();
    LingeringClose();
  }

  const std::shared_ptr<ServerCore> core_;
  const ServerOptions& options_;
  Socket socket_;
  Strand strand_;
  Timer timer_;
  uint64_t timer_gen_ = 0;
  std::unique_ptr<ConnectionSlot> slot_;
  bool over_address_cap_ = false;
  uint64_t id_ = 0;
  std::string peer_;

  Phase phase_ = Phase::kReading;
  bool shutting_down_ = false;
  bool read_timed_out_ = false;
  std::chrono::steady_clock::time_point request_start_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> req_;
  Request pending_;  // the request being read: admitted on its head, completed by its body
  const Route* route_ = nullptr;
  bool keep_alive_ = false;
  unsigned version_ = 11;
  std::unique_ptr<http::response<http::string_body>> res_;

  std::shared_ptr<StreamFront> sink_;
  std::function<void(std::shared_ptr<StreamSink>)> start_;
  std::unique_ptr<http::response<http::empty_body>> stream_head_;
  std::unique_ptr<http::response_serializer<http::empty_body>> stream_sr_;
  std::string chunk_;
  bool chunked_ = true;
  bool writing_chunk_ = false;
  uint64_t watch_gen_ = 0;

  std::array<char, 4096> discard_{};
  size_t drained_ = 0;
};

}  // namespace

void StartHttpSession(std::shared_ptr<ServerCore> core, Socket socket,
                      std::unique_ptr<ConnectionSlot> slot) {
  auto session = std::make_shared<HttpSession>(std::move(core), std::move(socket), std::move(slot));
  session->Start();
}

}  // namespace sbx::api::internal
