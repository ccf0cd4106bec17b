#include "isolate/net_ns.h"

#include <fcntl.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <sched.h>

#include <memory>

#include "base/unique_fd.h"

namespace sbx::isolate {
namespace {

struct SockDeleter {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
struct LinkDeleter {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};

Status SetLoopbackUp() {
  std::unique_ptr<nl_sock, SockDeleter> sock(nl_socket_alloc());
  if (!sock) return MakeError(ErrorCode::kInternal, "libnl: cannot allocate a netlink socket");
  if (int r = nl_connect(sock.get(), NETLINK_ROUTE); r < 0) {
    return MakeError(ErrorCode::kInternal, "libnl: connect NETLINK_ROUTE: {}", nl_geterror(r));
  }
  // A new network namespace's loopback is always ifindex 1 (LOOPBACK_IFINDEX in the kernel), so
  // one RTM_NEWLINK suffices; no lookup round trip.
  std::unique_ptr<rtnl_link, LinkDeleter> lo(rtnl_link_alloc());
  if (!lo) return MakeError(ErrorCode::kInternal, "libnl: cannot allocate a link");
  rtnl_link_set_ifindex(lo.get(), 1);
  std::unique_ptr<rtnl_link, LinkDeleter> change(rtnl_link_alloc());
  if (!change) return MakeError(ErrorCode::kInternal, "libnl: cannot allocate a link");
  rtnl_link_set_flags(change.get(), IFF_UP);
  if (int r = rtnl_link_change(sock.get(), lo.get(), change.get(), 0); r < 0) {
    return MakeError(ErrorCode::kInternal, "libnl: set lo up: {}", nl_geterror(r));
  }
  return Ok();
}

}  // namespace

Status BringUpLoopback(pid_t pid) {
  std::string path = fmt::format("/proc/{}/ns/net", pid);
  UniqueFd ns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns) return ErrnoError("open {}", path);
  // setns(CLONE_NEWNET) changes only the calling thread; callers run this on a thread of its own
  // (Sandbox::Create starts one for it), never on one that goes on to do other work.
  if (::setns(ns.get(), CLONE_NEWNET) < 0) {
    return ErrnoError("setns into the sandbox's network namespace");
  }
  return SetLoopbackUp();
}

}  // namespace sbx::isolate
