// Network namespaces for tests that put daemons on a network of their own: a namespace is held by
// an fd (no name under /run/netns, no mount; it goes away with its last fd and process, and its
// links with it), links are made with rtnetlink (libnl), and nothing is done in the test
// process's own namespace.
//
// A typical network: a hub namespace holding a bridge with an address, and for each daemon a
// namespace joined to the bridge by a veth pair. Setting the veth's hub end down cuts the daemon
// off (its TCP connections stall, as on a real partition); setting it up heals it.
#pragma once

#include <functional>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sbx::testing {

class NetNs {
 public:
  // A new network namespace with its loopback up.
  static Result<NetNs> Create();
  int fd() const { return fd_.get(); }

  // Runs `fn` on a thread of its own that has joined this namespace (setns changes only the
  // calling thread), and returns what it returned.
  Status Run(const std::function<Status()>& fn) const;

  // A bridge named `name`, up, with address `cidr` (e.g. "10.77.0.1/24").
  Status AddBridge(const std::string& name, const std::string& cidr) const;
  // A veth pair: `here` in this namespace, up, a port of bridge `bridge`; `there` in namespace
  // `peer`, up, with address `cidr`.
  Status AddVethToBridge(const std::string& here, const std::string& bridge, const NetNs& peer,
                         const std::string& there, const std::string& cidr) const;
  // Sets link `name` of this namespace up or down.
  Status SetUp(const std::string& name, bool up) const;

 private:
  explicit NetNs(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

// Moves the calling thread into `ns` for its lifetime, and back to the namespace it was in.
// Threads it starts meanwhile, and processes it forks, begin in `ns`.
class EnterNetNs {
 public:
  explicit EnterNetNs(const NetNs& ns);
  ~EnterNetNs();
  EnterNetNs(const EnterNetNs&) = delete;
  EnterNetNs& operator=(const EnterNetNs&) = delete;
  bool ok() const { return ok_; }

 private:
  UniqueFd back_;
  bool ok_ = false;
};

}  // namespace sbx::testing
