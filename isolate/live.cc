// Live processes (live.h): the LiveEngine and the Sandbox methods that use it, pause/resume and
// stats.
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "base/fd_passing.h"
#include "isolate/live_engine.h"
#include "isolate/proc_cgroup.h"
#include "isolate/sandbox.h"
#include "isolate/spawn_request.h"

namespace sbx::isolate {

const char* LiveEndReasonName(LiveEndReason r) {
  switch (r) {
    case LiveEndReason::kExited: return "exited";
    case LiveEndReason::kSignaled: return "signaled";
    case LiveEndReason::kTimedOut: return "timed_out";
    case LiveEndReason::kKilled: return "killed";
    case LiveEndReason::kSetupFailed: return "setup_failed";
  }
  return "killed";
}

namespace internal {
namespace {

using Clock = std::chrono::steady_clock;

// How long a request waits for the init's answer, and Release() for a killed tree to go.
constexpr auto kAnswerWait = std::chrono::seconds(30);
constexpr auto kReleaseWait = std::chrono::seconds(5);

// epoll data: an id and what the fd is.
enum Tag : uint64_t { kTagCtl = 1, kTagInit, kTagWake, kTagTimer, kTagEvents };
constexpr uint64_t Key(ProcessId id, Tag tag) { return (id << 4) | tag; }

uint64_t MsBetween(Clock::time_point a, Clock::time_point b) {
  return static_cast<uint64_t>(
      std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count()));
}

SetupError FromWire(const WireError& w) {
  SetupError s;
  s.stage.assign(w.stage, strnlen(w.stage, sizeof w.stage));
  s.sys_errno = w.sys_errno;
  std::string detail(w.message, strnlen(w.message, sizeof w.message));
  s.message = fmt::format("{}{}{}: {}", s.stage, detail.empty() ? "" : " ", detail,
                          std::strerror(w.sys_errno));
  if (s.stage == "execve" && w.sys_errno == ENOENT) {
    s.message += " (command not found inside the sandbox)";
  } else if (s.stage == "chdir") {
    s.message += " (the working directory does not exist inside the sandbox)";
  }
  return s;
}

Status SetNonBlocking(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return ErrnoError("fcntl(O_NONBLOCK)");
  return Ok();
}

}  // namespace

struct LiveEngine::Proc {
  enum class State { kStarting, kRunning, kExited, kDone };
  enum class Killer { kNone, kTimeout, kKill, kSandbox };
  ProcessId id = 0;
  std::string name;  // of its cgroup, "p<id>"
  UniqueFd cgroup;   // O_PATH
  UniqueFd events;   // its cgroup.events, watched once the tree is being killed
  UniqueFd timer;
  UniqueFd pty;      // our copy of the master, for Resize()
  UniqueFd done;     // eventfd
  UniqueFd exec_err;
  uint64_t timeout_ms = 0;
  pid_t pid = -1;
  State state = State::kStarting;
  Killer killer = Killer::kNone;
  Clock::time_point started, ended;
  std::optional<int> wait_status;
  int64_t rusage_cpu_us = 0;
  std::optional<SetupError> error;
  LiveProcessResult result;
};

struct LiveEngine::Pending {
  std::shared_ptr<Proc> proc;  // a spawn's
  bool answered = false;
  InitMsg msg{};
  UniqueFd fd;  // a pty master
};

Result<std::unique_ptr<LiveEngine>> LiveEngine::Create(const Borrowed& b) {
  std::unique_ptr<LiveEngine> e(new LiveEngine());
  e->b_ = b;
  e->ep_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!e->ep_) return ErrnoError("epoll_create1");
  e->wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!e->wake_) return ErrnoError("eventfd");
  for (auto [fd, tag] : {std::pair{b.ctl, kTagCtl}, std::pair{b.init_pidfd, kTagInit},
                         std::pair{e->wake_.get(), kTagWake}}) {
    struct epoll_event ev;
    std::memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.u64 = Key(0, tag);
    if (::epoll_ctl(e->ep_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return ErrnoError("epoll_ctl");
  }
  e->thread_ = std::thread([raw = e.get()] { raw->Loop(); });
  return e;
}

LiveEngine::~LiveEngine() { Stop(); }

void LiveEngine::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  uint64_t one = 1;
  ssize_t r = ::write(wake_.get(), &one, sizeof one);
  (void)r;
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mu_);
  InitGone();
}

