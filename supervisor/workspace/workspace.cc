#include "supervisor/workspace/workspace.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/magic.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "base/fs.h"
#include "base/syscalls.h"
#include "supervisor/workspace/workspace_fs.h"

namespace sbx::supervisor {

using internal::OpenBeneath;
using internal::RemoveTree;

namespace {

// Splits an absolute path into its components; false for a "." or ".." component. Empty
// components (from "//" or a trailing '/') are dropped.
bool SplitComponents(std::string_view path, std::vector<std::string>* out) {
  out->clear();
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view part = path.substr(i, j - i);
    i = j + 1;
    if (part.empty()) continue;
    if (part == "." || part == "..") return false;
    out->emplace_back(part);
  }
  return true;
}

std::string JoinComponents(const std::vector<std::string>& parts, size_t from) {
  std::string out;
  for (size_t i = from; i < parts.size(); ++i) {
    if (!out.empty()) out += '/';
    out += parts[i];
  }
  return out;
}

std::string RootList(const std::vector<std::string>& roots) {
  std::string out;
  for (const auto& r : roots) {
    if (!out.empty()) out += ", ";
    out += r;
  }
  return out;
}

// A name for the filesystem under fd, for messages.
std::string FsTypeName(int fd) {
  struct statfs sfs;
  if (::fstatfs(fd, &sfs) < 0) return "an unknown filesystem";
  switch (static_cast<unsigned long>(sfs.f_type)) {
    case EXT4_SUPER_MAGIC:
      return "ext4";
    case XFS_SUPER_MAGIC:
      return "xfs";
    case BTRFS_SUPER_MAGIC:
      return "btrfs";
    case TMPFS_MAGIC:
      return "tmpfs";
    case RAMFS_MAGIC:
      return "ramfs";
    case NFS_SUPER_MAGIC:
      return "nfs";
    case OVERLAYFS_SUPER_MAGIC:
      return "overlayfs";
    case SQUASHFS_MAGIC:
      return "squashfs";
    case F2FS_SUPER_MAGIC:
      return "f2fs";
    case MSDOS_SUPER_MAGIC:
      return "vfat";
    case 0x65735546:
      return "fuse";
    case 0x2fc12fc1:
      return "zfs";
    case 0xff534d42:
      return "cifs";
    case 0xfe534d42:
      return "smb2";
    case 0x01021997:
      return "9p";
    case 0x00c36400:
      return "ceph";
    default:
      return fmt::format("filesystem type {:#x}", static_cast<unsigned long>(sfs.f_type));
  }
}

// What the filesystem context logged (fsopen(2): "e overlayfs: …" lines), for error messages.
std::string FsContextLog(int fs_fd) {
  std::string out;
  char buf[1024];
  for (;;) {
    ssize_t n = ::read(fs_fd, buf, sizeof buf);
    if (n <= 0) break;
    std::string_view msg(buf, static_cast<size_t>(n));
    while (!msg.empty() && msg.back() == '\n') msg.remove_suffix(1);
    if (msg.size() > 2 && msg[1] == ' ') msg.remove_prefix(2);  // "e ", "w ", "i "
    if (!out.empty()) out += "; ";
    out += msg;
  }
  return out;
}

Error FsError(int fs_fd, const std::string& what) {
  Error e = ErrnoError("{}", what);
  std::string log = FsContextLog(fs_fd);
  if (!log.empty()) e.message += " (kernel: " + log + ")";
  return e;
}

// A new tmpfs, not attached anywhere yet: nosuid, nodev, plus `attrs`.
Result<UniqueFd> NewTmpfs(std::string_view what,
                          std::initializer_list<std::pair<const char*, std::string>> params,
                          unsigned attrs = 0) {
  UniqueFd fs(::fsopen("tmpfs", FSOPEN_CLOEXEC));
  if (!fs) return ErrnoError("fsopen tmpfs");
  for (const auto& [key, value] : params) {
    if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, key, value.c_str(), 0) < 0) {
      return FsError(fs.get(), fmt::format("{} tmpfs option {}={}", what, key, value));
    }
  }
  if (::fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) {
    return FsError(fs.get(), fmt::format("create the {} tmpfs", what));
  }
  UniqueFd mnt(::fsmount(fs.get(), FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | attrs));
  if (!mnt) return FsError(fs.get(), fmt::format("fsmount the {} tmpfs", what));
  return mnt;
}

// The mount points of a run (artifacts, workspace) are directories on a tmpfs of their own:
// making and removing them costs the host's filesystem nothing (on ext4 without a journal, each
// deleted inode slows the next allocations down and may wait for a discard).
constexpr uint64_t kMountPointsTmpfsBytes = 64 << 10;

