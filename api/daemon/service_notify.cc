#include "api/daemon/service_notify.h"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <cstdlib>
#include <cstring>

#include "supervisor/observability/log.h"

namespace sbx::api {

ServiceNotifier ServiceNotifier::FromEnvironment() {
  ServiceNotifier n;
  const char* socket = std::getenv("NOTIFY_SOCKET");
  n.enabled_ = socket != nullptr && *socket != '\0';
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    n.watchdog_interval_ = std::chrono::microseconds(usec / 2);
  }
  return n;
}

void ServiceNotifier::Send(const std::string& text) const {
  if (!enabled_) return;
  int r = sd_notify(0, text.c_str());
  if (r < 0) {
    log::Warning({}, "sd_notify({}): {}", text.substr(0, text.find('\n')), std::strerror(-r));
  }
}

void ServiceNotifier::Ready(std::string_view status) const {
  Send(fmt::format("READY=1\nSTATUS={}", status));
}

void ServiceNotifier::Status(std::string_view status) const {
  Send(fmt::format("STATUS={}", status));
}

void ServiceNotifier::Watchdog() const {
  if (watchdog_interval_.count() > 0) Send("WATCHDOG=1");
}

void ServiceNotifier::Reloading(std::string_view status) const {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t usec = static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
  Send(fmt::format("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS={}", usec, status));
}

void ServiceNotifier::Stopping(std::string_view status) const {
  Send(fmt::format("STOPPING=1\nSTATUS={}", status));
}

Result<std::vector<ActivatedSocket>> TakeActivatedSockets() {
  char** names = nullptr;
  // unset_environment=1: LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES are removed; the fds get
  // FD_CLOEXEC (sd_listen_fds(3)).
  int n = sd_listen_fds_with_names(1, &names);
  if (n < 0) {
    return MakeError(ErrorCode::kInvalidArgument, "socket activation (LISTEN_FDS): {}",
                     std::strerror(-n));
  }
  std::vector<ActivatedSocket> out;
  for (int i = 0; i < n; ++i) {
    ActivatedSocket s;
    s.fd = SD_LISTEN_FDS_START + i;
    s.name = names != nullptr && names[i] != nullptr ? names[i] : "unknown";
    out.push_back(std::move(s));
  }
  if (names != nullptr) {
    for (int i = 0; i < n; ++i) std::free(names[i]);
    std::free(names);
  }
  return out;
}

}  // namespace sbx::api
