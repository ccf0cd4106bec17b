// Host-side filesystems of a run: the client's workspace (read-only or copy-on-write) and the
// /artifacts scratch area, mounted by the daemon under the run's private directory and handed to
// the sandbox as binds.
//
//   <run_dir>/mnt/             a small private tmpfs holding the mount points: nothing below
//                              propagates to other mount namespaces of the host, and making and
//                              removing the mount points costs the host's filesystem nothing
//   <run_dir>/mnt/workspace    read-only mode: a read-only, nosuid, nodev clone of the workspace
//   <run_dir>/mnt/lower        copy-on-write: the workspace, read-only and idmapped (its owner
//                              appears as the sandbox user)
//   <run_dir>/mnt/merged       copy-on-write: overlayfs of lower + cow/upper; bound at /workspace
//   <run_dir>/mnt/artifacts    a tmpfs of the artifacts quota, owned by the sandbox user
//   <run_dir>/cow/{upper,work} copy-on-write: the run's changes, and overlayfs' scratch dir
//
// Requires host root (CAP_SYS_ADMIN in the initial user namespace) and Linux >= 5.12 (idmapped
// mounts, mount_setattr); overlayfs over an idmapped lower layer needs >= 5.19.
//
// Order of use in a run:
//   1. ResolveWorkspace (when the run names one) — at submit time, to refuse bad paths early, and
//      again right before Prepare (or keep the result: its fd pins the directory).
//   2. RunMounts::Prepare, then add Binds() to SandboxSpec::binds, then Sandbox::Create (the
//      sandbox clones the mounts when it is built, so they must exist first).
//   3. The steps run.
//   4. Sandbox::Destroy (nothing may write any more), then CollectArtifacts and Diff.
//   5. Teardown (or let the RunMounts go out of scope).
// At daemon start, before any run: SweepStaleMounts(data_dir) for what a crash left behind.
#pragma once

#include <sys/types.h>
#include <time.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "isolate/spec.h"
#include "supervisor/workspace/changes.h"

namespace sbx::supervisor {

// A client-named host directory, resolved beneath one of the configured roots.
struct ResolvedWorkspace {
  UniqueFd fd;       // O_PATH | O_DIRECTORY of the directory: later steps use it, not the path
  std::string path;  // canonical absolute path, for logs and the run record
  std::string root;  // the allowed root it lies under
  uid_t owner_uid = 0;
  gid_t owner_gid = 0;
};

// Resolves `requested` (an absolute host path) beneath the longest of `allowed_roots` that
// contains it, comparing whole components ("/srv/work2" is not under "/srv/work"). The part below
// the root is opened with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
// from the root's fd, so no symlink below the root is followed, however it was planted. The roots
// themselves are the administrator's and may contain symlinks; mount points below a root are the
// administrator's too and are crossed.
//
// Errors: kPermissionDenied when no roots are configured ("workspaces are not enabled"), when
// the path is not under a root, or goes through a symlink; kInvalidArgument for an empty or
// relative path, a NUL byte, a "." or ".." component, something that is not a directory;
// kNotFound when it does not exist.
Result<ResolvedWorkspace> ResolveWorkspace(std::string_view requested,
                                           const std::vector<std::string>& allowed_roots);

enum class WorkspaceMode {
  kReadOnly,     // the run sees the directory; every write fails with EROFS
  kCopyOnWrite,  // the run may change anything; changes land in <run_dir>/cow/upper only
  // Long-lived sandboxes only, under ServiceLimits::workspace_rw_roots: the host directory
  // itself, writable, idmapped so that its owner's files are the sandbox user's and what the
  // sandbox writes is owned by that owner on disk (the developer sees their own files).
  kReadWrite,
};
const char* WorkspaceModeName(WorkspaceMode mode);  // "ro", "cow", "rw"
// "ro" / "read-only", "cow" / "copy-on-write" and "rw" / "read-write"; kInvalidArgument for
// anything else.
Result<WorkspaceMode> ParseWorkspaceMode(std::string_view name);

struct ArtifactFile {
  std::string path;  // relative to /artifacts, '/'-separated
  uint64_t size = 0;
  std::string sha256;  // lowercase hex
};

struct SkippedArtifact {
  std::string path;    // relative; bytes that are not printable UTF-8 are written as \xNN
  std::string reason;  // "symbolic link (not followed)", "fifo", "over the artifacts quota", …
};

struct ArtifactLimits {
  uint64_t max_total_bytes = 0;  // 0: the quota given to Prepare
  size_t max_files = 1000;
  int max_depth = 32;  // directories nested deeper are skipped
};

struct ArtifactList {
  std::vector<ArtifactFile> files;  // sorted by path
  // What was left out, and why: at most kMaxSkippedListed, the rest counted in skipped_unlisted
  // (a sandbox decides how many entries there are: hard links cost it no inode).
  static constexpr size_t kMaxSkippedListed = 1000;
  std::vector<SkippedArtifact> skipped;
  uint64_t skipped_unlisted = 0;
  uint64_t total_bytes = 0;
};

// What a run's copy-on-write layer may hold. It is a tmpfs of its own, whose pages are charged
// to the memory cgroup of the process that writes them (the sandbox's): a run fills neither the
// data directory's filesystem nor more memory than its limit allows.
struct CowLimits {
  uint64_t bytes = 1ull << 30;
  uint64_t inodes = 1u << 20;
};

class RunMounts {
 public:
  static constexpr const char* kWorkspaceTarget = "/workspace";
  static constexpr const char* kArtifactsTarget = "/artifacts";
  // The artifacts tmpfs holds at most this many inodes (files, directories, links).
  static constexpr uint64_t kArtifactsMaxInodes = 16384;

