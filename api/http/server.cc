// Listeners, the connection cap, the thread pools and the shutdown sequence.
#include "api/http/server.h"

#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/basic_socket_acceptor.hpp>
#include <exception>
#include <utility>

#include "api/http/internal/server_core.h"

namespace sbx::api {
namespace internal {
namespace {

using Acceptor = net::basic_socket_acceptor<net::generic::stream_protocol, Strand>;

// One accept loop. Lives in a shared_ptr held by its pending operations and by Server::Impl.
class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(std::shared_ptr<ServerCore> core, BoundListener bound)
      : core_(std::move(core)),
        bound_(std::move(bound)),
        acceptor_(net::make_strand(core_->io())),
        retry_(acceptor_.get_executor()) {}

  // Hands the listening fd to the acceptor. Throws nothing; errors come back as Status.
  Status Open() {
    int fd = bound_.fd.get();
    int family = bound_.address.kind == ListenAddress::Kind::kUnix ? AF_UNIX : AF_INET;
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) family = ss.ss_family;
    boost::system::error_code ec;
    int protocol = family == AF_UNIX ? 0 : IPPROTO_TCP;
    acceptor_.assign(net::generic::stream_protocol(family, protocol), fd, ec);
    if (ec) {
      return MakeError(ErrorCode::kInternal, "adopt listener {}: {}", bound_.address.ToString(),
                       ec.message());
    }
    bound_.fd.release();  // the acceptor owns it now
    return Ok();
  }

  void Start() {
    net::post(acceptor_.get_executor(), [self = shared_from_this()] { self->DoAccept(); });
  }

  // Thread-safe.
  void Close() {
    net::post(acceptor_.get_executor(), [self = shared_from_this()] {
      boost::system::error_code ec;
      self->closed_ = true;
      self->retry_.cancel();
      self->acceptor_.close(ec);
    });
  }

  // Removes the unix socket file if it is still the one this listener created.
  void UnlinkSocketFile() {
    if (!bound_.owns_path) return;
    struct stat st {};
    const std::string& path = bound_.address.path;
    if (lstat(path.c_str(), &st) == 0 && st.st_dev == bound_.dev && st.st_ino == bound_.ino) {
      unlink(path.c_str());
    }
  }

  const ListenAddress& address() const { return bound_.address; }

 private:
  void DoAccept() {
    if (closed_ || core_->stopping()) return;
    std::weak_ptr<Listener> weak = weak_from_this();
    bool room = core_->HasRoom([weak] {
      if (auto self = weak.lock()) {
        net::post(self->acceptor_.get_executor(), [self] { self->DoAccept(); });
      }
    });
    if (!room) return;  // at the cap: resumed when a connection ends
    acceptor_.async_accept(
        net::make_strand(core_->io()),
        [self = shared_from_this()](boost::system::error_code ec, Socket socket) {
          self->OnAccept(ec, std::move(socket));
        });
  }

  void OnAccept(boost::system::error_code ec, Socket socket) {
    if (ec) {
      if (closed_ || ec == net::error::operation_aborted) return;
      // EMFILE and friends: back off instead of spinning.
      spdlog::warn("api: accept on {}: {}", bound_.address.ToString(), ec.message());
      retry_.expires_after(std::chrono::milliseconds(100));
      retry_.async_wait([self = shared_from_this()](boost::system::error_code wait_ec) {
        if (!wait_ec) self->DoAccept();
      });
      return;
    }
    TuneAcceptedSocket(socket.native_handle());
    std::unique_ptr<ConnectionSlot> slot = core_->AcquireSlot();
    if (closed_ || core_->stopping()) return;  // the socket closes as it goes out of scope
    StartHttpSession(core_, std::move(socket), std::move(slot));
    DoAccept();
  }

  std::shared_ptr<ServerCore> core_;
  BoundListener bound_;
  Acceptor acceptor_;
  Timer retry_;
  bool closed_ = false;
};

// Calls ServerOptions::on_tick every tick_interval from the I/O context.
class Ticker : public std::enable_shared_from_this<Ticker> {
 public:
  Ticker(ServerCore& core, std::chrono::microseconds interval, std::function<void()> fn)
      : timer_(net::make_strand(core.io())), interval_(interval), fn_(std::move(fn)) {}

  void Start() {
    net::post(timer_.get_executor(), [self = shared_from_this()] { self->Arm(); });
  }
  // Thread-safe.
  void Close() {
    net::post(timer_.get_executor(), [self = shared_from_this()] {
      self->closed_ = true;
      self->timer_.cancel();
    });
  }