bool LiveEngine::dead() {
  std::lock_guard lock(mu_);
  return dead_ || stopping_;
}

void LiveEngine::Watch(int fd, uint32_t events, uint64_t tag) {
  struct epoll_event ev;
  std::memset(&ev, 0, sizeof ev);
  ev.events = events;
  ev.data.u64 = tag;
  if (::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) < 0 && errno == EEXIST) {
    ::epoll_ctl(ep_.get(), EPOLL_CTL_MOD, fd, &ev);
  }
}

void LiveEngine::Unwatch(int fd) {
  if (fd >= 0) ::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

void LiveEngine::Loop() {
  for (;;) {
    struct epoll_event evs[16];
    int n = ::epoll_wait(ep_.get(), evs, 16, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::lock_guard lock(mu_);
      InitGone();
      return;
    }
    std::lock_guard lock(mu_);
    for (int i = 0; i < n; ++i) {
      const uint64_t key = evs[i].data.u64;
      const ProcessId id = key >> 4;
      switch (static_cast<Tag>(key & 0xf)) {
        case kTagWake: {
          uint64_t v;
          ssize_t r = ::read(wake_.get(), &v, sizeof v);
          (void)r;
          if (stopping_) return;
          break;
        }
        case kTagCtl: DrainControl(); break;
        case kTagInit:
          // The init has exited: the kernel has killed everything in its pid namespace. What
          // it wrote before is still in the socket.
          DrainControl();
          InitGone();
          break;
        case kTagTimer: OnTimer(id); break;
        case kTagEvents:
          if (auto it = procs_.find(id); it != procs_.end()) CheckTree(*it->second);
          break;
      }
    }
  }
}

void LiveEngine::DrainControl() {
  if (dead_) return;
  for (;;) {
    InitMsg m;
    std::memset(&m, 0, sizeof m);
    int fds[kMaxPassedFds];
    size_t nfds = 0;
    bool truncated = false;
    ssize_t r = RecvWithFds(b_.ctl, &m, sizeof m, fds, &nfds, &truncated, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (r <= 0) {
      InitGone();
      return;
    }
    UniqueFd fd(nfds > 0 ? fds[0] : -1);
    for (size_t i = 1; i < nfds; ++i) ::close(fds[i]);
    if (r != static_cast<ssize_t>(sizeof m)) continue;
    switch (m.type) {
      case InitMsg::kStarted:
      case InitMsg::kSpawnFailed:
      case InitMsg::kSignalDone: {
        if (pending_.empty()) break;  // nobody asked: an init bug; ignore
        std::shared_ptr<Pending> p = std::move(pending_.front());
        pending_.pop_front();
        p->answered = true;
        p->msg = m;
        p->fd = std::move(fd);
        if (m.type == InitMsg::kStarted && p->proc) {
          Proc& proc = *p->proc;
          proc.pid = m.pid;
          proc.state = Proc::State::kRunning;
          if (proc.timer) {
            struct itimerspec its;
            std::memset(&its, 0, sizeof its);
            its.it_value.tv_sec = static_cast<time_t>(proc.timeout_ms / 1000);
            its.it_value.tv_nsec = static_cast<long>((proc.timeout_ms % 1000) * 1'000'000);
            ::timerfd_settime(proc.timer.get(), 0, &its, nullptr);
            Watch(proc.timer.get(), EPOLLIN, Key(proc.id, kTagTimer));
          }
        }
        cv_.notify_all();
        break;
      }
      case InitMsg::kExited: OnExited(m); break;
      default: break;
    }
  }
}

void LiveEngine::OnExited(const InitMsg& m) {
  for (auto& [id, p] : procs_) {
    if (p->state != Proc::State::kRunning || p->pid != m.pid) continue;
    p->wait_status = m.status;
    p->rusage_cpu_us = m.utime_us + m.stime_us;
    p->ended = Clock::now();
    p->state = Proc::State::kExited;
    if (p->timer) {
      Unwatch(p->timer.get());
      p->timer.reset();
    }
    // The error pipe's write end died with the process: whatever it reported is there.
    if (p->exec_err) {
      WireError w;
      if (::read(p->exec_err.get(), &w, sizeof w) == static_cast<ssize_t>(sizeof w)) {
        p->error = FromWire(w);
      }
      p->exec_err.reset();
    }
    if (p->killer == Proc::Killer::kNone) {
      Finish(*p);
    } else {
      CheckTree(*p);  // killed: done once the whole tree has gone
    }
    return;
  }
  // Not ours (released meanwhile): nothing to report.
}

void LiveEngine::OnTimer(ProcessId id) {
  auto it = procs_.find(id);
  if (it == procs_.end()) return;
  Proc& p = *it->second;
  if (p.timer) {
    uint64_t v;
    ssize_t r = ::read(p.timer.get(), &v, sizeof v);
    (void)r;
    Unwatch(p.timer.get());
    p.timer.reset();
  }
  if (p.state != Proc::State::kRunning || p.killer != Proc::Killer::kNone) return;
  p.killer = Proc::Killer::kTimeout;
  KillTree(p);
}

void LiveEngine::KillTree(Proc& p) {
  Status st = KillCgroup(p.cgroup.get(), Clock::now() + kReleaseWait);
  if (!st.ok()) {
    fmt::print(stderr, "sandbox {}: killing process {}'s cgroup: {}\n", b_.sandbox_id, p.id,
               st.error().ToString());
  }
  if (!p.events) {
    p.events.reset(::openat(p.cgroup.get(), "cgroup.events", O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    // kernfs reports a change as EPOLLPRI (with EPOLLERR), until the file is read again.
    if (p.events) Watch(p.events.get(), EPOLLPRI, Key(p.id, kTagEvents));
  }
  CheckTree(p);
}

void LiveEngine::CheckTree(Proc& p) {
  if (p.state != Proc::State::kExited) {
    if (p.events) (void)ReadEventsKey(p.events.get(), "populated");  // re-arm
    return;
  }
  if (p.events) {
    auto populated = ReadEventsKey(p.events.get(), "populated");
    if (populated.ok() && *populated != 0) return;  // more to come
  }
  Finish(p);
}

void LiveEngine::Finish(Proc& p) {
  if (p.state == Proc::State::kDone) return;
  if (p.events) {
    Unwatch(p.events.get());
    p.events.reset();
  }
  if (p.timer) {
    Unwatch(p.timer.get());
    p.timer.reset();
  }
  LiveProcessResult& r = p.result;
  if (p.ended == Clock::time_point{}) p.ended = Clock::now();
  r.wall_ms = MsBetween(p.started, p.ended);
  r.cpu_ms = static_cast<uint64_t>(std::max<int64_t>(0, p.rusage_cpu_us)) / 1000;
  if (UniqueFd stat{::openat(p.cgroup.get(), "cpu.stat", O_RDONLY | O_CLOEXEC | O_NOFOLLOW)}) {
    char buf[512];
    ssize_t n = ::pread(stat.get(), buf, sizeof buf - 1, 0);
    if (n > 0) {
      buf[n] = '\0';
      unsigned long long usec = 0;
      if (std::sscanf(buf, "usage_usec %llu", &usec) == 1) r.cpu_ms = usec / 1000;
    }
  }
  r.error = p.error;
  const int st = p.wait_status.value_or(SIGKILL);  // no status: the sandbox took it
  r.exit_code.reset();
  r.signal.reset();
  if (p.error) {
    r.reason = LiveEndReason::kSetupFailed;
    r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 127;
  } else if (WIFSIGNALED(st) && p.killer == Proc::Killer::kTimeout) {
    r.reason = LiveEndReason::kTimedOut;
    r.signal = WTERMSIG(st);
  } else if (WIFSIGNALED(st) && p.killer != Proc::Killer::kNone) {
    r.reason = LiveEndReason::kKilled;
    r.signal = WTERMSIG(st);
  } else if (WIFSIGNALED(st)) {
    r.reason = LiveEndReason::kSignaled;
    r.signal = WTERMSIG(st);
  } else {
    // Exited on its own, a kill that came too late for it included.
    r.reason = LiveEndReason::kExited;
    r.exit_code = WEXITSTATUS(st);
  }
  p.state = Proc::State::kDone;
  uint64_t one = 1;
  ssize_t w = ::write(p.done.get(), &one, sizeof one);
  (void)w;
  cv_.notify_all();
}

void LiveEngine::InitGone() {
  if (!dead_) {
    dead_ = true;
    Unwatch(b_.ctl);
    Unwatch(b_.init_pidfd);
  }
  for (auto& p : pending_) p->answered = false;
  pending_.clear();
  for (auto& [id, p] : procs_) {
    if (p->state == Proc::State::kDone) continue;
    // Its pid namespace is gone, and every process in it.
    if (p->killer == Proc::Killer::kNone) p->killer = Proc::Killer::kSandbox;
    if (!p->wait_status) p->wait_status = SIGKILL;
    Finish(*p);
  }
  cv_.notify_all();
}

std::shared_ptr<LiveEngine::Proc> LiveEngine::Find(ProcessId id) {
  auto it = procs_.find(id);
  return it == procs_.end() ? nullptr : it->second;
}

Status LiveEngine::Request(const std::string& msg, const int* fds, size_t nfds, int cgroup_fd,
                           const std::shared_ptr<Pending>& pending) {
  {
    std::lock_guard send(send_mu_);
    {
      std::lock_guard lock(mu_);
      if (dead_ || stopping_) {
        return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} has ended", b_.sandbox_id);
      }
      pending_.push_back(pending);
    }
    // The request and its cgroup's message go out back to back (send_mu_): the init reads
    // them as one.
    ssize_t r = SendWithFds(b_.ctl, msg.data(), msg.size(), fds, nfds);
    if (r >= 0 && cgroup_fd >= 0) {
      SpawnHeader c{kCgroupMagic, 0, 0, 0};
      r = SendWithFds(b_.ctl, &c, sizeof c, &cgroup_fd, 1);
    }
    if (r < 0) {
      Error e = ErrnoError("send a request to sandbox {}", b_.sandbox_id);
      std::lock_guard lock(mu_);
      std::erase(pending_, pending);
      return e;
    }
  }
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, kAnswerWait, [&] { return pending->answered || dead_ || stopping_; })) {
    return MakeError(ErrorCode::kUnavailable, "sandbox {}: the init did not answer in {} s",
                     b_.sandbox_id, kAnswerWait.count());
  }
  if (!pending->answered) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} has ended", b_.sandbox_id);
  }
  return Ok();
}