// A user namespace whose only mapping takes `from` to `to` (uid and gid), for
// mount_setattr(MOUNT_ATTR_IDMAP): through the idmapped mount, files owned by `from` appear as
// owned by `to`. A short-lived child creates it (a threaded process cannot unshare(CLONE_NEWUSER));
// the child only blocks on a pipe and exits, so it needs no async-signal-unsafe call.
Result<UniqueFd> MakeIdmapUserns(uid_t from_uid, gid_t from_gid, uid_t to_uid, gid_t to_gid) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return ErrnoError("pipe2");
  UniqueFd rd(p[0]);
  UniqueFd wr(p[1]);
  int pidfd_raw = -1;
  struct clone_args args;
  std::memset(&args, 0, sizeof args);
  args.flags = CLONE_NEWUSER | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd_raw);
  args.exit_signal = 0;  // no SIGCHLD to the daemon's handlers; reaped below with __WALL
  long pid = sys::Clone3(&args);
  if (pid < 0) return ErrnoError("clone3(CLONE_NEWUSER) for the idmap user namespace");
  if (pid == 0) {
    ::close(p[1]);
    char c;
    while (::read(p[0], &c, 1) < 0 && errno == EINTR) {
    }
    ::_exit(0);
  }
  UniqueFd pidfd(pidfd_raw);
  auto reap = [&] {
    wr.reset();  // the child sees EOF and exits
    siginfo_t info;
    while (::waitid(P_PIDFD, static_cast<id_t>(pidfd.get()), &info, WEXITED | __WALL) < 0 &&
           errno == EINTR) {
    }
  };
  // uid_map: "INSIDE OUTSIDE COUNT". An idmapped mount maps a file's on-disk id as an inside id
  // of this namespace to its outside id (make_vfsuid(), fs/mnt_idmapping.c).
  Status st =
      WriteFile(fmt::format("/proc/{}/uid_map", pid), fmt::format("{} {} 1\n", from_uid, to_uid));
  if (st.ok()) {
    st =
        WriteFile(fmt::format("/proc/{}/gid_map", pid), fmt::format("{} {} 1\n", from_gid, to_gid));
  }
  UniqueFd ns;
  if (st.ok()) {
    ns.reset(::open(fmt::format("/proc/{}/ns/user", pid).c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns) st = ErrnoError("open /proc/{}/ns/user", pid);
  }
  reap();
  if (!st.ok()) return WithContext(std::move(st).error(), "idmap user namespace");
  return ns;
}

int MountSetattr(int fd, const char* path, unsigned flags, const struct mount_attr& attr) {
  struct mount_attr a = attr;
  return ::mount_setattr(fd, path, flags, &a, sizeof a);
}

