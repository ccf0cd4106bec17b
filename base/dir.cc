#include "base/dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sbx {

Result<std::vector<std::string>> ListDirNames(int dir_fd, size_t max, bool* more) {
  if (more != nullptr) *more = false;
  // A DIR of its own over a duplicate: the caller's descriptor keeps its own position.
  int dup = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return ErrnoError("dup a directory fd");
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    Error e = ErrnoError("fdopendir");
    ::close(dup);
    return e;
  }
  ::rewinddir(d);
  std::vector<std::string> names;
  errno = 0;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    if (names.size() >= max) {
      ::closedir(d);
      if (more == nullptr) {
        return MakeError(ErrorCode::kResourceExhausted, "directory has more than {} entries",
                         max);
      }
      *more = true;
      std::sort(names.begin(), names.end());
      return names;
    }
    names.emplace_back(e->d_name);
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return ErrnoValueError(err, "readdir");
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace sbx
