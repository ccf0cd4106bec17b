#include "api/http/listen.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace sbx::api {
namespace {

std::string FormatSockaddr(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    inet_ntop(AF_INET, &sin.sin_addr, buf, sizeof(buf));
    return std::string(buf) + ":" + std::to_string(ntohs(sin.sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
    inet_ntop(AF_INET6, &sin6.sin6_addr, buf, sizeof(buf));
    // Appended piece by piece: `"[" + std::string(buf)` draws a bogus -Wrestrict from GCC 12 at
    // -O3 (GCC PR 105329).
    std::string out = "[";
    out += buf;
    out += "]:";
    out += std::to_string(ntohs(sin6.sin6_port));
    return out;
  }
  if (ss.ss_family == AF_UNIX) return "unix";
  return "unknown";
}

Result<ListenAddress> AddressOfSocket(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return ErrnoError("getsockname on listening socket {}", fd);
  }
  ListenAddress a;
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    inet_ntop(AF_INET, &sin.sin_addr, buf, sizeof(buf));
    a.kind = ListenAddress::Kind::kTcp;
    a.host = buf;
    a.port = ntohs(sin.sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
    inet_ntop(AF_INET6, &sin6.sin6_addr, buf, sizeof(buf));
    a.kind = ListenAddress::Kind::kTcp;
    a.host = buf;
    a.port = ntohs(sin6.sin6_port);
  } else if (ss.ss_family == AF_UNIX) {
    const auto& sun = reinterpret_cast<const sockaddr_un&>(ss);
    a.kind = ListenAddress::Kind::kUnix;
    size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
    a.path = std::string(sun.sun_path, strnlen(sun.sun_path, n));
  } else {
    return MakeError(ErrorCode::kInvalidArgument, "socket {} has address family {}", fd,
                     ss.ss_family);
  }
  return a;
}

// Removes a unix socket file that nobody accepts on any more.
Status RemoveStaleSocket(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Ok();
    return ErrnoError("stat {}", path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "{} exists and is not a socket; remove it or listen elsewhere", path);
  }
  UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe) return ErrnoError("socket(AF_UNIX)");
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  if (connect(probe.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) == 0) {
    return MakeError(ErrorCode::kAlreadyExists,
                     "another process is accepting on unix:{}; stop it or pick another path", path);
  }
  if (errno != ECONNREFUSED && errno != ENOENT) return ErrnoError("probe unix:{}", path);
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoError("unlink stale {}", path);
  return Ok();
}

Result<BoundListener> OpenUnix(const ListenAddress& address, int backlog, mode_t mode) {
  const std::string& path = address.path;
  sockaddr_un sun{};
  if (path.empty() || path.size() >= sizeof(sun.sun_path)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "unix socket path '{}' must be 1 to {} bytes long", path,
                     sizeof(sun.sun_path) - 1);
  }
  SBX_TRY(RemoveStaleSocket(path));
  BoundListener l;
  l.fd.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!l.fd) return ErrnoError("socket(AF_UNIX)");
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  if (bind(l.fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) != 0) {
    return ErrnoError("bind unix:{}", path);
  }
  struct stat st {};
  if (chmod(path.c_str(), mode) != 0 || lstat(path.c_str(), &st) != 0) {
    Error e = ErrnoError("chmod {:o} unix:{}", mode, path);
    unlink(path.c_str());
    return e;
  }
  if (listen(l.fd.get(), backlog) != 0) {
    Error e = ErrnoError("listen unix:{}", path);
    unlink(path.c_str());
    return e;
  }
  l.address = address;
  l.owns_path = true;
  l.dev = st.st_dev;
  l.ino = st.st_ino;
  return l;
}

Result<BoundListener> OpenTcp(const ListenAddress& address, int backlog) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
  auto& sin = reinterpret_cast<sockaddr_in&>(ss);
  auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
  if (inet_pton(AF_INET, address.host.c_str(), &sin.sin_addr) == 1) {
    sin.sin_family = AF_INET;
    sin.sin_port = htons(address.port);
    len = sizeof(sin);
  } else if (inet_pton(AF_INET6, address.host.c_str(), &sin6.sin6_addr) == 1) {
    family = AF_INET6;
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(address.port);
    len = sizeof(sin6);
  } else {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' is not a numeric IP address", address.host);
  }
  BoundListener l;
  l.fd.reset(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!l.fd) return ErrnoError("socket for {}", address.ToString());
  int one = 1;
  setsockopt(l.fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  // [::]:P binds IPv6 only, so "0.0.0.0:P" and "[::]:P" can be listed side by side.
  if (family == AF_INET6) setsockopt(l.fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(l.fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return ErrnoError("bind {}", address.ToString());
  }
  if (listen(l.fd.get(), backlog) != 0) return ErrnoError("listen {}", address.ToString());
  Result<ListenAddress> bound = AddressOfSocket(l.fd.get());
  if (!bound.ok()) return std::move(bound).error();
  l.address = std::move(*bound);
  return l;
}

}  // namespace