// A new tmpfs of `size` bytes and `inodes` inodes, mounted with `attrs` (MOUNT_ATTR_*),
// attached at `name` below `dirfd` (`where` is that path, absolute, for messages) and made
// private: mounts below it stay in this namespace. On error nothing stays mounted there.
Status AttachPrivateTmpfs(const char* what, int dirfd, const char* name, const std::string& where,
                          uint64_t size, uint64_t inodes, const char* mode, unsigned attrs) {
  auto tree = NewTmpfs(what,
                       {{"size", std::to_string(size)},
                        {"nr_inodes", std::to_string(inodes)},
                        {"mode", mode}},
                       attrs);
  if (!tree.ok()) return std::move(tree).error();
  if (::move_mount(tree->get(), "", dirfd, name, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    return ErrnoError("mount a tmpfs on {}", where);
  }
  struct mount_attr attr;
  std::memset(&attr, 0, sizeof attr);
  attr.propagation = MS_PRIVATE;
  if (MountSetattr(dirfd, name, AT_SYMLINK_NOFOLLOW, attr) < 0) {
    Error e = ErrnoError("make {} private", where);
    ::umount2(where.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
    return e;
  }
  return Ok();
}

bool IsOctal(char c) { return c >= '0' && c <= '7'; }

// True for "<runs>/<id>/mnt", "<runs>/<id>/cow" (a copy-on-write layer) and anything below them.
bool IsRunMountPoint(const std::string& mount_point, const std::string& runs) {
  if (mount_point.size() <= runs.size() + 1 || mount_point.compare(0, runs.size(), runs) != 0 ||
      mount_point[runs.size()] != '/') {
    return false;
  }
  std::vector<std::string> parts;
  if (!SplitComponents(std::string_view(mount_point).substr(runs.size()), &parts)) return false;
  return parts.size() >= 2 && (parts[1] == "mnt" || parts[1] == "cow");
}

size_t Depth(const std::string& path) { return std::count(path.begin(), path.end(), '/'); }

}  // namespace

// ---- workspace paths --------------------------------------------------------------------------

Result<ResolvedWorkspace> ResolveWorkspace(std::string_view requested,
                                           const std::vector<std::string>& allowed_roots) {
  if (allowed_roots.empty()) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "workspaces are not enabled: set workspace_roots in the daemon's "
                     "configuration to the directories runs may use");
  }
  if (requested.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the workspace path is empty; name an absolute host directory under {}",
                     RootList(allowed_roots));
  }
  if (requested.find('\0') != std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "the workspace path contains a NUL byte");
  }
  const std::string req(requested);
  if (req[0] != '/') {
    return MakeError(ErrorCode::kInvalidArgument,
                     "workspace '{}' is relative; name an absolute host directory under {}", req,
                     RootList(allowed_roots));
  }
  if (req.size() >= PATH_MAX) {
    return MakeError(ErrorCode::kInvalidArgument, "the workspace path is longer than {} bytes",
                     PATH_MAX - 1);
  }
  std::vector<std::string> parts;
  if (!SplitComponents(req, &parts)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "workspace '{}' has a '.' or '..' component; name the directory directly",
                     req);
  }

  // The longest root whose components are a prefix of the request's.
  const std::string* root = nullptr;
  size_t root_len = 0;
  for (const std::string& r : allowed_roots) {
    std::vector<std::string> rparts;
    if (r.empty() || r[0] != '/' || !SplitComponents(r, &rparts)) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "workspace root '{}' is not an absolute path without '.' or '..'; fix "
                       "workspace_roots",
                       r);
    }
    if (rparts.size() > parts.size() || (root != nullptr && rparts.size() < root_len)) continue;
    if (std::equal(rparts.begin(), rparts.end(), parts.begin())) {
      root = &r;
      root_len = rparts.size();
    }
  }
  if (root == nullptr) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "workspace '{}' is not under an allowed workspace root ({}); name a "
                     "directory under one of them",
                     req, RootList(allowed_roots));
  }

  UniqueFd root_fd(::open(root->c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) {
    return WithContext(ErrnoError("workspace root {} cannot be opened; fix workspace_roots", *root),
                       "workspace");
  }
  UniqueFd fd;
  const std::string rest = JoinComponents(parts, root_len);
  if (rest.empty()) {
    fd.reset(::fcntl(root_fd.get(), F_DUPFD_CLOEXEC, 0));
    if (!fd) return ErrnoError("dup workspace root fd");
  } else {
    fd.reset(OpenBeneath(root_fd.get(), rest, O_PATH));
    if (!fd) {
      switch (errno) {
        case ELOOP:
          return Error{ErrorCode::kPermissionDenied,
                       ELOOP,
                       fmt::format("workspace '{}' goes through a symbolic link; symlinks are "
                                   "not followed below a workspace root: name the real directory",
                                   req),
                       {}};
        case EXDEV:
          return Error{ErrorCode::kPermissionDenied,
                       EXDEV,
                       fmt::format("workspace '{}' leads outside its root {}", req, *root),
                       {}};
        case ENOENT:
          return Error{
              ErrorCode::kNotFound, ENOENT, fmt::format("workspace '{}' does not exist", req), {}};
        case ENOTDIR:
          return Error{ErrorCode::kInvalidArgument,
                       ENOTDIR,
                       fmt::format("workspace '{}': a component is not a directory", req),
                       {}};
        default:
          return WithContext(ErrnoError("open workspace {}", req), "workspace");
      }
    }
  }
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return ErrnoError("stat workspace {}", req);
  if (!S_ISDIR(st.st_mode)) {
    return Error{ErrorCode::kInvalidArgument,
                 ENOTDIR,
                 fmt::format("workspace '{}' is not a directory", req),
                 {}};
  }
  char buf[PATH_MAX];
  ssize_t n = ::readlink(fmt::format("/proc/self/fd/{}", fd.get()).c_str(), buf, sizeof buf - 1);
  if (n < 0) return ErrnoError("readlink of the workspace fd");

  ResolvedWorkspace ws;
  ws.fd = std::move(fd);
  ws.path.assign(buf, static_cast<size_t>(n));
  ws.root = *root;
  ws.owner_uid = st.st_uid;
  ws.owner_gid = st.st_gid;
  return ws;
}

