// CgroupFs: the few filesystem operations the cgroup drivers make, by absolute path.
//
// The drivers take hierarchy roots as paths (HostInfo) and do every mkdir/rmdir/read/write
// through a CgroupFs, so a test can root a driver at a temp dir and substitute a subclass that
// emulates what cgroupfs does on its own (interface files appear on mkdir, rmdir removes them).
// The base class is the real implementation; RealCgroupFs() returns a shared instance.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sbx::cgroup {

class CgroupFs {
 public:
  virtual ~CgroupFs() = default;

  // mkdir(path, 0755). EEXIST fails with kAlreadyExists.
  virtual Status MakeDir(const std::string& path);
  // rmdir(path). ENOENT fails with kNotFound; EBUSY (a v1 cgroup whose last task is still
  // exiting, or one with processes) carries sys_errno EBUSY.
  virtual Status RemoveDir(const std::string& path);
  // Names of the directories directly under `path` (child cgroups), unsorted.
  virtual Result<std::vector<std::string>> ListSubdirs(const std::string& path);
  virtual Result<std::string> Read(const std::string& path);
  // One write(2) of the whole value to an existing file (no O_CREAT): cgroupfs needs that.
  // A missing file fails with kNotFound.
  virtual Status Write(const std::string& path, std::string_view value);
  // open(path, flags | O_CLOEXEC).
  virtual Result<UniqueFd> Open(const std::string& path, int flags);
};

CgroupFs* RealCgroupFs();

}  // namespace sbx::cgroup
