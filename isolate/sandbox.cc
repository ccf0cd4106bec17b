#include "isolate/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/capability.h>
#include <sys/epoll.h>
#include <linux/seccomp.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>
#include <cstring>
#include <memory>

#include "base/fd_passing.h"
#include "base/fs.h"
#include "base/syscalls.h"
#include "isolate/child.h"
#include "isolate/live_engine.h"
#include "isolate/mount_plan.h"
#include "isolate/net_ns.h"
#include "isolate/spawner.h"
#include "isolate/spawn_request.h"
#include "seccomp/simulate.h"

namespace sbx::isolate {

using internal::ChildPlan;
using internal::InitMsg;
using internal::WireError;

const char* EndReasonName(EndReason r) {
  switch (r) {
    case EndReason::kExited: return "exited";
    case EndReason::kSignaled: return "signaled";
    case EndReason::kOomKilled: return "oom_killed";
    case EndReason::kTimedOut: return "timed_out";
    case EndReason::kCancelled: return "cancelled";
    case EndReason::kSetupFailed: return "setup_failed";
  }
  return "setup_failed";
}

int ProcessResult::ShellExitCode() const {
  if (exit_code) return *exit_code;
  if (signal) return 128 + *signal;
  return 125;
}

std::string FormatIdMap(unsigned inside, unsigned host, unsigned count) {
  return fmt::format("{} {} {}\n", inside, host, count);
}

namespace {

constexpr unsigned kIdRange = 65536;

struct CapDeleter {
  void operator()(void* c) const { cap_free(c); }
};

Status MkdirAll(const std::string& path, mode_t mode) {
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i != path.size() && path[i] != '/') continue;
    std::string part = path.substr(0, i);
    if (::mkdir(part.c_str(), mode) < 0 && errno != EEXIST) return ErrnoError("mkdir {}", part);
  }
  return Ok();
}

bool ValidId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  }
  return true;
}

// What to do about a setup failure, by stage and errno.
std::string SetupHint(const std::string& stage, int e) {
  if (stage == "execve" && e == ENOENT) return "command not found inside the sandbox";
  if (stage == "execve" && e == EACCES) return "permission denied: not executable by the sandbox user";
  if (stage == "chdir") return "the working directory does not exist inside the sandbox";
  if (stage == "bind mount" && e == ENOENT) return "the bind source does not exist";
  if (stage == "bind mount point") {
    return "cannot create the mount point (inside a read-only host directory, or through a "
           "symlink)";
  }
  if (e == EPERM || e == EACCES) return "the host refused; run `sandboxd check`";
  return "";
}

SetupError ToSetupError(const WireError& w) {
  SetupError s;
  s.stage.assign(w.stage, strnlen(w.stage, sizeof w.stage));
  s.sys_errno = w.sys_errno;
  std::string detail(w.message, strnlen(w.message, sizeof w.message));
  std::string hint = SetupHint(s.stage, w.sys_errno);
  s.message = fmt::format("{}{}{}: {}", s.stage, detail.empty() ? "" : " ", detail,
                          std::strerror(w.sys_errno));
  if (!hint.empty()) s.message += " (" + hint + ")";
  return s;
}

uint64_t ElapsedMs(std::chrono::steady_clock::time_point since) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now() - since)
                                   .count());
}

}  // namespace

