// The sandbox's init: everything between clone3 and the serve loop, in the order that makes the
// security argument. Async-signal-safe only: raw syscalls, fixed buffers, no allocation.
#include "isolate/child.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <linux/securebits.h>
#include <sys/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <new>

#include "base/fd_passing.h"
#include "base/syscalls.h"

// Sanitizer builds (ASan, TSan) cannot run instrumented code in a CLONE_VM child: the payload is
// started in a copy of the init's address space instead (see StartPayload).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SBX_SANITIZED 1
#endif

namespace sbx::isolate::internal {
namespace {

// ---- tiny async-signal-safe helpers ------------------------------------------------------

void CopyStr(char* dst, size_t cap, const char* src) {
  size_t i = 0;
  for (; src && src[i] && i + 1 < cap; ++i) dst[i] = src[i];
  dst[i] = '\0';
}

size_t AppendStr(char* dst, size_t cap, size_t pos, const char* src) {
  for (size_t i = 0; src[i] && pos + 1 < cap; ++i) dst[pos++] = src[i];
  dst[pos < cap ? pos : cap - 1] = '\0';
  return pos;
}

// "/proc/self/fd/N" into buf.
const char* FdPath(char* buf, size_t cap, int fd) {
  char digits[16];
  int n = 0;
  unsigned v = static_cast<unsigned>(fd);
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  size_t pos = AppendStr(buf, cap, 0, "/proc/self/fd/");
  while (n > 0 && pos + 1 < cap) buf[pos++] = digits[--n];
  buf[pos] = '\0';
  return buf;
}

[[noreturn]] void Fail(int err_fd, const char* stage, const char* detail, int e) {
  WireError w;
  std::memset(&w, 0, sizeof w);
  CopyStr(w.stage, sizeof w.stage, stage);
  CopyStr(w.message, sizeof w.message, detail ? detail : "");
  w.sys_errno = e;
  if (err_fd >= 0) {
    ssize_t r;
    do {
      r = ::write(err_fd, &w, sizeof w);
    } while (r < 0 && errno == EINTR);
  }
  ::_exit(125);
}

int OpenBeneath(int dirfd, const char* path, uint64_t flags, uint64_t mode = 0) {
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = flags | O_CLOEXEC;
  how.mode = mode;
  // The new root is ours; still, never let a symlink planted by a bind lead a mount outside.
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, dirfd, path, &how, sizeof how));
}

// Creates every missing directory of `rel` under root_fd (the last one as a directory or an
// empty file), refusing symlinks, and returns an O_PATH fd of it, or -1 with errno.
int MakeMountPoint(int root_fd, const char* rel, bool is_dir, unsigned mode) {
  char part[4096];
  size_t len = std::strlen(rel);
  if (len == 0) return OpenBeneath(root_fd, ".", O_PATH | O_DIRECTORY);
  if (len >= sizeof part) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (size_t i = 0; i <= len; ++i) {
    if (rel[i] != '/' && rel[i] != '\0') continue;
    std::memcpy(part, rel, i);
    part[i] = '\0';
    bool last = rel[i] == '\0';
    if (!last || is_dir) {
      if (::mkdirat(root_fd, part, last ? mode : 0755) < 0 && errno != EEXIST) {
        // mkdirat follows no symlink in the last component; intermediate ones are checked by
        // the openat2 below.
        if (errno != EROFS) return -1;
      }
    } else {
      int fd = OpenBeneath(root_fd, part, O_WRONLY | O_CREAT | O_NOFOLLOW, mode);
      if (fd < 0 && errno != EISDIR && errno != EROFS && errno != EACCES) return -1;
      if (fd >= 0) ::close(fd);
    }
  }
  return OpenBeneath(root_fd, rel, O_PATH | (is_dir ? O_DIRECTORY : 0));
}

int MountSetattr(int fd, const char* path, unsigned flags, uint64_t set, uint64_t clr) {
  struct mount_attr attr;
  std::memset(&attr, 0, sizeof attr);
  attr.attr_set = set;
  attr.attr_clr = clr;
  return static_cast<int>(::syscall(SYS_mount_setattr, fd, path, flags, &attr, sizeof attr));
}

// Opens a host path without following any symlink on the way or at its end
// (RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS): used for /dev/null over masked paths. Binds of
// the plan come opened from the parent (MountOp::source_fd).
int OpenSource(const char* source) {
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, source, &how, sizeof how));
}

// Clones the tree at `source_fd` (recursively), makes it read-only unless `writable`, and
// attaches it at target_fd. The tree is never attached writable, not even for an instant.
int BindTreeOnto(int source_fd, int target_fd, bool writable, bool noexec) {
  int tree = static_cast<int>(
      ::syscall(SYS_open_tree, source_fd, "",
                OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH));
  if (tree < 0) return -1;
  uint64_t set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  if (!writable) set |= MOUNT_ATTR_RDONLY;
  if (noexec) set |= MOUNT_ATTR_NOEXEC;
  if (MountSetattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, set, 0) < 0) {
    int e = errno;
    ::close(tree);
    errno = e;
    return -1;
  }
  int r = static_cast<int>(::syscall(SYS_move_mount, tree, "", target_fd, "",
                                     MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH));
  int e = errno;
  ::close(tree);
  errno = e;
  return r;
}

