#include "tests/support/netns.h"

#include <fcntl.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/veth.h>
#include <sched.h>
#include <unistd.h>

#include <memory>
#include <thread>

namespace sbx::testing {
namespace {

struct SockDeleter {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
struct LinkDeleter {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
struct AddrDeleter {
  void operator()(rtnl_addr* a) const { rtnl_addr_put(a); }
};
struct NlAddrDeleter {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
using Sock = std::unique_ptr<nl_sock, SockDeleter>;
using Link = std::unique_ptr<rtnl_link, LinkDeleter>;

Error NlError(int code, const std::string& what) {
  return MakeError(ErrorCode::kInternal, "{}: {}", what, nl_geterror(code));
}

// A NETLINK_ROUTE socket in the calling thread's namespace.
Result<Sock> Connect() {
  Sock sock(nl_socket_alloc());
  if (!sock) return MakeError(ErrorCode::kInternal, "libnl: cannot allocate a socket");
  if (int r = nl_connect(sock.get(), NETLINK_ROUTE); r < 0) return NlError(r, "netlink connect");
  return sock;
}

Result<int> IndexOf(const std::string& name) {
  const unsigned index = if_nametoindex(name.c_str());
  if (index == 0) return ErrnoError("no link {}", name);
  return static_cast<int>(index);
}

Status SetFlags(nl_sock* sock, int index, bool up, const std::string& name) {
  Link link(rtnl_link_alloc());
  Link change(rtnl_link_alloc());
  if (!link || !change) return MakeError(ErrorCode::kInternal, "libnl: cannot allocate a link");
  rtnl_link_set_ifindex(link.get(), index);
  if (up) {
    rtnl_link_set_flags(change.get(), IFF_UP);
  } else {
    rtnl_link_unset_flags(change.get(), IFF_UP);
  }
  if (int r = rtnl_link_change(sock, link.get(), change.get(), 0); r < 0) {
    return NlError(r, "set " + name + (up ? " up" : " down"));
  }
  return Ok();
}

Status AddAddress(nl_sock* sock, int index, const std::string& cidr) {
  nl_addr* parsed = nullptr;
  if (int r = nl_addr_parse(cidr.c_str(), AF_INET, &parsed); r < 0) {
    return NlError(r, "address " + cidr);
  }
  std::unique_ptr<nl_addr, NlAddrDeleter> local(parsed);
  std::unique_ptr<rtnl_addr, AddrDeleter> addr(rtnl_addr_alloc());
  if (!addr) return MakeError(ErrorCode::kInternal, "libnl: cannot allocate an address");
  rtnl_addr_set_ifindex(addr.get(), index);
  if (int r = rtnl_addr_set_local(addr.get(), local.get()); r < 0) {
    return NlError(r, "address " + cidr);
  }
  rtnl_addr_set_prefixlen(addr.get(), static_cast<int>(nl_addr_get_prefixlen(local.get())));
  if (int r = rtnl_addr_add(sock, addr.get(), 0); r < 0) return NlError(r, "add " + cidr);
  return Ok();
}

}  // namespace

Result<NetNs> NetNs::Create() {
  Result<NetNs> out = MakeError(ErrorCode::kInternal, "not created");
  // unshare(CLONE_NEWNET) moves only the calling thread: a thread of its own, which ends there.
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      out = ErrnoError("unshare(CLONE_NEWNET)");
      return;
    }
    UniqueFd fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!fd) {
      out = ErrnoError("open /proc/thread-self/ns/net");
      return;
    }
    auto sock = Connect();
    if (!sock.ok()) {
      out = std::move(sock).error();
      return;
    }
    // A new namespace's loopback is ifindex 1.
    if (Status st = SetFlags(sock->get(), 1, true, "lo"); !st.ok()) {
      out = std::move(st).error();
      return;
    }
    out = NetNs(std::move(fd));
  });
  t.join();
  return out;
}

Status NetNs::Run(const std::function<Status()>& fn) const {
  Status out;
  std::thread t([&] {
    if (::setns(fd_.get(), CLONE_NEWNET) != 0) {
      out = ErrnoError("setns into a test network namespace");
      return;
    }
    out = fn();
  });
  t.join();
  return out;
}