std::string ListenAddress::ToString() const {
  switch (kind) {
    case Kind::kTcp:
      if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
      return host + ":" + std::to_string(port);
    case Kind::kUnix:
      return "unix:" + path;
    case Kind::kFd:
      return "fd:" + std::to_string(fd);
  }
  return "?";
}

Result<ListenAddress> ParseListenAddress(std::string_view spec) {
  ListenAddress a;
  if (spec.starts_with("unix:")) {
    a.kind = ListenAddress::Kind::kUnix;
    a.path = std::string(spec.substr(5));
    if (a.path.empty() || a.path[0] != '/') {
      return MakeError(ErrorCode::kInvalidArgument,
                       "listen address '{}': a unix socket needs an absolute path (unix:/run/x)",
                       spec);
    }
    if (a.path.find('\0') != std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument, "listen address contains NUL");
    }
    return a;
  }
  std::string_view host;
  std::string_view port;
  if (spec.starts_with("[")) {
    size_t close = spec.find(']');
    if (close == std::string_view::npos || close + 1 >= spec.size() || spec[close + 1] != ':') {
      return MakeError(ErrorCode::kInvalidArgument,
                       "listen address '{}': write IPv6 as [ADDR]:PORT", spec);
    }
    host = spec.substr(1, close - 1);
    port = spec.substr(close + 2);
  } else {
    size_t colon = spec.rfind(':');
    if (colon == std::string_view::npos) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "listen address '{}': use HOST:PORT, [IPV6]:PORT or unix:/path", spec);
    }
    host = spec.substr(0, colon);
    port = spec.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "listen address '{}': write IPv6 as [ADDR]:PORT", spec);
    }
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    return MakeError(ErrorCode::kInvalidArgument, "listen address '{}': bad port '{}'", spec, port);
  }
  a.kind = ListenAddress::Kind::kTcp;
  a.port = static_cast<uint16_t>(value);
  a.host = host == "localhost" ? "127.0.0.1" : std::string(host);
  in6_addr probe6{};
  in_addr probe4{};
  if (inet_pton(AF_INET, a.host.c_str(), &probe4) != 1 &&
      inet_pton(AF_INET6, a.host.c_str(), &probe6) != 1) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "listen address '{}': '{}' is not a numeric IPv4/IPv6 address", spec, host);
  }
  return a;
}

Result<BoundListener> OpenListener(const ListenAddress& address, int backlog, mode_t unix_mode) {
  switch (address.kind) {
    case ListenAddress::Kind::kTcp:
      return OpenTcp(address, backlog);
    case ListenAddress::Kind::kUnix:
      return OpenUnix(address, backlog, unix_mode);
    case ListenAddress::Kind::kFd:
      return AdoptListener(address.fd);
  }
  return MakeError(ErrorCode::kInvalidArgument, "unknown listen address kind");
}

Result<BoundListener> AdoptListener(int fd) {
  BoundListener l;
  l.fd.reset(fd);
  int accepting = 0;
  int type = 0;
  socklen_t len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0) {
    return ErrnoError("fd {} is not a socket", fd);
  }
  len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return ErrnoError("SO_TYPE fd {}", fd);
  if (!accepting || type != SOCK_STREAM) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "fd {} is not a listening stream socket (systemd: ListenStream=)", fd);
  }
  Result<ListenAddress> address = AddressOfSocket(fd);
  if (!address.ok()) return std::move(address).error();
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) return ErrnoError("FD_CLOEXEC on fd {}", fd);
  l.address = std::move(*address);
  return l;
}

std::string DescribePeer(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "unknown";
  return FormatSockaddr(ss);
}

std::string PeerAddress(std::string_view peer) {
  if (!peer.empty() && peer.front() == '[') {
    const size_t close = peer.find(']');
    return std::string(peer.substr(1, close == std::string_view::npos ? peer.npos : close - 1));
  }
  const size_t colon = peer.rfind(':');
  return std::string(colon == std::string_view::npos ? peer : peer.substr(0, colon));
}

void TuneAcceptedSocket(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return;
  if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
}

}  // namespace sbx::api
