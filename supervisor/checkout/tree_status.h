// The clean-tree check after a run: how a materialized tree differs from its manifest.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "base/result.h"
#include "supervisor/checkout/materialize.h"

namespace sbx::supervisor::checkout {

struct TreeStatus {
  // Files or symlinks of the manifest whose content (blob id), git mode (the owner's execute
  // bit, as git sees it) or type differ; a submodule path that is no longer a directory.
  std::vector<std::string> modified;
  // Paths of the manifest (files, symlinks, submodules) that are gone.
  std::vector<std::string> deleted;
  // Paths not in the manifest. A directory that holds nothing of the manifest is reported once,
  // as the directory, with a trailing '/' ("build/"); so is a submodule's directory that is no
  // longer empty.
  std::vector<std::string> untracked;
  // Set when the walk stopped at CheckCleanLimits::max_entries, or a list reached
  // max_reported: the lists are then incomplete (never wrong: a path under a directory not
  // looked at in full is not reported deleted).
  bool capped = false;

  // True when nothing differs and everything was looked at.
  bool clean() const { return !capped && modified.empty() && deleted.empty() && untracked.empty(); }
};

struct CheckCleanLimits {
  size_t max_entries = 100'000;  // directory entries looked at
  size_t max_reported = 1'000;   // paths per list
};

// Compares `dir` with `manifest` (what Materialize wrote there). Reads through directory fds,
// never following a symlink (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW): a symlink is compared as a
// symlink, a directory a run replaced with a symlink is untracked and its entries deleted. A
// file is hashed only when its size matches the manifest's, so the work is bounded by the tree's
// own size. Lists are sorted. kNotFound: `dir` is missing; `dir` being a symlink is refused.
Result<TreeStatus> CheckClean(const std::string& dir, const TreeManifest& manifest,
                              const CheckCleanLimits& limits = {});

}  // namespace sbx::supervisor::checkout