const char* WorkspaceModeName(WorkspaceMode mode) {
  switch (mode) {
    case WorkspaceMode::kReadOnly:
      return "ro";
    case WorkspaceMode::kCopyOnWrite:
      return "cow";
    case WorkspaceMode::kReadWrite:
      return "rw";
  }
  return "ro";
}

Result<WorkspaceMode> ParseWorkspaceMode(std::string_view name) {
  if (name == "ro" || name == "read-only") return WorkspaceMode::kReadOnly;
  if (name == "cow" || name == "copy-on-write") return WorkspaceMode::kCopyOnWrite;
  if (name == "rw" || name == "read-write") return WorkspaceMode::kReadWrite;
  return MakeError(ErrorCode::kInvalidArgument,
                   "workspace mode '{}' is not known; use \"ro\", \"cow\" or \"rw\"", name);
}

// ---- per-run mounts ---------------------------------------------------------------------------

RunMounts::RunMounts(RunMounts&& o) noexcept { *this = std::move(o); }

RunMounts& RunMounts::operator=(RunMounts&& o) noexcept {
  if (this == &o) return *this;
  if (Status st = Teardown(); !st.ok()) {
    spdlog::warn("tearing down the mounts of {}: {}", run_dir_, st.error().ToString());
  }
  run_dir_ = std::exchange(o.run_dir_, {});
  run_fd_ = std::move(o.run_fd_);
  mnt_fd_ = std::move(o.mnt_fd_);
  artifacts_fd_ = std::move(o.artifacts_fd_);
  upper_fd_ = std::move(o.upper_fd_);
  lower_fd_ = std::move(o.lower_fd_);
  sandbox_uid_ = o.sandbox_uid_;
  sandbox_gid_ = o.sandbox_gid_;
  mount_points_ = std::exchange(o.mount_points_, {});
  made_mnt_dir_ = std::exchange(o.made_mnt_dir_, false);
  made_cow_dir_ = std::exchange(o.made_cow_dir_, false);
  torn_down_ = std::exchange(o.torn_down_, true);
  has_workspace_ = o.has_workspace_;
  mode_ = o.mode_;
  quota_ = o.quota_;
  prepared_at_ = o.prepared_at_;
  return *this;
}

RunMounts::~RunMounts() {
  if (Status st = Teardown(); !st.ok()) {
    spdlog::warn("tearing down the mounts of {}: {}", run_dir_, st.error().ToString());
  }
}

Result<RunMounts> RunMounts::Prepare(const std::string& run_dir, const ResolvedWorkspace* ws,
                                     WorkspaceMode mode, uint64_t artifacts_quota_bytes,
                                     uid_t sandbox_host_uid, gid_t sandbox_host_gid,
                                     CowLimits cow) {
  if (run_dir.empty() || run_dir[0] != '/') {
    return MakeError(ErrorCode::kInvalidArgument, "run dir '{}' must be an absolute path", run_dir);
  }
  if (artifacts_quota_bytes == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "the artifacts quota must be more than 0 bytes");
  }
  if (ws != nullptr && !ws->fd.valid()) {
    return MakeError(ErrorCode::kInvalidArgument, "the resolved workspace has no open directory");
  }
  char real[PATH_MAX];
  if (::realpath(run_dir.c_str(), real) == nullptr) return ErrnoError("run dir {}", run_dir);

  RunMounts m;
  m.torn_down_ = false;
  // A file timestamp is the coarse clock's tick, or (multigrain timestamps, Linux >= 6.13) the
  // fine clock at the change: never later than the change. A host file changed before this
  // point has an earlier ctime; one changed in a later tick, a later ctime (SaveChanges).
  ::clock_gettime(CLOCK_REALTIME, &m.prepared_at_);
  m.run_dir_ = real;
  m.quota_ = artifacts_quota_bytes;
  m.run_fd_.reset(::open(real, O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!m.run_fd_) return ErrnoError("open run dir {}", m.run_dir_);

  SBX_TRY(CheckSearchableByOthers(m.run_dir_));

  // <run_dir>/mnt, a small tmpfs made private: mounts below it stay in this namespace.
  if (::mkdirat(m.run_fd_.get(), "mnt", 0755) < 0) {
    if (errno == EEXIST) {
      return Error{ErrorCode::kAlreadyExists,
                   EEXIST,
                   fmt::format("{}/mnt exists: mounts of an earlier run were not cleaned up; "
                               "SweepStaleMounts (run at daemon start) removes them",
                               m.run_dir_),
                   {}};
    }
    return ErrnoError("mkdir {}/mnt", m.run_dir_);
  }
  m.made_mnt_dir_ = true;
  if (::fchmodat(m.run_fd_.get(), "mnt", 0755, 0) < 0) return ErrnoError("chmod {}/mnt", real);
  SBX_TRY(AttachPrivateTmpfs("mount points", m.run_fd_.get(), "mnt", m.run_dir_ + "/mnt",
                             kMountPointsTmpfsBytes, 16, "0755", MOUNT_ATTR_NOEXEC));
  m.mount_points_.push_back(m.run_dir_ + "/mnt");
  m.mnt_fd_.reset(OpenBeneath(m.run_fd_.get(), "mnt", O_PATH | O_DIRECTORY | O_NOFOLLOW));
  if (!m.mnt_fd_) return ErrnoError("open {}/mnt", m.run_dir_);

  SBX_TRY(m.MakeArtifacts(artifacts_quota_bytes, sandbox_host_uid, sandbox_host_gid));
  if (ws != nullptr) {
    m.has_workspace_ = true;
    m.mode_ = mode;
    if (mode == WorkspaceMode::kReadOnly) {
      SBX_TRY(m.MakeReadOnlyWorkspace(*ws));
    } else if (mode == WorkspaceMode::kReadWrite) {
      SBX_TRY(m.MakeReadWriteWorkspace(*ws, sandbox_host_uid, sandbox_host_gid));
    } else {
      SBX_TRY(m.MakeCopyOnWriteWorkspace(*ws, sandbox_host_uid, sandbox_host_gid, cow));
    }
  }
  return m;
}