Result<std::unique_ptr<Sandbox>> Sandbox::Create(const SandboxSpec& spec, cgroup::Driver& cgroups,
                                                 const EngineOptions& options) {
  if (!ValidId(spec.id)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "sandbox id '{}' must be 1-64 characters of [A-Za-z0-9_-]", spec.id);
  }
  if (spec.uid >= kIdRange || spec.gid >= kIdRange) {
    return MakeError(ErrorCode::kInvalidArgument, "uid/gid must be below {}", kIdRange);
  }
  if (spec.host_id_base == 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "host_id_base 0 would map the sandbox's root to host root");
  }
  // The child resolves stage_dir as its user-namespace root (an unprivileged host uid), so
  // every component must be searchable.
  SBX_TRY(MkdirAll(options.stage_dir, 0755));
  auto mounts = PlanMounts(spec, options.stage_dir);
  if (!mounts.ok()) return std::move(mounts).error();
  // Each bind's source opened once, here: the child attaches what was opened.
  auto bind_trees = OpenBindSources(&*mounts);
  if (!bind_trees.ok()) return std::move(bind_trees).error();

  std::unique_ptr<Sandbox> sb(new Sandbox());
  sb->id_ = spec.id;
  sb->uid_ = spec.uid;
  sb->host_uid_ = spec.host_id_base + spec.uid;
  sb->host_gid_ = spec.host_id_base + spec.gid;

  ChildPlan plan;
  plan.stage_dir = options.stage_dir;
  plan.mounts = std::move(*mounts);
  plan.hostname = spec.hostname.empty() ? "sandbox" : spec.hostname;
  sb->hostname_ = plan.hostname;
  plan.uid = spec.uid;
  plan.gid = spec.gid;
  plan.read_only_root = spec.read_only_root;
  plan.rlimits.push_back({RLIMIT_CORE, {0, 0}});
  plan.rlimits.push_back({RLIMIT_NOFILE, {spec.max_open_files, spec.max_open_files}});
  if (spec.max_file_bytes > 0) {
    plan.rlimits.push_back({RLIMIT_FSIZE, {spec.max_file_bytes, spec.max_file_bytes}});
  }
  plan.seccomp = spec.seccomp ? &*spec.seccomp : nullptr;
  std::unique_ptr<void, CapDeleter> caps(cap_init());
  if (!caps) return ErrnoError("cap_init");
  plan.empty_caps = caps.get();

  auto cg = cgroups.Create(spec.id, spec.limits);
  if (!cg.ok()) return WithContext(std::move(cg).error(), "sandbox " + spec.id);
  sb->cgroup_ = std::move(*cg);

  int sync[2], err[2], ctl[2];
  if (::pipe2(sync, O_CLOEXEC) < 0) return ErrnoError("pipe2");
  UniqueFd sync_r(sync[0]), sync_w(sync[1]);
  if (::pipe2(err, O_CLOEXEC | O_DIRECT) < 0) return ErrnoError("pipe2");
  UniqueFd err_r(err[0]), err_w(err[1]);
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0) {
    return ErrnoError("socketpair");
  }
  UniqueFd ctl_parent(ctl[0]), ctl_child(ctl[1]);
  int sndbuf = 512 * 1024;
  if (::setsockopt(ctl[0], SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) < 0) {
    ::setsockopt(ctl[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  }
  plan.sync_fd = sync_r.get();
  plan.err_fd = err_w.get();
  plan.ctl_fd = ctl_child.get();

  const bool new_net = !spec.allow_host_network;
  // No CLONE_NEWCGROUP here: a cgroup namespace is rooted where the process is when it is made,
  // and on a hybrid host the child joins its v1 hierarchies only after clone (AttachV1 below).
  // The child makes it itself once every hierarchy has it (ChildMain, step 2), so
  // /proc/self/cgroup reads "/" in each, in warm and fresh sandboxes alike.
  const uint64_t flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC |
                         CLONE_NEWUTS | (new_net ? CLONE_NEWNET : 0);
  // The child starts inside its cgroup, when there is a unified one; it is never counted
  // anywhere else.
  const int cgroup_fd = sb->cgroup_->unified_dirfd();
  long pid;
  if (options.spawner != nullptr) {
    auto cloned = options.spawner->Clone(plan, flags, cgroup_fd);
    if (!cloned.ok()) {
      return WithContext(std::move(cloned).error(),
                         "clone3 (namespaces: user pid mount ipc uts cgroup net)");
    }
    pid = cloned->pid;
    sb->pidfd_ = std::move(cloned->pidfd);
  } else {
    int pidfd = -1;
    struct clone_args args;
    std::memset(&args, 0, sizeof args);
    args.flags = flags | CLONE_PIDFD;
    args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
    args.exit_signal = SIGCHLD;
    if (cgroup_fd >= 0) {
      args.flags |= CLONE_INTO_CGROUP;
      args.cgroup = static_cast<uint64_t>(cgroup_fd);
    }
    pid = sys::Clone3(&args);
    if (pid == 0) internal::ChildMain(plan);
    if (pid < 0) return ErrnoError("clone3 (namespaces: user pid mount ipc uts cgroup net)");
    sb->pidfd_.reset(pidfd);
  }
  sb->init_pid_ = static_cast<pid_t>(pid);
  sb->alive_ = true;
  bind_trees->clear();  // the child holds them now; one it never attached unmounts with it
  sync_r.reset();
  err_w.reset();
  ctl_child.reset();

  // Loopback comes up on its own thread while the id maps and cgroups are written and the child
  // builds its root: nothing runs in the sandbox before READY, and no process is spawned before
  // Create() returns. (Host root holds CAP_SYS_ADMIN over the child's namespaces from the start.)
  Status loopback_status;
  std::thread loopback;
  if (new_net) {
    loopback = std::thread([&loopback_status, pid = sb->init_pid_] {
      loopback_status = BringUpLoopback(pid);
    });
  }
  auto join_loopback = [&]() -> Status {
    if (!loopback.joinable()) return Ok();
    loopback.join();
    return loopback_status;
  };

  // Until the go byte is written the child waits; on any error here it is killed and reaped.
  auto prepare = [&]() -> Status {
    std::string map = FormatIdMap(0, spec.host_id_base, kIdRange);
    SBX_TRY(WriteFile(fmt::format("/proc/{}/uid_map", pid), map));
    SBX_TRY(WriteFile(fmt::format("/proc/{}/gid_map", pid), map));
    SBX_TRY(sb->cgroup_->AttachV1(sb->init_pid_));
    return Ok();
  };
  if (Status st = prepare(); !st.ok()) {
    (void)join_loopback();
    sb->KillAll();
    return WithContext(std::move(st).error(), "sandbox " + spec.id);
  }
  char go = 'g';
  if (::write(sync_w.get(), &go, 1) != 1) {
    Error e = ErrnoError("start sandbox {}", spec.id);
    (void)join_loopback();
    sb->KillAll();
    return e;
  }
  sync_w.reset();
  if (Status st = join_loopback(); !st.ok()) {
    sb->KillAll();
    return WithContext(std::move(st).error(), "sandbox " + spec.id);
  }

  // Wait for READY (or a setup error, or the child's death).
  for (;;) {
    struct pollfd p[3] = {{ctl_parent.get(), POLLIN, 0},
                          {err_r.get(), POLLIN, 0},
                          {sb->pidfd_.get(), POLLIN, 0}};
    int n = ::poll(p, 3, 30'000);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      sb->KillAll();
      return MakeError(ErrorCode::kInternal, "sandbox {}: init did not become ready in 30 s",
                       spec.id);
    }
    if (p[1].revents & POLLIN) {
      WireError w;
      ssize_t r = ::read(err_r.get(), &w, sizeof w);
      if (r == static_cast<ssize_t>(sizeof w)) {
        sb->setup_error_ = ToSetupError(w);
        sb->KillAll();
        break;
      }
    }
    if (p[0].revents & POLLIN) {
      InitMsg m;
      ssize_t r = ::recv(ctl_parent.get(), &m, sizeof m, 0);
      if (r == static_cast<ssize_t>(sizeof m) && m.type == InitMsg::kReady) break;
    }
    if (p[2].revents & POLLIN) {
      // Died without a word (killed): report it as a setup failure.
      siginfo_t si = sb->WaitInit();
      sb->alive_ = false;
      sb->setup_error_ =
          SetupError{"init", 0,
                     si.si_code == 0
                         ? std::string("the sandbox's init ended during setup")
                         : fmt::format("the sandbox's init ended during setup (code {}, status {})",
                                       si.si_code, si.si_status)};
      break;
    }
  }
  sb->ctl_ = std::move(ctl_parent);
  sb->cancel_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));

  IsolationReport& iso = sb->isolation_;
  iso.namespaces = {"user", "pid", "mount", "ipc", "uts", "cgroup"};
  if (new_net) iso.namespaces.push_back("network");
  iso.network = new_net ? "none" : "host";
  iso.cgroup_version = sb->cgroup_->version();
  iso.cgroup_controllers = sb->cgroup_->controllers();
  iso.seccomp_profile = spec.seccomp ? spec.seccomp->profile_name : "unconfined";
  if (spec.seccomp && spec.seccomp->notify != seccomp::NotifyMode::kNone) {
    sb->notify_mode_ = spec.seccomp->notify;
    sb->notify_answers_.profile_name = spec.seccomp->profile_name;
    sb->notify_answers_.insns = spec.seccomp->answers;
  }
  iso.user = fmt::format("{}:{} (host {}:{})", spec.uid, spec.gid, spec.host_id_base + spec.uid,
                         spec.host_id_base + spec.gid);
  return sb;
}