Result<LiveProcess> LiveEngine::Start(const LiveProcessSpec& spec,
                                      const std::vector<std::string>& env) {
  const bool pty = spec.pty.has_value();
  if (pty && (spec.in.kind != LiveStdio::Kind::kNull || spec.out.kind != LiveStdio::Kind::kNull ||
              spec.err.kind != LiveStdio::Kind::kNull)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "a process on a pty has the terminal as stdin, stdout and stderr; leave "
                     "in, out and err unset");
  }
  if (pty && (spec.pty->cols == 0 || spec.pty->rows == 0)) {
    return MakeError(ErrorCode::kInvalidArgument, "a pty needs at least 1 column and 1 row");
  }
  for (const LiveStdio* s : {&spec.in, &spec.out, &spec.err}) {
    if (s->kind == LiveStdio::Kind::kFd && s->fd < 0) {
      return MakeError(ErrorCode::kInvalidArgument, "LiveStdio::Fd needs an open fd, not {}",
                       s->fd);
    }
  }
  uint32_t flags = kSpawnIntoCgroup | (pty ? kSpawnPty : 0);
  auto request = EncodeSpawnRequest(spec.argv, env, spec.cwd, flags, pty ? spec.pty->cols : 0,
                                    pty ? spec.pty->rows : 0);
  if (!request.ok()) return std::move(request).error();

  auto proc = std::make_shared<Proc>();
  {
    std::lock_guard lock(mu_);
    if (dead_ || stopping_) {
      return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} has ended", b_.sandbox_id);
    }
    proc->id = next_id_++;
  }
  proc->name = fmt::format("p{}", proc->id);
  proc->timeout_ms = spec.timeout_ms;
  auto cg = MakeProcessCgroup(b_.cgroup, proc->name, b_.host_uid, b_.host_gid);
  if (!cg.ok()) return WithContext(std::move(cg).error(), "sandbox " + b_.sandbox_id);
  proc->cgroup = std::move(*cg);
  bool keep_cgroup = false;
  struct RemoveOnError {
    LiveEngine* e;
    Proc* p;
    bool* keep;
    ~RemoveOnError() {
      if (!*keep) (void)RemoveProcessCgroup(e->b_.cgroup, p->name);
    }
  } remove_on_error{this, proc.get(), &keep_cgroup};

  LiveProcess out;
  out.id = proc->id;
  // The child's ends, closed when Start() returns (the init holds its own copies by then).
  std::vector<UniqueFd> child_ends;
  int send_fds[4];
  size_t nfds = 0;
  if (!pty) {
    auto stdio = [&](const LiveStdio& s, bool input, UniqueFd* caller_end) -> Result<int> {
      switch (s.kind) {
        case LiveStdio::Kind::kNull: {
          UniqueFd null(::open("/dev/null", (input ? O_RDONLY : O_WRONLY) | O_CLOEXEC));
          if (!null) return ErrnoError("open /dev/null");
          int fd = null.get();
          child_ends.push_back(std::move(null));
          return fd;
        }
        case LiveStdio::Kind::kFd: return s.fd;
        case LiveStdio::Kind::kPipe: {
          int p[2];
          if (::pipe2(p, O_CLOEXEC) < 0) return ErrnoError("pipe2");
          UniqueFd r(p[0]), w(p[1]);
          *caller_end = input ? std::move(w) : std::move(r);
          SBX_TRY(SetNonBlocking(caller_end->get()));
          int fd = input ? r.get() : w.get();
          child_ends.push_back(input ? std::move(r) : std::move(w));
          return fd;
        }
      }
      return MakeError(ErrorCode::kInvalidArgument, "unknown stdio kind");
    };
    auto in = stdio(spec.in, true, &out.in);
    if (!in.ok()) return std::move(in).error();
    auto o = stdio(spec.out, false, &out.out);
    if (!o.ok()) return std::move(o).error();
    auto e = stdio(spec.err, false, &out.err);
    if (!e.ok()) return std::move(e).error();
    send_fds[0] = *in;
    send_fds[1] = *o;
    send_fds[2] = *e;
    nfds = 3;
  }
  int xp[2];
  if (::pipe2(xp, O_CLOEXEC | O_DIRECT) < 0) return ErrnoError("pipe2");
  proc->exec_err.reset(xp[0]);
  SBX_TRY(SetNonBlocking(xp[0]));
  child_ends.emplace_back(xp[1]);
  send_fds[nfds++] = xp[1];

  proc->done.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!proc->done) return ErrnoError("eventfd");
  out.done.reset(::fcntl(proc->done.get(), F_DUPFD_CLOEXEC, 0));
  if (!out.done) return ErrnoError("dup");
  if (spec.timeout_ms > 0) {
    proc->timer.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!proc->timer) return ErrnoError("timerfd_create");
  }
  proc->started = Clock::now();
  {
    std::lock_guard lock(mu_);
    procs_[proc->id] = proc;
  }
  auto pending = std::make_shared<Pending>();
  pending->proc = proc;
  Status sent = Request(*request, send_fds, nfds, proc->cgroup.get(), pending);
  child_ends.clear();
  std::unique_lock lock(mu_);
  if (!sent.ok() || pending->msg.type != InitMsg::kStarted) {
    if (!sent.ok() && sent.error().code == ErrorCode::kUnavailable) {
      keep_cgroup = true;  // the answer may still come: the monitor owns it now
      return std::move(sent).error();
    }
    procs_.erase(proc->id);
    if (proc->timer) Unwatch(proc->timer.get());
    if (!sent.ok()) return std::move(sent).error();
    const int e = pending->msg.status;
    if (e == EAGAIN) {
      return MakeError(ErrorCode::kResourceExhausted,
                       "sandbox {} already has 64 processes of its init running; wait for one "
                       "to end",
                       b_.sandbox_id);
    }
    Error err = ErrnoError("sandbox {}: the init could not start the process", b_.sandbox_id);
    err.sys_errno = e;
    err.code = (e == EPERM || e == EACCES) ? ErrorCode::kPermissionDenied : ErrorCode::kInternal;
    err.message = fmt::format("{}: {}{}", err.message, std::strerror(e),
                              e == EACCES || e == EPERM
                                  ? " (clone3 into the process's cgroup was refused: the "
                                    "sandbox's cgroup.procs must belong to its host uid)"
                                  : "");
    return err;
  }
  keep_cgroup = true;
  out.pid = proc->pid;
  if (pty) {
    proc->pty = std::move(pending->fd);
    if (!proc->pty) {
      return MakeError(ErrorCode::kInternal, "sandbox {}: the init sent no terminal",
                       b_.sandbox_id);
    }
    out.pty.reset(::fcntl(proc->pty.get(), F_DUPFD_CLOEXEC, 0));
    if (!out.pty) return ErrnoError("dup");
    SBX_TRY(SetNonBlocking(out.pty.get()));
  }
  return out;
}

