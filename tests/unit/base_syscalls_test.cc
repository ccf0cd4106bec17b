// The syscall wrappers' fallbacks, forced by a seccomp filter in a forked child of the test.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "base/syscalls.h"

namespace sbx {
namespace {

// Runs `body` in a forked child whose close_range(2) fails with ENOSYS; its exit status.
int InChildWithoutCloseRange(int (*body)()) {
  pid_t pid = ::fork();
  if (pid == 0) {
    struct sock_filter insns[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_close_range, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof insns / sizeof insns[0], insns};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(90);
    if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) ::_exit(91);
    ::_exit(body());
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

TEST(BaseSyscalls, CloseRangeClosesEveryFdWhenTheSyscallIsRefused) {
  int status = InChildWithoutCloseRange([]() -> int {
    // The filter really refuses it.
    if (::syscall(SYS_close_range, 100u, 101u, 0) == 0 || errno != ENOSYS) return 10;
    int fds[8];
    for (int& fd : fds) {
      fd = ::open("/dev/null", O_RDONLY);
      if (fd < 0) return 11;
    }
    const int high = ::fcntl(fds[0], F_DUPFD, 900);  // far above the others
    if (high < 900) return 12;
    const int keep = fds[2];
    if (sys::CloseRange(static_cast<unsigned>(keep + 1), ~0u) != 0) return 13;
    if (sys::CloseRange(static_cast<unsigned>(fds[0]), static_cast<unsigned>(keep - 1)) != 0) {
      return 14;
    }
    for (int fd : fds) {
      const bool open = ::fcntl(fd, F_GETFD) != -1;
      if (open != (fd == keep)) return 20 + (fd & 7);
    }
    if (::fcntl(high, F_GETFD) != -1) return 30;
    return 0;
  });
  EXPECT_EQ(status, 0);
}

TEST(BaseSyscalls, CloseRangeUsesTheSyscallWhereItWorks) {
  int a = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(a, 0);
  int b = ::fcntl(a, F_DUPFD, 700);
  ASSERT_GE(b, 700);
  EXPECT_EQ(sys::CloseRange(static_cast<unsigned>(b), static_cast<unsigned>(b)), 0);
  EXPECT_EQ(::fcntl(b, F_GETFD), -1);
  EXPECT_NE(::fcntl(a, F_GETFD), -1);
  ::close(a);
}

}  // namespace
}  // namespace sbx