  // Makes the run's mounts under `run_dir` (an existing directory; it and every directory
  // above it must be searchable by others (o+x), since the sandbox's init opens the mount points
  // by path as an unprivileged host id). `ws` (nullable: no workspace) is used through its fd
  // only; `mode` is ignored without a workspace. The artifacts tmpfs gets `artifacts_quota_bytes`
  // (rounded up to a page; CollectArtifacts enforces the exact value) and is owned by
  // `sandbox_host_uid`/`sandbox_host_gid`, the host ids of the sandbox user (host_id_base + uid),
  // who also becomes the apparent owner of the workspace owner's files in copy-on-write mode.
  //
  // On error, everything made so far is removed again. Errors: kInvalidArgument (bad run_dir,
  // zero quota), kAlreadyExists (<run_dir>/mnt or cow left over: SweepStaleMounts removes them),
  // kUnavailable when the workspace's filesystem cannot be idmapped or overlaid (the message
  // names the filesystem), kInternal/kPermissionDenied for other mount failures.
  //
  // IMPORTANT: the copy-on-write view maps the workspace owner's uid/gid to the sandbox user, so
  // the run can change (in its copy) every file that owner owns; files of other owners appear
  // as nobody/nogroup. Sub-mounts below the workspace are not part of the copy-on-write view
  // (overlayfs takes one mount per layer); the read-only view includes them, read-only.
  //
  // In copy-on-write mode, the run's changes go to <run_dir>/cow, a tmpfs of `cow` bytes and
  // inodes (writes past them fail with ENOSPC).
  static Result<RunMounts> Prepare(const std::string& run_dir, const ResolvedWorkspace* ws,
                                   WorkspaceMode mode, uint64_t artifacts_quota_bytes,
                                   uid_t sandbox_host_uid, gid_t sandbox_host_gid,
                                   CowLimits cow = {});

  RunMounts(RunMounts&& other) noexcept;
  RunMounts& operator=(RunMounts&& other) noexcept;
  RunMounts(const RunMounts&) = delete;
  RunMounts& operator=(const RunMounts&) = delete;
  ~RunMounts();  // Teardown(), logging a failure

  // /workspace (when a workspace was given; writable in copy-on-write mode) and /artifacts
  // (always, writable), as binds for SandboxSpec::binds.
  std::vector<isolate::BindMount> Binds() const;

  // Copies what the run left in /artifacts into `dest_dir` (created, mode 0755; files 0644),
  // keeping relative paths. Regular files and directories only: symlinks, fifos, sockets and
  // devices are skipped (never followed or opened), as are names with control characters or
  // invalid UTF-8, files past the byte or file-count limits, and directories nested too deep;
  // each skip is listed with its reason. Reads the tmpfs through the mount's own fd, so a
  // renamed or replaced mount point does not redirect it. dest_dir is made only when there is
  // something to copy. Call after the sandbox is destroyed.
  // Errors: kFailedPrecondition after Teardown; kAlreadyExists when a file in dest_dir exists;
  // kInternal for I/O errors on the host side.
  Result<ArtifactList> CollectArtifacts(const std::string& dest_dir,
                                        const ArtifactLimits& limits = {}) const;

  // The run's changes to a copy-on-write workspace as a git-style unified diff (see
  // supervisor/workspace/diff.h), read from the overlay's upper layer against the workspace: files
  // sorted by path; a deleted directory lists each deleted file; a renamed file shows as deleted
  // plus new; files over 2 MiB and files with NUL bytes show as "Binary files … differ"; fifos,
  // sockets and devices the run made are left out. Line comparison has a fixed budget per call
  // (a few hundred million steps); past it, changed files show as whole replacements. When the
  // text would pass `max_bytes` it is cut at a file boundary and ends with a line saying how
  // many files were left out. "" for a read-only workspace or none. Call after the sandbox is
  // destroyed. Errors: kFailedPrecondition after Teardown; kInternal for I/O errors.
  //
  // Both layers are read with the sandbox user's rights (a thread of its own whose filesystem
  // ids are the sandbox user's host ids, without supplementary groups or the capabilities
  // that bypass file permissions), the workspace through the same idmapped view the run had:
  // a file the run could not read shows as "Binary files … differ", never its content.
  Result<std::string> Diff(size_t max_bytes) const;