Status LiveEngine::Signal(ProcessId id, int sig, bool paused) {
  if (sig < 1 || sig > 64) {
    return MakeError(ErrorCode::kInvalidArgument, "signal {} is not in 1..64", sig);
  }
  pid_t pid;
  {
    std::lock_guard lock(mu_);
    auto p = Find(id);
    if (!p) return MakeError(ErrorCode::kNotFound, "no process {} in sandbox {}", id, b_.sandbox_id);
    if (p->state != Proc::State::kRunning) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "process {} in sandbox {} has ended; Kill() takes what it left", id,
                       b_.sandbox_id);
    }
    if (paused) {
      return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is paused; resume it first",
                       b_.sandbox_id);
    }
    pid = p->pid;
  }
  SpawnHeader h{kSignalMagic, static_cast<uint32_t>(pid), static_cast<uint32_t>(sig), 0};
  std::string msg(reinterpret_cast<const char*>(&h), sizeof h);
  auto pending = std::make_shared<Pending>();
  SBX_TRY(Request(msg, nullptr, 0, -1, pending));
  const int e = pending->msg.status;
  if (e == ESRCH) {
    return MakeError(ErrorCode::kFailedPrecondition, "process {} in sandbox {} has ended", id,
                     b_.sandbox_id);
  }
  if (e != 0) {
    Error err = ErrnoError("signal {} to process {}", sig, id);
    err.sys_errno = e;
    err.message += std::string(": ") + std::strerror(e);
    return err;
  }
  return Ok();
}

