// Live processes: several processes at once in one long-lived sandbox, each started without
// waiting (Sandbox::Start), driven through file descriptors by the caller's own event loop, and
// each tracked, with its whole tree, in a cgroup of its own. Plain data here; the operations are
// Sandbox's (sandbox.h).
//
// How a process is held:
//  - Its cgroup. The daemon makes "<sandbox cgroup>/p<id>" in the unified (v2) hierarchy, which
//    a hybrid host has too, and hands the init an O_PATH fd of it (SCM_RIGHTS); the init clones
//    the process straight into it (clone3 CLONE_INTO_CGROUP). Everything the process starts,
//    setsid'd and double-forked daemons included, stays in that cgroup: a timeout or Kill()
//    ends the tree with cgroup.kill, and a killed process is reported ended only once its cgroup
//    is empty. (v1 controllers on a hybrid host still account and limit it through the sandbox's
//    v1 cgroups, which it inherits; a v2 host's limits on the sandbox's cgroup cover it too.)
//  - Its group. The init's payloads call setsid(): Signal() asks the init for kill(-pid, sig),
//    which reaches the process and every descendant that kept its process group.
//  - Its end. A monitor thread per sandbox (started by the first Start()) reads the init's
//    reports, fires timeouts and writes each process's done_fd (an eventfd) when its result is
//    final. The caller waits on done_fd with its own poll/epoll, or calls Sandbox::Wait().
//
// Permissions (why the init may clone into a cgroup the daemon made): CLONE_INTO_CGROUP needs
// write access to cgroup.procs of the target and of the common ancestor of the caller's cgroup
// and the target (cgroup-v2.rst, "Delegation Containment"), checked against the init's host
// credentials: the sandbox's user, an unprivileged host uid. The first Start() therefore chowns
// cgroup.procs of the sandbox's unified cgroup, and each process cgroup's cgroup.procs, to that
// uid: the standard cgroup v2 delegation, restricted to the one file. That is safe because:
//  - a write to cgroup.procs moves a process only between cgroups whose common ancestor's
//    cgroup.procs is writable: inside the sandbox's cgroup, never into or out of it (its parent
//    stays root's), and only processes of its own pid namespace are named;
//  - every other file (limits, cgroup.kill, cgroup.freeze, cgroup.subtree_control) and the
//    directories stay root's: nothing can be created, limited or unlimited;
//  - no sandbox process sees the sandbox's cgroup: no cgroup filesystem is mounted inside, and
//    one mounted from a nested user and cgroup namespace is rooted at the mounter's own cgroup,
//    which for a live process is its own p<id> (the init is the only process left in the
//    sandbox's cgroup itself). So a live process can neither leave its cgroup nor touch
//    another's.
// IMPORTANT: a process left running by an earlier Run() (a background job of a run-mode step)
// sits in the sandbox's cgroup itself; from a nested user and cgroup namespace it could move
// live processes between their cgroups (never out of the sandbox's). Start() in a fresh sandbox,
// or one whose Run() steps left nothing behind, has no such process.
//
// Kernel: clone3 with CLONE_INTO_CGROUP (Linux 5.7), cgroup.kill (5.14; else freeze, kill the
// listed pids, thaw: 5.2), cgroup.freeze and the "frozen" key of cgroup.events (5.2),
// TIOCGPTPEER (4.13), memory.peak on v2 (5.19; else unavailable).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "isolate/spec.h"

namespace sbx::isolate {

// Names a live process within its sandbox; never reused by that sandbox.
using ProcessId = uint64_t;

// One of a process's standard streams.
struct LiveStdio {
  enum class Kind {
    kNull,  // /dev/null
    kPipe,  // a new pipe; the caller gets its end in LiveProcess (O_NONBLOCK | O_CLOEXEC)
    kFd,    // `fd`, duplicated: the caller keeps its own (stdin: readable; output: writable)
  };
  Kind kind = Kind::kNull;
  int fd = -1;
  static LiveStdio Null() { return {}; }
  static LiveStdio Pipe() { return {Kind::kPipe, -1}; }
  static LiveStdio Fd(int f) { return {Kind::kFd, f}; }
};

struct PtySize {
  uint16_t cols = 80;
  uint16_t rows = 24;
};

struct LiveProcessSpec {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
  std::vector<std::string> env;   // "KEY=VALUE"; PATH/HOME/HOSTNAME (TERM with a pty) added
  std::string cwd = "/";
  LiveStdio in, out, err;
  // A pseudo-terminal of the sandbox's own devpts: the process's stdin, stdout, stderr and
  // controlling terminal (it leads a new session; its group is the foreground group). The
  // caller gets the master as LiveProcess::pty, reads the output from it and writes the input
  // to it. in/out/err must stay kNull.
  std::optional<PtySize> pty;
  // Wall-clock limit; when it passes, the process's whole tree is killed and it ends
  // `timed_out`. 0: none. A process that exits in time stops the clock: what it left running in
  // the background stays until Kill() or Release().
  uint64_t timeout_ms = 0;
};

enum class LiveEndReason {
  kExited,       // exit_code
  kSignaled,     // signal: killed by a signal nobody here sent as Kill()/timeout
  kTimedOut,     // timeout_ms passed; the tree was killed
  kKilled,       // Kill(), or the sandbox ended (destroyed, its init killed) under it
  kSetupFailed,  // the exec (or chdir, the terminal) failed; error says which and why
};
const char* LiveEndReasonName(LiveEndReason r);  // "exited", "signaled", "timed_out", …

struct LiveProcessResult {
  LiveEndReason reason = LiveEndReason::kKilled;
  std::optional<int> exit_code;
  std::optional<int> signal;
  uint64_t wall_ms = 0;
  // The CPU time of the process's cgroup (the whole tree) when it ended; the main process's own
  // (with its waited-for children) where cpu.stat cannot be read.
  uint64_t cpu_ms = 0;
  std::optional<SetupError> error;
};

// What Start() hands back. The fds belong to the caller; closing them is how it lets go (closing
// `in` sends EOF; closing `pty` does not hang the terminal up: the sandbox keeps a copy for
// Resize() until Release()).
struct LiveProcess {
  ProcessId id = 0;
  pid_t pid = -1;     // inside the sandbox
  UniqueFd in;        // LiveStdio::kPipe: the write end
  UniqueFd out, err;  // LiveStdio::kPipe: the read ends
  UniqueFd pty;       // with a pty: the master (O_NONBLOCK | O_CLOEXEC)
  // An eventfd, readable (and never reset) once the result is final: the process has ended and,
  // if it was killed (timeout, Kill()), nothing of its tree is left.
  UniqueFd done;
};

// A sandbox's resource use now. A value the host does not report is nullopt, with the reason
// in `unavailable` ("memory: …"), never a made-up number.
struct SandboxStats {
  std::optional<uint64_t> cpu_usec;
  std::optional<uint64_t> memory_current_bytes;
  std::optional<uint64_t> memory_peak_bytes;
  std::optional<uint64_t> pids_current;  // tasks (threads included), from the pids controller
  // Block I/O since the sandbox started (cgroup::Usage): block devices only.
  std::optional<uint64_t> io_read_bytes;
  std::optional<uint64_t> io_write_bytes;
  uint64_t processes = 0;  // processes in the unified cgroup's tree (init included)
  bool paused = false;
  std::vector<std::string> unavailable;
};

}  // namespace sbx::isolate
