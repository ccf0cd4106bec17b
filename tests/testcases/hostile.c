/* A hostile program for the isolation tests. Run ONLY inside a sandbox.
 *
 * hostile ACTION [ARGS]: attempts ACTION and prints one line, "OK ..." when the forbidden thing
 * worked or "DENIED errno=N (...)" when it did not; exits 0 on OK, 1 on DENIED, 2 on misuse.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int result(int ok, const char* what) {
  if (ok) {
    printf("OK %s\n", what);
    return 0;
  }
  printf("DENIED errno=%d (%s) %s\n", errno, strerror(errno), what);
  return 1;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* a = argv[1];
  setvbuf(stdout, NULL, _IONBF, 0);
  if (!strcmp(a, "connect") && argc > 2) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return result(0, "socket");
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    return result(connect(s, (struct sockaddr*)&sin, sizeof sin) == 0, "connect");
  }
  if (!strcmp(a, "loopback")) {
    /* A listener on the sandbox's own loopback, and a connection to it. */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    socklen_t len = sizeof sin;
    if (bind(l, (struct sockaddr*)&sin, sizeof sin) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr*)&sin, &len) < 0) {
      return result(0, "listen on loopback");
    }
    int c = socket(AF_INET, SOCK_STREAM, 0);
    return result(connect(c, (struct sockaddr*)&sin, sizeof sin) == 0, "connect to own loopback");
  }
  if (!strcmp(a, "read") && argc > 2) {
    int fd = open(argv[2], O_RDONLY);
    char buf[64];
    return result(fd >= 0 && read(fd, buf, sizeof buf) >= 0, argv[2]);
  }
  if (!strcmp(a, "write") && argc > 2) {
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    return result(fd >= 0 && write(fd, "x", 1) == 1, argv[2]);
  }
  if (!strcmp(a, "mount")) {
    return result(mount("none", "/tmp", "tmpfs", 0, NULL) == 0, "mount");
  }
  if (!strcmp(a, "unshare")) return result(unshare(CLONE_NEWUSER) == 0, "unshare");
  if (!strcmp(a, "unshare-ns")) return result(unshare(CLONE_NEWNS) == 0, "unshare");
  if (!strcmp(a, "ptrace")) return result(ptrace(PTRACE_ATTACH, 1, 0, 0) == 0, "ptrace");
  if (!strcmp(a, "ptrace-times") && argc > 2) {
    /* N attempts, for the seccomp denial counts; OK if any worked. */
    int n = atoi(argv[2]), ok = 0;
    for (int i = 0; i < n; ++i) ok |= ptrace(PTRACE_ATTACH, 1, 0, 0) == 0;
    return result(ok, "ptrace");
  }
  if (!strcmp(a, "unnamed-syscalls") && argc > 2) {
    /* N distinct syscall numbers no table names, then one named one the profile denies. Each
       must fail without running anything; OK only if every one of them failed. */
    int n = atoi(argv[2]), ran = 0;
    unsigned seed = 12345;
    for (int i = 0; i < n; ++i) {
      seed = seed * 1103515245u + 12345u;
      long nr = 1000 + (long)(seed % 0x3fff0000u); /* 1000 .. just under the x32 bit */
      errno = 0;
      if (syscall(nr, 0, 0, 0) != -1) ran = 1;
    }
    int first_errno = errno;
    errno = 0;
    if (syscall(-1L) != -1) ran = 1;
    if (ran) return result(0, "an unnamed syscall ran");
    printf("unnamed errno=%d\n", first_errno);
    return result(ptrace(PTRACE_ATTACH, 1, 0, 0) == 0, "ptrace");
  }
  if (!strcmp(a, "setns")) {
    int fd = open("/proc/self/ns/net", O_RDONLY);
    if (fd < 0) return result(0, "open /proc/self/ns/net");
    return result(setns(fd, 0) == 0, "setns");
  }
  if (!strcmp(a, "clone3")) {
    long r = syscall(SYS_clone3, NULL, 0);
    return result(r >= 0 || errno != ENOSYS, "clone3 exists");
  }
  if (!strcmp(a, "caps")) {
    /* Reports what a setuid binary gained. */
    FILE* f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long eff = 0;
    while (f && fgets(line, sizeof line, f)) sscanf(line, "CapEff: %llx", &eff);
    printf("euid=%d capeff=%llx\n", geteuid(), eff);
    return geteuid() == 0 || eff != 0 ? 0 : 1;
  }
  if (!strcmp(a, "forkbomb")) {
    /* Forks until the kernel says no; children sleep so they count. */
    int n = 0;
    for (;;) {
      pid_t p = fork();
      if (p == 0) {
        pause();
        _exit(0);
      }
      if (p < 0) break;
      if (++n >= 100000) break;
    }
    printf("forked=%d errno=%d\n", n, errno);
    kill(0, SIGKILL);
    return 0;
  }
  if (!strcmp(a, "alloc") && argc > 2) {
    size_t mb = strtoul(argv[2], NULL, 10);
    for (size_t i = 0; i < mb; ++i) {
      char* p = malloc(1 << 20);
      if (!p) return result(0, "malloc");
      memset(p, 1, 1 << 20);
    }
    return result(1, "alloc");
  }
  if (!strcmp(a, "spin") && argc > 2) {
    double end = now() + atof(argv[2]);
    volatile uint64_t x = 0;
    while (now() < end) x++;
    return 0;
  }
  if (!strcmp(a, "daemon") && argc > 2) {
    /* Double fork + setsid, then live forever under a recognizable name. */
    if (fork() == 0) {
      setsid();
      if (fork() == 0) {
        prctl(PR_SET_NAME, argv[2]);
        for (;;) pause();
      }
      _exit(0);
    }
    wait(NULL);
    for (;;) pause();
  }
  if (!strcmp(a, "fds")) {
    /* Lists every open fd above stderr (other than the one listing /proc/self/fd). */
    DIR* d = opendir("/proc/self/fd");
    int extra = 0;
    struct dirent* e;
    while (d && (e = readdir(d))) {
      int fd = atoi(e->d_name);
      if (e->d_name[0] == '.' || fd <= 2 || fd == dirfd(d)) continue;
      char path[64], target[256] = "";
      snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
      ssize_t n = readlink(path, target, sizeof target - 1);
      if (n > 0) target[n] = 0;
      printf("fd %d -> %s\n", fd, target);
      extra++;
    }
    printf("extra=%d\n", extra);
    return extra ? 0 : 1;
  }
  if (!strcmp(a, "print") && argc > 2) {
    long n = atol(argv[2]);
    char buf[4096];
    memset(buf, 'x', sizeof buf);
    while (n > 0) {
      long k = n < (long)sizeof buf ? n : (long)sizeof buf;
      if (write(1, buf, k) != k) return 3;
      n -= k;
    }
    return 0;
  }
  if (!strcmp(a, "int80")) {
#if defined(__x86_64__)
    /* A 32-bit syscall (getpid, 20) through the compat entry point. */
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
    printf("OK int 0x80 returned %ld\n", ret);
    return 0;
#else
    return 2;
#endif
  }
  if (!strcmp(a, "kill-init")) return result(kill(1, SIGKILL) == 0 && (sleep(1), 1), "kill 1");
  if (!strcmp(a, "raise") && argc > 2) {
    raise(atoi(argv[2]));
    return 0;
  }
  return 2;
}