Status LiveEngine::Kill(ProcessId id) {
  std::lock_guard lock(mu_);
  auto p = Find(id);
  if (!p) return MakeError(ErrorCode::kNotFound, "no process {} in sandbox {}", id, b_.sandbox_id);
  if (stopping_) return Ok();  // the sandbox was destroyed: nothing of it is left
  if (p->state == Proc::State::kDone) {
    return KillCgroup(p->cgroup.get(), Clock::now() + kReleaseWait);  // what it left
  }
  if (p->killer == Proc::Killer::kNone) p->killer = Proc::Killer::kKill;
  KillTree(*p);
  return Ok();
}

Status LiveEngine::Resize(ProcessId id, PtySize size) {
  if (size.cols == 0 || size.rows == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "a terminal needs at least 1 column and 1 row");
  }
  std::lock_guard lock(mu_);
  auto p = Find(id);
  if (!p) return MakeError(ErrorCode::kNotFound, "no process {} in sandbox {}", id, b_.sandbox_id);
  if (!p->pty) {
    return MakeError(ErrorCode::kFailedPrecondition, "process {} has no terminal", id);
  }
  if (p->state == Proc::State::kDone) {
    return MakeError(ErrorCode::kFailedPrecondition, "process {} has ended", id);
  }
  struct winsize ws;
  std::memset(&ws, 0, sizeof ws);
  ws.ws_col = size.cols;
  ws.ws_row = size.rows;
  if (::ioctl(p->pty.get(), TIOCSWINSZ, &ws) < 0) return ErrnoError("TIOCSWINSZ");
  return Ok();
}