void Sandbox::KillAll() {
  // SIGKILL to the init ends the pid namespace: the kernel kills every process in it (double-
  // forked, setsid'd daemons too) before the init is reaped. Whatever else sits in the cgroup is
  // killed by Cgroup::Destroy() (cgroup.kill).
  if (pidfd_ && !reaped_) sys::PidfdSendSignal(pidfd_.get(), SIGKILL);
  if (pidfd_ && !reaped_) (void)WaitInit();
  alive_ = false;
}

siginfo_t Sandbox::WaitInit() {
  siginfo_t si;
  std::memset(&si, 0, sizeof si);
  for (;;) {
    if (::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &si, WEXITED) == 0) break;
    if (errno == EINTR) continue;
    if (errno == ECHILD) {
      // A spawner's child (which the spawner reaps): its pidfd turns readable once it has
      // exited, which for a pid namespace's init is after every process in it is gone.
      std::memset(&si, 0, sizeof si);
      struct pollfd p = {pidfd_.get(), POLLIN, 0};
      while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
      }
    }
    break;
  }
  reaped_ = true;
  return si;
}

bool Sandbox::InitExited() const {
  if (!pidfd_ || reaped_) return true;
  struct pollfd p = {pidfd_.get(), POLLIN, 0};
  int n;
  do {
    n = ::poll(&p, 1, 0);
  } while (n < 0 && errno == EINTR);
  return n > 0;
}

