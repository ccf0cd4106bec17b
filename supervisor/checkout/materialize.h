// A commit's tree written out as plain files: what a run sees at /workspace for a checkout.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"

namespace sbx::supervisor::checkout {

// Git's modes for what a tree holds.
inline constexpr uint32_t kModeFile = 0100644;
inline constexpr uint32_t kModeExecutable = 0100755;
inline constexpr uint32_t kModeSymlink = 0120000;

// One file or symlink of a materialized tree.
struct TreeEntry {
  std::string path;           // relative, '/'-separated, e.g. "src/main.cc"
  uint32_t mode = kModeFile;  // kModeFile, kModeExecutable or kModeSymlink
  std::string oid;            // the blob's id (40 hex); for a symlink, the blob holding its target
  uint64_t size = 0;  // the blob's length: lets CheckClean skip hashing files of another size
};

struct TreeManifest {
  std::string commit;              // 40 hex
  std::string tree;                // the commit's tree id, 40 hex
  std::vector<TreeEntry> entries;  // every file and symlink written, in tree order
  // Submodules (gitlinks) by path: not fetched; each is an empty directory, as git leaves an
  // uninitialized submodule.
  std::vector<std::string> skipped;
};

// Bounds on what one tree may make write; past one, kResourceExhausted.
struct MaterializeLimits {
  size_t max_entries = 1'000'000;           // files, symlinks, directories and gitlinks
  int max_depth = 128;                      // directories below dest
  uint64_t max_bytes = uint64_t{16} << 30;  // sum of the files' and symlink targets' lengths
};

// Writes the tree of commit `sha` from the bare repository `mirror` (Mirrors::Ensure's path)
// into `dest`, which must not exist (kAlreadyExists) and whose parent must; `dest` is made and
// ends up 0755.
//   - regular files 0644 or 0755 (exactly, whatever the umask), content as stored in git: no
//     filters, no end-of-line conversion, no LFS smudging;
//   - symlinks as symlinks, their target verbatim (it may point anywhere; it is never followed
//     here, and the run sees it inside its own mount namespace);
//   - directories 0755; a directory that would hold nothing (git trees can be empty) is not
//     made; a submodule is an empty directory and is listed in `skipped`;
//   - no .git directory: the tree only, nothing to push and no history.
// Everything is created relative to directory fds (mkdirat, openat with O_CREAT | O_EXCL |
// O_NOFOLLOW, symlinkat), so nothing is ever written through a symlink. Names from the
// repository are hostile input and refused (kInvalidArgument, naming the path): "", ".", "..",
// names with '/' (or NUL), ".git" in any case, and a name that appears twice in a tree, which is
// how a path would go through a symlink written earlier (a symlink "a" beside a tree "a").
// Directories are 0700 while being filled and are made 0755 when complete.
// `owner`: uid and gid everything (dest included) is chowned to, e.g. the sandbox user's host
// ids; needs CAP_CHOWN unless it is the caller's own. Without it, the caller owns everything.
// On any failure what was written is removed (dest included) and the error says why:
// kInvalidArgument also for `sha` not 40 lowercase hex and a mode git does not write;
// kNotFound: no such commit in `mirror`, or `mirror` is no repository; kResourceExhausted:
// `limits`.
Result<TreeManifest> Materialize(const std::string& mirror, const std::string& sha,
                                 const std::string& dest,
                                 std::optional<std::pair<uid_t, gid_t>> owner = std::nullopt,
                                 const MaterializeLimits& limits = {});

}  // namespace sbx::supervisor::checkout
