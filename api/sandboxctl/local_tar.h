// Local directory trees as tar streams for `sandboxctl sandbox cp -r`, in the format the files
// API reads and writes (supervisor/files/tar_format.h: ustar with pax headers for long names).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace sbx::ctl {

struct LocalTarStats {
  uint64_t entries = 0;
  uint64_t bytes = 0;                // file data
  std::vector<std::string> skipped;  // "name: why", at most 100
};

// Writes the tree below the directory `dir_fd` (not moved or closed) to `sink`, ending with the
// trailer: entries named relative to it ("sub/", "sub/file"), each directory before what is in
// it, names in bytewise order; directories, regular files and symbolic links (as links: nothing
// is followed); sockets, fifos and devices are left out (stats.skipped). Permission bits and
// modification times are kept, owners written as 0. kResourceExhausted past 256 levels of
// directories; kInternal when a file shrinks while it is read.
Result<LocalTarStats> WriteLocalTar(int dir_fd,
                                    const std::function<Status(std::string_view)>& sink);

// Extracts the archive in `archive_fd` (a regular file, read from offset 0, twice) into the
// directory `dir_fd` (not moved or closed). The first pass checks the whole archive and writes
// nothing when it refuses it (kInvalidArgument): a damaged archive, an absolute name, a ".."
// component, more than 1,000,000 entries. The second extracts without following a symbolic
// link anywhere: each entry's directory is opened one component at a time with O_NOFOLLOW, so
// an entry below a link (one the archive made earlier, or one that was there) fails the
// extraction (kPermissionDenied) instead of sending its bytes elsewhere, and a link in an
// entry's own place is replaced, never written through. Directories are made (existing ones
// kept, u+rwx always), regular files replaced, symbolic links made as they are; hard links,
// devices, fifos and other types are left out (stats.skipped). Permission bits as stored less
// the umask; files keep their modification time. A failure in the second pass leaves the
// entries before it extracted.
Result<LocalTarStats> ExtractLocalTar(int archive_fd, int dir_fd);

}  // namespace sbx::ctl