Result<LiveProcessResult> LiveEngine::ResultOf(ProcessId id) {
  std::lock_guard lock(mu_);
  auto p = Find(id);
  if (!p) return MakeError(ErrorCode::kNotFound, "no process {} in sandbox {}", id, b_.sandbox_id);
  if (p->state != Proc::State::kDone) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "process {} is still running; wait on its done fd", id);
  }
  return p->result;
}

Result<LiveProcessResult> LiveEngine::Wait(ProcessId id, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  auto p = Find(id);
  if (!p) return MakeError(ErrorCode::kNotFound, "no process {} in sandbox {}", id, b_.sandbox_id);
  if (!cv_.wait_for(lock, timeout, [&] { return p->state == Proc::State::kDone; })) {
    return MakeError(ErrorCode::kUnavailable, "process {} still runs after {} ms", id,
                     timeout.count());
  }
  return p->result;
}

Result<std::vector<pid_t>> LiveEngine::HostPids(ProcessId id) {
  std::lock_guard lock(mu_);
  auto p = Find(id);
  if (!p) return MakeError(ErrorCode::kNotFound, "no process {} in sandbox {}", id, b_.sandbox_id);
  if (stopping_) return std::vector<pid_t>{};
  return ListProcs(p->cgroup.get());
}

uint64_t LiveEngine::CountProcesses() {
  std::lock_guard lock(mu_);
  uint64_t n = 0;
  for (auto& [id, p] : procs_) {
    if (auto pids = ListProcs(p->cgroup.get()); pids.ok()) n += pids->size();
  }
  return n;
}