void Sandbox::Cancel() {
  cancelled_ = true;
  if (cancel_fd_) {
    uint64_t one = 1;
    ssize_t r = ::write(cancel_fd_.get(), &one, sizeof one);
    (void)r;
  }
}

Status Sandbox::Destroy() {
  // The monitor reads the control socket: it stops first (live.cc).
  StopLive();
  if (pidfd_ && !reaped_) {
    // Closing the control socket makes init exit; the kernel then kills every process left in
    // the pid namespace. KillAll() covers an init that does not go quietly.
    ctl_.reset();
    KillAll();
  }
  alive_ = false;
  if (cgroup_) {
    Status st = cgroup_->Destroy();
    cgroup_.reset();
    return st;
  }
  return Ok();
}

Sandbox::~Sandbox() { (void)Destroy(); }

namespace {

// The most output read (and handed to the sink) at once, and the size asked for the pipes.
constexpr size_t kOutputChunkBytes = 1 << 20;

// The notified syscalls a sandbox's result names one by one; the key the rest are counted under.
constexpr size_t kMaxDistinctSyscalls = 1024;
constexpr int kOtherSyscalls = -1;

// Counts of (arch, nr) -> SyscallCount list, most frequent first, ties by name.
std::vector<SyscallCount> NamedCounts(const std::map<std::pair<uint32_t, int>, uint64_t>& counts) {
  std::map<std::string, uint64_t> by_name;
  for (const auto& [key, n] : counts) {
    by_name[key == std::pair<uint32_t, int>{0, kOtherSyscalls} ? "(other syscalls)"
                                          : seccomp::SyscallName(key.first, key.second)] += n;
  }
  std::vector<SyscallCount> out;
  for (auto& [name, n] : by_name) out.push_back({name, n});
  std::stable_sort(out.begin(), out.end(),
                   [](const SyscallCount& a, const SyscallCount& b) { return a.count > b.count; });
  return out;
}

}  // namespace

