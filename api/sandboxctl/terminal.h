// The local terminal for `sandboxctl sandbox shell`: its window size, raw mode that is restored
// on every way out (return, exception, the signals that end a terminal session), and the thread
// that takes those signals.
#pragma once

#include <functional>
#include <optional>
#include <utility>

#include "base/result.h"

namespace sbx::ctl {

// {cols, rows} of the terminal on `fd` (TIOCGWINSZ), or nullopt when it is none or reports 0.
std::optional<std::pair<int, int>> TerminalSize(int fd);

// Raw mode on a terminal (cfmakeraw(3): no echo, no line editing, and no signals from keys, so
// that Ctrl-C, Ctrl-Z and Ctrl-\ reach the program on the other side as bytes). The settings
// before are restored by the destructor, by RestoreTerminal() and by the signal thread below.
// One at a time in a process.
class RawTerminal {
 public:
  // kFailedPrecondition when one is active; the errno error of tcgetattr/tcsetattr otherwise.
  static Result<RawTerminal> Enter(int fd);
  RawTerminal(RawTerminal&& other) noexcept : active_(other.active_) { other.active_ = false; }
  RawTerminal& operator=(RawTerminal&&) = delete;
  ~RawTerminal();

 private:
  RawTerminal() = default;
  bool active_ = true;
};

// Puts the terminal's saved settings back, if raw mode is on; idempotent, from any thread.
void RestoreTerminal();

// Blocks SIGWINCH, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP, SIGCONT and SIGPIPE in the calling
// thread, which every thread started later inherits (so call it before starting any), and takes
// them with sigwait(2) in a thread of its own, which may do ordinary work:
//   SIGWINCH         on_resize()
//   SIGTSTP          the terminal is restored and the process stops (SIGSTOP); when it is
//                    continued, raw mode comes back and on_resize() runs (the window may have
//                    changed meanwhile)
//   SIGCONT          raw mode again, if it was on, and on_resize()
//   SIGINT, SIGTERM, SIGHUP, SIGQUIT
//                    the terminal is restored and the process ends with 128+N
//   SIGPIPE          ignored: a write to a closed stdout fails with EPIPE instead
// The thread lives as long as the process.
void StartTerminalSignalThread(std::function<void()> on_resize);

}  // namespace sbx::ctl
