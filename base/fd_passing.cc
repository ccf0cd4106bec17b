#include "base/fd_passing.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sbx {

ssize_t SendWithFds(int sock, const void* data, size_t len, const int* fds, size_t nfds) {
  struct iovec iov = {const_cast<void*>(data), len};
  alignas(struct cmsghdr) char cbuf[CMSG_SPACE(kMaxFdsPerMessage * sizeof(int))];
  std::memset(cbuf, 0, sizeof cbuf);
  struct msghdr msg;
  std::memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > kMaxFdsPerMessage) {
    errno = EINVAL;
    return -1;
  }
  if (nfds > 0) {
    msg.msg_control = cbuf;
    msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  }
  ssize_t r;
  do {
    r = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (r < 0 && errno == EINTR);
  return r;
}

ssize_t RecvWithFds(int sock, void* buf, size_t len, int* fds, size_t* nfds, bool* truncated,
                    int flags) {
  return RecvWithFdsUpTo(sock, buf, len, fds, kMaxPassedFds, nfds, truncated, flags);
}

ssize_t RecvWithFdsUpTo(int sock, void* buf, size_t len, int* fds, size_t capacity, size_t* nfds,
                        bool* truncated, int flags) {
  if (capacity > kMaxFdsPerMessage) capacity = kMaxFdsPerMessage;
  struct iovec iov = {buf, len};
  alignas(struct cmsghdr) char cbuf[CMSG_SPACE(kMaxFdsPerMessage * sizeof(int))];
  struct msghdr msg;
  std::memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof cbuf;
  ssize_t r;
  do {
    r = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | flags);
  } while (r < 0 && errno == EINTR);
  *nfds = 0;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); r >= 0 && c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (*nfds < capacity) {
        fds[(*nfds)++] = fd;
      } else {
        ::close(fd);
      }
    }
  }
  *truncated = r >= 0 && (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
  return r;
}

}  // namespace sbx