Status RunMounts::Attach(int tree_fd, const char* name) {
  if (::mkdirat(mnt_fd_.get(), name, 0755) < 0)
    return ErrnoError("mkdir {}/mnt/{}", run_dir_, name);
  if (::move_mount(tree_fd, "", mnt_fd_.get(), name, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    return ErrnoError("attach {}/mnt/{}", run_dir_, name);
  }
  mount_points_.push_back(fmt::format("{}/mnt/{}", run_dir_, name));
  return Ok();
}

Status RunMounts::MakeArtifacts(uint64_t quota, uid_t uid, gid_t gid) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t size = (quota + page - 1) / page * page;
  auto mnt = NewTmpfs("artifacts", {{"size", std::to_string(size)},
                                    {"nr_inodes", std::to_string(kArtifactsMaxInodes)},
                                    {"mode", "0755"},
                                    {"uid", std::to_string(uid)},
                                    {"gid", std::to_string(gid)}});
  if (!mnt.ok()) return std::move(mnt).error();
  SBX_TRY(Attach(mnt->get(), "artifacts"));
  artifacts_fd_ = std::move(*mnt);
  return Ok();
}

Status RunMounts::MakeReadOnlyWorkspace(const ResolvedWorkspace& ws) {
  UniqueFd tree(::open_tree(ws.fd.get(), "",
                            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE));
  if (!tree) return ErrnoError("clone the workspace mount of {}", ws.path);
  struct mount_attr attr;
  std::memset(&attr, 0, sizeof attr);
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  attr.propagation = MS_PRIVATE;
  // Read-only before it is attached anywhere: there is no instant at which it is writable.
  if (MountSetattr(tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, attr) < 0) {
    return ErrnoError("make the workspace clone of {} read-only", ws.path);
  }
  return Attach(tree.get(), "workspace");
}

