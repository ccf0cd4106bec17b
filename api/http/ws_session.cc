// One WebSocket connection after the upgrade: completes the handshake, feeds the client from the
// WebSocketFront's bounded queue, one message at a time with a write deadline, and reads what the
// client sends, so that pings and close are answered and data messages reach the front (which
// hands them to the handler's OnMessage callback, or drops them). Beast exceptions are caught
// here; the async operations used report errors through error codes.
#include "api/http/internal/ws_session.h"

#include <spdlog/spdlog.h>

#include <array>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <exception>
#include <utility>

#include "api/http/auth.h"
#include "api/http/buffer_pool.h"
#include "api/http/internal/file_socket.h"
#include "api/http/internal/fronts.h"
#include "api/http/internal/server_core.h"

namespace sbx::api::internal {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using error_code = boost::system::error_code;
using CloseReason = WebSocket::CloseReason;

class WsSession final : public Session,
                        public Wakeable,
                        public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(std::shared_ptr<ServerCore> core, Socket socket, std::unique_ptr<ConnectionSlot> slot)
      : core_(std::move(core)),
        options_(core_->options()),
        ws_(std::move(socket)),
        strand_(ws_.get_executor()),
        timer_(strand_),
        slot_(std::move(slot)) {}

  ~WsSession() override {
    if (front_) front_->Ended(CloseReason::kError);
    core_->Unregister(id_);
  }

  void Run(http::request<http::string_body> upgrade, WebSocketAccept accept) {
    id_ = core_->Register(weak_from_this());
    std::shared_ptr<ServerCore> core = core_;
    front_ = std::make_shared<WebSocketFront>(
        weak_from_this(),
        [core](std::function<void()> fn) {
          return core->PostWork(std::move(fn), "websocket callback");
        },
        WebSocketFront::Limits{options_.ws_queue_messages, options_.ws_queue_bytes,
                               options_.ws_max_incoming_bytes, 16,
                               options_.ws_queue_budget_bytes > 0 ? core_->ws_queued() : nullptr,
                               options_.ws_queue_budget_bytes},
        accept.resume_after);
    on_open_ = std::move(accept.on_open);
    upgrade_ = std::move(upgrade);
    net::dispatch(strand_, [self = shared_from_this()] { self->DoAccept(); });
  }

  void BeginShutdown() override {
    net::post(strand_, [self = shared_from_this()] {
      self->shutting_down_ = true;
      if (self->open_) self->front_->Stop();  // wakes Pump: queue, then close 1001
    });
  }
  void ForceClose() override {
    net::post(strand_, [self = shared_from_this()] { self->Finish(CloseReason::kServerStopping); });
  }
  void Detach() override {
    if (front_) front_->Detach();
  }
  void Wake() override {
    net::post(strand_, [self = shared_from_this()] { self->Pump(); });
  }

 private:
  void ArmTimer(std::chrono::milliseconds d) {
    uint64_t gen = ++timer_gen_;
    timer_.expires_after(d);
    timer_.async_wait([self = shared_from_this(), gen](error_code ec) {
      if (ec || gen != self->timer_gen_) return;
      // A client that does not read: drop the connection; pending operations fail.
      self->Finish(CloseReason::kError);
    });
  }
  void CancelTimer() {
    ++timer_gen_;
    timer_.cancel();
  }

  void DoAccept() {
    try {
      websocket::stream_base::timeout t;
      t.handshake_timeout = options_.request_timeout;
      t.idle_timeout = options_.ws_idle_timeout;
      t.keep_alive_pings = true;
      ws_.set_option(t);
      // A browser that offered the key as a subprotocol (auth.h) must see one of its offers
      // chosen, or it drops the connection.
      const bool chose = OffersWebSocketProtocol(upgrade_[http::field::sec_websocket_protocol],
                                                 kWebSocketProtocol);
      ws_.set_option(websocket::stream_base::decorator([chose](websocket::response_type& res) {
        res.set(http::field::server, "sandboxd");
        if (chose) res.set(http::field::sec_websocket_protocol, kWebSocketProtocol);
      }));
      ws_.read_message_max(options_.ws_max_incoming_bytes);
      // One frame per message: simpler for clients, and nothing to gain from fragmenting.
      ws_.auto_fragment(false);
      // The client's close frame: tell the handler now, not after the closing handshake and
      // TCP teardown (which waits for the client's FIN, up to the handshake timeout).
      ws_.control_callback([this](websocket::frame_type kind, beast::string_view) {
        if (kind == websocket::frame_type::close) front_->Ended(CloseReason::kClientClosed);
      });
    } catch (const std::exception& e) {
      spdlog::error("api: websocket setup failed: {}", e.what());
      return Finish(CloseReason::kError);
    }
    ws_.async_accept(upgrade_, [self = shared_from_this()](error_code ec) {
      self->upgrade_ = {};
      self->OnAccept(ec);
    });
  }

  void OnAccept(error_code ec) {
    if (ec) return Finish(CloseReason::kError);  // Beast answered the client already
    open_ = true;
    DoRead();
    if (shutting_down_ || core_->stopping()) {
      front_->Stop();
      return Pump();
    }
    if (on_open_) {
      core_->PostWork(
          [front = front_, on_open = std::move(on_open_)] {
            on_open(front);
            front->Opened();
          },
          "websocket on_open");
    } else {
      front_->Opened();
    }
    Pump();
  }

