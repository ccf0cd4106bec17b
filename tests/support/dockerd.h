// A throwaway Docker daemon for tests: dockerd with its own --data-root, --exec-root, pidfile and
// unix socket in a new directory under /tmp, no iptables and no bridge (runs get network none),
// started once per test binary (Shared()) and stopped, with its directory removed, at exit.
// Nothing is pulled from a registry: the test image is imported through the Engine API from a
// root filesystem made of Debian's busybox-static (/bin/busybox and links for its applets).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "base/result.h"

namespace sbx::testing {

class TestDockerd {
 public:
  // The binary's shared daemon, started at the first call (a few seconds). kUnavailable with the
  // reason (dockerd missing, not root, the daemon did not come up: its log's tail) otherwise.
  // Call it from the main thread: the daemon is killed when the thread that started it exits.
  static Result<TestDockerd*> Shared();
  // A daemon of its own (for tests that kill it); Stop() or the destructor ends it.
  static Result<std::unique_ptr<TestDockerd>> Start();
  ~TestDockerd();
  TestDockerd(const TestDockerd&) = delete;
  TestDockerd& operator=(const TestDockerd&) = delete;

  // SIGTERM (SIGKILL after 20 s), unmounts what it left under its directory, removes it.
  Status Stop();
  // SIGKILL, as a crash would (its containers' processes survive it, as with a real crash).
  void Kill();
  // After Kill(): kills what the daemon left running (its containerd, the shims, the processes
  // of its containers, found by container id in /proc/PID/cgroup and cmdline) and removes the
  // containers' cgroups.
  void KillContainers();

  const std::string& dir() const { return dir_; }
  std::string host() const { return "unix://" + socket_; }
  const std::string& socket() const { return socket_; }
  pid_t pid() const { return pid_; }

  // "sbx-test-busybox:1", imported at the first call.
  Result<std::string> BusyboxImage();
  // The same root filesystem as an image that declares a volume (VOLUME /data).
  Result<std::string> BusyboxImageWithAVolume();

 private:
  TestDockerd() = default;

  std::string dir_;
  std::string socket_;
  pid_t pid_ = -1;
  bool image_ready_ = false;
};

// An uncompressed ustar archive of a root filesystem: /bin/busybox (copied from
// `busybox_path`, which must be statically linked), a symlink in /bin for each common applet,
// and empty /tmp, /etc, /proc, /dev, /sys, /workspace, /artifacts.
Result<std::string> BusyboxRootfsTar(const std::string& busybox_path);

}  // namespace sbx::testing