// One notification from the listener: the filter returned SECCOMP_RET_USER_NOTIF, which the
// profile itself answers with an errno (kDeny) or which learning lets through (kLearn). The
// target may have died meanwhile (ENOENT): nothing to answer.
void Sandbox::AnswerNotification(int listener,
                                 std::map<std::pair<uint32_t, int>, uint64_t>* counts) {
  struct seccomp_notif req;
  std::memset(&req, 0, sizeof req);  // NOTIF_RECV refuses a request that is not zeroed
  if (::ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) return;
  struct seccomp_notif_resp resp;
  std::memset(&resp, 0, sizeof resp);
  resp.id = req.id;
  auto ret = seccomp::Evaluate(notify_answers_, req.data);
  uint32_t action = ret.ok() ? (*ret & SECCOMP_RET_ACTION_FULL) : SECCOMP_RET_ERRNO;
  // What the sandbox asks decides the keys: past kMaxDistinctSyscalls of them (more than every
  // table names), the rest are counted together.
  auto count = [counts, &req] {
    std::pair<uint32_t, int> key{req.data.arch, req.data.nr};
    if (counts->size() >= kMaxDistinctSyscalls && !counts->count(key)) key = {0, kOtherSyscalls};
    ++(*counts)[key];
  };
  if (notify_mode_ == seccomp::NotifyMode::kLearn) {
    count();
    resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  } else if (action == SECCOMP_RET_ERRNO) {
    count();
    resp.error = -static_cast<int32_t>(ret.ok() ? (*ret & SECCOMP_RET_DATA) : EPERM);
  } else if (action == SECCOMP_RET_ALLOW || action == SECCOMP_RET_LOG) {
    resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  } else {
    resp.error = -ENOSYS;  // what the kernel answers for a notification nobody listens to
  }
  (void)::ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
}

