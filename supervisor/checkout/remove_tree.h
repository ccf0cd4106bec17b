// Removing a materialized tree (or any directory tree the daemon made) without being led
// astray by what a run left in it.
#pragma once

#include <string>

#include "base/result.h"

namespace sbx::supervisor::checkout {

// Removes `dir` and everything under it. Never follows a symlink (a symlink is removed, its
// target is not touched), never crosses into another mount (a mount point found inside, file or
// directory, is left in place with its parents, and the call fails with kFailedPrecondition
// naming it); directories without write or search permission are made 0700 first, so a tree a
// non-root caller made read-only still goes. Any depth: it holds two descriptors, walks back up
// through "..", and checks each parent's device and inode against the one it came down from
// (a directory moved meanwhile stops the removal with kAborted instead of removing elsewhere).
// A missing `dir` is success; `dir` itself being a symlink or not a directory is
// kInvalidArgument. Other failures (EROFS, EPERM on an immutable file) are returned after the
// rest was removed, with the count and the first one's path.
Status RemoveTree(const std::string& dir);

// The same for `name` (one component) under the directory `parent_fd`.
Status RemoveTreeAt(int parent_fd, const std::string& name);

}  // namespace sbx::supervisor::checkout
