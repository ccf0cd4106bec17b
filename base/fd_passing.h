// Messages with file descriptors over a unix socket (SCM_RIGHTS). Raw syscalls and memcpy only,
// no allocation: async-signal-safe, so the child side of a spawn may call them too.
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace sbx {

// The most fds one message carries here.
inline constexpr size_t kMaxPassedFds = 4;

// Sends `len` bytes and `nfds` (<= kMaxPassedFds) fds as one message, MSG_NOSIGNAL, retrying
// EINTR. Returns what sendmsg(2) returns.
ssize_t SendWithFds(int sock, const void* data, size_t len, const int* fds, size_t nfds);

// Receives one message into `buf` and up to kMaxPassedFds fds into `fds` (O_CLOEXEC; fds past
// that are closed), retrying EINTR; `flags` adds to recvmsg's (MSG_DONTWAIT). Returns what
// recvmsg(2) returns: 0 at EOF. *truncated: the message or its fds did not fit.
ssize_t RecvWithFds(int sock, void* buf, size_t len, int* fds, size_t* nfds, bool* truncated,
                    int flags = 0);

}  // namespace sbx
