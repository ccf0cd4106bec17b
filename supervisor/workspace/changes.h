// A copy-on-write run's changes as a set that can be written into the host directory, and the
// writing itself: "host changes only after review".
//
// When a copy-on-write run ends, RunMounts::SaveChanges (workspace.h) keeps, beside diff.patch,
//
//   <data_dir>/runs/<id>/changes/changes.json   the manifest: one entry per path the run made,
//                                                replaced or removed, with the host file as the
//                                                run found it (its base)
//                                 blobs/<n>      the new content of each file the run wrote
//
// and ApplyChangeSet writes it into the workspace on a reviewer's word. The manifest names
// what ran against what: a host file that changed while the run ran, or since, is a conflict,
// and a conflict refuses the whole set before anything is written.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace sbx::supervisor {

// The host entry at a path when the run ended, as the run saw it through its lower layer.
struct ChangeBase {
  enum class Kind { kAbsent, kFile, kSymlink, kDir };
  Kind kind = Kind::kAbsent;
  uint32_t mode = 0;                // kFile: the permission bits (07777)
  std::string sha256;               // kFile: of the content
  std::string target;               // kSymlink: where it points
  bool changed_during_run = false;  // its ctime is after the run's workspace was mounted
  bool operator==(const ChangeBase&) const = default;
};

struct ChangeEntry {
  enum class Op {
    kMakeDir,    // a directory the run made (mode)
    kWrite,      // a regular file the run made or replaced (mode, size, sha256, blob)
    kDelete,     // a file or symbolic link the run removed
    kRemoveDir,  // a directory the run removed, with everything in it
  };
  std::string path;  // relative to the workspace, '/'-separated, clean UTF-8
  Op op = Op::kWrite;
  uint32_t mode = 0;  // kMakeDir, kWrite: 0777 bits at most (never setuid, setgid or sticky)
  uint64_t size = 0;
  std::string sha256;  // kWrite
  std::string blob;    // kWrite: "blobs/<n>", relative to the change set's directory
  ChangeBase base;
  bool operator==(const ChangeEntry&) const = default;
};

// What keeps a set from being applied: a change apply does not make (a symbolic link, a name
// that is not clean UTF-8) or a part of the tree the walk could not see whole.
struct ChangeRefusal {
  std::string path;  // "" for the set as a whole
  std::string why;
  bool operator==(const ChangeRefusal&) const = default;
};

struct ChangeSet {
  std::vector<ChangeEntry> entries;  // sorted by path
  std::vector<ChangeRefusal> refused;
  uint64_t total_bytes = 0;  // of the blobs
  bool operator==(const ChangeSet&) const = default;
};

const char* ChangeOpName(ChangeEntry::Op op);  // "make_dir", "write", "delete", "remove_dir"
const char* ChangeBaseKindName(ChangeBase::Kind kind);  // "absent", "file", "symlink", "dir"

// <data_dir>/runs/<id>/changes
std::string ChangesDir(const std::string& data_dir, std::string_view run_id);

nlohmann::json ChangeSetToJson(const ChangeSet& set);
// kInvalidArgument naming what is wrong with a manifest that is not one.
Result<ChangeSet> ChangeSetFromJson(const nlohmann::json& j);
// The manifest of `dir` (a ChangesDir): kNotFound when the run kept none.
Result<ChangeSet> LoadChangeSet(const std::string& dir);
// Writes <dir>/changes.json (beside blobs the caller wrote), replacing it atomically.
Status StoreChangeSet(const std::string& dir, const ChangeSet& set);

// One reason a set cannot be written as it is.
struct ApplyConflict {
  std::string path;
  std::string why;
};

struct ApplyReport {
  // Non-empty: nothing was written.
  std::vector<ApplyConflict> conflicts;
  size_t dirs_made = 0;
  size_t files_written = 0;
  size_t files_deleted = 0;
  size_t dirs_removed = 0;
};

// Writes the set kept in `changes_dir` into the workspace directory `workspace_fd` (O_PATH or
// O_RDONLY of the directory, as ResolveWorkspace opens it). First, with nothing written, every
// blob is checked against its sha256 and every path against the host: each must still be what
// the run found (a file of the same content and mode, a symbolic link to the same target, a
// directory, or nothing), reached through directories only: never through a symbolic link,
// never across a mount point, never outside the workspace. Any difference is a conflict, and
// conflicts come back without a single write. Then: files and links the run removed are
// removed, then its removed directories (deepest first, each holding nothing the run did not
// remove), then its new directories, then each file is written beside its place (a hidden
// temporary name), given its mode and owner, synced, and renamed over the path. A replaced file
// keeps its owner; a new file or directory belongs to `owner_uid`/`owner_gid` (the workspace's
// owner, whose files the run changed as the sandbox user).
//
// Errors (after the checks passed, something written already): kInternal naming the path and
// what failed. kFailedPrecondition when the set has refusals.
// Requires root (it writes files of other owners).
Result<ApplyReport> ApplyChangeSet(int workspace_fd, const std::string& changes_dir,
                                   const ChangeSet& set, uid_t owner_uid, gid_t owner_gid);

}  // namespace sbx::supervisor