  // Keeps the run's changes to a copy-on-write workspace as a change set (changes.h) in
  // `dest_dir` (made; it must not exist): every file, link and directory the run made, replaced
  // or removed, with the new files' content, and each host entry as the run found it, marked
  // when it changed after Prepare. Complete or refused: what the set cannot carry (a symbolic
  // link the run made, a name that is not clean UTF-8, a tree past the walk's bounds) is listed
  // in its refusals. Reads as root (nothing of it goes to the client but paths and sizes).
  // Nothing for a read-only workspace or none (an empty set, no directory). Call after the
  // sandbox is destroyed, before Teardown. Errors: kFailedPrecondition after Teardown;
  // kAlreadyExists when dest_dir exists; kInternal for I/O errors.
  // At most `max_bytes` of content is kept: past it, the set still lists every path but is
  // refused, and no content is kept (a sandbox decides how much it writes).
  Result<ChangeSet> SaveChanges(const std::string& dest_dir, uint64_t max_bytes) const;

  // Unmounts everything (lazily: MNT_DETACH) and removes <run_dir>/mnt and <run_dir>/cow, never
  // crossing into a mount that is still attached. Idempotent. Call after Sandbox::Destroy: a
  // live sandbox keeps its own clones of the mounts until it dies.
  Status Teardown();

  const std::string& run_dir() const { return run_dir_; }
  bool has_workspace() const { return has_workspace_; }
  WorkspaceMode mode() const { return mode_; }

 private:
  RunMounts() = default;
  Status Attach(int tree_fd, const char* name);
  Status MakeArtifacts(uint64_t quota, uid_t uid, gid_t gid);
  Status MakeReadOnlyWorkspace(const ResolvedWorkspace& ws);
  Status MakeReadWriteWorkspace(const ResolvedWorkspace& ws, uid_t uid, gid_t gid);
  Status MakeCopyOnWriteWorkspace(const ResolvedWorkspace& ws, uid_t uid, gid_t gid,
                                  const CowLimits& cow);
  // Diff()'s work, on a thread that holds the sandbox user's filesystem ids.
  Result<std::string> DiffAsSandboxUser(size_t max_bytes) const;

  std::string run_dir_;
  UniqueFd run_fd_;                        // O_PATH of run_dir
  UniqueFd mnt_fd_;                        // O_PATH of <run_dir>/mnt (the private tmpfs)
  UniqueFd artifacts_fd_;                  // the artifacts tmpfs' root (from fsmount)
  UniqueFd upper_fd_;                      // copy-on-write: <run_dir>/cow/upper
  UniqueFd lower_fd_;                      // copy-on-write: the idmapped workspace (mnt/lower)
  uid_t sandbox_uid_ = 0;                  // copy-on-write: the sandbox user's host ids, whose
  gid_t sandbox_gid_ = 0;                  //   rights Diff() reads with
  std::vector<std::string> mount_points_;  // absolute, in the order they were made
  bool made_mnt_dir_ = false;
  bool made_cow_dir_ = false;
  bool torn_down_ = true;  // nothing to undo until Prepare starts
  bool has_workspace_ = false;
  WorkspaceMode mode_ = WorkspaceMode::kReadOnly;
  uint64_t quota_ = 0;
  struct timespec prepared_at_ = {};  // CLOCK_REALTIME when the mounts were made
};

// Where warm sandboxes keep their mount points: <data_dir>/warm (supervisor/backend/warm_pool.h).
inline constexpr const char* kWarmDir = "warm";
// Where long-lived sandboxes keep theirs, and their processes' output: <data_dir>/sandboxes/<id>.
inline constexpr const char* kSandboxesDir = "sandboxes";

// Mounts a private tmpfs (mode 0711, noexec, nosuid, nodev) on `dir`, made when missing: a place
// for mount point directories that costs the host's filesystem nothing. Unmount it with
// umount2(MNT_DETACH), which takes the mounts below it along.
Status MountPointsTmpfs(const std::string& dir);

// After a crash: unmounts every mount below <data_dir>/runs/<id>/mnt (and cow),
// <data_dir>/sandboxes/<id>/mnt (and cow) and <data_dir>/warm found in /proc/self/mountinfo
// (deepest first) and removes the leftover mnt/ and cow/ directories.
// Touches nothing else. Call at daemon start, before any run is prepared: it cannot tell a live
// run's mounts from a dead one's.
Status SweepStaleMounts(const std::string& data_dir);

// kFailedPrecondition, saying what to chmod, unless every directory from / to `path` (absolute)
// lets others search it: the sandbox's init reaches the run's mount points as an unprivileged
// host id.
Status CheckSearchableByOthers(const std::string& path);

// Decodes the octal escapes of a /proc/self/mountinfo path field ("\040" is a space).
std::string UnescapeMountinfo(std::string_view field);

}  // namespace sbx::supervisor
