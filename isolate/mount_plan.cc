#include "isolate/mount_plan.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>

namespace sbx::isolate {

using internal::MountOp;
using Kind = internal::MountOp::Kind;

Result<std::string> NormalizeSandboxPath(const std::string& path) {
  if (path.empty() || path[0] != '/') {
    return MakeError(ErrorCode::kInvalidArgument, "'{}': a sandbox path must be absolute", path);
  }
  if (path.find('\0') != std::string::npos || path.size() > 4095) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}': not a valid path", path);
  }
  std::string out;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    std::string part = path.substr(i, j - i);
    i = j + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      return MakeError(ErrorCode::kInvalidArgument, "'{}': '..' is not allowed in a sandbox path",
                       path);
    }
    out += "/" + part;
  }
  return out.empty() ? std::string("/") : out;
}

std::vector<EtcFile> SynthesizeEtc(const SandboxSpec& spec) {
  std::string user = spec.uid == 0 ? "root" : "sandbox";
  std::string passwd =
      "root:x:0:0:root:/root:/bin/sh\n"
      "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
  std::string group = "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n";
  if (spec.uid != 0 && spec.uid != 65534) {
    passwd += fmt::format("sandbox:x:{}:{}:sandbox:/tmp:/bin/sh\n", spec.uid, spec.gid);
  }
  if (spec.gid != 0 && spec.gid != 5 && spec.gid != 65534) {
    group += fmt::format("sandbox:x:{}:\n", spec.gid);
  }
  (void)user;
  std::string host = spec.hostname.empty() ? "sandbox" : spec.hostname;
  return {
      {"passwd", passwd},
      {"group", group},
      {"hostname", host + "\n"},
      {"hosts", fmt::format("127.0.0.1\tlocalhost {0}\n::1\tlocalhost ip6-localhost {0}\n", host)},
      {"nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n"},
      {"resolv.conf", ""},
  };
}

