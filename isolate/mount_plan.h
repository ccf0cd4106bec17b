// Pure planners for the sandbox's filesystem: SandboxSpec -> the ordered MountOps the child
// applies. Testable without privileges.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "isolate/child.h"
#include "isolate/spec.h"

namespace sbx::isolate {

// A normalized absolute path inside the sandbox: "/a/b" with no "." / ".." / empty components.
// Refuses relative paths, "..", NUL bytes, and paths over 4095 bytes.
Result<std::string> NormalizeSandboxPath(const std::string& path);

// The synthesized /etc: passwd, group, hosts, hostname, nsswitch.conf, resolv.conf.
struct EtcFile {
  std::string name;
  std::string contents;
};
std::vector<EtcFile> SynthesizeEtc(const SandboxSpec& spec);

// Checks the host paths the spec names (system dirs, bind sources) and returns the full plan.
// `stage_dir` is refused as a bind source (it is hidden by the new root while it is built).
Result<std::vector<internal::MountOp>> PlanMounts(const SandboxSpec& spec,
                                                  const std::string& stage_dir);

// The most kBind ops one plan may hold: each travels to the spawner as an fd.
inline constexpr size_t kMaxBindSources = 120;

// Opens the source of every kBind op once, in the calling process (the host's mount namespace):
// the path PlanMounts resolved, without following any symlink on the way or at its end, its
// type checked against the plan; then clones it as a detached mount tree (recursive, except for
// device nodes) with its attributes set: read-only unless writable, nosuid, and nodev except
// for device nodes. Each op's source_fd is set to its tree, owned by the returned fds (closing
// an unattached tree unmounts it). The child only attaches the trees, so a path swapped after
// this call changes nothing. Needs CAP_SYS_ADMIN. kInvalidArgument past kMaxBindSources, or
// when a source is no longer what was planned.
Result<std::vector<UniqueFd>> OpenBindSources(std::vector<internal::MountOp>* ops);

}  // namespace sbx::isolate
