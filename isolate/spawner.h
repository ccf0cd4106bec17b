// The spawner: a small single-threaded process that clones sandbox inits for a threaded daemon.
//
// Why: an init cloned straight from the daemon shares the daemon's whole address space
// copy-on-write for as long as its sandbox lives. Every page the daemon writes afterwards (its
// heap, the database's page cache, thread stacks) is then copied, each copy with a TLB flush on
// every CPU, and with several sandboxes alive it starts again after each clone: measured on a
// 2-vCPU host, about 40 % of the daemon's CPU time under load went to those faults. The
// spawner is forked while the daemon still has one thread and never sees the daemon's later
// memory; the inits it clones share only its own few pages.
//
// What crosses to the spawner: the ChildPlan (encoded, see EncodePlan), the clone flags, and
// the plan's fds plus the cgroup directory fd and the binds' mount trees (SCM_RIGHTS). What comes back: the init's pid
// and pidfd. The rest of a sandbox's life (id maps, v1 cgroups, loopback, the control socket)
// stays with the caller, exactly as for an init it cloned itself.
//
// The spawner dies with the thread that started it (PR_SET_PDEATHSIG). An init's life is tied
// to the caller, not to the spawner: it exits when the caller's end of its control socket
// closes, so a daemon killed with SIGKILL takes its sandboxes with it, and a spawner that died
// alone leaves them to the daemon, which still ends them (Cancel, Destroy). Inits are reaped
// by the spawner at once (SA_NOCLDWAIT): the caller learns of an init's end from its pidfd
// becoming readable, not from waitid, which only a parent may call.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"
#include "isolate/child.h"
#include "seccomp/seccomp.h"

namespace sbx::isolate {

class Spawner {
 public:
  // Forks the spawner. IMPORTANT: call it while the process has a single thread (at the top of
  // main): the spawner is a fork() of the caller and keeps running its code.
  static Result<std::unique_ptr<Spawner>> Start();
  // Closes the socket: the spawner exits. Sandboxes still alive are not affected.
  ~Spawner();
  Spawner(const Spawner&) = delete;
  Spawner& operator=(const Spawner&) = delete;

  struct Cloned {
    pid_t pid = -1;
    UniqueFd pidfd;
  };
  // Clones an init that runs internal::ChildMain(plan) with clone3 `flags` (CLONE_PIDFD is
  // added), starting inside the cgroup `cgroup_fd` when it is >= 0 (CLONE_INTO_CGROUP). The
  // plan's sync, err and ctl fds are passed to the init. Thread-safe; one clone at a time.
  // Fails with kUnavailable when the spawner is gone, with the clone's errno otherwise.
  Result<Cloned> Clone(const internal::ChildPlan& plan, uint64_t flags, int cgroup_fd);

  pid_t pid() const { return pid_; }

 private:
  Spawner() = default;
  std::mutex mu_;
  UniqueFd sock_;
  pid_t pid_ = -1;
};

namespace internal {

// Gives the plan's kBind ops, in order, the `n` mount trees received with it; false when the
// counts differ.
bool AssignBindFds(ChildPlan* plan, const int* fds, size_t n);

// The plan as bytes, fds and pointers aside (the fds travel as SCM_RIGHTS, the empty capability
// set is the spawner's own). The seccomp program travels whole.
std::string EncodePlan(const ChildPlan& plan);

// A decoded plan owns what its pointers point at. Not copyable: plan.seccomp points into it.
struct DecodedPlan {
  DecodedPlan() = default;
  DecodedPlan(const DecodedPlan&) = delete;
  DecodedPlan& operator=(const DecodedPlan&) = delete;
  ChildPlan plan;
  seccomp::Program seccomp;
};
// Fails with kInvalidArgument on bytes EncodePlan did not produce (truncated, trailing bytes,
// counts past the limits).
Status DecodePlan(std::string_view bytes, DecodedPlan* out);

}  // namespace internal
}  // namespace sbx::isolate