// Device nodes keep working: no MOUNT_ATTR_NODEV on these binds.
int BindDevice(const char* source, int target_fd) {
  int src = OpenSource(source);
  if (src < 0) return -1;
  int tree = static_cast<int>(::syscall(SYS_open_tree, src, "",
                                        OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH));
  int open_errno = errno;
  ::close(src);
  errno = open_errno;
  if (tree < 0) return -1;
  int r = MountSetattr(tree, "", AT_EMPTY_PATH, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, 0);
  if (r == 0) {
    r = static_cast<int>(::syscall(SYS_move_mount, tree, "", target_fd, "",
                                   MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH));
  }
  int e = errno;
  ::close(tree);
  errno = e;
  return r;
}

void ApplyMount(const ChildPlan& plan, int root_fd, const MountOp& op) {
  char fdpath[64];
  char detail[160];
  CopyStr(detail, sizeof detail, "/");
  AppendStr(detail, sizeof detail, 1, op.target.c_str());
  const char* t = op.target.c_str();
  int fd = -1;
  switch (op.kind) {
    case MountOp::Kind::kBind: {
      // The tree was opened, cloned and given its attributes by the parent (OpenBindSources):
      // attaching it is all that is left, and no path is looked up on the host again.
      if (op.source_fd < 0) Fail(plan.err_fd, "bind mount", op.source.c_str(), EBADF);
      fd = MakeMountPoint(root_fd, t, op.is_dir, 0755);
      if (fd < 0) Fail(plan.err_fd, "bind mount point", detail, errno);
      if (::syscall(SYS_move_mount, op.source_fd, "", fd, "",
                    MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
        Fail(plan.err_fd, "bind mount", op.source.c_str(), errno);
      }
      break;
    }
    case MountOp::Kind::kTmpfs:
    case MountOp::Kind::kProc:
    case MountOp::Kind::kDevpts: {
      fd = MakeMountPoint(root_fd, t, true, op.mode);
      if (fd < 0) Fail(plan.err_fd, "mount point", detail, errno);
      const char* type = op.kind == MountOp::Kind::kTmpfs  ? "tmpfs"
                         : op.kind == MountOp::Kind::kProc ? "proc"
                                                           : "devpts";
      if (::mount(type, FdPath(fdpath, sizeof fdpath, fd), type, op.flags,
                  op.data.empty() ? nullptr : op.data.c_str()) < 0) {
        Fail(plan.err_fd, op.kind == MountOp::Kind::kProc ? "mount /proc" : "mount", detail,
             errno);
      }
      break;
    }
    case MountOp::Kind::kSymlink:
      if (::symlinkat(op.data.c_str(), root_fd, t) < 0 && errno != EEXIST) {
        Fail(plan.err_fd, "symlink", detail, errno);
      }
      break;
    case MountOp::Kind::kFile: {
      fd = OpenBeneath(root_fd, t, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, op.mode);
      if (fd < 0) Fail(plan.err_fd, "write file", detail, errno);
      const char* p = op.data.data();
      size_t left = op.data.size();
      while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) Fail(plan.err_fd, "write file", detail, errno);
        p += n;
        left -= static_cast<size_t>(n);
      }
      ::fchmod(fd, op.mode);
      break;
    }
    case MountOp::Kind::kMaskFile:
    case MountOp::Kind::kMaskDir:
    case MountOp::Kind::kReadOnly: {
      fd = OpenBeneath(root_fd, t, O_PATH | O_NOFOLLOW);
      if (fd < 0) {
        if (errno == ENOENT) return;  // nothing to hide on this kernel
        Fail(plan.err_fd, "mask path", detail, errno);
      }
      int r;
      if (op.kind == MountOp::Kind::kMaskFile) {
        r = BindDevice("/dev/null", fd);
      } else if (op.kind == MountOp::Kind::kMaskDir) {
        r = ::mount("tmpfs", FdPath(fdpath, sizeof fdpath, fd), "tmpfs",
                    MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555");
      } else {
        r = BindTreeOnto(fd, fd, false, true);
      }
      if (r < 0) Fail(plan.err_fd, "mask path", detail, errno);
      break;
    }
    case MountOp::Kind::kRemountReadOnly: {
      fd = OpenBeneath(root_fd, t, O_PATH | O_DIRECTORY);
      if (fd < 0 || MountSetattr(fd, "", AT_EMPTY_PATH, MOUNT_ATTR_RDONLY, 0) < 0) {
        Fail(plan.err_fd, "remount read-only", detail, errno);
      }
      break;
    }
  }
  if (fd >= 0) ::close(fd);
}

// ---- the init's serve loop ------------------------------------------------------------------

alignas(16) char g_spawn_buf[sizeof(SpawnHeader) + kMaxSpawnBytes];
char* g_argv[kMaxSpawnStrings + 1];
char* g_envp[kMaxSpawnStrings + 1];
constexpr int kMaxChildren = 64;
pid_t g_children[kMaxChildren];

void SendMsg(int fd, const InitMsg& m) {
  ssize_t r;
  do {
    r = ::send(fd, &m, sizeof m, MSG_NOSIGNAL);
  } while (r < 0 && errno == EINTR);
}

void ReportExecError(int err_fd, const char* stage, const char* what, int e) {
  WireError w;
  std::memset(&w, 0, sizeof w);
  CopyStr(w.stage, sizeof w.stage, stage);
  CopyStr(w.message, sizeof w.message, what);
  w.sys_errno = e;
  ssize_t r;
  do {
    r = ::write(err_fd, &w, sizeof w);
  } while (r < 0 && errno == EINTR);
}