Status NetNs::AddBridge(const std::string& name, const std::string& cidr) const {
  return Run([&]() -> Status {
    auto sock = Connect();
    if (!sock.ok()) return std::move(sock).error();
    Link bridge(rtnl_link_bridge_alloc());
    if (!bridge) return MakeError(ErrorCode::kInternal, "libnl: cannot allocate a bridge");
    rtnl_link_set_name(bridge.get(), name.c_str());
    // A MAC address of its own (locally administered): without one a bridge takes the lowest
    // of its ports', so adding a port can change it, and the hosts behind the other ports keep
    // sending to the old one until their ARP entries expire (seconds without a network).
    const unsigned char mac[6] = {0x02, 0x00, 0x00, 0x77, 0x00, 0x01};
    std::unique_ptr<nl_addr, NlAddrDeleter> lladdr(nl_addr_build(AF_LLC, mac, sizeof mac));
    if (!lladdr) return MakeError(ErrorCode::kInternal, "libnl: cannot build a MAC address");
    rtnl_link_set_addr(bridge.get(), lladdr.get());
    if (int r = rtnl_link_add(sock->get(), bridge.get(), NLM_F_CREATE | NLM_F_EXCL); r < 0) {
      return NlError(r, "add bridge " + name);
    }
    auto index = IndexOf(name);
    if (!index.ok()) return std::move(index).error();
    SBX_TRY(AddAddress(sock->get(), *index, cidr));
    return SetFlags(sock->get(), *index, true, name);
  });
}

Status NetNs::AddVethToBridge(const std::string& here, const std::string& bridge,
                              const NetNs& peer, const std::string& there,
                              const std::string& cidr) const {
  SBX_TRY(Run([&]() -> Status {
    auto sock = Connect();
    if (!sock.ok()) return std::move(sock).error();
    rtnl_link* veth = rtnl_link_veth_alloc();
    if (veth == nullptr) return MakeError(ErrorCode::kInternal, "libnl: cannot allocate a veth");
    rtnl_link_set_name(veth, here.c_str());
    Link other(rtnl_link_veth_get_peer(veth));
    rtnl_link_set_name(other.get(), there.c_str());
    rtnl_link_set_ns_fd(other.get(), peer.fd());
    const int r = rtnl_link_add(sock->get(), veth, NLM_F_CREATE | NLM_F_EXCL);
    other.reset();
    rtnl_link_veth_release(veth);
    if (r < 0) return NlError(r, "add veth " + here + " <-> " + there);
    auto index = IndexOf(here);
    if (!index.ok()) return std::move(index).error();
    auto master = IndexOf(bridge);
    if (!master.ok()) return std::move(master).error();
    if (int e = rtnl_link_enslave_ifindex(sock->get(), *master, *index); e < 0) {
      return NlError(e, "add " + here + " to " + bridge);
    }
    return SetFlags(sock->get(), *index, true, here);
  }));
  return peer.Run([&]() -> Status {
    auto sock = Connect();
    if (!sock.ok()) return std::move(sock).error();
    auto index = IndexOf(there);
    if (!index.ok()) return std::move(index).error();
    SBX_TRY(AddAddress(sock->get(), *index, cidr));
    return SetFlags(sock->get(), *index, true, there);
  });
}

Status NetNs::SetUp(const std::string& name, bool up) const {
  return Run([&]() -> Status {
    auto sock = Connect();
    if (!sock.ok()) return std::move(sock).error();
    auto index = IndexOf(name);
    if (!index.ok()) return std::move(index).error();
    return SetFlags(sock->get(), *index, up, name);
  });
}

EnterNetNs::EnterNetNs(const NetNs& ns) {
  back_.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  ok_ = back_ && ::setns(ns.fd(), CLONE_NEWNET) == 0;
}

EnterNetNs::~EnterNetNs() {
  if (ok_) (void)::setns(back_.get(), CLONE_NEWNET);
}

}  // namespace sbx::testing
