// Where the server listens: "HOST:PORT" (numeric IPv4, "[IPv6]", or "localhost"), "unix:/path",
// or an already-listening descriptor handed over by systemd socket activation.
//
// The sockets are made here with plain syscalls; the server adopts the descriptors.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sbx::api {

struct ListenAddress {
  enum class Kind { kTcp, kUnix, kFd };
  Kind kind = Kind::kTcp;
  std::string host;   // kTcp: numeric, without brackets ("127.0.0.1", "::1")
  uint16_t port = 0;  // kTcp: 0 asks the kernel for a free port
  std::string path;   // kUnix
  int fd = -1;        // kFd

  // "127.0.0.1:8080", "[::1]:8080", "unix:/run/sandboxd.sock", "fd:3".
  std::string ToString() const;
};

// Parses "127.0.0.1:8080", "[::1]:0", "localhost:8080" (= 127.0.0.1), "unix:/run/x.sock".
// Host names other than localhost are refused (say which address to bind).
Result<ListenAddress> ParseListenAddress(std::string_view spec);

struct BoundListener {
  UniqueFd fd;
  // The address actually bound: for port 0, the port the kernel chose.
  ListenAddress address;
  // kUnix sockets this process created: the file to unlink on shutdown, and its inode, so that
  // a socket someone else has since put there is left alone.
  bool owns_path = false;
  dev_t dev = 0;
  ino_t ino = 0;
};

// Creates a listening socket (SOCK_CLOEXEC, SO_REUSEADDR, IPV6_V6ONLY for IPv6). For a unix
// socket, a stale socket file (nobody accepting on it) is unlinked first; a live one fails with
// kAlreadyExists, any other kind of file with kFailedPrecondition. The socket file gets `mode`
// before listen(2), so nobody can connect while it is still wider.
Result<BoundListener> OpenListener(const ListenAddress& address, int backlog,
                                   mode_t unix_mode = 0660);

// Takes over an fd that is already listening (systemd's LISTEN_FDS). Fails with
// kInvalidArgument when it is not a listening SOCK_STREAM socket of AF_INET, AF_INET6 or
// AF_UNIX. Sets FD_CLOEXEC. Ownership passes to the result even on failure.
Result<BoundListener> AdoptListener(int fd);

// The peer of a connected socket, for logs and Request::peer: "127.0.0.1:40112",
// "[::1]:40112", "unix".
std::string DescribePeer(int fd);
// The address part of DescribePeer's text: "127.0.0.1" of "127.0.0.1:40112", "::1" of
// "[::1]:40112"; "unix" and "unknown" stay as they are.
std::string PeerAddress(std::string_view peer);

// Per-connection socket options: TCP_NODELAY on TCP sockets (responses are written whole).
void TuneAcceptedSocket(int fd);

}  // namespace sbx::api