Result<ProcessResult> Sandbox::Run(const ProcessSpec& process, const OutputSink& sink) {
  ProcessResult res;
  res.isolation = isolation_;
  if (setup_error_) {
    res.reason = EndReason::kSetupFailed;
    res.error = setup_error_;
    return res;
  }
  if (!alive_) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox {} is no longer running", id_);
  }
  {
    std::lock_guard lock(mode_mu_);
    if (live_) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "sandbox {} runs processes started with Start(); Run() is for sandboxes "
                       "that never called Start()",
                       id_);
    }
    run_active_ = true;
  }
  struct RunGuard {
    Sandbox* sb;
    ~RunGuard() {
      std::lock_guard lock(sb->mode_mu_);
      sb->run_active_ = false;
    }
  } run_guard{this};
  auto request = internal::EncodeSpawnRequest(
      process.argv, internal::WithDefaultEnv(process.env, uid_, hostname_), process.cwd);
  if (!request.ok()) return std::move(request).error();
  std::string msgbuf = std::move(*request);

  int out[2], errp[2], xp[2];
  if (::pipe2(out, O_CLOEXEC) < 0) return ErrnoError("pipe2");
  UniqueFd out_r(out[0]), out_w(out[1]);
  if (::pipe2(errp, O_CLOEXEC) < 0) return ErrnoError("pipe2");
  UniqueFd err_r(errp[0]), err_w(errp[1]);
  // Room for a burst of output: a program that writes fast is read in chunks of up to 1 MiB
  // (fewer wake-ups, fewer log events) instead of the default 64 KiB. Best effort: a host whose
  // fs.pipe-max-size is lower keeps the default.
  for (int fd : {out[0], errp[0]}) (void)::fcntl(fd, F_SETPIPE_SZ, kOutputChunkBytes);
  // Our ends never block: the loop below reads what is there and goes back to epoll_wait (the
  // program's ends stay blocking).
  for (int fd : {out[0], errp[0]}) {
    if (::fcntl(fd, F_SETFL, O_NONBLOCK) < 0) return ErrnoError("fcntl(O_NONBLOCK)");
  }
  if (::pipe2(xp, O_CLOEXEC | O_DIRECT) < 0) return ErrnoError("pipe2");
  UniqueFd x_r(xp[0]), x_w(xp[1]);
  UniqueFd devnull;
  int in_fd = process.stdin_fd;
  if (in_fd < 0) {
    devnull.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!devnull) return ErrnoError("open /dev/null");
    in_fd = devnull.get();
  }

  auto usage0 = cgroup_->ReadUsage();
  uint64_t cpu0 = usage0.ok() ? usage0->cpu_usec : 0;
  uint64_t oom0 = usage0.ok() ? usage0->oom_kills : 0;
  auto start = std::chrono::steady_clock::now();

  {
    int fds[4] = {in_fd, out_w.get(), err_w.get(), x_w.get()};
    ssize_t r = SendWithFds(ctl_.get(), msgbuf.data(), msgbuf.size(), fds, 4);
    if (r < 0) return ErrnoError("send the spawn request to sandbox {}", id_);
  }
  out_w.reset();
  err_w.reset();
  x_w.reset();
  devnull.reset();

  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep) return ErrnoError("epoll_create1");
  UniqueFd timer;
  if (process.timeout_ms > 0) {
    timer.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!timer) return ErrnoError("timerfd_create");
    struct itimerspec its;
    std::memset(&its, 0, sizeof its);
    its.it_value.tv_sec = static_cast<time_t>(process.timeout_ms / 1000);
    its.it_value.tv_nsec = static_cast<long>((process.timeout_ms % 1000) * 1'000'000);
    if (::timerfd_settime(timer.get(), 0, &its, nullptr) < 0) return ErrnoError("timerfd_settime");
  }
  enum Tag : uint64_t { kOut = 1, kErr, kExecErr, kCtl, kPidfd, kTimer, kCancel, kNotify };
  auto add = [&](int fd, Tag tag) -> Status {
    struct epoll_event ev;
    std::memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return ErrnoError("epoll_ctl");
    return Ok();
  };
  SBX_TRY(add(out_r.get(), kOut));
  SBX_TRY(add(err_r.get(), kErr));
  SBX_TRY(add(x_r.get(), kExecErr));
  SBX_TRY(add(ctl_.get(), kCtl));
  SBX_TRY(add(pidfd_.get(), kPidfd));
  if (timer) SBX_TRY(add(timer.get(), kTimer));
  if (cancel_fd_) SBX_TRY(add(cancel_fd_.get(), kCancel));

  uint64_t captured = 0;
  auto deliver = [&](int stream, const char* data, size_t n) {
    (stream == 1 ? res.stdout_bytes : res.stderr_bytes) += n;
    size_t room = captured < process.output_limit_bytes
                      ? static_cast<size_t>(process.output_limit_bytes - captured)
                      : 0;
    size_t take = n < room ? n : room;
    if (take < n) res.output_truncated = true;
    captured += take;
    if (take > 0 && sink) sink(stream, std::string_view(data, take));
  };
  // Reads what is in the pipe now; returns false at EOF.
  // Uninitialised: a run that prints little touches only the pages it needs.
  auto buf = std::make_unique_for_overwrite<char[]>(kOutputChunkBytes);
  // Reads again after a short read, while the writer keeps the pipe fed and the chunk has room:
  // a program writing small blocks fast (head's 8 KiB) otherwise became one chunk, and one
  // step.log event, per wake-up (4,000 to 7,000 of them per GiB, where 1,036 now carry it). A
  // read that finds the pipe empty ends it at once: nothing waits for more.
  auto pump = [&](UniqueFd& fd, int stream) -> bool {
    ssize_t n;
    size_t got = 0;
    for (;;) {
      do {
        n = ::read(fd.get(), buf.get() + got, kOutputChunkBytes - got);
      } while (n < 0 && errno == EINTR);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
      if (got == kOutputChunkBytes) break;
    }
    if (got > 0) {
      deliver(stream, buf.get(), got);
      return true;
    }
    if (n < 0 && errno == EAGAIN) return true;
    ::epoll_ctl(ep.get(), EPOLL_CTL_DEL, fd.get(), nullptr);
    fd.reset();
    return false;
  };

  std::optional<SetupError> exec_error;
  std::optional<int> wait_status;
  UniqueFd listener;
  std::map<std::pair<uint32_t, int>, uint64_t> notified;
  std::optional<InitMsg> exit_msg;
  bool timed_out = false, cancelled = false, oom_first = false, init_died = false;
  pid_t child_pid = -1;
  auto oom_now = [&] {
    auto u = cgroup_->ReadUsage();
    return u.ok() && u->oom_kills > oom0;
  };

  while (!wait_status) {
    struct epoll_event evs[8];
    int n = ::epoll_wait(ep.get(), evs, 8, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      switch (evs[i].data.u64) {
        case kOut: pump(out_r, 1); break;
        case kErr: pump(err_r, 2); break;
        case kExecErr: {
          WireError w;
          ssize_t r = ::read(x_r.get(), &w, sizeof w);
          if (r == static_cast<ssize_t>(sizeof w)) exec_error = ToSetupError(w);
          ::epoll_ctl(ep.get(), EPOLL_CTL_DEL, x_r.get(), nullptr);
          x_r.reset();
          break;
        }
        case kCtl: {
          InitMsg m;
          int fds[kMaxPassedFds];
          size_t nfds = 0;
          bool truncated = false;
          ssize_t r = RecvWithFds(ctl_.get(), &m, sizeof m, fds, &nfds, &truncated, MSG_DONTWAIT);
          UniqueFd payload_pidfd(nfds > 0 ? fds[0] : -1);
          for (size_t i = 1; i < nfds; ++i) ::close(fds[i]);
          if (r != static_cast<ssize_t>(sizeof m)) {
            if (r == 0) ::epoll_ctl(ep.get(), EPOLL_CTL_DEL, ctl_.get(), nullptr);
            break;
          }
          if (m.type == InitMsg::kStarted) child_pid = m.pid;
          if (m.type == InitMsg::kStarted && m.listener_fd >= 0) {
            // The payload waits for us (see child.cc, StartNotifyingPayload): take a copy of
            // its seccomp listener, then let it exec. Without the copy its denied syscalls
            // would wait forever, so a failure here ends the run as a setup failure.
            if (payload_pidfd) {
              listener.reset(static_cast<int>(::syscall(SYS_pidfd_getfd, payload_pidfd.get(),
                                                        m.listener_fd, 0)));
            }
            if (!listener) {
              exec_error = SetupError{"seccomp listener", errno,
                                      "pidfd_getfd on the process's seccomp listener failed; "
                                      "the supervisor needs CAP_SYS_PTRACE over the sandbox"};
              KillAll();
            } else if (Status st = add(listener.get(), kNotify); !st.ok()) {
              exec_error = SetupError{"seccomp listener", st.error().sys_errno,
                                      st.error().ToString()};
              KillAll();
            }
            internal::SpawnHeader go{internal::kGoMagic, 0, 0, 0};
            ssize_t w;
            do {
              w = ::send(ctl_.get(), &go, sizeof go, MSG_NOSIGNAL);
            } while (w < 0 && errno == EINTR);
          }
          if (m.type == InitMsg::kSpawnFailed) {
            exec_error = SetupError{"fork", m.status,
                                    fmt::format("the sandbox's init could not start the process: "
                                                "{}",
                                                std::strerror(m.status))};
            wait_status = 127 << 8;
          }
          if (m.type == InitMsg::kExited && m.pid == child_pid) {
            exit_msg = m;
            wait_status = m.status;
          }
          break;
        }
        case kPidfd:
          // The init died: the kernel has killed everything in the pid namespace.
          init_died = true;
          KillAll();
          if (!wait_status) wait_status = SIGKILL;  // as if killed by SIGKILL
          break;
        case kTimer:
          timed_out = true;
          oom_first = oom_now();
          KillAll();
          break;
        case kCancel:
          cancelled = true;
          KillAll();
          break;
        case kNotify:
          if (evs[i].events & EPOLLIN) AnswerNotification(listener.get(), &notified);
          if ((evs[i].events & (EPOLLHUP | EPOLLERR)) && !(evs[i].events & EPOLLIN)) {
            // Every process under the filter is gone.
            ::epoll_ctl(ep.get(), EPOLL_CTL_DEL, listener.get(), nullptr);
          }
          break;
      }
    }
  }
  res.wall_ms = ElapsedMs(start);
  if (notify_mode_ == seccomp::NotifyMode::kLearn) {
    res.seccomp_learned = NamedCounts(notified);
    std::sort(res.seccomp_learned.begin(), res.seccomp_learned.end(),
              [](const SyscallCount& a, const SyscallCount& b) { return a.name < b.name; });
  } else {
    res.seccomp_denials = NamedCounts(notified);
  }

  // Every byte the process wrote before it exited is in the pipes now: drain what is there
  // without waiting for writers that outlive it (a background process of a later step).
  for (UniqueFd* fd : {&out_r, &err_r}) {
    if (!*fd) continue;
    ::fcntl(fd->get(), F_SETFL, O_NONBLOCK);
    int stream = fd == &out_r ? 1 : 2;
    for (;;) {
      ssize_t r = ::read(fd->get(), buf.get(), kOutputChunkBytes);
      if (r > 0) {
        deliver(stream, buf.get(), static_cast<size_t>(r));
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      break;
    }
  }
  if (x_r) {
    WireError w;
    if (::read(x_r.get(), &w, sizeof w) == static_cast<ssize_t>(sizeof w)) {
      exec_error = ToSetupError(w);
    }
  }

  auto usage = cgroup_->ReadUsage();
  bool oom = usage.ok() && usage->oom_kills > oom0;
  if (usage.ok()) {
    res.cpu_ms = (usage->cpu_usec - std::min(cpu0, usage->cpu_usec)) / 1000;
    res.memory_peak_bytes = usage->memory_peak_bytes;
  }
  if (exit_msg) {
    uint64_t ru_ms = static_cast<uint64_t>(exit_msg->utime_us + exit_msg->stime_us) / 1000;
    if (!usage.ok()) res.cpu_ms = ru_ms;
    res.memory_peak_bytes =
        std::max<uint64_t>(res.memory_peak_bytes, static_cast<uint64_t>(exit_msg->maxrss_kb) * 1024);
  }

  int st = *wait_status;
  if (exec_error) {
    res.reason = EndReason::kSetupFailed;
    res.error = exec_error;
    res.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 127;
  } else if (cancelled || cancelled_) {
    res.reason = EndReason::kCancelled;
    res.signal = SIGKILL;
  } else if (timed_out && !oom_first) {
    res.reason = EndReason::kTimedOut;
    res.signal = SIGKILL;
  } else if (oom && (timed_out || init_died || (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))) {
    res.reason = EndReason::kOomKilled;
    res.signal = SIGKILL;
  } else if (WIFSIGNALED(st) || init_died) {
    res.reason = EndReason::kSignaled;
    res.signal = init_died && !WIFSIGNALED(st) ? SIGKILL : WTERMSIG(st);
  } else {
    res.reason = EndReason::kExited;
    res.exit_code = WEXITSTATUS(st);
  }
  return res;
}

}  // namespace sbx::isolate
