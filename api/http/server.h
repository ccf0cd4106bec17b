// The HTTP/1.1 + WebSocket server that `sandboxd serve` plugs its routes into.
//
// Shape (Boost.Beast inside, none of it in this header):
//   - one accept loop per listener; a cap on open connections shared by all listeners (at the
//     cap the server stops accepting and the kernel's backlog holds new clients; with L
//     listeners up to L-1 connections more may be accepted, one per outstanding accept);
//   - one strand per connection on `io_threads` I/O threads;
//   - per request a fresh parser with a body limit (413) and a header limit (431), and one
//     deadline for the whole request to arrive (408 when part of it came, a silent close for an
//     idle keep-alive connection); malformed requests get 400; every error is
//     {"error": {"code": "...", "message": "..."}};
//   - routing (404, 405 with Allow, 400 for bad paths), then authentication (401, 403), then the
//     handler on the worker pool (`worker_threads`); the reply is posted back to the strand;
//   - responses are written one at a time per connection with a write deadline; streamed bodies
//     and WebSocket queues are bounded (see api/http/http.h).
//
// Shutdown: Stop(grace) stops accepting, closes idle connections, lets requests in progress
// finish, ends streams (kServerStopping; queued bytes are still sent, then the last chunk) and
// WebSockets (close 1001 after the queue), waits up to `grace`, then closes whatever is left.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "api/http/auth.h"
#include "api/http/listen.h"
#include "api/http/router.h"
#include "base/result.h"

namespace sbx::api {

// What the server reports about each answered request (for metrics).
struct RequestOutcome {
  const char* method = "OTHER";  // MethodName(): a bounded set
  std::string_view route;        // the matched route's pattern; "" when none matched
  int status = 0;                // of the response head (101 for a WebSocket upgrade)
  std::chrono::steady_clock::duration latency{};  // from the request head's arrival
};

struct ServerOptions {
  // "127.0.0.1:8080", "[::1]:8080", "unix:/run/sandboxd/api.sock"; ":0" ports pick a free port
  // (see Server::addresses()).
  std::vector<std::string> listen;
  // Already-listening descriptors (systemd socket activation); the server takes ownership.
  std::vector<int> listen_fds;

  int io_threads = 2;
  int worker_threads = 4;
  size_t max_connections = 1024;
  // Open connections from one peer address (TCP; the unix socket's local clients are not
  // capped), and connections whose requests authenticate with one API key: a connection past
  // either cap gets 429 and is closed, so one client or one key cannot take every connection.
  // 0: no cap.
  size_t max_connections_per_address = 256;
  size_t max_connections_per_key = 512;
  int backlog = 512;
  mode_t unix_socket_mode = 0660;

  size_t max_header_bytes = 16 * 1024;  // 431 past it
  size_t max_body_bytes = 1024 * 1024;  // 413 past it
  // From when the server starts waiting for a request until all of it (head and body) has come.
  std::chrono::milliseconds request_timeout{30'000};
  // For any one write (a response, a chunk, a WebSocket message) to complete.
  std::chrono::milliseconds write_timeout{30'000};

  size_t stream_buffer_bytes = 1024 * 1024;  // per streamed response

  size_t ws_queue_messages = 1024;           // per WebSocket
  size_t ws_queue_bytes = 8 * 1024 * 1024;   // per WebSocket
  // Bytes queued by every WebSocket together: a session past it overflows (as past its own
  // cap) unless its queue is empty, so many slow clients cannot take the daemon's memory.
  size_t ws_queue_budget_bytes = 256 * 1024 * 1024;
  size_t ws_max_incoming_bytes = 64 * 1024;  // larger incoming messages close the session
  // No frame from the client for this long closes the session; pings are sent halfway.
  std::chrono::milliseconds ws_idle_timeout{60'000};

  // Called on an I/O thread for every response head written. Must be cheap and not block.
  std::function<void(const RequestOutcome&)> on_response;
  // Called every `tick_interval` from a timer on the I/O context itself, so that it stops when
  // the event loop is stuck (systemd's watchdog pings). Zero: no timer.
  std::chrono::microseconds tick_interval{0};
  std::function<void()> on_tick;
};

class Server {
 public:
  // Binds every listener (errors here: address in use, bad path, bad fd), then starts the I/O
  // threads, the worker pool and the accept loops. On failure nothing keeps running and fds in
  // `listen_fds` are closed.
  static Result<std::unique_ptr<Server>> Start(ServerOptions options, Router router,
                                               Authenticator authenticator);

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  // Stop(0) if Stop was not called.
  ~Server();

  // The bound addresses, in the order of options.listen followed by options.listen_fds, with
  // the real port for ":0".
  const std::vector<ListenAddress>& addresses() const;

  // Graceful, then terminal shutdown (see above). Blocks until the I/O threads and the worker
  // pool have finished; a handler that never returns blocks it too. Idempotent. Must not be
  // called from a handler or a stream/WebSocket callback.
  void Stop(std::chrono::milliseconds grace);

  // Open connections (HTTP and WebSocket).
  size_t connection_count() const;

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sbx::api