Status LiveEngine::Release(ProcessId id) {
  std::shared_ptr<Proc> p;
  {
    std::lock_guard lock(mu_);
    p = Find(id);
    if (!p) return MakeError(ErrorCode::kNotFound, "no process {} in sandbox {}", id, b_.sandbox_id);
    procs_.erase(id);
    if (stopping_) return Ok();  // destroyed with the sandbox's cgroup
    for (UniqueFd* fd : {&p->timer, &p->events}) {
      Unwatch(fd->get());
      fd->reset();
    }
    if (p->state != Proc::State::kDone) {
      uint64_t one = 1;
      ssize_t w = ::write(p->done.get(), &one, sizeof one);
      (void)w;
    }
  }
  const auto deadline = Clock::now() + kReleaseWait;
  auto pids = ListProcs(p->cgroup.get());
  if (!pids.ok() || !pids->empty()) {
    SBX_TRY(KillCgroup(p->cgroup.get(), deadline));
    SBX_TRY(WaitEventsKey(p->cgroup.get(), "populated", 0, deadline));
  }
  return RemoveProcessCgroup(b_.cgroup, p->name);
}

}  // namespace internal

// ---- Sandbox -------------------------------------------------------------------------------

Sandbox::Sandbox() = default;

Status Sandbox::EnsureLive() {
  if (setup_error_) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} failed to set up: {}", id_,
                     setup_error_->message);
  }
  if (!alive_ || !ctl_) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is no longer running", id_);
  }
  if (notify_mode_ != seccomp::NotifyMode::kNone) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "sandbox {} has a notifying seccomp program (denial counting or learning), "
                     "which only Run() serves",
                     id_);
  }
  if (!cgroup_ || cgroup_->unified_dirfd() < 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "sandbox {} has no cgroup2 directory; live processes need the unified "
                     "hierarchy",
                     id_);
  }
  std::lock_guard lock(mode_mu_);
  if (run_active_) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is in a Run(); Start() waits "
                     "for none", id_);
  }
  if (live_) return Ok();
  SBX_TRY(internal::DelegateProcs(cgroup_->unified_dirfd(), host_uid_, host_gid_));
  internal::LiveEngine::Borrowed b{id_,       ctl_.get(), pidfd_.get(), cgroup_->unified_dirfd(),
                                   host_uid_, host_gid_};
  auto engine = internal::LiveEngine::Create(b);
  if (!engine.ok()) return std::move(engine).error();
  live_ = std::move(*engine);
  return Ok();
}

void Sandbox::StopLive() {
  std::lock_guard lock(mode_mu_);
  if (live_) live_->Stop();
}

Result<LiveProcess> Sandbox::Start(const LiveProcessSpec& spec) {
  SBX_TRY(EnsureLive());
  if (live_->dead()) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is no longer running", id_);
  }
  if (paused_) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is paused; resume it first", id_);
  }
  return live_->Start(spec, internal::WithDefaultEnv(spec.env, uid_, hostname_, spec.pty.has_value()));
}

namespace {
Error NoSuchProcess(ProcessId id, const std::string& sandbox) {
  return MakeError(ErrorCode::kNotFound, "no process {} in sandbox {}", id, sandbox);
}
}  // namespace

Status Sandbox::Signal(ProcessId id, int sig) {
  if (!live_) return NoSuchProcess(id, id_);
  return live_->Signal(id, sig, paused_);
}

Status Sandbox::Kill(ProcessId id) {
  if (!live_) return NoSuchProcess(id, id_);
  return live_->Kill(id);
}

Status Sandbox::Resize(ProcessId id, PtySize size) {
  if (!live_) return NoSuchProcess(id, id_);
  return live_->Resize(id, size);
}