 private:
  void Arm() {
    if (closed_) return;
    timer_.expires_after(interval_);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->closed_) return;
      try {
        self->fn_();
      } catch (const std::exception& e) {
        spdlog::error("api: tick handler threw: {}", e.what());
      }
      self->Arm();
    });
  }

  Timer timer_;
  std::chrono::microseconds interval_;
  std::function<void()> fn_;
  bool closed_ = false;
};

}  // namespace

ConnectionSlot::~ConnectionSlot() {
  if (!address_.empty()) core_->LeaveShare(ServerCore::Share::kAddress, address_);
  if (!key_.empty()) core_->LeaveShare(ServerCore::Share::kKey, key_);
  core_->ReleaseSlot();
}

bool ConnectionSlot::JoinAddress(const std::string& address) {
  if (address.empty() || address == "unix" || !address_.empty()) return true;
  address_ = address;
  return core_->JoinShare(ServerCore::Share::kAddress, address_, /*count_over=*/true);
}

bool ConnectionSlot::JoinKey(const std::string& key) {
  if (key == key_) return true;
  if (!key_.empty()) core_->LeaveShare(ServerCore::Share::kKey, key_);
  key_.clear();
  if (!core_->JoinShare(ServerCore::Share::kKey, key, /*count_over=*/false)) return false;
  key_ = key;
  return true;
}

bool ServerCore::JoinShare(Share kind, const std::string& name, bool count_over) {
  const size_t cap = kind == Share::kAddress ? options_.max_connections_per_address
                                             : options_.max_connections_per_key;
  std::lock_guard lock(mu_);
  size_t& n = (kind == Share::kAddress ? per_address_ : per_key_)[name];
  const bool within = cap == 0 || n < cap;
  if (within || count_over) ++n;
  if (n == 0) (kind == Share::kAddress ? per_address_ : per_key_).erase(name);
  return within;
}

void ServerCore::LeaveShare(Share kind, const std::string& name) {
  std::lock_guard lock(mu_);
  auto& map = kind == Share::kAddress ? per_address_ : per_key_;
  auto it = map.find(name);
  if (it == map.end()) return;
  if (--it->second == 0) map.erase(it);
}

ServerCore::ServerCore(ServerOptions options, Router router, Authenticator authenticator)
    : options_(std::move(options)),
      router_(std::move(router)),
      authenticator_(std::move(authenticator)),
      io_(std::max(1, options_.io_threads)),
      workers_(static_cast<size_t>(std::max(1, options_.worker_threads))) {
  work_.emplace(net::make_work_guard(io_));
}

bool ServerCore::PostWork(std::function<void()> fn, const char* what) {
  std::lock_guard lock(mu_);
  if (workers_closed_) return false;
  net::post(workers_, [fn = std::move(fn), what] {
    try {
      fn();
    } catch (const std::exception& e) {
      spdlog::error("api: {} threw: {}", what, e.what());
    } catch (...) {
      spdlog::error("api: {} threw a non-standard exception", what);
    }
  });
  return true;
}

bool ServerCore::HasRoom(std::function<void()> resume) {
  std::lock_guard lock(mu_);
  if (stopping_) return false;
  if (connections_ >= std::max<size_t>(1, options_.max_connections)) {
    paused_.push_back(std::move(resume));
    return false;
  }
  return true;
}

std::unique_ptr<ConnectionSlot> ServerCore::AcquireSlot() {
  std::lock_guard lock(mu_);
  ++connections_;
  return std::make_unique<ConnectionSlot>(shared_from_this());
}

void ServerCore::ReleaseSlot() {
  std::function<void()> resume;
  {
    std::lock_guard lock(mu_);
    --connections_;
    if (!paused_.empty() && !stopping_) {
      resume = std::move(paused_.back());
      paused_.pop_back();
    }
  }
  cv_.notify_all();
  if (resume) resume();
}

size_t ServerCore::connection_count() const {
  std::lock_guard lock(mu_);
  return connections_;
}

uint64_t ServerCore::Register(std::weak_ptr<Session> session) {
  std::lock_guard lock(mu_);
  uint64_t id = next_session_id_++;
  sessions_.emplace(id, std::move(session));
  return id;
}

void ServerCore::Unregister(uint64_t id) {
  std::lock_guard lock(mu_);
  sessions_.erase(id);
}

std::vector<std::shared_ptr<Session>> ServerCore::LiveSessions() const {
  std::vector<std::shared_ptr<Session>> out;
  std::lock_guard lock(mu_);
  for (const auto& [id, weak] : sessions_) {
    if (auto s = weak.lock()) out.push_back(std::move(s));
  }
  return out;
}

bool ServerCore::stopping() const {
  std::lock_guard lock(mu_);
  return stopping_;
}

void ServerCore::SetStopping() {
  std::lock_guard lock(mu_);
  stopping_ = true;
  paused_.clear();
}

bool ServerCore::WaitForNoConnections(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  return cv_.wait_until(lock, deadline, [this] { return connections_ == 0; });
}

