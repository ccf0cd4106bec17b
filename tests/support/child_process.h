// A program run by a test as a child process (sandboxctl, the daemon), its stdout and stderr on
// pipes read with deadlines, so that a test waits on the output it needs instead of sleeping.
// Header-only; used by the unit and the integration tests alike.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "base/unique_fd.h"

namespace sbx::testing {

class Child {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    std::vector<std::string> env;
    std::string cwd;            // "" keeps the test's
    bool merge_stderr = false;  // stderr on the stdout pipe
    int stdin_fd = -1;          // the child's stdin; -1 for /dev/null
    // What the child gets when the test process dies (PR_SET_PDEATHSIG).
    int death_signal = SIGTERM;
  };

  // Starts argv[0] (a path) with exactly `o.env`; nullptr when the pipes or fork failed.
  static std::unique_ptr<Child> Start(const std::vector<std::string>& argv, const Options& o) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return nullptr;
    if (::pipe2(err, O_CLOEXEC) != 0) {
      ::close(out[0]);
      ::close(out[1]);
      return nullptr;
    }
    // Everything the child needs is built before fork: the test process has threads, so the
    // child may only make async-signal-safe calls.
    std::vector<char*> cargv, cenv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    for (const auto& e : o.env) cenv.push_back(const_cast<char*>(e.c_str()));
    cenv.push_back(nullptr);
    sigset_t none;
    sigemptyset(&none);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      // A test process that dies takes its daemon and clients with it.
      ::prctl(PR_SET_PDEATHSIG, o.death_signal);
      int in = o.stdin_fd >= 0 ? o.stdin_fd : ::open("/dev/null", O_RDONLY);
      ::dup2(in, 0);
      ::dup2(out[1], 1);
      ::dup2(o.merge_stderr ? out[1] : err[1], 2);
      if (!o.cwd.empty() && ::chdir(o.cwd.c_str()) != 0) ::_exit(126);
      ::execve(cargv[0], cargv.data(), cenv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    if (pid < 0) {
      ::close(out[0]);
      ::close(err[0]);
      return nullptr;
    }
    auto c = std::unique_ptr<Child>(new Child());
    c->pid_ = pid;
    c->fds_[0].reset(out[0]);
    c->fds_[1].reset(err[0]);
    return c;
  }

  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // Reads until `needle` is in the stream (1: stdout, 2: stderr); false at EOF or timeout.
  bool WaitFor(int stream, const std::string& needle,
               std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    auto deadline = Clock::now() + timeout;
    while (buf_[stream - 1].find(needle) == std::string::npos) {
      if (!ReadSome(deadline)) return buf_[stream - 1].find(needle) != std::string::npos;
    }
    return true;
  }

  // Reads both streams to EOF and reaps the child: its exit status, 128+N when killed by
  // signal N, -1 when it did not end in time (it is killed then).
  int Finish(std::chrono::milliseconds timeout = std::chrono::seconds(90)) {
    auto deadline = Clock::now() + timeout;
    while (ReadSome(deadline)) {
    }
    if (fds_[0] || fds_[1]) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
      return -1;
    }
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  void Signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  pid_t pid() const { return pid_; }
  const std::string& out() const { return buf_[0]; }
  const std::string& err() const { return buf_[1]; }

 private:
  Child() = default;

  // One poll round; false when both streams are at EOF or the deadline passed.
  bool ReadSome(Clock::time_point deadline) {
    pollfd p[2];
    int n = 0, which[2];
    for (int i = 0; i < 2; ++i) {
      if (fds_[i]) {
        p[n] = {fds_[i].get(), POLLIN, 0};
        which[n++] = i;
      }
    }
    if (n == 0) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    int r = ::poll(p, n, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) return true;
    if (r <= 0) return false;
    for (int k = 0; k < n; ++k) {
      if (p[k].revents == 0) continue;
      char chunk[65536];
      ssize_t got = ::read(p[k].fd, chunk, sizeof chunk);
      if (got > 0) {
        buf_[which[k]].append(chunk, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        fds_[which[k]].reset();
      }
    }
    return true;
  }

  pid_t pid_ = -1;
  UniqueFd fds_[2];
  std::string buf_[2];
};

// What a finished command gave: its exit status (as Child::Finish) and both streams.
struct CtlResult {
  int code = -1;
  std::string out, err;
};

// Finishes `c` (nullptr: it did not start, code -1) and collects what it wrote.
inline CtlResult Collect(Child* c, std::chrono::milliseconds timeout = std::chrono::seconds(90)) {
  CtlResult r;
  if (c == nullptr) return r;
  r.code = c->Finish(timeout);
  r.out = c->out();
  r.err = c->err();
  return r;
}

// The sandboxctl binary of this build.
inline std::string SandboxctlPath() {
  return std::string(SBX_BINARY_DIR) + "/supervisor/sandboxctl";
}

}  // namespace sbx::testing