  void DoRead() {
    ws_.async_read(read_buffer_, [self = shared_from_this()](error_code ec, size_t n) {
      if (ec) {
        bool client_gone = ec == websocket::error::closed || ec == net::error::eof ||
                           ec == net::error::connection_reset || ec == net::error::broken_pipe;
        return self->Finish(client_gone ? CloseReason::kClientClosed : CloseReason::kError);
      }
      auto bytes = self->read_buffer_.cdata();
      const bool more = self->front_->Received(
          std::string_view(static_cast<const char*>(bytes.data()), bytes.size()),
          !self->ws_.got_text());
      self->read_buffer_.consume(n);
      if (!more) {
        // The handler is behind: read on when the front wakes us with room (Pump). No
        // operation is pending meanwhile, so the session keeps itself alive.
        self->read_paused_ = self;
        return;
      }
      self->DoRead();
    });
  }

  void Pump() {
    if (read_paused_ && open_ && !closing_ && !done_ && front_->IncomingRoom()) {
      std::shared_ptr<WsSession> hold = std::move(read_paused_);
      DoRead();
    }
    if (!open_ || writing_ || closing_ || done_) return;
    WebSocketFront::Next next = front_->Take();
    switch (next.kind) {
      case WebSocketFront::Next::Kind::kIdle:
        return;
      case WebSocketFront::Next::Kind::kMessage:
        if (next.file.fd)
          return WriteWithFile(std::move(next.text), std::move(next.file), next.seq);
        return Write(std::move(next.text), next.seq, std::nullopt, next.binary);
      case WebSocketFront::Next::Kind::kFinal:
        return Write(std::move(next.text), std::nullopt, next.close_code, false);
      case WebSocketFront::Next::Kind::kClose:
        return DoClose(next.close_code);
    }
  }

  void Write(std::string text, std::optional<int64_t> seq, std::optional<uint16_t> then_close,
             bool binary) {
    writing_ = true;
    current_ = std::move(text);
    ws_.binary(binary);
    ArmTimer(options_.write_timeout);
    ws_.async_write(net::buffer(current_),
                    [self = shared_from_this(), seq, then_close](error_code ec, size_t) {
                      self->writing_ = false;
                      self->CancelTimer();
                      BufferPool::Give(std::move(self->current_));
                      self->current_.clear();
                      if (ec) return self->Finish(CloseReason::kError);
                      self->front_->Sent(seq);
                      if (then_close) return self->DoClose(*then_close);
                      self->Pump();
                    });
  }

  // A binary message of `head` and then a file's bytes, which the socket layer sends with
  // sendfile (see file_socket.h).
  void WriteWithFile(std::string head, FileBytes file, std::optional<int64_t> seq) {
    net::const_buffer tail = ws_.next_layer().SetFile(file.fd->get(), file.offset, file.length);
    if (tail.size() != file.length) {
      spdlog::error("api: websocket: a file range of {} bytes cannot be sent", file.length);
      return Finish(CloseReason::kError);
    }
    writing_ = true;
    current_ = std::move(head);
    current_file_ = std::move(file);
    ws_.binary(true);
    ArmTimer(options_.write_timeout);
    std::array<net::const_buffer, 2> message{net::buffer(current_), tail};
    ws_.async_write(message, [self = shared_from_this(), seq](error_code ec, size_t) {
      self->writing_ = false;
      self->CancelTimer();
      self->ws_.next_layer().ClearFile();
      self->current_file_ = {};
      self->current_.clear();
      if (ec) return self->Finish(CloseReason::kError);
      self->front_->Sent(seq);
      self->Pump();
    });
  }

  void DoClose(uint16_t code) {
    closing_ = true;
    ArmTimer(options_.write_timeout);
    ws_.async_close(websocket::close_reason(code), [self = shared_from_this()](error_code) {
      self->CancelTimer();
      // The front turns this into kOverflow or kServerClosed when that is what it was.
      self->Finish(CloseReason::kServerStopping);
    });
  }

  void Finish(CloseReason reason) {
    if (done_) return;
    done_ = true;
    CancelTimer();
    front_->Ended(reason);
    std::shared_ptr<WsSession> hold = std::move(read_paused_);
    error_code ignored;
    beast::get_lowest_layer(ws_).close(ignored);
  }

  const std::shared_ptr<ServerCore> core_;
  const ServerOptions& options_;
  websocket::stream<FileSocket> ws_;
  Strand strand_;
  Timer timer_;
  uint64_t timer_gen_ = 0;
  std::unique_ptr<ConnectionSlot> slot_;
  uint64_t id_ = 0;

  std::shared_ptr<WebSocketFront> front_;
  std::function<void(std::shared_ptr<WebSocket>)> on_open_;
  http::request<http::string_body> upgrade_;
  beast::flat_buffer read_buffer_;
  std::string current_;
  FileBytes current_file_;  // the file range being written after current_, if any
  bool open_ = false;
  // Set (to this session) while reading waits for the front's incoming queue to have room.
  std::shared_ptr<WsSession> read_paused_;
  bool writing_ = false;
  bool closing_ = false;
  bool done_ = false;
  bool shutting_down_ = false;
};

}  // namespace

void StartWebSocketSession(std::shared_ptr<ServerCore> core, Socket socket,
                           http::request<http::string_body> upgrade, WebSocketAccept accept,
                           std::unique_ptr<ConnectionSlot> slot) {
  auto session = std::make_shared<WsSession>(std::move(core), std::move(socket), std::move(slot));
  session->Run(std::move(upgrade), std::move(accept));
}

}  // namespace sbx::api::internal