// The seccomp listener handoff between a payload and init (see StartNotifyingPayload). It lives
// in a MAP_SHARED page so that it is shared whether the payload was cloned with CLONE_VM or, in
// sanitizer builds, with a copied address space.
struct Handoff {
  std::atomic<int32_t> listener;  // the payload's listener fd, -1 until installed
  // The payload's state and the futex both sides sleep on: kHeld from the clone, kPublished
  // once `listener` is set, kReleased when init lets it exec; the kernel writes 0 (and wakes
  // waiters) when the payload execs or exits (CLONE_CHILD_CLEARTID; not in sanitizer builds,
  // whose payload has an mm of its own).
  std::atomic<int32_t> state;
};
static_assert(std::atomic<int32_t>::is_always_lock_free);
constexpr int32_t kHeld = 1;       // cloned, no listener yet
constexpr int32_t kReleased = 2;   // the parent holds the listener: exec
constexpr int32_t kPublished = 3;  // `listener` is set; waiting for kReleased
Handoff* g_handoff = nullptr;

// The filter a notifying payload installs: a prefix that lets futex(2) on &g_handoff->state
// through, then the plan's program. Once the filter is in, every syscall the profile denies (or,
// learning, every syscall) waits for a listener that nobody holds yet; the prefix is what lets
// the payload wake init and sleep until released without one. IMPORTANT: after the exec the
// same prefix still allows futex on that one address, whatever the profile says of futex; a
// futex call grants nothing but a wait or a wake-up on a word.
// 0 when the prefix is not built (another architecture, or a program with no room for it): the
// payload then spins, making no syscall, until released.
#if defined(__x86_64__)
constexpr uint32_t kNativeAuditArch = AUDIT_ARCH_X86_64;
constexpr bool kHandoffPrefix = true;
#elif defined(__aarch64__)
constexpr uint32_t kNativeAuditArch = AUDIT_ARCH_AARCH64;
constexpr bool kHandoffPrefix = true;
#else
constexpr uint32_t kNativeAuditArch = 0;
constexpr bool kHandoffPrefix = false;
#endif
constexpr size_t kPrefixInsns = 9;
sock_filter g_filter[BPF_MAXINSNS];
size_t g_filter_len = 0;

void BuildHandoffFilter(const seccomp::Program& program) {
  g_filter_len = 0;
  const size_t n = program.insns.size();
  if (!kHandoffPrefix || n == 0 || n + kPrefixInsns > BPF_MAXINSNS) return;
  const uint64_t word = reinterpret_cast<uintptr_t>(&g_handoff->state);
  // seccomp_data: nr at 0, arch at 4, args[0] at 16 (its low half first: little-endian). Each
  // test that fails jumps to the plan's program, right after the prefix.
  const sock_filter prefix[kPrefixInsns] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 4),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kNativeAuditArch, 0, 7),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_futex, 0, 5),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 16),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(word), 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 20),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(word >> 32), 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  std::memcpy(g_filter, prefix, sizeof prefix);
  std::memcpy(g_filter + kPrefixInsns, program.insns.data(), n * sizeof(sock_filter));
  g_filter_len = kPrefixInsns + n;
}

// futex(2) on the handoff word without touching errno: until its exec the payload shares init's
// TLS, errno included, and must read its own execve's errno undisturbed.
long RawFutex(std::atomic<int32_t>* word, int op, int32_t val, const struct timespec* timeout) {
#if defined(__x86_64__)
  long ret;
  register long r10 asm("r10") = reinterpret_cast<long>(timeout);
  asm volatile("syscall"
               : "=a"(ret)
               : "0"(static_cast<long>(SYS_futex)), "D"(word), "S"(static_cast<long>(op)),
                 "d"(static_cast<long>(val)), "r"(r10)
               : "rcx", "r11", "memory");
  return ret;
#elif defined(__aarch64__)
  register long x8 asm("x8") = SYS_futex;
  register long x0 asm("x0") = reinterpret_cast<long>(word);
  register long x1 asm("x1") = op;
  register long x2 asm("x2") = val;
  register long x3 asm("x3") = reinterpret_cast<long>(timeout);
  asm volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
  return x0;
#else
  return ::syscall(SYS_futex, word, op, val, timeout, nullptr, 0);
#endif
}

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

const char* FindEnv(char** envp, const char* key) {
  size_t klen = std::strlen(key);
  for (char** e = envp; *e; ++e) {
    if (std::strncmp(*e, key, klen) == 0 && (*e)[klen] == '=') return *e + klen + 1;
  }
  return nullptr;
}

