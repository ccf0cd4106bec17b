// The plan a sandbox's first process (its init, pid 1 inside) follows between clone3 and its
// serve loop, and the wire formats between the parent and that init.
//
// Everything here is prepared in the parent. The child only reads it: no allocation, no logging,
// no exceptions; only async-signal-safe calls (see STYLE.md, "Spawning from a threaded daemon").
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "seccomp/seccomp.h"

namespace sbx::isolate::internal {

// One step of building the new root. Targets are relative to the new root ("usr", "dev/null").
struct MountOp {
  enum class Kind {
    kBind,       // source (host path) -> target, read-only unless writable; dir or file
    kTmpfs,      // tmpfs at target with data (mount options), flags
    kProc,       // fresh procfs at target
    kDevpts,     // a new devpts instance at target
    kSymlink,    // symlink at target pointing to data
    kFile,       // regular file at target with contents data and mode
    kMaskFile,   // bind /dev/null over target if it exists
    kMaskDir,    // read-only empty tmpfs over target if it exists
    kReadOnly,   // re-bind target onto itself read-only, if it exists
    kRemountReadOnly,  // make the mount at target read-only (after its contents are written)
  };
  Kind kind;
  std::string source;
  std::string target;
  std::string data;
  unsigned mode = 0755;
  unsigned long flags = 0;
  bool writable = false;
  bool is_dir = true;
  // kBind: the source as a detached mount tree, opened, cloned and given its attributes by the
  // parent (OpenBindSources); the child only attaches it. Not owned.
  int source_fd = -1;
};

struct ChildPlan {
  std::string stage_dir;  // an existing host directory; the new root's tmpfs is mounted there
  std::vector<MountOp> mounts;
  std::string hostname;
  uid_t uid = 0;
  gid_t gid = 0;
  bool read_only_root = true;
  std::vector<std::pair<int, struct rlimit>> rlimits;
  const seccomp::Program* seccomp = nullptr;  // nullptr: unconfined
  void* empty_caps = nullptr;                 // cap_t from cap_init(), all sets clear
  int sync_fd = -1;  // read end: the parent writes one byte once maps and cgroups are in place
  int err_fd = -1;   // write end: a WireError on failure, CLOEXEC so exec closes it
  int ctl_fd = -1;   // the init's end of the control socket
};

// A setup failure, written by the child to err_fd. Fixed size so it is one atomic pipe write.
struct WireError {
  char stage[64];
  int32_t sys_errno;
  char message[184];
};
static_assert(sizeof(WireError) <= 512);

// Parent -> init: run a process. Followed by argc + envc NUL-terminated strings, then cwd.
// SCM_RIGHTS carries 4 fds: stdin, stdout, stderr, and the write end of an error pipe; with
// kSpawnPty only the error pipe (init makes the terminal, see below).
struct SpawnHeader {
  uint32_t magic;
  uint32_t argc;
  uint32_t envc;
  uint32_t bytes;  // length of the string area that follows
  uint32_t flags = 0;  // kSpawn* below
  uint16_t cols = 0;   // kSpawnPty: the terminal's size
  uint16_t rows = 0;
};
inline constexpr uint32_t kSpawnMagic = 0x53425831;  // "SBX1"
// The process gets a new pseudo-terminal of the sandbox's own devpts as its stdin, stdout,
// stderr and controlling terminal; init sends the master back with kStarted (SCM_RIGHTS).
inline constexpr uint32_t kSpawnPty = 1u << 0;
// A second message follows at once: a SpawnHeader with kCgroupMagic carrying one fd, the
// cgroup2 directory the process starts in (clone3 CLONE_INTO_CGROUP, fork semantics: init does
// not wait for the exec, and an exec failure reaches the error pipe before the process exits).
inline constexpr uint32_t kSpawnIntoCgroup = 1u << 1;
inline constexpr uint32_t kCgroupMagic = 0x53425843;  // "SBXC"
// Parent -> init: kill(-argc, envc), a signal to the process group of a payload init started
// and has not reaped yet (argc: its pid; envc: the signal). Answered with kSignalDone.
inline constexpr uint32_t kSignalMagic = 0x53425853;  // "SBXS"
// Parent -> init, only after a kStarted with listener_fd >= 0: the parent holds its copy of the
// seccomp listener; the payload may exec. A SpawnHeader with this magic and nothing else.
inline constexpr uint32_t kGoMagic = 0x53425847;  // "SBXG"
inline constexpr size_t kMaxSpawnBytes = 192 * 1024;
inline constexpr size_t kMaxSpawnStrings = 4096;

// Init -> parent.
struct InitMsg {
  // kSignalDone answers kSignalMagic: status 0, or the errno (ESRCH: no such payload now).
  enum Type : uint32_t { kReady = 1, kStarted = 2, kExited = 3, kSpawnFailed = 4, kSignalDone = 5 };
  uint32_t type;
  int32_t pid;     // pid inside the sandbox
  int32_t status;  // wait status (kExited) or errno (kSpawnFailed)
  // kStarted: the seccomp listener's fd number in the payload, -1 when none. When set, the
  // message carries the payload's pidfd (SCM_RIGHTS), and the payload waits, making no syscall,
  // until the parent has taken the listener (pidfd_getfd) and sent kGoMagic.
  int32_t listener_fd;
  int64_t utime_us;
  int64_t stime_us;
  int64_t maxrss_kb;
};

// The child side of clone3: sets up the sandbox following `plan`, then serves spawn requests
// as pid 1 until the control socket closes. Never returns.
[[noreturn]] void ChildMain(const ChildPlan& plan);

}  // namespace sbx::isolate::internal
