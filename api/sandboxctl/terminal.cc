#include "api/sandboxctl/terminal.h"

#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <thread>

namespace sbx::ctl {
namespace {

// The one raw-mode terminal of the process: its fd and the settings to put back.
struct SavedTerminal {
  std::mutex mu;
  bool raw = false;     // raw mode is on now
  bool active = false;  // a RawTerminal exists (raw, or restored for a stop)
  int fd = -1;
  termios saved{};
};

SavedTerminal& Saved() {
  static SavedTerminal s;
  return s;
}

// TCSADRAIN: output already written (the last of the program's bytes) goes out first.
void PutBack(SavedTerminal& s) {
  if (!s.raw) return;
  while (::tcsetattr(s.fd, TCSADRAIN, &s.saved) != 0 && errno == EINTR) {
  }
  s.raw = false;
}

void MakeRaw(SavedTerminal& s) {
  if (s.raw || !s.active) return;
  termios raw = s.saved;
  ::cfmakeraw(&raw);
  while (::tcsetattr(s.fd, TCSADRAIN, &raw) != 0 && errno == EINTR) {
  }
  s.raw = true;
}

}  // namespace

std::optional<std::pair<int, int>> TerminalSize(int fd) {
  winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0 || ws.ws_row == 0) return std::nullopt;
  return std::pair<int, int>{ws.ws_col, ws.ws_row};
}

Result<RawTerminal> RawTerminal::Enter(int fd) {
  SavedTerminal& s = Saved();
  std::lock_guard lock(s.mu);
  if (s.active) {
    return MakeError(ErrorCode::kFailedPrecondition, "the terminal is in raw mode already");
  }
  termios saved{};
  if (::tcgetattr(fd, &saved) != 0) return ErrnoError("reading the terminal's settings");
  termios raw = saved;
  ::cfmakeraw(&raw);
  if (::tcsetattr(fd, TCSADRAIN, &raw) != 0) return ErrnoError("putting the terminal in raw mode");
  s.fd = fd;
  s.saved = saved;
  s.raw = true;
  s.active = true;
  return RawTerminal();
}

RawTerminal::~RawTerminal() {
  if (!active_) return;
  SavedTerminal& s = Saved();
  std::lock_guard lock(s.mu);
  PutBack(s);
  s.active = false;
}

void RestoreTerminal() {
  SavedTerminal& s = Saved();
  std::lock_guard lock(s.mu);
  PutBack(s);
}

void StartTerminalSignalThread(std::function<void()> on_resize) {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGWINCH, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP, SIGCONT, SIGPIPE}) {
    sigaddset(&set, sig);
  }
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set, on_resize = std::move(on_resize)] {
    for (;;) {
      int sig = 0;
      if (::sigwait(&set, &sig) != 0) continue;
      switch (sig) {
        case SIGWINCH:
          on_resize();
          break;
        case SIGTSTP: {
          RestoreTerminal();
          // SIGSTOP cannot be blocked: the whole process stops here and goes on at SIGCONT,
          // which then waits, blocked, for the sigwait below.
          ::kill(::getpid(), SIGSTOP);
          break;
        }
        case SIGCONT: {
          {
            SavedTerminal& s = Saved();
            std::lock_guard lock(s.mu);
            MakeRaw(s);
          }
          on_resize();
          break;
        }
        case SIGPIPE:
          break;
        default:
          RestoreTerminal();
          std::_Exit(128 + sig);
      }
    }
  }).detach();
}

}  // namespace sbx::ctl
