// Many files at once: a directory of the sandbox out as a tar stream, and a tar stream into one.
//
// WriteTar streams incrementally to a sink (never the tree in memory): the entries below
// `path` in bytewise order, named relative to it ("sub/", "sub/file"; a single file by its
// name), directories, regular files and symlinks (as links, not followed); fifos, sockets and
// devices are left out and reported in TarStats::skipped, and so are directories where another
// pseudo file system (proc, sysfs, devpts, cgroup…) is mounted. Ownership is written as 0/0.
// Bounded by Limits::max_tar_entries, max_tar_bytes and max_depth (kResourceExhausted: the stream
// so far is incomplete; the route must end the response as failed).
//
// ExtractTar reads a ustar/pax/GNU stream into the directory `path` in two passes. The first
// copies the stream into an unnamed file (O_TMPFILE) in that directory, counting against the
// sandbox's own space, and checks every entry; the second extracts from that copy. A stream
// refused by the first pass changes nothing. Refused: an absolute name or one with a ".."
// component (kInvalidArgument), a damaged or truncated stream (kInvalidArgument), a device
// node or fifo (kPermissionDenied), a symlink whose target is absolute or climbs above `path`,
// an entry below a symlink the archive made earlier, a hard link to anything but a regular file
// earlier in the same archive (kPermissionDenied), more than max_tar_entries entries, more
// than max_tar_bytes of data or a file over max_file_bytes (kResourceExhausted). In the second
// pass every entry's directory is opened from the extraction directory's descriptor with
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, so a symlink planted or swapped in by the sandbox
// meanwhile fails the extraction (kPermissionDenied) instead of being followed. Files are
// written as by SandboxRoot::Write (atomic, the sandbox user's); modes are kept (0777 at most),
// modification times kept for files; tar's owners are ignored; directory modes are set last
// and keep u+rwx, so the sandbox user can always change what it was given.
// A failure in the second pass (the file system full, a conflict such as a file where the
// archive has a directory) stops there: the entries before it stay extracted.
//
// The sink and source are called on the calling thread while it holds the sandbox user's file
// system ids (see files.h); they must not touch files of their own by path.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "supervisor/files/files.h"
#include "supervisor/files/tar_format.h"

namespace sbx::files {

struct TarStats {
  uint64_t entries = 0;
  uint64_t bytes = 0;                // file data
  std::vector<std::string> skipped;  // "path: why", at most 100
};

Result<TarStats> WriteTar(const SandboxRoot& root, std::string_view path, const ByteSink& sink);

struct ExtractOptions {
  bool make_dir = false;  // create `path` (and parents) when missing
};
Result<TarStats> ExtractTar(const SandboxRoot& root, std::string_view path,
                            const ByteSource& source, const ExtractOptions& options = {});

}  // namespace sbx::files
