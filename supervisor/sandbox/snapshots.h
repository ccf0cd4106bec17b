// Snapshots of a sandbox's writable files, and new sandboxes started from them (branching).
//
// A snapshot holds, as one tar per directory, what a sandbox can change: /tmp, /artifacts and,
// with a copy-on-write workspace, /workspace (the sandbox's view of it: the host directory with
// the sandbox's changes). Memory and running processes are not kept. It lives in
// <data_dir>/snapshots/<id>/ (meta.json and DIR.tar), read and written through the files
// library (supervisor/files/tar.h): taken as the sandbox user, inside the sandbox's own root,
// and restored the same way, so a snapshot can neither read nor plant anything outside a
// sandbox.
//
// Names: 1 to 64 of [A-Za-z0-9._-], unique per owner (the API key that took it); another key's
// snapshot is not found, exactly as a missing one.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "supervisor/files/files.h"

namespace sbx::supervisor {

struct SnapshotRecord {
  std::string id;  // "snap_" + 20 base32 characters
  std::string name;
  std::string owner;
  std::string source_sandbox;
  int64_t created_at_ms = 0;
  uint64_t bytes = 0;               // file data in all its tars
  std::vector<std::string> dirs;    // "/tmp", "/artifacts", "/workspace"
  std::vector<std::string> skipped; // what the tars left out ("path: why")
};

class Snapshots {
 public:
  explicit Snapshots(std::string dir) : dir_(std::move(dir)) {}

  // Takes `dirs` of the sandbox behind `root` as snapshot `name` of `owner`.
  // kAlreadyExists when the owner has one of that name; kInvalidArgument for a bad name.
  Result<SnapshotRecord> Save(const files::SandboxRoot& root, std::string_view name,
                              const std::string& owner, const std::string& sandbox_id,
                              const std::vector<std::string>& dirs);
  // By name or id; `owner` empty: anyone's (an admin). kNotFound.
  Result<SnapshotRecord> Find(std::string_view name_or_id, const std::string& owner) const;
  // Newest first; `owner` empty: everyone's.
  Result<std::vector<SnapshotRecord>> List(const std::string& owner) const;
  // Extracts the snapshot's tars into the sandbox behind `root`, each into its directory;
  // `only` (non-empty) restricts it to those directories. Returns the directories restored.
  Result<std::vector<std::string>> Restore(const SnapshotRecord& snapshot,
                                           const files::SandboxRoot& root,
                                           const std::vector<std::string>& only) const;
  Status Delete(const SnapshotRecord& snapshot) const;

  static Status CheckName(std::string_view name);

 private:
  std::string dir_;
};

}  // namespace sbx::supervisor
