#include "supervisor/checkout/timed_stream.h"

#include <fcntl.h>
#include <git2.h>
#include <git2/sys/stream.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <string>

namespace sbx::supervisor::checkout::internal {
namespace {

thread_local FetchLimits* current_limits = nullptr;

// git_stream must be the first member: libgit2 passes git_stream* to the callbacks.
struct TimedStream {
  git_stream parent;
  std::string host;
  std::string port;
  int fd = -1;
};

TimedStream* Self(git_stream* s) { return reinterpret_cast<TimedStream*>(s); }

// Milliseconds poll(2) may wait now; 0 when the deadline has passed.
int WaitBudgetMs() {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  FetchLimits* limits = current_limits;
  if (limits == nullptr) return 60'000;
  const auto left =
      duration_cast<milliseconds>(limits->deadline - std::chrono::steady_clock::now()).count();
  if (left <= 0) return 0;
  return static_cast<int>(std::min<long long>(left, limits->io_timeout.count()));
}

void SetTimedOut() {
  if (current_limits != nullptr) current_limits->timed_out = true;
}

// Waits for `events` on fd. 0: ready; -1 with libgit2's error set otherwise.
int WaitFor(TimedStream* st, short events, const char* doing) {
  for (;;) {
    const int budget = WaitBudgetMs();
    if (budget <= 0) {
      SetTimedOut();
      git_error_set(GIT_ERROR_NET, "timed out %s %s", doing, st->host.c_str());
      return -1;
    }
    pollfd p{st->fd, events, 0};
    const int rc = ::poll(&p, 1, budget);
    if (rc > 0) return 0;
    if (rc == 0) {
      SetTimedOut();
      git_error_set(GIT_ERROR_NET, "timed out %s %s", doing, st->host.c_str());
      return -1;
    }
    if (errno != EINTR) {
      git_error_set(GIT_ERROR_NET, "poll while %s %s: %s", doing, st->host.c_str(),
                    std::strerror(errno));
      return -1;
    }
  }
}

int StreamConnect(git_stream* stream) {
  TimedStream* st = Self(stream);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_UNSPEC;
  addrinfo* info = nullptr;
  // getaddrinfo(3) is bounded by the resolver's own timeouts (resolv.conf), not by these.
  const int gai = ::getaddrinfo(st->host.c_str(), st->port.c_str(), &hints, &info);
  if (gai != 0) {
    git_error_set(GIT_ERROR_NET, "failed to resolve address for %s: %s", st->host.c_str(),
                  ::gai_strerror(gai));
    return -1;
  }
  int last_errno = ECONNREFUSED;
  bool timed_out = false;
  for (addrinfo* p = info; p != nullptr && !timed_out; p = p->ai_next) {
    const int fd =
        ::socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, p->ai_protocol);
    if (fd < 0) {
      last_errno = errno;
      continue;
    }
    st->fd = fd;
    int rc = ::connect(fd, p->ai_addr, p->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      if (WaitFor(st, POLLOUT, "connecting to") != 0) {
        timed_out = current_limits != nullptr && current_limits->timed_out;
        last_errno = ETIMEDOUT;
        ::close(fd);
        st->fd = -1;
        continue;
      }
      int err = 0;
      socklen_t len = sizeof(err);
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      rc = err == 0 ? 0 : -1;
      errno = err;
    }
    if (rc == 0) {
      ::freeaddrinfo(info);
      return 0;
    }
    last_errno = errno;
    ::close(fd);
    st->fd = -1;
  }
  ::freeaddrinfo(info);
  if (last_errno == ETIMEDOUT) {
    git_error_set(GIT_ERROR_NET, "timed out connecting to %s", st->host.c_str());
  } else {
    git_error_set(GIT_ERROR_NET, "failed to connect to %s: %s", st->host.c_str(),
                  std::strerror(last_errno));
  }
  return -1;
}

ssize_t StreamRead(git_stream* stream, void* data, size_t len) {
  TimedStream* st = Self(stream);
  for (;;) {
    const ssize_t n = ::recv(st->fd, data, len, 0);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      git_error_set(GIT_ERROR_NET, "error receiving data from %s: %s", st->host.c_str(),
                    std::strerror(errno));
      return -1;
    }
    if (WaitFor(st, POLLIN, "reading from") != 0) return -1;
  }
}

ssize_t StreamWrite(git_stream* stream, const char* data, size_t len, int /*flags*/) {
  TimedStream* st = Self(stream);
  for (;;) {
    // MSG_NOSIGNAL: a peer that closed must not kill the daemon with SIGPIPE.
    const ssize_t n = ::send(st->fd, data, len, MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      git_error_set(GIT_ERROR_NET, "error sending data to %s: %s", st->host.c_str(),
                    std::strerror(errno));
      return -1;
    }
    if (WaitFor(st, POLLOUT, "writing to") != 0) return -1;
  }
}

int StreamClose(git_stream* stream) {
  TimedStream* st = Self(stream);
  if (st->fd >= 0) ::close(st->fd);
  st->fd = -1;
  return 0;
}

void StreamFree(git_stream* stream) {
  TimedStream* st = Self(stream);
  StreamClose(stream);
  delete st;
}

int StreamInit(git_stream** out, const char* host, const char* port) {
  auto* st = new (std::nothrow) TimedStream();
  if (st == nullptr) {
    git_error_set_oom();
    return -1;
  }
  try {
    st->host = host;
    st->port = port != nullptr ? port : "";
  } catch (...) {
    delete st;
    git_error_set_oom();
    return -1;
  }
  st->parent.version = GIT_STREAM_VERSION;
  st->parent.encrypted = 0;
  st->parent.proxy_support = 0;
  st->parent.connect = StreamConnect;
  st->parent.read = StreamRead;
  st->parent.write = StreamWrite;
  st->parent.close = StreamClose;
  st->parent.free = StreamFree;
  *out = &st->parent;
  return 0;
}

}  // namespace

void RegisterTimedStream() {
  static git_stream_registration registration = {GIT_STREAM_VERSION, StreamInit, nullptr};
  git_stream_register(GIT_STREAM_STANDARD, &registration);
}

ScopedFetchLimits::ScopedFetchLimits(FetchLimits* limits) : previous_(current_limits) {
  current_limits = limits;
}

ScopedFetchLimits::~ScopedFetchLimits() { current_limits = previous_; }

FetchLimits* CurrentFetchLimits() { return current_limits; }

}  // namespace sbx::supervisor::checkout::internal
