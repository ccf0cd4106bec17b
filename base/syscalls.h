// Thin wrappers for syscalls that glibc 2.36 does not wrap (or wraps only recently). Each returns
// what the raw syscall returns (-1 and errno on failure) and is async-signal-safe, so the child
// side of a spawn may call them.
#pragma once

#include <linux/openat2.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>

namespace sbx::sys {

inline long Clone3(struct clone_args* args) {
  return ::syscall(SYS_clone3, args, sizeof(struct clone_args));
}
inline int PidfdOpen(pid_t pid, unsigned flags = 0) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, flags));
}
inline int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}
inline int PivotRoot(const char* new_root, const char* put_old) {
  return static_cast<int>(::syscall(SYS_pivot_root, new_root, put_old));
}
// Closes every fd in [first, last]. close_range(2) (Linux 5.9) does it in one call; where it
// fails (ENOSYS on an older kernel or under a seccomp filter that does not know it, EINVAL),
// each fd below RLIMIT_NOFILE's hard limit is closed one by one instead, so no fd is ever left
// open because a syscall was refused. Returns 0, or -1 with errno when the limit cannot be read.
inline int CloseRange(unsigned first, unsigned last) {
  if (::syscall(SYS_close_range, first, last, 0) == 0) return 0;
  struct rlimit lim;
  if (::syscall(SYS_getrlimit, RLIMIT_NOFILE, &lim) != 0) return -1;
  // A hard limit above the kernel's fs.nr_open cannot be reached by any fd.
  const unsigned long top = lim.rlim_max > (1u << 30) ? (1u << 30) : lim.rlim_max;
  for (unsigned long fd = first; fd <= last && fd < top; ++fd) {
    ::syscall(SYS_close, static_cast<int>(fd));
  }
  return 0;
}
// openat2(2) (Linux 5.6): `resolve` is RESOLVE_* flags, e.g. RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
// to open a path chosen by a client strictly inside `dirfd`.
inline int Openat2(int dirfd, const char* path, uint64_t flags, uint64_t mode, uint64_t resolve) {
  struct open_how how = {};
  how.flags = flags;
  how.mode = mode;
  how.resolve = resolve;
  return static_cast<int>(::syscall(SYS_openat2, dirfd, path, &how, sizeof how));
}
// Credentials of the calling thread only. glibc's setresuid() & co. change every thread of the
// process through a signal broadcast, which is neither async-signal-safe nor correct in a child
// cloned from a threaded process (see isolate/child.cc).
inline int SetResUid(uid_t r, uid_t e, uid_t s) {
  return static_cast<int>(::syscall(SYS_setresuid, r, e, s));
}
inline int SetResGid(gid_t r, gid_t e, gid_t s) {
  return static_cast<int>(::syscall(SYS_setresgid, r, e, s));
}
inline int SetGroups0() { return static_cast<int>(::syscall(SYS_setgroups, 0, nullptr)); }
inline int Seccomp(unsigned op, unsigned flags, void* args) {
  return static_cast<int>(::syscall(SYS_seccomp, op, flags, args));
}

}  // namespace sbx::sys
