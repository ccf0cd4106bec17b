// Internal to sbx_isolate: the live processes of one sandbox (see live.h) and the monitor thread
// that reads the init's reports for them.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "isolate/child.h"
#include "isolate/live.h"

namespace sbx::isolate::internal {

class LiveEngine {
 public:
  struct Borrowed {
    std::string sandbox_id;
    int ctl = -1;        // the control socket: the monitor is its only reader from now on
    int init_pidfd = -1;
    int cgroup = -1;     // the sandbox's unified cgroup (O_PATH)
    uid_t host_uid = 0;  // the sandbox user's host ids, owner of the delegated cgroup.procs
    gid_t host_gid = 0;
  };
  // Borrowed fds outlive the engine (Sandbox stops it before closing them).
  static Result<std::unique_ptr<LiveEngine>> Create(const Borrowed& b);
  ~LiveEngine();  // Stop()
  LiveEngine(const LiveEngine&) = delete;
  LiveEngine& operator=(const LiveEngine&) = delete;

  // `env` is complete (defaults added).
  Result<LiveProcess> Start(const LiveProcessSpec& spec, const std::vector<std::string>& env);
  Status Signal(ProcessId id, int sig, bool paused);
  Status Kill(ProcessId id);
  Status Resize(ProcessId id, PtySize size);
  Result<LiveProcessResult> ResultOf(ProcessId id);
  Result<LiveProcessResult> Wait(ProcessId id, std::chrono::milliseconds timeout);
  Result<std::vector<pid_t>> HostPids(ProcessId id);
  Status Release(ProcessId id);
  // Processes in the cgroups of the processes not released (for Stats()).
  uint64_t CountProcesses();
  bool dead();
  // Joins the monitor; every process not ended yet ends `killed` (its done fd fires).
  void Stop();

 private:
  struct Proc;
  struct Pending;
  LiveEngine() = default;
  void Loop();
  // The rest run on the monitor thread, or with mu_ held.
  void DrainControl();
  void InitGone();
  void OnExited(const InitMsg& m);
  void OnTimer(ProcessId id);
  void CheckTree(Proc& p);
  void KillTree(Proc& p);
  void Finish(Proc& p);
  void Watch(int fd, uint32_t events, uint64_t tag);
  void Unwatch(int fd);
  std::shared_ptr<Proc> Find(ProcessId id);
  // Sends `msg` (and, with a cgroup, the cgroup message) as one request and queues `pending`
  // for its answer; then waits for the answer. Takes send_mu_, then mu_.
  Status Request(const std::string& msg, const int* fds, size_t nfds, int cgroup_fd,
                 const std::shared_ptr<Pending>& pending);

  Borrowed b_;
  UniqueFd ep_;
  UniqueFd wake_;
  std::thread thread_;
  std::mutex send_mu_;  // one request on the socket at a time (taken before mu_)
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<ProcessId, std::shared_ptr<Proc>> procs_;
  std::deque<std::shared_ptr<Pending>> pending_;  // requests awaiting their answer, in order
  ProcessId next_id_ = 1;
  bool dead_ = false;      // the init is gone
  bool stopping_ = false;
};

}  // namespace sbx::isolate::internal
