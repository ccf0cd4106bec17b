// A sandbox: its namespaces, cgroup, root filesystem and limits, held by a minimal init (pid 1
// inside) into which processes are started one after another (a multi-step run) or side by side.
//
// Requires root on the host (user namespaces, cgroups, mounts). The init exits, and the kernel
// kills everything in its pid namespace, when the Sandbox's end of its control socket closes:
// on Destroy(), and when the process holding the Sandbox dies, however it dies.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"
#include "cgroup/cgroup.h"
#include "isolate/spec.h"

namespace sbx::isolate {

class Spawner;

struct EngineOptions {
  // Host directory used as the mount point while a sandbox's root is built (in the sandbox's own
  // mount namespace; the host never sees the mounts). Created when missing.
  std::string stage_dir = "/run/sandboxd/root";
  // Clones the inits when set (a threaded daemon, see spawner.h); else the caller's thread
  // clones them itself. Not owned; outlives every sandbox created with these options.
  Spawner* spawner = nullptr;
};

class Sandbox {
 public:
  // stream is 1 (stdout) or 2 (stderr). Called on the thread that called Run().
  using OutputSink = std::function<void(int stream, std::string_view data)>;

  // Builds the sandbox and waits until its init is ready. An Error means the sandbox could not
  // be started at all (bad spec, cgroup or clone failure); a failure inside the child's setup is
  // not an Error: the sandbox is returned with setup_error() set and every Run() reports
  // `setup_failed` with it.
  static Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec& spec, cgroup::Driver& cgroups,
                                                 const EngineOptions& options = {});
  ~Sandbox();  // kills everything left and removes the cgroup

  // Starts `process`, streams its output to `sink`, and waits until it ends, the timeout fires,
  // or Cancel() is called. A timeout or cancellation kills the whole sandbox.
  // With a notifying seccomp program (SandboxSpec::seccomp->notify), Run() also answers the
  // filter's notifications: kDeny with the profile's errno, counted in seccomp_denials; kLearn
  // lets the syscall run and records it in seccomp_learned. Requires Linux 5.5. The listener
  // lives as long as the Run(): a process left behind by an earlier Run() gets ENOSYS, not the
  // profile's errno, for a denied call.
  Result<ProcessResult> Run(const ProcessSpec& process, const OutputSink& sink);

  // Thread-safe: kills every process of the sandbox; a Run() in progress returns `cancelled`.
  void Cancel();
  // Kills everything and removes the cgroup. Idempotent.
  Status Destroy();

  const std::optional<SetupError>& setup_error() const { return setup_error_; }
  const IsolationReport& isolation() const { return isolation_; }
  pid_t init_pid() const { return init_pid_; }
  const std::string& id() const { return id_; }
  bool alive() const { return alive_; }
  // Whether the init has ended (a pidfd poll; no wait): killed from outside, or by Cancel().
  bool InitExited() const;

 private:
  Sandbox() = default;
  void KillAll();
  // Blocks until the init has ended (and, when it is our child, reaps it). Returns the waitid
  // siginfo; zeroed when the init was a spawner's child.
  siginfo_t WaitInit();
  void AnswerNotification(int listener, std::map<std::pair<uint32_t, int>, uint64_t>* counts);

  std::string id_;
  std::string hostname_;
  uid_t uid_ = 0;
  std::unique_ptr<cgroup::Cgroup> cgroup_;
  UniqueFd pidfd_;
  UniqueFd ctl_;
  UniqueFd cancel_fd_;  // eventfd written by Cancel()
  pid_t init_pid_ = -1;
  bool alive_ = false;
  bool reaped_ = false;
  std::atomic<bool> cancelled_{false};
  std::optional<SetupError> setup_error_;
  IsolationReport isolation_;
  // A notifying seccomp program: what the listener does, and the profile's own answers.
  seccomp::NotifyMode notify_mode_ = seccomp::NotifyMode::kNone;
  seccomp::Program notify_answers_;
};

// Formats one line of /proc/PID/uid_map: "INSIDE HOST COUNT\n".
std::string FormatIdMap(unsigned inside, unsigned host, unsigned count);

}  // namespace sbx::isolate