void ServerCore::StartThreads() {
  for (int i = 0; i < std::max(1, options_.io_threads); ++i) {
    io_threads_.emplace_back([this] {
      while (true) {
        try {
          io_.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("api: I/O handler threw: {}", e.what());
        }
      }
    });
  }
}

void ServerCore::JoinIoThreads() {
  work_.reset();
  io_.stop();
  for (std::thread& t : io_threads_) t.join();
  io_threads_.clear();
}

void ServerCore::JoinWorkers() {
  {
    std::lock_guard lock(mu_);
    workers_closed_ = true;
  }
  workers_.join();
}

}  // namespace internal

struct Server::Impl {
  std::shared_ptr<internal::ServerCore> core;
  std::vector<std::shared_ptr<internal::Listener>> listeners;
  std::shared_ptr<internal::Ticker> ticker;
  std::vector<ListenAddress> addresses;
  bool stopped = false;
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { Stop(std::chrono::milliseconds(0)); }

Result<std::unique_ptr<Server>> Server::Start(ServerOptions options, Router router,
                                              Authenticator authenticator) {
  std::vector<BoundListener> bound;
  // Adopted fds are owned from here on, whatever happens.
  std::vector<UniqueFd> adopted;
  for (int fd : options.listen_fds) adopted.emplace_back(fd);
  for (const std::string& spec : options.listen) {
    Result<ListenAddress> address = ParseListenAddress(spec);
    if (!address.ok()) return std::move(address).error();
    Result<BoundListener> l = OpenListener(*address, options.backlog, options.unix_socket_mode);
    if (!l.ok()) {
      for (BoundListener& b : bound) {
        if (b.owns_path) unlink(b.address.path.c_str());
      }
      return std::move(l).error();
    }
    bound.push_back(std::move(*l));
  }
  for (UniqueFd& fd : adopted) {
    Result<BoundListener> l = AdoptListener(fd.release());
    if (!l.ok()) {
      for (BoundListener& b : bound) {
        if (b.owns_path) unlink(b.address.path.c_str());
      }
      return std::move(l).error();
    }
    bound.push_back(std::move(*l));
  }
  if (bound.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "no listen address; give at least one HOST:PORT or unix:/path");
  }

  auto impl = std::make_unique<Impl>();
  impl->core = std::make_shared<internal::ServerCore>(std::move(options), std::move(router),
                                                      std::move(authenticator));
  for (BoundListener& b : bound) {
    auto listener = std::make_shared<internal::Listener>(impl->core, std::move(b));
    Status st = listener->Open();
    if (!st.ok()) {
      for (auto& l : impl->listeners) l->UnlinkSocketFile();
      listener->UnlinkSocketFile();
      return std::move(st).error();
    }
    impl->addresses.push_back(listener->address());
    impl->listeners.push_back(std::move(listener));
  }
  const ServerOptions& opts = impl->core->options();
  if (opts.tick_interval.count() > 0 && opts.on_tick) {
    impl->ticker =
        std::make_shared<internal::Ticker>(*impl->core, opts.tick_interval, opts.on_tick);
  }
  impl->core->StartThreads();
  for (auto& l : impl->listeners) l->Start();
  if (impl->ticker) impl->ticker->Start();
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

const std::vector<ListenAddress>& Server::addresses() const { return impl_->addresses; }

size_t Server::connection_count() const { return impl_->core->connection_count(); }

void Server::Stop(std::chrono::milliseconds grace) {
  if (impl_->stopped) return;
  impl_->stopped = true;
  internal::ServerCore& core = *impl_->core;
  auto deadline = std::chrono::steady_clock::now() + grace;

  core.SetStopping();
  if (impl_->ticker) impl_->ticker->Close();
  for (auto& l : impl_->listeners) l->Close();
  for (auto& s : core.LiveSessions()) s->BeginShutdown();
  if (!core.WaitForNoConnections(deadline)) {
    spdlog::info("api: {} connection(s) still open after the grace period; closing them",
                 core.connection_count());
    for (auto& s : core.LiveSessions()) s->ForceClose();
    // Closed sockets complete their operations at once; this bounds the wait for the handlers.
    core.WaitForNoConnections(std::chrono::steady_clock::now() + std::chrono::seconds(1));
  }
  core.JoinIoThreads();
  // OnClose callbacks of streams and WebSockets still open go to the workers before they stop.
  for (auto& s : core.LiveSessions()) s->Detach();
  core.JoinWorkers();
  // Drops the handlers still queued and with them the sessions (their slots and sockets).
  core.DestroyPendingHandlers();
  for (auto& l : impl_->listeners) l->UnlinkSocketFile();
  impl_->listeners.clear();
}

}  // namespace sbx::api
