#include "cgroup/cgroup_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include "base/fs.h"

namespace sbx::cgroup {

Status CgroupFs::MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0) return ErrnoError("mkdir {}", path);
  return Ok();
}

Status CgroupFs::RemoveDir(const std::string& path) {
  if (::rmdir(path.c_str()) != 0) return ErrnoError("rmdir {}", path);
  return Ok();
}

Result<std::vector<std::string>> CgroupFs::ListSubdirs(const std::string& path) {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(path.c_str()), &::closedir);
  if (!dir) return ErrnoError("opendir {}", path);
  std::vector<std::string> out;
  for (;;) {
    errno = 0;
    const struct dirent* e = ::readdir(dir.get());
    if (e == nullptr) {
      if (errno != 0) return ErrnoError("readdir {}", path);
      break;
    }
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st;
      is_dir = ::fstatat(::dirfd(dir.get()), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
               S_ISDIR(st.st_mode);
    }
    if (is_dir) out.emplace_back(n);
  }
  return out;
}

Result<std::string> CgroupFs::Read(const std::string& path) { return ReadFile(path); }

Status CgroupFs::Write(const std::string& path, std::string_view value) {
  return WriteFile(path, value);
}

Result<UniqueFd> CgroupFs::Open(const std::string& path, int flags) {
  return OpenAt(AT_FDCWD, path, flags);
}

CgroupFs* RealCgroupFs() {
  static CgroupFs* fs = new CgroupFs();  // never destroyed: drivers may outlive static teardown
  return fs;
}

}  // namespace sbx::cgroup