Result<LiveProcessResult> Sandbox::ResultOf(ProcessId id) const {
  if (!live_) return NoSuchProcess(id, id_);
  return live_->ResultOf(id);
}

Result<LiveProcessResult> Sandbox::Wait(ProcessId id, std::chrono::milliseconds timeout) {
  if (!live_) return NoSuchProcess(id, id_);
  return live_->Wait(id, timeout);
}

Result<std::vector<pid_t>> Sandbox::HostPids(ProcessId id) {
  if (!live_) return NoSuchProcess(id, id_);
  return live_->HostPids(id);
}

Status Sandbox::Release(ProcessId id) {
  if (!live_) return NoSuchProcess(id, id_);
  return live_->Release(id);
}

Status Sandbox::Pause(std::chrono::milliseconds timeout) {
  if (!cgroup_ || cgroup_->unified_dirfd() < 0) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} has no cgroup2 directory", id_);
  }
  std::lock_guard lock(mode_mu_);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Status st = internal::SetFrozen(cgroup_->unified_dirfd(), true, deadline);
  if (!st.ok()) {
    (void)internal::SetFrozen(cgroup_->unified_dirfd(), false, deadline + timeout);
    return WithContext(std::move(st).error(), "pausing sandbox " + id_);
  }
  paused_ = true;
  return Ok();
}

Status Sandbox::Resume(std::chrono::milliseconds timeout) {
  if (!cgroup_ || cgroup_->unified_dirfd() < 0) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} has no cgroup2 directory", id_);
  }
  std::lock_guard lock(mode_mu_);
  Status st = internal::SetFrozen(cgroup_->unified_dirfd(), false,
                                  std::chrono::steady_clock::now() + timeout);
  if (!st.ok()) return WithContext(std::move(st).error(), "resuming sandbox " + id_);
  paused_ = false;
  return Ok();
}

Result<SandboxStats> Sandbox::Stats() {
  if (!cgroup_) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} was destroyed", id_);
  }
  SandboxStats s;
  auto u = cgroup_->ReadUsage();
  if (!u.ok()) return WithContext(std::move(u).error(), "stats of sandbox " + id_);
  s.cpu_usec = u->cpu_usec;
  const bool hybrid = cgroup_->version() == "hybrid";
  const std::vector<std::string> limited = cgroup_->controllers();
  auto has = [&](const char* c) {
    return std::find(limited.begin(), limited.end(), c) != limited.end();
  };
  auto why = [&](const char* what, const char* controller) {
    return hybrid && !has(controller)
               ? fmt::format("{}: this hybrid host accounts it in the v1 '{}' hierarchy, which "
                             "the sandbox joins only when it sets that limit",
                             what, controller)
               : fmt::format("{}: the '{}' controller reports nothing for this cgroup (not "
                             "enabled, or the kernel is older than the file)",
                             what, controller);
  };
  s.memory_current_bytes = u->memory_current_bytes;
  if (!s.memory_current_bytes) s.unavailable.push_back(why("memory_current", "memory"));
  if (u->memory_peak_bytes > 0) {
    s.memory_peak_bytes = u->memory_peak_bytes;
  } else {
    s.unavailable.push_back(why("memory_peak", "memory"));
  }
  s.pids_current = u->pids_current;
  if (!s.pids_current) s.unavailable.push_back(why("pids_current", "pids"));
  s.io_read_bytes = u->io_read_bytes;
  s.io_write_bytes = u->io_write_bytes;
  if (!s.io_read_bytes) {
    s.unavailable.push_back(
        hybrid ? std::string("io: this hybrid host accounts block I/O in the v1 'blkio' "
                             "hierarchy, which sandboxes do not join")
               : std::string("io: the 'io' controller is not enabled for this cgroup (the host "
                             "does not offer it in cgroup.subtree_control)"));
  }
  const int dir = cgroup_->unified_dirfd();
  if (auto pids = internal::ListProcs(dir); pids.ok()) s.processes = pids->size();
  if (live_) s.processes += live_->CountProcesses();
  if (UniqueFd ev{::openat(dir, "cgroup.events", O_RDONLY | O_CLOEXEC)}) {
    if (auto frozen = internal::ReadEventsKey(ev.get(), "frozen"); frozen.ok()) {
      s.paused = *frozen != 0;
    }
  }
  return s;
}

}  // namespace sbx::isolate
