#include "isolate/proc_cgroup.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <climits>

#include "base/syscalls.h"

namespace sbx::isolate::internal {
namespace {

int MsUntil(Deadline deadline) {
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline -
                                                         std::chrono::steady_clock::now())
                .count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, INT_MAX));
}

Status WriteAt(int dir, const char* file, std::string_view value) {
  UniqueFd fd(::openat(dir, file, O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoError("open {}", file);
  ssize_t n;
  do {
    n = ::write(fd.get(), value.data(), value.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoError("write {} to {}", value, file);
  return Ok();
}

Result<std::string> ReadFd(int fd, const char* what) {
  std::string out;
  char buf[4096];
  for (off_t off = 0;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("read {}", what);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    off += n;
    if (out.size() > (16u << 20)) break;
  }
  return out;
}

std::optional<uint64_t> KeyedValue(std::string_view text, std::string_view key) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    if (line.size() > key.size() && line.substr(0, key.size()) == key &&
        line[key.size()] == ' ') {
      std::string_view v = line.substr(key.size() + 1);
      uint64_t out = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
      if (ec == std::errc() && p == v.data() + v.size()) return out;
      return std::nullopt;
    }
    pos = nl + 1;
  }
  return std::nullopt;
}

}  // namespace

Status DelegateProcs(int dir, uid_t owner, gid_t group) {
  if (::fchownat(dir, "cgroup.procs", owner, group, AT_SYMLINK_NOFOLLOW) < 0) {
    return ErrnoError("chown cgroup.procs to {}:{}", owner, group);
  }
  return Ok();
}

Result<UniqueFd> MakeProcessCgroup(int parent, const std::string& name, uid_t owner,
                                   gid_t group) {
  if (::mkdirat(parent, name.c_str(), 0755) < 0) return ErrnoError("mkdir cgroup {}", name);
  UniqueFd fd(::openat(parent, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  Status st = fd ? DelegateProcs(fd.get(), owner, group) : ErrnoError("open cgroup {}", name);
  if (!st.ok()) {
    (void)::unlinkat(parent, name.c_str(), AT_REMOVEDIR);
    return WithContext(std::move(st).error(), "cgroup " + name);
  }
  return fd;
}

Status RemoveProcessCgroup(int parent, const std::string& name) {
  if (::unlinkat(parent, name.c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT) {
    return ErrnoError("rmdir cgroup {}", name);
  }
  return Ok();
}

Result<std::vector<pid_t>> ListProcs(int dir) {
  UniqueFd fd(::openat(dir, "cgroup.procs", O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoError("open cgroup.procs");
  auto text = ReadFd(fd.get(), "cgroup.procs");
  if (!text.ok()) return std::move(text).error();
  std::vector<pid_t> pids;
  const char* p = text->data();
  const char* end = p + text->size();
  while (p < end) {
    int v = 0;
    auto [next, ec] = std::from_chars(p, end, v);
    if (ec == std::errc() && v > 0) pids.push_back(v);
    p = next;
    while (p < end && (*p < '0' || *p > '9')) ++p;
  }
  return pids;
}

Result<uint64_t> ReadEventsKey(int events_fd, std::string_view key) {
  auto text = ReadFd(events_fd, "cgroup.events");
  if (!text.ok()) return std::move(text).error();
  auto v = KeyedValue(*text, key);
  if (!v) {
    return MakeError(ErrorCode::kUnavailable,
                     "cgroup.events has no '{}' line (the kernel is older than the feature)", key);
  }
  return *v;
}

Status WaitEventsKey(int dir, std::string_view key, uint64_t want, Deadline deadline) {
  UniqueFd fd(::openat(dir, "cgroup.events", O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoError("open cgroup.events");
  for (;;) {
    auto v = ReadEventsKey(fd.get(), key);  // re-arms POLLPRI before we look
    if (!v.ok()) return std::move(v).error();
    if (*v == want) return Ok();
    int ms = MsUntil(deadline);
    if (ms == 0) {
      return MakeError(ErrorCode::kUnavailable, "cgroup.events still says '{} {}', not {}", key,
                       *v, want);
    }
    struct pollfd p = {fd.get(), POLLPRI, 0};
    if (::poll(&p, 1, ms) < 0 && errno != EINTR) return ErrnoError("poll cgroup.events");
  }
}

Status KillCgroup(int dir, Deadline deadline) {
  Status killed = WriteAt(dir, "cgroup.kill", "1");
  if (killed.ok() || killed.error().sys_errno != ENOENT) return killed;
  // Before Linux 5.14: freeze so that nothing forks between reading cgroup.procs and the kill,
  // SIGKILL what is listed (fatal signals reach frozen tasks), thaw so that they can die.
  SBX_TRY(SetFrozen(dir, true, deadline));
  auto pids = ListProcs(dir);
  for (pid_t pid : pids.ok() ? *pids : std::vector<pid_t>{}) {
    UniqueFd pidfd(sys::PidfdOpen(pid));
    if (pidfd) (void)sys::PidfdSendSignal(pidfd.get(), SIGKILL);
  }
  Status thawed = SetFrozen(dir, false, deadline);
  if (!pids.ok()) return std::move(pids).error();
  return thawed;
}

Status SetFrozen(int dir, bool frozen, Deadline deadline) {
  SBX_TRY(WriteAt(dir, "cgroup.freeze", frozen ? "1" : "0"));
  return WaitEventsKey(dir, "frozen", frozen ? 1 : 0, deadline);
}

}  // namespace sbx::isolate::internal
