#include "cgroup/common.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <climits>

#include "base/syscalls.h"

namespace sbx::cgroup::internal {

namespace {

// Bounds on the loops below; each pass or retry waits on an event, never on a timer alone.
constexpr int kMaxKillPasses = 64;
constexpr int kMaxTreeDepth = 32;
constexpr int kMaxBusyRetries = 5;
constexpr std::chrono::milliseconds kFreezeWait{1000};
constexpr std::chrono::milliseconds kBusyWait{20};

int MsUntil(Clock::time_point deadline) {
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, INT_MAX));
}

std::optional<uint64_t> ParseUint(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// Appends the pids in cgroup.procs of `dir` and of every cgroup below it.
Status ReadProcsTree(CgroupFs& fs, const std::string& dir, int depth, std::vector<pid_t>* out) {
  if (depth > kMaxTreeDepth) {
    return MakeError(ErrorCode::kInternal, "cgroup {} is nested more than {} levels deep", dir,
                     kMaxTreeDepth);
  }
  auto procs = fs.Read(JoinPath(dir, "cgroup.procs"));
  if (!procs.ok()) {
    if (procs.error().code == ErrorCode::kNotFound) return Ok();  // removed meanwhile
    return std::move(procs).error();
  }
  for (const std::string& w : Words(*procs)) {
    auto pid = ParseUint(w);
    if (pid && *pid > 0 && *pid <= INT_MAX) out->push_back(static_cast<pid_t>(*pid));
  }
  auto subdirs = fs.ListSubdirs(dir);
  if (!subdirs.ok()) {
    if (subdirs.error().code == ErrorCode::kNotFound) return Ok();
    return std::move(subdirs).error();
  }
  for (const std::string& sub : *subdirs) {
    SBX_TRY(ReadProcsTree(fs, JoinPath(dir, sub), depth + 1, out));
  }
  return Ok();
}

// Waits until every pidfd is readable, which it becomes once its process has exited
// (pidfd_open(2)).
Status WaitForExit(std::vector<UniqueFd>& pidfds, Clock::time_point deadline,
                   const std::string& dir) {
  std::vector<struct pollfd> fds;
  for (const UniqueFd& fd : pidfds) fds.push_back({fd.get(), POLLIN, 0});
  while (!fds.empty()) {
    int ms = MsUntil(deadline);
    if (ms == 0) {
      return MakeError(ErrorCode::kInternal,
                       "{} process(es) of cgroup {} did not exit after SIGKILL in time", fds.size(),
                       dir);
    }
    int r = ::poll(fds.data(), fds.size(), ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("poll on pidfds of cgroup {}", dir);
    }
    std::erase_if(fds, [](const struct pollfd& p) { return p.revents != 0; });
  }
  return Ok();
}

// Waits up to `timeout` for the cgroup.events file at `path` to change. For the rare EBUSY from
// rmdir on v1, where there is no event of its own to wait on.
void WaitForEventsChange(CgroupFs& fs, const std::string& path, std::chrono::milliseconds timeout,
                         Clock::time_point deadline) {
  auto fd = fs.Open(path, O_RDONLY);
  if (!fd.ok()) return;
  char buf[256];
  if (::pread(fd->get(), buf, sizeof buf, 0) < 0) return;  // arms the notification
  struct pollfd p = {fd->get(), POLLPRI, 0};
  (void)::poll(&p, 1, std::min(MsUntil(deadline), static_cast<int>(timeout.count())));
}

constexpr const char* kMadeAttr = "user.sandboxd.made";

std::vector<std::string> ReadMadeNote(const std::string& unified_parent) {
  char buf[4096];
  ssize_t n = ::getxattr(unified_parent.c_str(), kMadeAttr, buf, sizeof buf);
  std::vector<std::string> out;
  if (n <= 0) return out;
  std::string_view text(buf, static_cast<size_t>(n));
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    if (nl > pos) out.emplace_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

}  // namespace

Result<ParentLease> ParentLease::Acquire(CgroupFs& fs, const std::string& unified_parent) {
  for (int attempt = 0;; ++attempt) {
    bool made = false;
    Status m = fs.MakeDir(unified_parent);
    if (m.ok()) {
      made = true;
    } else if (m.error().code != ErrorCode::kAlreadyExists) {
      return WithContext(std::move(m).error(), "creating the sandboxes' parent cgroup");
    }
    auto fd = fs.Open(unified_parent, O_RDONLY | O_DIRECTORY);
    if (!fd.ok()) return std::move(fd).error();
    // Waits while a last user removes it (a few rmdirs), then checks that it is still there.
    while (::flock(fd->get(), LOCK_SH) < 0) {
      if (errno != EINTR) return ErrnoError("flock {}", unified_parent);
    }
    if (::faccessat(fd->get(), "cgroup.procs", F_OK, 0) == 0 || errno != ENOENT) {
      ParentLease lease(std::move(fd).value(), unified_parent);
      if (made) lease.NoteMade(unified_parent);
      return lease;
    }
    if (attempt == 10) {
      return MakeError(ErrorCode::kUnavailable,
                       "the parent cgroup {} keeps being removed by another sandboxd",
                       unified_parent);
    }
  }
}

void ParentLease::NoteMade(const std::string& dir) {
  made_.push_back(dir);
  // Best effort, and racy only between two drivers making different v1 parents at once: a lost
  // line leaves that directory in place, as before.
  std::string note;
  for (const std::string& d : ReadMadeNote(unified_)) note += d + "\n";
  note += dir + "\n";
  (void)::setxattr(unified_.c_str(), kMadeAttr, note.data(), note.size(), 0);
}

void ParentLease::Release(CgroupFs& fs, const std::vector<std::string>& dirs) {
  if (!fd_) return;
  // Straight from shared to exclusive: flock(2) converts, and a conversion that would wait
  // fails with EWOULDBLOCK under LOCK_NB; closing then drops whatever is held.
  if (::flock(fd_.get(), LOCK_EX | LOCK_NB) == 0) {
    std::vector<std::string> made = ReadMadeNote(unified_);
    made.insert(made.end(), made_.begin(), made_.end());
    for (const std::string& dir : dirs) {
      // Only the driver's own parent directories, whatever the note says.
      if (std::find(made.begin(), made.end(), dir) == made.end()) continue;
      (void)fs.RemoveDir(dir);  // EBUSY: not empty, stays
    }
  }
  fd_.reset();
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  std::string out(dir);
  if (!out.empty() && out.back() != '/') out.push_back('/');
  out.append(name);
  return out;
}

std::string DirName(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  size_t i = path.rfind('/');
  if (i == std::string_view::npos) return ".";
  if (i == 0) return "/";
  return std::string(path.substr(0, i));
}

Status ValidateParent(const std::string& parent) {
  if (parent.empty() || parent.front() == '/' || parent.size() > 1024) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "cgroup parent '{}' must be a non-empty relative path (e.g. \"sandboxd\")",
                     parent);
  }
  std::string_view rest = parent;
  while (!rest.empty()) {
    size_t i = rest.find('/');
    std::string_view c = rest.substr(0, i);
    if (c.empty() || c == "." || c == ".." ||
        c.find_first_of(std::string_view("\n\0", 2)) != std::string_view::npos) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "cgroup parent '{}' has an empty, '.', '..' or unprintable component",
                       parent);
    }
    if (i == std::string_view::npos) break;
    rest.remove_prefix(i + 1);
  }
  return Ok();
}