namespace {

std::string Rel(const std::string& abs) { return abs.size() > 1 ? abs.substr(1) : ""; }

MountOp Op(Kind k, std::string target) {
  MountOp op;
  op.kind = k;
  op.target = std::move(target);
  return op;
}

bool IsUnder(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

}  // namespace

Result<std::vector<MountOp>> PlanMounts(const SandboxSpec& spec, const std::string& stage_dir) {
  std::vector<MountOp> ops;

  // System directories: read-only binds, or the same symlink (merged /usr: /bin -> usr/bin).
  for (const std::string& dir : spec.system_dirs) {
    struct stat st;
    if (::lstat(dir.c_str(), &st) < 0) continue;  // /lib32 and friends are optional
    if (S_ISLNK(st.st_mode)) {
      char buf[PATH_MAX];
      ssize_t n = ::readlink(dir.c_str(), buf, sizeof buf - 1);
      if (n < 0) return ErrnoError("readlink {}", dir);
      MountOp op = Op(Kind::kSymlink, Rel(dir));
      op.data.assign(buf, static_cast<size_t>(n));
      ops.push_back(std::move(op));
    } else if (S_ISDIR(st.st_mode)) {
      MountOp op = Op(Kind::kBind, Rel(dir));
      op.source = dir;
      ops.push_back(std::move(op));
    }
  }

  // /etc: a tmpfs of synthesized files plus the few host files common tools need, read-only.
  {
    MountOp etc = Op(Kind::kTmpfs, "etc");
    etc.data = "size=1m,mode=0755";
    etc.flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    ops.push_back(std::move(etc));
    for (auto& f : SynthesizeEtc(spec)) {
      MountOp op = Op(Kind::kFile, "etc/" + f.name);
      op.data = std::move(f.contents);
      op.mode = 0644;
      ops.push_back(std::move(op));
    }
    for (const char* host : {"/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives"}) {
      // By its real path (/etc/localtime is usually a symlink into the zoneinfo): the child binds
      // sources without following symlinks.
      char real[PATH_MAX];
      struct stat st;
      if (::realpath(host, real) == nullptr || ::stat(real, &st) < 0) continue;
      MountOp op = Op(Kind::kBind, Rel(host));
      op.source = real;
      op.is_dir = S_ISDIR(st.st_mode);
      ops.push_back(std::move(op));
    }
  }

  // /proc: fresh, with Docker's masked and read-only paths.
  {
    MountOp proc = Op(Kind::kProc, "proc");
    proc.flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    ops.push_back(std::move(proc));
    for (const char* p : {"proc/kcore", "proc/keys", "proc/latency_stats", "proc/timer_list",
                          "proc/timer_stats", "proc/sched_debug", "proc/sysrq-trigger"}) {
      ops.push_back(Op(Kind::kMaskFile, p));
    }
    for (const char* p : {"proc/acpi", "proc/asound", "proc/scsi"}) {
      ops.push_back(Op(Kind::kMaskDir, p));
    }
    for (const char* p : {"proc/bus", "proc/fs", "proc/irq", "proc/sys"}) {
      ops.push_back(Op(Kind::kReadOnly, p));
    }
  }

  // /dev: a small tmpfs with the usual nodes bound from the host, a private devpts, /dev/shm.
  {
    MountOp dev = Op(Kind::kTmpfs, "dev");
    dev.data = "size=64k,mode=0755";
    dev.flags = MS_NOSUID | MS_NOEXEC;
    ops.push_back(std::move(dev));
    for (const char* n : {"null", "zero", "full", "random", "urandom", "tty"}) {
      MountOp op = Op(Kind::kBind, std::string("dev/") + n);
      op.source = std::string("/dev/") + n;
      op.is_dir = false;
      ops.push_back(std::move(op));
    }
    MountOp pts = Op(Kind::kDevpts, "dev/pts");
    pts.data = "newinstance,ptmxmode=0666,mode=0620,gid=5";
    pts.flags = MS_NOSUID | MS_NOEXEC;
    ops.push_back(std::move(pts));
    MountOp shm = Op(Kind::kTmpfs, "dev/shm");
    shm.data = "size=64m,mode=1777";
    shm.flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    ops.push_back(std::move(shm));
    const std::pair<const char*, const char*> links[] = {{"dev/ptmx", "pts/ptmx"},
                                                         {"dev/fd", "/proc/self/fd"},
                                                         {"dev/stdin", "/proc/self/fd/0"},
                                                         {"dev/stdout", "/proc/self/fd/1"},
                                                         {"dev/stderr", "/proc/self/fd/2"}};
    for (const auto& [target, to] : links) {
      MountOp op = Op(Kind::kSymlink, target);
      op.data = to;
      ops.push_back(std::move(op));
    }
  }

  // /tmp: size-limited, writable by everyone.
  {
    MountOp tmp = Op(Kind::kTmpfs, "tmp");
    tmp.data = fmt::format("size={},mode=1777", spec.tmp_size_bytes);
    tmp.flags = MS_NOSUID | MS_NODEV;
    ops.push_back(std::move(tmp));
  }

  // Extra tmpfs and binds, in the order given (a later bind may sit inside an earlier one).
  static const char* kReserved[] = {"/proc", "/dev"};
  auto check_target = [&](const std::string& t) -> Status {
    if (t == "/") return MakeError(ErrorCode::kInvalidArgument, "cannot mount over /");
    for (const char* r : kReserved) {
      if (IsUnder(t, r)) {
        return MakeError(ErrorCode::kInvalidArgument, "'{}': mounts under {} are not allowed", t,
                         r);
      }
    }
    return Ok();
  };
  for (const TmpfsMount& t : spec.tmpfs) {
    auto target = NormalizeSandboxPath(t.target);
    if (!target.ok()) return std::move(target).error();
    SBX_TRY(check_target(*target));
    MountOp op = Op(Kind::kTmpfs, Rel(*target));
    op.data = fmt::format("size={},mode={:o}", t.size_bytes, t.mode);
    op.flags = MS_NOSUID | MS_NODEV;
    ops.push_back(std::move(op));
  }
  for (const BindMount& b : spec.binds) {
    auto target = NormalizeSandboxPath(b.target);
    if (!target.ok()) return std::move(target).error();
    SBX_TRY(check_target(*target));
    if (b.source.empty() || b.source[0] != '/') {
      return MakeError(ErrorCode::kInvalidArgument, "bind source '{}' must be an absolute path",
                       b.source);
    }
    char real[PATH_MAX];
    if (::realpath(b.source.c_str(), real) == nullptr) {
      return WithContext(ErrnoError("bind source {}", b.source), "-v");
    }
    if (IsUnder(real, stage_dir)) {
      return MakeError(ErrorCode::kInvalidArgument, "bind source '{}' is inside the runtime dir {}",
                       b.source, stage_dir);
    }
    struct stat st;
    if (::stat(real, &st) < 0) return ErrnoError("stat {}", real);
    MountOp op = Op(Kind::kBind, Rel(*target));
    op.source = real;
    op.writable = b.writable;
    op.is_dir = S_ISDIR(st.st_mode);
    ops.push_back(std::move(op));
  }
  // Last, once nothing more is mounted inside them: /etc and /dev become read-only.
  ops.push_back(Op(Kind::kRemountReadOnly, "etc"));
  ops.push_back(Op(Kind::kRemountReadOnly, "dev"));
  return ops;
}

Result<std::vector<UniqueFd>> OpenBindSources(std::vector<MountOp>* ops) {
  size_t binds = 0;
  for (const MountOp& op : *ops) binds += op.kind == Kind::kBind ? 1 : 0;
  if (binds > kMaxBindSources) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the sandbox would have {} bind mounts; at most {} are allowed", binds,
                     kMaxBindSources);
  }
  std::vector<UniqueFd> trees;
  trees.reserve(binds);
  for (MountOp& op : *ops) {
    if (op.kind != Kind::kBind) continue;
    struct open_how how = {};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    UniqueFd source(static_cast<int>(
        ::syscall(SYS_openat2, AT_FDCWD, op.source.c_str(), &how, sizeof how)));
    if (!source) {
      Error e = ErrnoError("bind source {}", op.source);
      if (errno == ELOOP || errno == ENOENT || errno == ENOTDIR) {
        e.code = ErrorCode::kInvalidArgument;
        e.message += " (changed since it was checked)";
      }
      return e;
    }
    struct stat st;
    if (::fstat(source.get(), &st) < 0) return ErrnoError("fstat bind source {}", op.source);
    if (S_ISDIR(st.st_mode) != op.is_dir) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "bind source {} is no longer a {} (changed since it was checked)",
                       op.source, op.is_dir ? "directory" : "file");
    }
    const bool device = S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode);
    unsigned clone_flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH;
    if (!device) clone_flags |= AT_RECURSIVE;
    UniqueFd tree(static_cast<int>(::syscall(SYS_open_tree, source.get(), "", clone_flags)));
    if (!tree) return ErrnoError("open_tree (clone) bind source {}", op.source);
    // A clone of a shared mount joins its peer group: private, so that nothing mounted on
    // either side ever propagates to the other.
    struct mount_attr attr = {};
    attr.propagation = MS_PRIVATE;
    attr.attr_set = MOUNT_ATTR_NOSUID;
    if (device) {
      attr.attr_set |= MOUNT_ATTR_NOEXEC;  // device nodes keep working: no nodev
    } else {
      attr.attr_set |= MOUNT_ATTR_NODEV;
      if (!op.writable) attr.attr_set |= MOUNT_ATTR_RDONLY;
    }
    if (::syscall(SYS_mount_setattr, tree.get(), "",
                  AT_EMPTY_PATH | (device ? 0 : AT_RECURSIVE), &attr, sizeof attr) < 0) {
      return ErrnoError("mount_setattr on bind source {}", op.source);
    }
    op.source_fd = tree.get();
    trees.push_back(std::move(tree));
  }
  return trees;
}

}  // namespace sbx::isolate
