// systemd integration of `sandboxd serve`: the service notification protocol (sd_notify(3),
// through libsystemd) and socket activation (sd_listen_fds(3)).
//
// Without $NOTIFY_SOCKET (not started by systemd with Type=notify) every call is a no-op.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace sbx::api {

class ServiceNotifier {
 public:
  // Reads $NOTIFY_SOCKET and $WATCHDOG_USEC / $WATCHDOG_PID (sd_watchdog_enabled(3)). The
  // variables stay set: the notifications are sent for as long as the daemon lives.
  static ServiceNotifier FromEnvironment();

  bool enabled() const { return enabled_; }
  // How often to send WATCHDOG=1: half of $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises;
  // zero when the watchdog is off (or meant for another pid).
  std::chrono::microseconds watchdog_interval() const { return watchdog_interval_; }

  // READY=1 with a STATUS= line: the listeners are bound and crash recovery is done.
  void Ready(std::string_view status) const;
  void Status(std::string_view status) const;
  void Watchdog() const;
  // RELOADING=1 with MONOTONIC_USEC= (CLOCK_MONOTONIC now), before a reload; Ready() after.
  void Reloading(std::string_view status) const;
  void Stopping(std::string_view status) const;

 private:
  void Send(const std::string& text) const;

  bool enabled_ = false;
  std::chrono::microseconds watchdog_interval_{0};
};

struct ActivatedSocket {
  int fd = -1;
  std::string name;  // from $LISTEN_FDNAMES ("unknown" when unnamed)
};

// The sockets systemd passed (fds 3…3+$LISTEN_FDS-1, when $LISTEN_PID is this process), with
// FD_CLOEXEC set; the LISTEN_* variables are removed so that no child inherits them. Empty when
// not socket-activated. Ownership passes to the caller.
Result<std::vector<ActivatedSocket>> TakeActivatedSockets();

}  // namespace sbx::api
