#include "isolate/spawner.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "base/fd_passing.h"
#include "base/fs.h"
#include "base/syscalls.h"
#include "isolate/mount_plan.h"

namespace sbx::isolate {
namespace internal {
namespace {

constexpr uint32_t kPlanMagic = 0x53425850;  // "SBXP"
// Bounds on what a decoded plan may hold: far above any plan PlanMounts makes, low enough that
// a corrupt length cannot make the spawner allocate without bound.
constexpr uint32_t kMaxItems = 1 << 16;
constexpr uint32_t kMaxString = 1 << 20;

class Writer {
 public:
  void U32(uint32_t v) { Raw(&v, sizeof v); }
  void U64(uint64_t v) { Raw(&v, sizeof v); }
  void Str(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  void Raw(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool U32(uint32_t* v) { return Raw(v, sizeof *v); }
  bool U64(uint64_t* v) { return Raw(v, sizeof *v); }
  bool Str(std::string* s) {
    uint32_t n;
    if (!U32(&n) || n > kMaxString || n > in_.size()) return false;
    s->assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  bool Count(uint32_t* n) { return U32(n) && *n <= kMaxItems; }
  bool Raw(void* p, size_t n) {
    if (in_.size() < n) return false;
    std::memcpy(p, in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  std::string_view in_;
};

}  // namespace

std::string EncodePlan(const ChildPlan& plan) {
  Writer w;
  w.U32(kPlanMagic);
  w.Str(plan.stage_dir);
  w.U32(static_cast<uint32_t>(plan.mounts.size()));
  for (const MountOp& op : plan.mounts) {
    w.U32(static_cast<uint32_t>(op.kind));
    w.Str(op.source);
    w.Str(op.target);
    w.Str(op.data);
    w.U32(op.mode);
    w.U64(op.flags);
    w.U32((op.writable ? 1u : 0u) | (op.is_dir ? 2u : 0u));
  }
  w.Str(plan.hostname);
  w.U32(plan.uid);
  w.U32(plan.gid);
  w.U32(plan.read_only_root ? 1 : 0);
  w.U32(static_cast<uint32_t>(plan.rlimits.size()));
  for (const auto& [resource, lim] : plan.rlimits) {
    w.U32(static_cast<uint32_t>(resource));
    w.U64(lim.rlim_cur);
    w.U64(lim.rlim_max);
  }
  w.U32(plan.seccomp != nullptr ? 1 : 0);
  if (plan.seccomp != nullptr) {
    w.U32(static_cast<uint32_t>(plan.seccomp->notify));
    w.U32(static_cast<uint32_t>(plan.seccomp->insns.size()));
    w.Raw(plan.seccomp->insns.data(), plan.seccomp->insns.size() * sizeof(sock_filter));
  }
  return w.Take();
}

Status DecodePlan(std::string_view bytes, DecodedPlan* out) {
  auto bad = [] { return MakeError(ErrorCode::kInvalidArgument, "malformed sandbox plan"); };
  Reader r(bytes);
  ChildPlan& plan = out->plan;
  uint32_t magic, n;
  if (!r.U32(&magic) || magic != kPlanMagic || !r.Str(&plan.stage_dir) || !r.Count(&n)) {
    return bad();
  }
  plan.mounts.resize(n);
  for (MountOp& op : plan.mounts) {
    uint32_t kind, bits;
    uint64_t flags;
    if (!r.U32(&kind) || kind > static_cast<uint32_t>(MountOp::Kind::kRemountReadOnly) ||
        !r.Str(&op.source) || !r.Str(&op.target) || !r.Str(&op.data) || !r.U32(&op.mode) ||
        !r.U64(&flags) || !r.U32(&bits)) {
      return bad();
    }
    op.kind = static_cast<MountOp::Kind>(kind);
    op.flags = static_cast<unsigned long>(flags);
    op.writable = (bits & 1) != 0;
    op.is_dir = (bits & 2) != 0;
  }
  uint32_t uid, gid, ro, has_seccomp;
  if (!r.Str(&plan.hostname) || !r.U32(&uid) || !r.U32(&gid) || !r.U32(&ro) || !r.Count(&n)) {
    return bad();
  }
  plan.uid = uid;
  plan.gid = gid;
  plan.read_only_root = ro != 0;
  plan.rlimits.resize(n);
  for (auto& [resource, lim] : plan.rlimits) {
    uint32_t res;
    uint64_t cur, max;
    if (!r.U32(&res) || !r.U64(&cur) || !r.U64(&max)) return bad();
    resource = static_cast<int>(res);
    lim.rlim_cur = cur;
    lim.rlim_max = max;
  }
  if (!r.U32(&has_seccomp)) return bad();
  plan.seccomp = nullptr;
  if (has_seccomp != 0) {
    uint32_t notify;
    if (!r.U32(&notify) || notify > static_cast<uint32_t>(seccomp::NotifyMode::kLearn) ||
        !r.Count(&n)) {
      return bad();
    }
    out->seccomp.notify = static_cast<seccomp::NotifyMode>(notify);
    out->seccomp.insns.resize(n);
    if (!r.Raw(out->seccomp.insns.data(), n * sizeof(sock_filter))) return bad();
    plan.seccomp = &out->seccomp;
  }
  if (!r.done()) return bad();
  return Ok();
}

bool AssignBindFds(ChildPlan* plan, const int* fds, size_t n) {
  size_t used = 0;
  for (MountOp& op : plan->mounts) {
    if (op.kind != MountOp::Kind::kBind) continue;
    if (used == n) return false;
    op.source_fd = fds[used++];
  }
  return used == n;
}

}  // namespace internal

namespace {

// Request header, then the encoded plan. SCM_RIGHTS: sync, err, ctl, the cgroup fd when
// has_cgroup, then one mount tree per kBind op of the plan, in the plan's order.
struct Request {
  uint64_t flags;
  uint32_t has_cgroup;
  uint32_t plan_bytes;
  uint32_t bind_fds;
  uint32_t reserved = 0;
};
constexpr size_t kMaxRequestFds = 4 + kMaxBindSources;
static_assert(kMaxRequestFds <= kMaxFdsPerMessage);
// Reply: the init's pid (and its pidfd as SCM_RIGHTS), or the clone's errno.
struct Reply {
  int32_t pid;
  int32_t sys_errno;
};
constexpr size_t kMaxMessage = 1 << 20;

// The spawner's life: one request at a time, until the daemon closes its end.
[[noreturn]] void SpawnerMain(int sock, pid_t daemon) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != daemon) ::_exit(0);  // the daemon died before the prctl
  ::prctl(PR_SET_NAME, "sbx-spawner", 0, 0, 0);
  // Nothing of the daemon's stays open here (its listeners, its database) but our socket.
  int moved = ::fcntl(sock, F_DUPFD_CLOEXEC, 3);
  if (moved < 0) ::_exit(1);
  sys::CloseRange(0, static_cast<unsigned>(moved - 1));
  sys::CloseRange(static_cast<unsigned>(moved + 1), ~0u);
  sock = moved;
  // Inits are reaped the moment they end; the daemon watches their pidfds.
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  sa.sa_flags = SA_NOCLDWAIT;
  ::sigaction(SIGCHLD, &sa, nullptr);
  cap_t empty_caps = cap_init();
  if (empty_caps == nullptr) ::_exit(1);
  std::vector<char> buf(kMaxMessage);
  for (;;) {
    int fds[kMaxRequestFds];
    size_t nfds = 0;
    bool truncated = false;
    ssize_t n =
        RecvWithFdsUpTo(sock, buf.data(), buf.size(), fds, kMaxRequestFds, &nfds, &truncated);
    if (n <= 0) ::_exit(0);  // the daemon closed its end (or is gone)
    Reply reply{-1, EINVAL};
    Request req;
    internal::DecodedPlan decoded;
    bool has_fds = false;
    size_t first_bind = 0;
    if (!truncated && static_cast<size_t>(n) >= sizeof req) {
      std::memcpy(&req, buf.data(), sizeof req);
      first_bind = req.has_cgroup != 0 ? 4u : 3u;
      has_fds = req.bind_fds <= kMaxBindSources && nfds == first_bind + req.bind_fds;
    }
    if (has_fds && sizeof req + req.plan_bytes == static_cast<size_t>(n) &&
        internal::DecodePlan(std::string_view(buf.data() + sizeof req, req.plan_bytes),
                             &decoded)
            .ok() &&
        internal::AssignBindFds(&decoded.plan, fds + first_bind, req.bind_fds)) {
      internal::ChildPlan& plan = decoded.plan;
      plan.sync_fd = fds[0];
      plan.err_fd = fds[1];
      plan.ctl_fd = fds[2];
      plan.empty_caps = empty_caps;
      int pidfd = -1;
      struct clone_args args;
      std::memset(&args, 0, sizeof args);
      args.flags = req.flags | CLONE_PIDFD;
      args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
      args.exit_signal = SIGCHLD;
      if (req.has_cgroup != 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = static_cast<uint64_t>(fds[3]);
      }
      long pid = sys::Clone3(&args);
      if (pid == 0) internal::ChildMain(plan);
      reply = pid > 0 ? Reply{static_cast<int32_t>(pid), 0} : Reply{-1, errno};
      if (SendWithFds(sock, &reply, sizeof reply, &pidfd, pid > 0 ? 1 : 0) < 0) ::_exit(0);
      if (pidfd >= 0) ::close(pidfd);
    } else if (SendWithFds(sock, &reply, sizeof reply, nullptr, 0) < 0) {
      ::_exit(0);
    }
    for (size_t i = 0; i < nfds; ++i) ::close(fds[i]);
  }
}

}  // namespace

Result<std::unique_ptr<Spawner>> Spawner::Start() {
  // The spawner runs on after fork(); from a threaded process it could inherit a lock another
  // thread held (malloc's, the loader's) and hang on it.
  if (auto status = ReadFile("/proc/self/status"); status.ok()) {
    auto at = status->find("\nThreads:\t");
    if (at != std::string::npos && std::atoi(status->c_str() + at + 10) > 1) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "the sandbox spawner must be started while the process has one thread");
    }
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
    return ErrnoError("socketpair for the sandbox spawner");
  }
  UniqueFd ours(sv[0]), theirs(sv[1]);
  // A plan with a large seccomp program and many mounts is one message of up to kMaxMessage.
  int size = static_cast<int>(kMaxMessage) + 4096;
  for (int fd : sv) {
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0) {
      ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    }
  }
  const pid_t daemon = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork the sandbox spawner");
  if (pid == 0) {
    ours.reset();
    SpawnerMain(theirs.release(), daemon);
  }
  std::unique_ptr<Spawner> s(new Spawner());
  s->sock_ = std::move(ours);
  s->pid_ = pid;
  return s;
}

Spawner::~Spawner() {
  sock_.reset();  // EOF: the spawner exits
  if (pid_ > 0) {
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
}

Result<Spawner::Cloned> Spawner::Clone(const internal::ChildPlan& plan, uint64_t flags,
                                       int cgroup_fd) {
  std::string body = internal::EncodePlan(plan);
  Request req{flags, cgroup_fd >= 0 ? 1u : 0u, static_cast<uint32_t>(body.size()), 0};
  if (sizeof req + body.size() > kMaxMessage) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the sandbox's plan is {} bytes, more than the spawner takes ({})",
                     body.size(), kMaxMessage);
  }
  std::vector<int> fds = {plan.sync_fd, plan.err_fd, plan.ctl_fd};
  if (cgroup_fd >= 0) fds.push_back(cgroup_fd);
  for (const internal::MountOp& op : plan.mounts) {
    if (op.kind != internal::MountOp::Kind::kBind) continue;
    if (op.source_fd < 0) {
      return MakeError(ErrorCode::kInternal, "bind source {} was not opened (OpenBindSources)",
                       op.source);
    }
    fds.push_back(op.source_fd);
    ++req.bind_fds;
  }
  if (fds.size() > kMaxRequestFds) {
    return MakeError(ErrorCode::kInvalidArgument, "the sandbox has {} bind mounts; at most {}",
                     req.bind_fds, kMaxBindSources);
  }
  std::string msg(reinterpret_cast<const char*>(&req), sizeof req);
  msg += body;
  std::lock_guard<std::mutex> lk(mu_);
  if (SendWithFds(sock_.get(), msg.data(), msg.size(), fds.data(), fds.size()) < 0) {
    Error e = ErrnoError("send a clone request to the sandbox spawner");
    if (errno == EPIPE || errno == ECONNRESET) e.code = ErrorCode::kUnavailable;
    return e;
  }
  Reply reply;
  int got[4];
  size_t ngot = 0;
  bool truncated = false;
  ssize_t n = RecvWithFds(sock_.get(), &reply, sizeof reply, got, &ngot, &truncated);
  UniqueFd pidfd(ngot > 0 ? got[0] : -1);
  for (size_t i = 1; i < ngot; ++i) ::close(got[i]);
  if (n == 0) {
    return MakeError(ErrorCode::kUnavailable, "the sandbox spawner (pid {}) is gone", pid_);
  }
  if (n < 0) return ErrnoError("read the sandbox spawner's reply");
  if (n != static_cast<ssize_t>(sizeof reply) || truncated) {
    return MakeError(ErrorCode::kInternal, "the sandbox spawner sent a malformed reply");
  }
  if (reply.pid <= 0 || !pidfd) {
    errno = reply.sys_errno;
    return ErrnoError("clone3 in the sandbox spawner");
  }
  return Cloned{reply.pid, std::move(pidfd)};
}

}  // namespace sbx::isolate