// The spawned process, after fork: its own session, its stdio (with `pty`, a terminal that becomes
// its controlling terminal), no inherited fds, the seccomp filter last, then execve.
[[noreturn]] void ExecPayload(const ChildPlan& plan, int fds[4], const char* cwd, bool pty) {
  int err_fd = fds[3];
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::setsid();
  // Move the stdio fds out of the way before dup2 so that none overwrites another.
  for (int i = 0; i < 4; ++i) {
    int moved = ::fcntl(fds[i], F_DUPFD_CLOEXEC, 10);
    if (moved < 0) {
      ReportExecError(err_fd, "stdio", "fcntl", errno);
      ::_exit(127);
    }
    fds[i] = moved;
  }
  err_fd = fds[3];
  for (int i = 0; i < 3; ++i) {
    if (::dup2(fds[i], i) < 0) {
      ReportExecError(err_fd, "stdio", "dup2", errno);
      ::_exit(127);
    }
  }
  // The terminal's session leader (setsid above) takes it as its controlling terminal; its
  // process group is then the terminal's foreground group, which gets SIGWINCH and ^C.
  if (pty && ::ioctl(0, TIOCSCTTY, 0) < 0) {
    ReportExecError(err_fd, "pty", "TIOCSCTTY", errno);
    ::_exit(127);
  }
  // Only 0, 1, 2 and the CLOEXEC error pipe survive; the close_range keeps err_fd by moving it.
  int keep = ::fcntl(err_fd, F_DUPFD_CLOEXEC, 3);
  if (keep != 3) {
    ::dup2(err_fd, 3);
    ::fcntl(3, F_SETFD, FD_CLOEXEC);
  }
  sys::CloseRange(4, ~0u);
  err_fd = 3;
  if (::chdir(cwd) < 0) {
    ReportExecError(err_fd, "chdir", cwd, errno);
    ::_exit(127);
  }
  ::umask(022);
  if (plan.seccomp != nullptr) {
    int r;
    if (plan.seccomp->notify != seccomp::NotifyMode::kNone && g_filter_len > 0) {
      struct sock_fprog prog;
      prog.len = static_cast<unsigned short>(g_filter_len);
      prog.filter = g_filter;
      r = sys::Seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
      if (r < 0) r = -errno;
    } else {
      r = seccomp::InstallProgram(*plan.seccomp);
    }
    if (r < 0) {
      ReportExecError(err_fd, "seccomp", "install the filter", -r);
      ::_exit(127);
    }
    if (plan.seccomp->notify != seccomp::NotifyMode::kNone) {
      // From here every syscall the profile denies waits for a listener, and the only copy is
      // in our own fd table: publish its number, wake init, and sleep on the handoff word (the
      // filter's prefix lets exactly these futex calls through) until the parent holds a copy.
      // Then execve; O_CLOEXEC closes ours.
      g_handoff->listener.store(r, std::memory_order_release);
      g_handoff->state.store(kPublished, std::memory_order_release);
      if (g_filter_len > 0) {
        RawFutex(&g_handoff->state, FUTEX_WAKE, 1, nullptr);
        while (g_handoff->state.load(std::memory_order_acquire) == kPublished) {
          RawFutex(&g_handoff->state, FUTEX_WAIT, kPublished, nullptr);
        }
      } else {
        while (g_handoff->state.load(std::memory_order_acquire) == kPublished) CpuRelax();
      }
    }
  }
  const char* file = g_argv[0];
  if (std::strchr(file, '/') != nullptr) {
    ::execve(file, g_argv, g_envp);
    ReportExecError(err_fd, "execve", file, errno);
    ::_exit(errno == ENOENT ? 127 : 126);
  }
  const char* path = FindEnv(g_envp, "PATH");
  if (path == nullptr) path = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";
  int saved = ENOENT;
  char full[4096];
  for (const char* p = path;; ++p) {
    const char* end = p;
    while (*end && *end != ':') ++end;
    size_t dlen = static_cast<size_t>(end - p);
    size_t flen = std::strlen(file);
    if (dlen + flen + 2 < sizeof full) {
      std::memcpy(full, p, dlen);
      size_t pos = dlen;
      if (dlen == 0) full[pos++] = '.';
      full[pos++] = '/';
      std::memcpy(full + pos, file, flen + 1);
      ::execve(full, g_argv, g_envp);
      if (errno == EACCES) saved = EACCES;
      else if (errno != ENOENT && errno != ENOTDIR) saved = errno;
    }
    if (*end == '\0') break;
    p = end;
  }
  ReportExecError(err_fd, "execve", file, saved);
  ::_exit(saved == ENOENT ? 127 : 126);
}

// The spawned process shares init's memory until it calls execve (CLONE_VM | CLONE_VFORK, as
// posix_spawn does): no page tables to copy, no copy-on-write faults, and init sleeps meanwhile.
struct PayloadArgs {
  const ChildPlan* plan;
  int fds[4];
  const char* cwd;
  bool pty;
};
#if !defined(SBX_SANITIZED)
alignas(64) char g_payload_stack[128 * 1024];
#endif

int PayloadMain(void* arg) {
  auto* a = static_cast<PayloadArgs*>(arg);
  ExecPayload(*a->plan, a->fds, a->cwd, a->pty);
}