Status ValidateName(const std::string& name) {
  bool chars_ok = std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == ':' || c == '@';
  });
  if (name.empty() || name.size() > 200 || !chars_ok || name == "." || name == "..") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "cgroup name '{}' must be 1 to 200 characters of [A-Za-z0-9._:@-], not '.' "
                     "or '..'",
                     name);
  }
  return Ok();
}

std::vector<std::string> Words(std::string_view text) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = text.find_first_of(" \t\n", i);
    if (j == std::string_view::npos) j = text.size();
    if (j > i) out.emplace_back(text.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

std::optional<uint64_t> FindKeyedValue(std::string_view text, std::string_view key) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    size_t sp = line.find(' ');
    if (sp != std::string_view::npos && line.substr(0, sp) == key) {
      return ParseUint(line.substr(sp + 1));
    }
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return std::nullopt;
}

Result<uint64_t> ParseNumberFile(std::string_view text, const std::string& path) {
  auto v = ParseUint(text);
  if (!v) return MakeError(ErrorCode::kInternal, "{} does not hold a number: '{}'", path, text);
  return *v;
}

std::vector<std::string> LimitingControllers(const Limits& limits) {
  std::vector<std::string> out;
  if (limits.cpus) out.push_back("cpu");
  if (limits.memory_bytes) out.push_back("memory");
  if (limits.pids) out.push_back("pids");
  return out;
}

