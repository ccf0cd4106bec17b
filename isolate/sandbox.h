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
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "cgroup/cgroup.h"
#include "isolate/live.h"
#include "isolate/spec.h"

namespace sbx::isolate {

class Spawner;
namespace internal {
class LiveEngine;
}

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
  // Fails with kFailedPrecondition in a sandbox that has called Start().
  Result<ProcessResult> Run(const ProcessSpec& process, const OutputSink& sink);

  // ---- Live processes (see live.h) ------------------------------------------------------------
  // A sandbox is used either through Run() (one process at a time, the caller's thread reading
  // the init's reports) or through Start() (any number side by side, up to 64 at once, a monitor
  // thread reading them): Run() fails with kFailedPrecondition once Start() has been called, and
  // Start() while a Run() is in progress. Everything below is thread-safe. An id this sandbox
  // never gave, or has released, fails with kNotFound.
  // Not available with a notifying seccomp program (SandboxSpec::seccomp->notify): denial
  // counting and learning are Run()'s.

  // Starts a process and returns once the init has started it; does not wait for it to end.
  // Fails with kInvalidArgument (argv, env, cwd, stdio: a pty with in/out/err set, a kFd of -1,
  // argv and env past 192 KiB), kFailedPrecondition (setup failed, the sandbox has ended, is
  // paused or in Run(), a notifying seccomp program, no cgroup2 hierarchy), kResourceExhausted
  // (64 processes of the init's alive), and the init's errno when it could not clone. An exec
  // that fails is not an Error: the process ends kSetupFailed with the stage and errno.
  Result<LiveProcess> Start(const LiveProcessSpec& spec);
  // Sends `sig` (1..64) to the process's group (kill(-pid)): the process and every descendant
  // still in its group. kFailedPrecondition once the process has ended (its group may live on:
  // Kill() takes it), or while paused.
  Status Signal(ProcessId id, int sig);
  // SIGKILLs the process's whole tree (its cgroup); it ends `killed`, its done fd firing once
  // the tree is gone. After the process has ended, kills what it left. Works while paused.
  Status Kill(ProcessId id);
  // Sets the terminal's size (TIOCSWINSZ); the foreground group gets SIGWINCH.
  // kFailedPrecondition without a pty or once ended.
  Status Resize(ProcessId id, PtySize size);
  // The final result; kFailedPrecondition while the process runs (wait on its done fd).
  Result<LiveProcessResult> ResultOf(ProcessId id) const;
  // Blocks until the result is final or `timeout` passes (kUnavailable).
  Result<LiveProcessResult> Wait(ProcessId id, std::chrono::milliseconds timeout);
  // The host pids in the process's cgroup now (its tree), e.g. to take pidfds.
  Result<std::vector<pid_t>> HostPids(ProcessId id);
  // Kills what is left of the process's tree, removes its cgroup and forgets it (its done fd
  // fires if it had not). Processes are kept until released or the sandbox is destroyed.
  Status Release(ProcessId id);

  // Freezes every process of the sandbox (cgroup.freeze on its unified cgroup) and returns once
  // cgroup.events says "frozen 1"; Resume() thaws and waits for "frozen 0". Fail with
  // kUnavailable when the state is not reached within `timeout` (Pause() then thaws again). A
  // timeout that passes while paused kills the tree at once; its result is reported after
  // Resume() (the init is frozen too). Requires Linux 5.2.
  Status Pause(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  Status Resume(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  bool paused() const { return paused_; }
  // CPU, memory and pids of the whole sandbox now, from the cgroup driver (v2 or v1).
  Result<SandboxStats> Stats();

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
  Sandbox();
  Status EnsureLive();
  void StopLive();  // stops the monitor; every live process not ended yet ends `killed`
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
  uid_t host_uid_ = 0;  // the sandbox user's host ids
  gid_t host_gid_ = 0;
  std::mutex mode_mu_;  // guards run_active_ and the creation of live_
  bool run_active_ = false;
  std::atomic<bool> paused_{false};
  std::unique_ptr<internal::LiveEngine> live_;
  IsolationReport isolation_;
  // A notifying seccomp program: what the listener does, and the profile's own answers.
  seccomp::NotifyMode notify_mode_ = seccomp::NotifyMode::kNone;
  seccomp::Program notify_answers_;
};

// Formats one line of /proc/PID/uid_map: "INSIDE HOST COUNT\n".
std::string FormatIdMap(unsigned inside, unsigned host, unsigned count);

}  // namespace sbx::isolate