// A detached clone of the workspace's mount (not its sub-mounts), idmapped so that its owner's
// files are uid:gid's, with `attrs` (MOUNT_ATTR_*) besides. `what` names the mode in messages.
static Result<UniqueFd> IdmappedClone(const ResolvedWorkspace& ws, uid_t uid, gid_t gid,
                                      uint64_t attrs, const char* what) {
  auto userns = MakeIdmapUserns(ws.owner_uid, ws.owner_gid, uid, gid);
  if (!userns.ok()) return std::move(userns).error();
  UniqueFd tree(::open_tree(ws.fd.get(), "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH));
  if (!tree) return ErrnoError("clone the workspace mount of {}", ws.path);
  struct mount_attr attr;
  std::memset(&attr, 0, sizeof attr);
  attr.attr_set = attrs | MOUNT_ATTR_IDMAP;
  attr.userns_fd = static_cast<uint64_t>(userns->get());
  attr.propagation = MS_PRIVATE;
  if (MountSetattr(tree.get(), "", AT_EMPTY_PATH, attr) < 0) {
    const int e = errno;
    if (e == EINVAL || e == EOPNOTSUPP || e == EPERM) {
      return Error{ErrorCode::kUnavailable,
                   e,
                   fmt::format("workspace {} is on {}, which cannot be idmapped here "
                               "(mount_setattr MOUNT_ATTR_IDMAP: {}); {} workspaces need a "
                               "filesystem with idmapped mounts (ext4, xfs, btrfs, tmpfs on "
                               "Linux >= 6.3, …): use read-only mode or move the workspace",
                               ws.path, FsTypeName(ws.fd.get()), std::strerror(e), what),
                   {}};
    }
    return ErrnoError("idmap the workspace clone of {}", ws.path);
  }
  return tree;
}

Status RunMounts::MakeReadWriteWorkspace(const ResolvedWorkspace& ws, uid_t uid, gid_t gid) {
  // IMPORTANT: every file of the directory's owner becomes the sandbox's to change, so a
  // root-owned directory is never shared this way (its root-owned files would be).
  if (ws.owner_uid == 0 || ws.owner_gid == 0) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "workspace {} is owned by root: a read-write workspace gives the sandbox "
                     "every file of its owner; share a directory of an unprivileged user",
                     ws.path);
  }
  // Not recursive: a mount below the workspace is not shared (it would need its own idmap).
  auto tree = IdmappedClone(ws, uid, gid, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, "read-write");
  if (!tree.ok()) return std::move(tree).error();
  return Attach(tree->get(), "workspace");
}

Status RunMounts::MakeCopyOnWriteWorkspace(const ResolvedWorkspace& ws, uid_t uid, gid_t gid,
                                           const CowLimits& cow) {
  struct stat wst;
  if (::fstat(ws.fd.get(), &wst) < 0) return ErrnoError("stat workspace {}", ws.path);
  const std::string fs_name = FsTypeName(ws.fd.get());

  // The upper layer: the root directory looks like the workspace's, owned by the sandbox user.
  if (::mkdirat(run_fd_.get(), "cow", 0700) < 0) {
    if (errno == EEXIST) {
      return Error{ErrorCode::kAlreadyExists,
                   EEXIST,
                   fmt::format("{}/cow exists: an earlier run was not cleaned up; "
                               "SweepStaleMounts (run at daemon start) removes it",
                               run_dir_),
                   {}};
    }
    return ErrnoError("mkdir {}/cow", run_dir_);
  }
  made_cow_dir_ = true;
  // The layer's own tmpfs: the data directory's filesystem is never written by a run, and what
  // the run writes is bounded (bytes, inodes) and charged to its memory cgroup. No noexec: the
  // run may execute what it built.
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  SBX_TRY(AttachPrivateTmpfs("copy-on-write layer", run_fd_.get(), "cow", run_dir_ + "/cow",
                             (cow.bytes + page - 1) / page * page, cow.inodes, "0700",
                             MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV));
  mount_points_.push_back(run_dir_ + "/cow");
  // Into the tmpfs just attached there (so not same_mount).
  UniqueFd cow_fd(OpenBeneath(run_fd_.get(), "cow", O_PATH | O_DIRECTORY | O_NOFOLLOW));
  if (!cow_fd) return ErrnoError("open {}/cow", run_dir_);
  const int cow_dir = cow_fd.get();
  if (::mkdirat(cow_dir, "upper", 0700) < 0 || ::mkdirat(cow_dir, "work", 0700) < 0) {
    return ErrnoError("mkdir {}/cow/{{upper,work}}", run_dir_);
  }
  if (::fchownat(cow_dir, "upper", uid, gid, AT_SYMLINK_NOFOLLOW) < 0 ||
      ::fchmodat(cow_dir, "upper", wst.st_mode & 01777, 0) < 0) {
    return ErrnoError("set the owner and mode of {}/cow/upper", run_dir_);
  }
  upper_fd_.reset(OpenBeneath(cow_dir, "upper", O_RDONLY | O_DIRECTORY | O_NOFOLLOW, true));
  if (!upper_fd_) return ErrnoError("open {}/cow/upper", run_dir_);
  sandbox_uid_ = uid;
  sandbox_gid_ = gid;

  // The lower layer: the workspace, read-only, idmapped so that its owner's files are the
  // sandbox user's.
  auto idmapped = IdmappedClone(ws, uid, gid,
                                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                                "copy-on-write");
  if (!idmapped.ok()) return std::move(idmapped).error();
  UniqueFd& tree = *idmapped;
  SBX_TRY(Attach(tree.get(), "lower"));
  // Diff() reads the workspace through this idmapped view, as the sandbox user: exactly what
  // the run itself could read, never more.
  lower_fd_.reset(::fcntl(tree.get(), F_DUPFD_CLOEXEC, 0));
  if (!lower_fd_) return ErrnoError("dup the idmapped workspace fd");

  // The overlay. redirect_dir and metacopy stay off: a directory renamed from the lower layer
  // is copied (rename(2) says EXDEV, and tools fall back to copy and delete), and every changed
  // file is complete in the upper layer, which keeps Diff() a walk of plain files.
  UniqueFd fs(::fsopen("overlay", FSOPEN_CLOEXEC));
  if (!fs) return ErrnoError("fsopen overlay (is the overlay module loaded?)");
  const std::string lower = run_dir_ + "/mnt/lower";
  if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, "lowerdir+", lower.c_str(), 0) < 0) {
    // Before Linux 6.8 there is only "lowerdir", a ':'-separated list with '\' escapes.
    std::string escaped;
    for (char c : lower) {
      if (c == ':' || c == ',' || c == '\\') escaped += '\\';
      escaped += c;
    }
    FsContextLog(fs.get());  // drop the "unknown parameter" message
    if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, "lowerdir", escaped.c_str(), 0) < 0) {
      return FsError(fs.get(), "overlay lowerdir " + lower);
    }
  }
  const std::pair<const char*, std::string> params[] = {
      {"upperdir", run_dir_ + "/cow/upper"},
      {"workdir", run_dir_ + "/cow/work"},
      {"redirect_dir", "off"},
      {"metacopy", "off"},
      {"index", "off"},
  };
  for (const auto& [key, value] : params) {
    if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, key, value.c_str(), 0) < 0) {
      return FsError(fs.get(), fmt::format("overlay option {}={}", key, value));
    }
  }
  if (::fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) {
    Error e = FsError(fs.get(),
                      fmt::format("create the overlay of workspace {} (on {})", ws.path, fs_name));
    e.code = ErrorCode::kUnavailable;
    return e;
  }
  UniqueFd merged(::fsmount(fs.get(), FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV));
  if (!merged) return FsError(fs.get(), "fsmount the workspace overlay");
  return Attach(merged.get(), "merged");
}

