// What a sandbox is made of (SandboxSpec), what runs in it (ProcessSpec), and how it ended
// (ProcessResult). Plain data: the CLI and the supervisor fill these in, the engine applies them.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cgroup/cgroup.h"
#include "seccomp/seccomp.h"

namespace sbx::isolate {

struct BindMount {
  std::string source;  // absolute host path
  std::string target;  // absolute path inside the sandbox
  bool writable = false;
};

struct TmpfsMount {
  std::string target;
  uint64_t size_bytes = 64ull << 20;
  unsigned mode = 01777;
};

// IMPORTANT: each field below that says "weakens isolation" is off by default and logged by the
// caller when set.
struct SandboxSpec {
  std::string id;        // unique; names the cgroup and the hostname ("sbx-<id>")
  std::string hostname;  // default: "sandbox"

  // Root filesystem: a fresh read-only tmpfs with read-only binds of the host's system
  // directories (/usr and the /bin, /sbin, /lib* that it needs, as symlinks or binds).
  std::vector<std::string> system_dirs = {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
                                          "/libx32"};
  std::vector<BindMount> binds;       // extra -v binds
  std::vector<TmpfsMount> tmpfs;      // extra --tmpfs mounts
  uint64_t tmp_size_bytes = 64ull << 20;  // the /tmp tmpfs
  bool read_only_root = true;

  // Identity inside the sandbox. The sandbox always runs in a user namespace that maps inside
  // ids [0, 65536) to host ids [host_id_base, host_id_base + 65536): inside root is never host
  // root. uid 1000 ("sandbox") unless the caller asks for another.
  uid_t uid = 1000;
  gid_t gid = 1000;
  uid_t host_id_base = 100000;

  // Network "none": a network namespace with only loopback, brought up through libnl.
  // weakens isolation: AllowHostNetwork keeps the host's network namespace.
  bool allow_host_network = false;

  cgroup::Limits limits;
  // nullopt: seccomp=unconfined (weakens isolation). Compiled in the parent before clone.
  std::optional<seccomp::Program> seccomp;

  uint64_t max_open_files = 1024;  // RLIMIT_NOFILE
  uint64_t max_file_bytes = 0;     // RLIMIT_FSIZE, 0 = unlimited
};

struct ProcessSpec {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
  std::vector<std::string> env;   // "KEY=VALUE"; PATH/HOME/HOSTNAME/TERM defaults added
  std::string cwd = "/";
  int stdin_fd = -1;              // -1: /dev/null; else an fd the caller keeps ownership of
  uint64_t timeout_ms = 0;        // 0: none
  uint64_t output_limit_bytes = 16ull << 20;  // stdout+stderr captured, past it discarded
};

enum class EndReason { kExited, kSignaled, kOomKilled, kTimedOut, kCancelled, kSetupFailed };
const char* EndReasonName(EndReason r);

struct SetupError {
  std::string stage;  // "mount /proc", "pivot_root", "execve", …
  int sys_errno = 0;
  std::string message;
};

struct IsolationReport {
  std::vector<std::string> namespaces;  // "user", "pid", "mount", "network", "ipc", "uts", "cgroup"
  std::string network;                  // "none" or "host"
  std::string cgroup_version;           // "v2" / "hybrid"
  std::vector<std::string> cgroup_controllers;
  std::string seccomp_profile;          // profile name, or "unconfined"
  std::string user;                     // "1000:1000 (host 101000)"
  bool no_new_privs = true;
  std::string capabilities = "none";
};

// How often a syscall, by name, met a seccomp decision during a process's life.
struct SyscallCount {
  std::string name;
  uint64_t count = 0;
  bool operator==(const SyscallCount&) const = default;
};

struct ProcessResult {
  EndReason reason = EndReason::kSetupFailed;
  std::optional<int> exit_code;
  std::optional<int> signal;
  uint64_t wall_ms = 0;
  uint64_t cpu_ms = 0;
  uint64_t memory_peak_bytes = 0;
  uint64_t stdout_bytes = 0;
  uint64_t stderr_bytes = 0;
  bool output_truncated = false;
  IsolationReport isolation;
  std::optional<SetupError> error;
  // Syscalls the seccomp profile refused with an error (its ERRNO rules and an ERRNO default),
  // most frequent first; filled when the program was compiled with notify_errors (kDeny), by the
  // process and everything it started.
  std::vector<SyscallCount> seccomp_denials;
  // NotifyMode::kLearn: every syscall the profile would have refused, which ran anyway; by name.
  std::vector<SyscallCount> seccomp_learned;

  // The shell convention: exit code, 128+N for a signal, 125 for setup failure.
  int ShellExitCode() const;
};

}  // namespace sbx::isolate