Status WaitForEvent(CgroupFs& fs, const std::string& events_path, std::string_view key,
                    uint64_t want, Clock::time_point deadline) {
  auto fd = fs.Open(events_path, O_RDONLY);
  if (!fd.ok()) return std::move(fd).error();
  for (;;) {
    // Reading arms the notification: kernfs_generic_poll() reports POLLPRI once the file's event
    // count differs from the count at this open file's last read, so a change that lands between
    // this read and poll() is not lost.
    char buf[4096];
    ssize_t n = ::pread(fd->get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("read {}", events_path);
    }
    auto value = FindKeyedValue(std::string_view(buf, static_cast<size_t>(n)), key);
    if (!value) {
      return MakeError(ErrorCode::kInternal, "{} has no '{}' line", events_path, key);
    }
    if (*value == want) return Ok();
    int ms = MsUntil(deadline);
    if (ms == 0) {
      return MakeError(ErrorCode::kInternal, "{} still reads '{} {}' (waited for '{} {}')",
                       events_path, key, *value, key, want);
    }
    struct pollfd p = {fd->get(), POLLPRI, 0};
    if (::poll(&p, 1, ms) < 0 && errno != EINTR) return ErrnoError("poll {}", events_path);
  }
}

Status KillListedProcesses(CgroupFs& fs, const std::string& dir, Clock::time_point deadline) {
  for (int pass = 0; pass < kMaxKillPasses; ++pass) {
    std::vector<pid_t> listed;
    SBX_TRY(ReadProcsTree(fs, dir, 0, &listed));
    if (listed.empty()) return Ok();
    // A pid read from cgroup.procs may exit and be reused before we signal it. Pin each process
    // with a pidfd, then read the list again: a pid still listed after its pidfd was opened
    // belongs to the pinned process (or that process is dead and the signal goes nowhere).
    std::vector<std::pair<pid_t, UniqueFd>> pinned;
    for (pid_t pid : listed) {
      int fd = sys::PidfdOpen(pid);
      if (fd >= 0) {
        pinned.emplace_back(pid, UniqueFd(fd));
      } else if (errno == ENOSYS) {
        ::kill(pid, SIGKILL);  // Linux < 5.3: no pidfds, accept the reuse race
      }
    }
    std::vector<pid_t> confirmed;
    SBX_TRY(ReadProcsTree(fs, dir, 0, &confirmed));
    std::vector<UniqueFd> signalled;
    for (auto& [pid, fd] : pinned) {
      if (std::find(confirmed.begin(), confirmed.end(), pid) == confirmed.end()) continue;
      if (sys::PidfdSendSignal(fd.get(), SIGKILL) == 0) {
        signalled.push_back(std::move(fd));
      } else if (errno != ESRCH) {
        return ErrnoError("SIGKILL pid {} of cgroup {}", pid, dir);
      }
    }
    SBX_TRY(WaitForExit(signalled, deadline, dir));
  }
  return MakeError(ErrorCode::kInternal, "processes kept appearing in cgroup {} through {} passes",
                   dir, kMaxKillPasses);
}

Status KillUnified(CgroupFs& fs, const std::string& dir, Clock::time_point deadline) {
  // cgroup.kill (Linux 5.14) SIGKILLs the whole subtree atomically with respect to fork.
  Status killed = fs.Write(JoinPath(dir, "cgroup.kill"), "1");
  if (killed.ok() || killed.error().code != ErrorCode::kNotFound) return killed;
  // Older kernel: freeze the subtree (cgroup.freeze, Linux 5.2) so nothing forks while we kill
  // what cgroup.procs lists, then thaw. Frozen tasks still die of SIGKILL
  // (Documentation/admin-guide/cgroup-v2.rst, "Core Interface Files", cgroup.freeze). Without a
  // freezer, KillListedProcesses' repeated passes catch what forks between reads.
  const std::string freeze = JoinPath(dir, "cgroup.freeze");
  bool frozen = fs.Write(freeze, "1").ok();
  if (frozen) {
    // Best effort: killing works on a cgroup that is still freezing, only less tidily.
    (void)WaitForEvent(fs, JoinPath(dir, "cgroup.events"), "frozen", 1,
                       std::min(deadline, Clock::now() + kFreezeWait));
  }
  killed = KillListedProcesses(fs, dir, deadline);
  if (frozen) {
    Status thawed = fs.Write(freeze, "0");
    if (killed.ok() && !thawed.ok() && thawed.error().code != ErrorCode::kNotFound) return thawed;
  }
  return killed;
}