std::vector<isolate::BindMount> RunMounts::Binds() const {
  std::vector<isolate::BindMount> binds;
  if (has_workspace_) {
    if (mode_ == WorkspaceMode::kReadOnly) {
      binds.push_back({run_dir_ + "/mnt/workspace", kWorkspaceTarget, false});
    } else if (mode_ == WorkspaceMode::kReadWrite) {
      binds.push_back({run_dir_ + "/mnt/workspace", kWorkspaceTarget, true});
    } else {
      binds.push_back({run_dir_ + "/mnt/merged", kWorkspaceTarget, true});
    }
  }
  binds.push_back({run_dir_ + "/mnt/artifacts", kArtifactsTarget, true});
  return binds;
}

Status RunMounts::Teardown() {
  if (torn_down_) return Ok();
  Status result;
  auto keep_first = [&](Error e) {
    if (result.ok()) result = std::move(e);
  };
  artifacts_fd_.reset();
  upper_fd_.reset();
  lower_fd_.reset();
  mnt_fd_.reset();
  for (auto it = mount_points_.rbegin(); it != mount_points_.rend(); ++it) {
    // EINVAL: no longer a mount point (detached with its parent, or by someone else).
    if (::umount2(it->c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL &&
        errno != ENOENT) {
      keep_first(ErrnoError("unmount {}", *it));
    }
  }
  mount_points_.clear();
  if (result.ok() && run_fd_) {
    if (made_cow_dir_) {
      if (Status st = RemoveTree(run_fd_.get(), "cow"); st.ok()) {
        made_cow_dir_ = false;
      } else {
        keep_first(WithContext(std::move(st).error(), run_dir_ + "/cow"));
      }
    }
    if (made_mnt_dir_) {
      if (Status st = RemoveTree(run_fd_.get(), "mnt"); st.ok()) {
        made_mnt_dir_ = false;
      } else {
        keep_first(WithContext(std::move(st).error(), run_dir_ + "/mnt"));
      }
    }
  }
  if (result.ok()) {
    run_fd_.reset();
    torn_down_ = true;
  }
  return result;
}

// ---- crash recovery ---------------------------------------------------------------------------

std::string UnescapeMountinfo(std::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && IsOctal(field[i + 1]) &&
        IsOctal(field[i + 2]) && IsOctal(field[i + 3])) {
      out += static_cast<char>(((field[i + 1] - '0') << 6) | ((field[i + 2] - '0') << 3) |
                               (field[i + 3] - '0'));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

Status CheckSearchableByOthers(const std::string& path) {
  for (size_t pos = 0; pos != std::string::npos;) {
    pos = path.find('/', pos + 1);
    std::string dir = pos == std::string::npos ? path : path.substr(0, pos);
    struct stat st;
    if (::stat(dir.c_str(), &st) < 0) return ErrnoError("stat {}", dir);
    if ((st.st_mode & S_IXOTH) == 0) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "{} (mode {:04o}) is not searchable by others, but the sandbox reaches "
                       "its mounts through it as an unprivileged host id; chmod o+x it (0711 "
                       "keeps it unlistable)",
                       dir, st.st_mode & 07777);
    }
  }
  return Ok();
}