// A payload under a notifying seccomp program (denials named, or learning) installs its filter
// with SECCOMP_FILTER_FLAG_NEW_LISTENER; the listener fd lands in the payload's own fd table,
// and from that moment any denied syscall blocks until someone answers on it. So:
//  1. the payload is cloned with CLONE_VM | CLONE_CHILD_CLEARTID (no CLONE_VFORK: init must act
//     while the payload waits); it publishes the listener's fd number in the shared Handoff,
//     wakes init and sleeps on the handoff word (futex calls the filter's prefix lets through,
//     see BuildHandoffFilter);
//  2. init, which is not filtered, waits for that number (or for the payload to die in setup),
//     and sends kStarted with the number and a pidfd of the payload over the control socket;
//  3. the parent (root on the host, so it passes pidfd_getfd's ptrace check, which init, without
//     capabilities and not dumpable after its setresuid, would not) copies the listener, then
//     answers kGoMagic; init releases the payload, which execs;
//  4. init waits on the CLONE_CHILD_CLEARTID word until the exec (as vfork would), since the
//     payload still runs on init's stack buffer and spawn strings until then.
// No step in the payload allocates or takes a lock; init only makes raw syscalls. A parent that
// goes away closes the control socket: init's recv returns 0 and it exits, killing the payload.
// Both run on one TLS block until the exec, so they share errno: the futex calls on both sides
// leave errno alone (RawFutex), and init's other calls here (waitid with WNOHANG, sendmsg,
// recv; its signals are blocked, so no EINTR) do not fail while the payload may still read
// errno after a failed call of its own.
// Returns the payload's pid, or -1 with errno.
pid_t StartNotifyingPayload(PayloadArgs* pa, int ctl) {
  if (g_handoff == nullptr) {
    void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return -1;
    g_handoff = new (page) Handoff{};  // placement new: constructs, allocates nothing
    BuildHandoffFilter(*pa->plan->seccomp);  // the word's address is fixed from here on
  }
  g_handoff->listener.store(-1);
  g_handoff->state.store(kHeld);
  pid_t pid;
#if defined(SBX_SANITIZED)
  pid = static_cast<pid_t>(::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
  if (pid == 0) PayloadMain(pa);
  constexpr bool kClearTid = false;
#else
  pid = ::clone(PayloadMain, g_payload_stack + sizeof g_payload_stack,
                CLONE_VM | CLONE_CHILD_CLEARTID | SIGCHLD, pa, nullptr, nullptr,
                &g_handoff->state);
  constexpr bool kClearTid = true;
#endif
  if (pid < 0) return -1;
  int pidfd = sys::PidfdOpen(pid);
  // Wait for the listener, or for the payload to end before it installs (a chdir or filter
  // failure it has already reported on the error pipe). The payload wakes us through the word;
  // its exit does too (CLONE_CHILD_CLEARTID). Where neither can (a spinning payload, or a
  // sanitizer build's copied mm), we look again every 50 µs.
  const bool woken = g_filter_len > 0 && kClearTid;
  const struct timespec recheck = {0, 50 * 1000};
  int listener = -1;
  for (;;) {
    const int32_t state = g_handoff->state.load(std::memory_order_acquire);
    if (state == kPublished) {
      listener = g_handoff->listener.load(std::memory_order_acquire);
      break;
    }
    if (state == 0) break;  // it ended before installing
    if (!kClearTid) {
      siginfo_t si;
      std::memset(&si, 0, sizeof si);
      if (::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
          si.si_pid == pid) {
        break;
      }
    }
    RawFutex(&g_handoff->state, FUTEX_WAIT, state, woken ? nullptr : &recheck);
  }
  InitMsg reply;
  std::memset(&reply, 0, sizeof reply);
  reply.type = InitMsg::kStarted;
  reply.pid = pid;
  reply.listener_fd = listener >= 0 && pidfd >= 0 ? listener : -1;
  // A listener that cannot be handed over (no pidfd for the parent to copy it through) would
  // leave the payload waiting for a release that never comes: it dies instead, and the parent
  // sees it killed.
  if (listener >= 0 && pidfd < 0) ::kill(pid, SIGKILL);
  ssize_t r = SendWithFds(ctl, &reply, sizeof reply, &pidfd, reply.listener_fd >= 0 ? 1 : 0);
  if (pidfd >= 0) ::close(pidfd);
  if (reply.listener_fd >= 0) {
    SpawnHeader go;
    do {
      r = ::recv(ctl, &go, sizeof go, 0);
    } while (r < 0 && errno == EINTR);
    if (r <= 0) ::_exit(0);  // the parent is gone: pid 1 exits and the kernel kills the rest
    // Anything but kGoMagic is a parent bug; the payload is released either way (it would
    // otherwise wait until killed) and the parent sees the outcome.
    int32_t published = kPublished;
    g_handoff->state.compare_exchange_strong(published, kReleased, std::memory_order_release);
    RawFutex(&g_handoff->state, FUTEX_WAKE, 1, nullptr);
  }
  // Until its exec the payload runs on our stack buffer and spawn strings: wait, as vfork would,
  // for the kernel to clear the word at its exec or exit.
  for (int32_t state; kClearTid && (state = g_handoff->state.load(std::memory_order_acquire)) != 0;) {
    RawFutex(&g_handoff->state, FUTEX_WAIT, state, nullptr);
  }
  return pid;
}

// kSignalMagic: a signal to the process group of a payload still ours (not reaped: its pid, and
// so its group id, cannot have been reused). Payloads call setsid(), so the group is the one the
// payload leads, with everything in it that did not move to a group or session of its own.
void HandleSignal(const SpawnHeader& h, int ctl) {
  InitMsg reply;
  std::memset(&reply, 0, sizeof reply);
  reply.type = InitMsg::kSignalDone;
  reply.pid = static_cast<int32_t>(h.argc);
  const pid_t pid = static_cast<pid_t>(h.argc);
  bool ours = false;
  for (int i = 0; i < kMaxChildren && pid > 1; ++i) ours = ours || g_children[i] == pid;
  if (!ours) {
    reply.status = ESRCH;
  } else if (::kill(-pid, static_cast<int>(h.envc)) < 0) {
    // ESRCH for a payload still ours: it has not reached its setsid() yet, so its group does
    // not exist; the payload alone is there to signal (it has started nothing yet).
    reply.status = errno == ESRCH && ::kill(pid, static_cast<int>(h.envc)) == 0 ? 0 : errno;
  }
  SendMsg(ctl, reply);
}

// A new pseudo-terminal of the sandbox's own devpts instance (mounted newinstance at /dev/pts,
// see mount_plan.cc), made by init as the sandbox user so that the slave belongs to that user.
// TIOCGPTPEER (Linux 4.13) opens the slave from the master itself: no path to race on.
// Returns the master and sets *slave, or -1 with errno.
int OpenPty(uint16_t cols, uint16_t rows, int* slave) {
  int master = ::open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return -1;
  int unlock = 0;
  struct winsize ws;
  std::memset(&ws, 0, sizeof ws);
  ws.ws_col = cols;
  ws.ws_row = rows;
  if (::ioctl(master, TIOCSPTLCK, &unlock) < 0 || ::ioctl(master, TIOCSWINSZ, &ws) < 0) {
    int e = errno;
    ::close(master);
    errno = e;
    return -1;
  }
  *slave = ::ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (*slave < 0) {
    int e = errno;
    ::close(master);
    errno = e;
    return -1;
  }
  return master;
}

void HandleSpawn(const ChildPlan& plan, int ctl) {
  int fds[kMaxPassedFds] = {-1, -1, -1, -1};
  size_t nfds = 0;
  bool truncated = false;
  ssize_t n = RecvWithFds(ctl, g_spawn_buf, sizeof g_spawn_buf, fds, &nfds, &truncated);
  if (n == 0) ::_exit(0);  // the parent is gone: pid 1 exits and the kernel kills the rest
  if (n < 0) ::_exit(1);
  int cgroup_fd = -1, master = -1, slave = -1;
  auto close_fds = [&] {
    for (size_t i = 0; i < nfds; ++i) ::close(fds[i]);
    for (int* fd : {&cgroup_fd, &master, &slave}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
  };
  InitMsg reply;
  std::memset(&reply, 0, sizeof reply);
  SpawnHeader h{};
  std::memcpy(&h, g_spawn_buf, static_cast<size_t>(n) < sizeof h ? static_cast<size_t>(n) : sizeof h);
  if (h.magic == kSignalMagic && static_cast<size_t>(n) == sizeof h && nfds == 0) {
    HandleSignal(h, ctl);
    return;
  }
  // The cgroup's message follows the request at once (the parent sends both under one lock):
  // take it before anything else, so that a refused request never leaves it to be read as the
  // next one.
  bool bad_cgroup = false;
  if (h.magic == kSpawnMagic && static_cast<size_t>(n) >= sizeof h &&
      (h.flags & kSpawnIntoCgroup) != 0) {
    SpawnHeader c;
    int cfds[kMaxPassedFds] = {-1, -1, -1, -1};
    size_t ncfds = 0;
    bool ctrunc = false;
    ssize_t m = RecvWithFds(ctl, &c, sizeof c, cfds, &ncfds, &ctrunc);
    if (m == 0) ::_exit(0);
    if (m < 0) ::_exit(1);
    if (m == static_cast<ssize_t>(sizeof c) && c.magic == kCgroupMagic && ncfds == 1 && !ctrunc) {
      cgroup_fd = cfds[0];
    } else {
      for (size_t i = 0; i < ncfds; ++i) ::close(cfds[i]);
      bad_cgroup = true;
    }
  }
  const bool pty = (h.flags & kSpawnPty) != 0;
  const size_t want_fds = pty ? 1 : 4;
  if (bad_cgroup || nfds != want_fds || static_cast<size_t>(n) < sizeof h ||
      h.magic != kSpawnMagic || h.argc == 0 || h.argc > kMaxSpawnStrings ||
      h.envc > kMaxSpawnStrings || sizeof h + h.bytes != static_cast<size_t>(n) || truncated ||
      (h.flags & ~(kSpawnPty | kSpawnIntoCgroup)) != 0 ||
      ((pty || cgroup_fd >= 0) && plan.seccomp != nullptr &&
       plan.seccomp->notify != seccomp::NotifyMode::kNone)) {
    close_fds();
    reply.type = InitMsg::kSpawnFailed;
    reply.status = EINVAL;
    SendMsg(ctl, reply);
    return;
  }
  char* s = g_spawn_buf + sizeof h;
  char* end = s + h.bytes;
  char* cwd = nullptr;
  uint32_t total = h.argc + h.envc + 1;
  for (uint32_t i = 0; i < total; ++i) {
    char* z = static_cast<char*>(std::memchr(s, '\0', static_cast<size_t>(end - s)));
    if (z == nullptr) {
      close_fds();
      reply.type = InitMsg::kSpawnFailed;
      reply.status = EINVAL;
      SendMsg(ctl, reply);
      return;
    }
    if (i < h.argc) g_argv[i] = s;
    else if (i < h.argc + h.envc) g_envp[i - h.argc] = s;
    else cwd = s;
    s = z + 1;
  }
  g_argv[h.argc] = nullptr;
  g_envp[h.envc] = nullptr;

  int slot = -1;
  for (int i = 0; i < kMaxChildren; ++i) {
    if (g_children[i] == 0) {
      slot = i;
      break;
    }
  }
  PayloadArgs pa{&plan, {fds[0], fds[1], fds[2], fds[3]}, cwd, pty};
  if (pty) {
    master = OpenPty(h.cols, h.rows, &slave);
    if (master < 0) {
      reply.type = InitMsg::kSpawnFailed;
      reply.status = errno;
      close_fds();
      SendMsg(ctl, reply);
      return;
    }
    pa.fds[0] = pa.fds[1] = pa.fds[2] = slave;
    pa.fds[3] = fds[0];
  }
  pid_t pid = -1;
  if (slot >= 0 && cgroup_fd < 0 && plan.seccomp != nullptr &&
      plan.seccomp->notify != seccomp::NotifyMode::kNone) {
    pid = StartNotifyingPayload(&pa, ctl);
    int e = errno;
    close_fds();
    if (pid < 0) {
      reply.type = InitMsg::kSpawnFailed;
      reply.status = e;
      SendMsg(ctl, reply);
      return;
    }
    g_children[slot] = pid;  // kStarted went out already
    return;
  }
  if (slot >= 0 && cgroup_fd >= 0) {
    // Straight into its own cgroup, with a copy of init's (small) address space: init goes on
    // serving while the payload execs. The copy keeps the spawn strings and `pa` it reads.
    struct clone_args args;
    std::memset(&args, 0, sizeof args);
    args.flags = CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(cgroup_fd);
    args.exit_signal = SIGCHLD;
    pid = static_cast<pid_t>(sys::Clone3(&args));
    if (pid == 0) PayloadMain(&pa);
  } else if (slot >= 0) {
#if defined(SBX_SANITIZED)
    // AddressSanitizer cannot follow instrumented code into a CLONE_VM child on a stack of its
    // own (it corrupts its stack bookkeeping), nor can ThreadSanitizer (the child would share
    // the init's thread state, and dies in its first instrumented access): sanitizer builds
    // copy the address space.
    pid = static_cast<pid_t>(::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
    if (pid == 0) PayloadMain(&pa);
#else
    pid = ::clone(PayloadMain, g_payload_stack + sizeof g_payload_stack,
                  CLONE_VM | CLONE_VFORK | SIGCHLD, &pa);
#endif
  }
  int e = errno;
  if (pid < 0) {
    close_fds();
    reply.type = InitMsg::kSpawnFailed;
    reply.status = slot < 0 ? EAGAIN : e;
    SendMsg(ctl, reply);
    return;
  }
  g_children[slot] = pid;
  reply.type = InitMsg::kStarted;
  reply.pid = pid;
  reply.listener_fd = -1;
  if (master >= 0) {
    ssize_t r = SendWithFds(ctl, &reply, sizeof reply, &master, 1);
    (void)r;
  } else {
    SendMsg(ctl, reply);
  }
  close_fds();
}

void ReapChildren(int ctl) {
  for (;;) {
    int status = 0;
    struct rusage ru;
    pid_t pid = ::wait4(-1, &status, WNOHANG, &ru);
    if (pid <= 0) return;
    for (int i = 0; i < kMaxChildren; ++i) {
      if (g_children[i] != pid) continue;
      g_children[i] = 0;
      InitMsg m;
      std::memset(&m, 0, sizeof m);
      m.type = InitMsg::kExited;
      m.pid = pid;
      m.status = status;
      m.utime_us = ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec;
      m.stime_us = ru.ru_stime.tv_sec * 1000000LL + ru.ru_stime.tv_usec;
      m.maxrss_kb = ru.ru_maxrss;
      SendMsg(ctl, m);
    }
    // Anything else was an orphan re-parented to us: reaped, nothing to report.
  }
}

[[noreturn]] void Serve(const ChildPlan& plan, int sigfd) {
  int ctl = plan.ctl_fd;
  InitMsg ready;
  std::memset(&ready, 0, sizeof ready);
  ready.type = InitMsg::kReady;
  SendMsg(ctl, ready);
  for (;;) {
    struct pollfd p[2] = {{ctl, POLLIN, 0}, {sigfd, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      ::_exit(1);
    }
    if (p[1].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (::read(sigfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        if (si.ssi_signo == SIGCHLD) continue;
        // Forward, as `docker run --init` does, to every process we started.
        for (int i = 0; i < kMaxChildren; ++i) {
          if (g_children[i] != 0) ::kill(g_children[i], static_cast<int>(si.ssi_signo));
        }
      }
      ReapChildren(ctl);
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) HandleSpawn(plan, ctl);
  }
}

}  // namespace

[[noreturn]] void ChildMain(const ChildPlan& plan) {
  const int err = plan.err_fd;
  // 1. Die with the parent (thread) during setup. The parent holds the sync pipe's write end
  // until it has written the id maps, so a parent that dies before this prctl is seen as EOF
  // just below. The setting lasts until step 3 changes our credentials (commit_creds clears
  // it); from READY on, the control socket's EOF is what ends us.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) Fail(err, "prctl(PR_SET_PDEATHSIG)", "", errno);
  ::prctl(PR_SET_NAME, "sbx-init", 0, 0, 0);

  // 2. Wait for the parent: uid/gid maps, v1 cgroups, loopback.
  char go = 0;
  ssize_t r;
  do {
    r = ::read(plan.sync_fd, &go, 1);
  } while (r < 0 && errno == EINTR);
  if (r != 1) ::_exit(125);
  ::close(plan.sync_fd);
  // Now in its cgroup in every hierarchy (v1 ones included): a cgroup namespace rooted there.
  // The child holds CAP_SYS_ADMIN in its new user namespace, which unshare(2) asks for.
  if (::unshare(CLONE_NEWCGROUP) < 0) Fail(err, "unshare(CLONE_NEWCGROUP)", "", errno);

  // 3. Become root of the new user namespace (mapped to an unprivileged host id), with no
  // supplementary groups of the host.
  // Raw syscalls, not glibc's wrappers: in a process cloned from a threaded daemon, glibc still
  // believes the daemon's threads exist and its setxid broadcast (nptl's SIGSETXID to every
  // thread, under the thread-list lock another thread may have held at clone time) can hang.
  if (sys::SetGroups0() < 0) Fail(err, "setgroups", "", errno);
  if (sys::SetResGid(0, 0, 0) < 0) Fail(err, "setresgid(0)", "", errno);
  if (sys::SetResUid(0, 0, 0) < 0) Fail(err, "setresuid(0)", "", errno);

  // 4. Our own hostname.
  if (::sethostname(plan.hostname.data(), plan.hostname.size()) < 0) {
    Fail(err, "sethostname", plan.hostname.c_str(), errno);
  }

  // 5. The filesystem: nothing propagates back to the host; a fresh tmpfs root built from
  // read-only binds; pivot_root into it; the old root detached.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) {
    Fail(err, "make / private", "", errno);
  }
  if (::mount("sandbox-root", plan.stage_dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
              "size=4m,mode=0755") < 0) {
    Fail(err, "mount root tmpfs", plan.stage_dir.c_str(), errno);
  }
  int root_fd = ::open(plan.stage_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) Fail(err, "open new root", plan.stage_dir.c_str(), errno);
  for (const MountOp& op : plan.mounts) ApplyMount(plan, root_fd, op);
  // The trees are attached; their fds would only keep the parent's mounts within reach.
  for (const MountOp& op : plan.mounts) {
    if (op.source_fd >= 0) ::close(op.source_fd);
  }
  if (::fchdir(root_fd) < 0) Fail(err, "chdir new root", "", errno);
  // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves only
  // the new root (see pivot_root(2), NOTES).
  if (sys::PivotRoot(".", ".") < 0) Fail(err, "pivot_root", "", errno);
  if (::umount2(".", MNT_DETACH) < 0) Fail(err, "detach old root", "", errno);
  if (::chdir("/") < 0) Fail(err, "chdir /", "", errno);
  ::close(root_fd);
  if (plan.read_only_root && MountSetattr(AT_FDCWD, "/", 0, MOUNT_ATTR_RDONLY, 0) < 0) {
    Fail(err, "remount / read-only", "", errno);
  }

  // 6. Resource limits (no core dumps, bounded fds, …).
  for (const auto& [resource, lim] : plan.rlimits) {
    if (::setrlimit(resource, &lim) < 0) Fail(err, "setrlimit", "", errno);
  }

  // 7. Capabilities: lock root out of privilege (securebits), empty the bounding set while we
  // still hold CAP_SETPCAP, clear ambient, switch to the sandbox user, clear every set.
  if (::prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                     SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                                     SECBIT_NO_CAP_AMBIENT_RAISE |
                                     SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED) < 0) {
    Fail(err, "prctl(PR_SET_SECUREBITS)", "", errno);
  }
  // Every capability number the kernel's 64-bit sets can hold, not only those this build's
  // libcap knows (CAP_LAST_CAP): a newer kernel's /proc/sys/kernel/cap_last_cap may be higher.
  // EINVAL: the kernel has no such capability.
  for (int cap = 0; cap < 64; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
      Fail(err, "drop bounding capability", "", errno);
    }
  }
  if (cap_reset_ambient() < 0) Fail(err, "clear ambient capabilities", "", errno);
  if (sys::SetResGid(plan.gid, plan.gid, plan.gid) < 0) Fail(err, "setresgid", "", errno);
  if (sys::SetResUid(plan.uid, plan.uid, plan.uid) < 0) Fail(err, "setresuid", "", errno);
  if (cap_set_proc(static_cast<cap_t>(plan.empty_caps)) < 0) {
    Fail(err, "clear capabilities", "", errno);
  }

  // 8. no_new_privs: setuid binaries and file capabilities grant nothing from here on. Not
  // dumpable: the init is a copy of the daemon's memory, and the payloads run as its user; the
  // credential changes above already cleared it (fs.suid_dumpable), said here once more so that
  // it never rests on a sysctl (no ptrace, no /proc/1/mem for them).
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) Fail(err, "prctl(NO_NEW_PRIVS)", "", errno);
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) Fail(err, "prctl(PR_SET_DUMPABLE)", "", errno);

  // 9. Signals arrive through a signalfd so they are forwarded, never acted on by pid 1. What
  // the daemon (or the spawner) ignored is not ignored here: SIG_IGN would survive into every
  // payload's execve (a program that never sees SIGPIPE), and an ignored SIGCHLD would reap our
  // children before we could report how they ended.
  sigset_t all;
  sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  // The raw syscall: glibc's sigaction() refuses the two real-time signals it keeps for itself
  // (32 and 33), which an ignoring ancestor may have left ignored all the same.
  struct KernelSigaction {
    void* handler;  // SIG_DFL: 0
    unsigned long flags;
    void* restorer;
    uint64_t mask;
  } dfl;
  std::memset(&dfl, 0, sizeof dfl);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) {
      ::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, sizeof dfl.mask);
    }
  }
  int sigfd = ::signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0) Fail(err, "signalfd", "", errno);

  // 10. Nothing of the parent's stays open but the control socket and the signalfd.
  int keep_lo = plan.ctl_fd < sigfd ? plan.ctl_fd : sigfd;
  int keep_hi = plan.ctl_fd < sigfd ? sigfd : plan.ctl_fd;
  if (keep_lo > 0) sys::CloseRange(0, static_cast<unsigned>(keep_lo - 1));
  if (keep_hi > keep_lo + 1) {
    sys::CloseRange(static_cast<unsigned>(keep_lo + 1), static_cast<unsigned>(keep_hi - 1));
  }
  sys::CloseRange(static_cast<unsigned>(keep_hi + 1), ~0u);

  Serve(plan, sigfd);
}

}  // namespace sbx::isolate::internal
