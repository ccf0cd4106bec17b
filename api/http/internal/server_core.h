// Shared state of a running server and the session interface, for api/*.cc only. This is where
// Asio comes in; Beast stays in the session files.
#pragma once

#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "api/http/auth.h"
#include "api/http/router.h"
#include "api/http/server.h"

namespace sbx::api::internal {

namespace net = boost::asio;

using Strand = net::strand<net::io_context::executor_type>;
// One socket type for TCP and unix connections, so each session is compiled once.
using Socket = net::basic_stream_socket<net::generic::stream_protocol, Strand>;
using Timer = net::basic_waitable_timer<std::chrono::steady_clock,
                                        net::wait_traits<std::chrono::steady_clock>, Strand>;

// An io_context whose pending handlers can be destroyed before the object itself goes away.
// Sessions hold the ServerCore (and so this context) alive; Server::Stop destroys the queued
// handlers, which drops the sessions, after the I/O threads are gone. Posting to a strand of a
// shut-down context destroys the handler at once (strand_executor_service::enqueue), so a
// StreamSink or WebSocket used after Stop is harmless.
class IoContext : public net::io_context {
 public:
  using net::io_context::io_context;
  void DestroyPendingHandlers() { shutdown(); }
};

// A live connection, as the shutdown sequence sees it. All three are thread-safe.
class Session {
 public:
  virtual ~Session() = default;
  // Starts winding down: idle connections close, busy ones finish their exchange first.
  virtual void BeginShutdown() = 0;
  // Closes the socket now.
  virtual void ForceClose() = 0;
  // Called once the I/O threads are gone: marks the handler-facing objects (StreamSink,
  // WebSocket) closed so nothing posts to the dying io_context, and fires their OnClose.
  virtual void Detach() = 0;
};

class ServerCore;

// One open connection's share of ServerOptions::max_connections. Released on destruction,
// which resumes a paused accept loop.
// It also holds the connection's shares of the per-address and per-key caps
// (ServerOptions::max_connections_per_address / _per_key), and moves with the socket from the
// HTTP session to a WebSocket session.
class ConnectionSlot {
 public:
  explicit ConnectionSlot(std::shared_ptr<ServerCore> core) : core_(std::move(core)) {}
  ConnectionSlot(const ConnectionSlot&) = delete;
  ConnectionSlot& operator=(const ConnectionSlot&) = delete;
  ~ConnectionSlot();

  // Counts the connection under its peer's address ("" or "unix": not counted). False when that
  // makes more than the cap (the connection is counted all the same, until it closes).
  bool JoinAddress(const std::string& address);
  // Counts the connection under the API key its request authenticated with (moving it from the
  // key of an earlier request). False when past the cap; the connection is then not counted.
  bool JoinKey(const std::string& key);

 private:
  std::shared_ptr<ServerCore> core_;
  std::string address_, key_;
};

// Owned by shared_ptr: the Server, every session and every listener hold it.
class ServerCore : public std::enable_shared_from_this<ServerCore> {
 public:
  ServerCore(ServerOptions options, Router router, Authenticator authenticator);

  const ServerOptions& options() const { return options_; }
  const Router& router() const { return router_; }
  const Authenticator& authenticator() const { return authenticator_; }
  net::io_context& io() { return io_; }

  // Runs `fn` on the worker pool; an exception escaping it is logged with `what`. After the
  // pool has been joined, returns false and drops `fn`.
  bool PostWork(std::function<void()> fn, const char* what);

  // Whether another connection may be accepted; when not, `resume` is called once one ends.
  // Checked before each accept, so with several listeners the cap can be passed by at most
  // one connection per additional listener (each may have one accept outstanding).
  bool HasRoom(std::function<void()> resume);
  // Counts an accepted connection.
  std::unique_ptr<ConnectionSlot> AcquireSlot();
  size_t connection_count() const;

  // The shares per address and per key (see ConnectionSlot).
  enum class Share { kAddress, kKey };
  bool JoinShare(Share kind, const std::string& name, bool count_over);
  void LeaveShare(Share kind, const std::string& name);
  // Bytes queued by every WebSocket (ServerOptions::ws_queue_budget_bytes).
  std::shared_ptr<std::atomic<size_t>> ws_queued() const { return ws_queued_; }

  uint64_t Register(std::weak_ptr<Session> session);
  void Unregister(uint64_t id);
  std::vector<std::shared_ptr<Session>> LiveSessions() const;

  bool stopping() const;

  // Used by Server::Stop.
  void SetStopping();
  // Waits until no connection is open or `deadline` passes; true when none is open.
  bool WaitForNoConnections(std::chrono::steady_clock::time_point deadline);
  void StartThreads();
  void JoinIoThreads();
  void JoinWorkers();
  void DestroyPendingHandlers() { io_.DestroyPendingHandlers(); }

 private:
  friend class ConnectionSlot;
  void ReleaseSlot();

  ServerOptions options_;
  Router router_;
  Authenticator authenticator_;
  IoContext io_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  net::thread_pool workers_;
  bool workers_closed_ = false;  // guarded by mu_
  std::vector<std::thread> io_threads_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  size_t connections_ = 0;
  bool stopping_ = false;
  std::map<std::string, size_t> per_address_, per_key_;  // guarded by mu_
  std::shared_ptr<std::atomic<size_t>> ws_queued_ = std::make_shared<std::atomic<size_t>>(0);
  std::vector<std::function<void()>> paused_;  // accept loops waiting for a free slot
  std::map<uint64_t, std::weak_ptr<Session>> sessions_;
  uint64_t next_session_id_ = 1;
};

// Takes over an accepted connection.
void StartHttpSession(std::shared_ptr<ServerCore> core, Socket socket,
                      std::unique_ptr<ConnectionSlot> slot);

}  // namespace sbx::api::internal