Status RemoveCgroupTree(CgroupFs& fs, const std::string& dir) {
  std::vector<std::pair<std::string, int>> stack = {{dir, 0}};
  std::vector<std::string> order;  // parents before children; removed in reverse
  while (!stack.empty()) {
    auto [d, depth] = std::move(stack.back());
    stack.pop_back();
    if (depth > kMaxTreeDepth) {
      return MakeError(ErrorCode::kInternal, "cgroup {} is nested more than {} levels deep", dir,
                       kMaxTreeDepth);
    }
    auto subdirs = fs.ListSubdirs(d);
    if (!subdirs.ok()) {
      if (subdirs.error().code == ErrorCode::kNotFound) continue;
      return std::move(subdirs).error();
    }
    order.push_back(d);
    for (const std::string& s : *subdirs) stack.emplace_back(JoinPath(d, s), depth + 1);
  }
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Status r = fs.RemoveDir(*it);
    if (!r.ok() && r.error().code != ErrorCode::kNotFound) return r;
  }
  return Ok();
}

Status ApplyWrites(CgroupFs& fs, const std::vector<PlannedWrite>& writes,
                   const std::function<const std::string*(const std::string&)>& dir_for) {
  for (const PlannedWrite& w : writes) {
    const std::string* dir = dir_for(w.controller);
    if (dir == nullptr) {
      return MakeError(ErrorCode::kInternal, "no cgroup directory for controller '{}' ({})",
                       w.controller, w.file);
    }
    Status r = fs.Write(JoinPath(*dir, w.file), w.value);
    if (r.ok() || (w.optional && r.error().code == ErrorCode::kNotFound)) continue;
    return WithContext(std::move(r).error(), fmt::format("setting {} to {}", w.file, w.value));
  }
  return Ok();
}

CgroupBase::CgroupBase(CgroupFs* fs, std::string name, CgroupPaths paths, UniqueFd unified_fd,
                       std::vector<std::string> controllers, std::chrono::milliseconds timeout)
    : fs_(fs),
      name_(std::move(name)),
      paths_(std::move(paths)),
      unified_fd_(std::move(unified_fd)),
      controllers_(std::move(controllers)),
      timeout_(timeout) {}

Status CgroupBase::CheckNotDestroyed() const {
  if (destroyed_) {
    return MakeError(ErrorCode::kFailedPrecondition, "cgroup {} was destroyed", name_);
  }
  return Ok();
}

Status CgroupBase::Kill() {
  if (destroyed_) return Ok();
  auto deadline = Clock::now() + timeout_;
  Status first = KillUnified(*fs_, paths_.unified, deadline);
  // A process can sit in a v1 directory without being in the unified one (attached to v1 only,
  // or moved out of the unified cgroup); cgroup.kill does not reach it.
  for (const std::string& dir : paths_.v1) {
    Status r = KillListedProcesses(*fs_, dir, deadline);
    if (!r.ok() && first.ok()) first = std::move(r);
  }
  if (!first.ok()) return WithContext(std::move(first).error(), "killing cgroup " + name_);
  return Ok();
}

Status CgroupBase::RemoveV1Dir(const std::string& dir, Clock::time_point deadline) {
  for (int attempt = 0;; ++attempt) {
    Status r = RemoveCgroupTree(*fs_, dir);
    if (r.ok() || r.error().sys_errno != EBUSY || attempt == kMaxBusyRetries) return r;
    // EBUSY: a task is still attached to this v1 cgroup. Kill whatever it lists and wait for
    // that on pidfds; when it lists nothing (the task is exiting), wait briefly for the unified
    // cgroup.events to change.
    SBX_TRY(KillListedProcesses(*fs_, dir, deadline));
    WaitForEventsChange(*fs_, JoinPath(paths_.unified, "cgroup.events"), kBusyWait, deadline);
  }
}

Status CgroupBase::Destroy() {
  if (destroyed_) return Ok();
  auto deadline = Clock::now() + timeout_;
  Status killed = Kill();
  Status empty =
      WaitForEvent(*fs_, JoinPath(paths_.unified, "cgroup.events"), "populated", 0, deadline);
  // No cgroup.events means the directory is gone already; the removal below agrees.
  if (!empty.ok() && empty.error().code != ErrorCode::kNotFound) {
    Error e = WithContext(std::move(empty).error(), "destroying cgroup " + name_);
    if (!killed.ok()) e.message += "; killing failed: " + killed.error().ToString();
    return e;
  }
  // v1 directories first: the unified one tracks the sandbox until the end, so a failed
  // Destroy() can be retried with Kill() still reaching everything.
  for (const std::string& dir : paths_.v1) {
    Status r = RemoveV1Dir(dir, deadline);
    if (!r.ok()) return WithContext(std::move(r).error(), "destroying cgroup " + name_);
  }
  Status r = RemoveCgroupTree(*fs_, paths_.unified);
  if (!r.ok()) return WithContext(std::move(r).error(), "destroying cgroup " + name_);
  destroyed_ = true;
  unified_fd_.reset();
  return Ok();
}

}  // namespace sbx::cgroup::internal
