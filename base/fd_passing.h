// Messages with file descriptors over a unix socket (SCM_RIGHTS). Raw syscalls and memcpy only,
// no allocation: async-signal-safe, so the child side of a spawn may call them too.
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace sbx {

// The most fds RecvWithFds takes from one message.
inline constexpr size_t kMaxPassedFds = 4;
// The most fds one message carries at all (RecvWithFdsUpTo's largest capacity); the kernel's
// own limit (SCM_MAX_FD) is 253.
inline constexpr size_t kMaxFdsPerMessage = 128;

// Sends `len` bytes and `nfds` (<= kMaxFdsPerMessage) fds as one message, MSG_NOSIGNAL,
// retrying EINTR. Returns what sendmsg(2) returns; -1 with EINVAL for too many fds.
ssize_t SendWithFds(int sock, const void* data, size_t len, const int* fds, size_t nfds);

// Receives one message into `buf` and up to kMaxPassedFds fds into `fds` (O_CLOEXEC; fds past
// that are closed), retrying EINTR; `flags` adds to recvmsg's (MSG_DONTWAIT). Returns what
// recvmsg(2) returns: 0 at EOF. *truncated: the message or its fds did not fit.
ssize_t RecvWithFds(int sock, void* buf, size_t len, int* fds, size_t* nfds, bool* truncated,
                    int flags = 0);
// The same with room for `capacity` (<= kMaxFdsPerMessage) fds in `fds`.
ssize_t RecvWithFdsUpTo(int sock, void* buf, size_t len, int* fds, size_t capacity, size_t* nfds,
                        bool* truncated, int flags = 0);

}  // namespace sbx