Status MountPointsTmpfs(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0711) < 0 && errno != EEXIST) return ErrnoError("mkdir {}", dir);
  return AttachPrivateTmpfs("mount points", AT_FDCWD, dir.c_str(), dir,
                            kMountPointsTmpfsBytes * 16, 65536, "0711", MOUNT_ATTR_NOEXEC);
}

Status SweepStaleMounts(const std::string& data_dir) {
  char real[PATH_MAX];
  if (::realpath(data_dir.c_str(), real) == nullptr) {
    if (errno == ENOENT) return Ok();
    return ErrnoError("data dir {}", data_dir);
  }
  const std::string runs = std::string(real) + "/runs";
  const std::string sandboxes = std::string(real) + "/" + kSandboxesDir;
  const std::string warm = std::string(real) + "/" + kWarmDir;
  Status result;
  auto keep_first = [&](Error e) {
    spdlog::warn("sweeping stale run mounts: {}", e.ToString());
    if (result.ok()) result = std::move(e);
  };

  // Stacked mounts show up one at a time: scan again until none is left (bounded).
  for (int round = 0; round < 16; ++round) {
    auto info = ReadFile("/proc/self/mountinfo", 64 << 20);
    if (!info.ok()) return std::move(info).error();
    std::vector<std::string> points;
    size_t pos = 0;
    while (pos < info->size()) {
      size_t eol = info->find('\n', pos);
      if (eol == std::string::npos) eol = info->size();
      std::string_view line(info->data() + pos, eol - pos);
      pos = eol + 1;
      // "ID PARENT MAJ:MIN ROOT MOUNT_POINT …"
      size_t field = 0;
      size_t start = 0;
      for (size_t i = 0; i <= line.size() && field < 5; ++i) {
        if (i == line.size() || line[i] == ' ') {
          if (field == 4) {
            std::string mp = UnescapeMountinfo(line.substr(start, i - start));
            if (IsRunMountPoint(mp, runs) || IsRunMountPoint(mp, sandboxes) || mp == warm ||
                mp.rfind(warm + "/", 0) == 0) {
              points.push_back(std::move(mp));
            }
          }
          ++field;
          start = i + 1;
        }
      }
    }
    if (points.empty()) break;
    std::stable_sort(points.begin(), points.end(), [](const std::string& a, const std::string& b) {
      return Depth(a) > Depth(b);
    });
    bool progress = false;
    for (const std::string& p : points) {
      if (::umount2(p.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) {
        progress = true;
        spdlog::info("unmounted stale run mount {}", p);
      } else if (errno != EINVAL && errno != ENOENT) {
        keep_first(ErrnoError("unmount stale {}", p));
      }
    }
    if (!progress) break;
  }

  for (const std::string& parent : {runs, sandboxes}) {
    UniqueFd parent_fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!parent_fd) {
      if (errno == ENOENT) continue;
      return ErrnoError("open {}", parent);
    }
    auto ids = internal::ListDir(parent_fd.get());
    if (!ids.ok()) return std::move(ids).error();
    for (const std::string& id : *ids) {
      UniqueFd dir(OpenBeneath(parent_fd.get(), id, O_PATH | O_DIRECTORY | O_NOFOLLOW, true));
      if (!dir) continue;  // a file, a symlink, a mount point: not a directory of ours
      for (const char* sub : {"mnt", "cow"}) {
        if (Status st = RemoveTree(dir.get(), sub); !st.ok()) {
          keep_first(
              WithContext(std::move(st).error(), fmt::format("{}/{}/{}", parent, id, sub)));
        }
      }
    }
  }
  return result;
}

}  // namespace sbx::supervisor
