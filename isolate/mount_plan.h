// Pure planners for the sandbox's filesystem: SandboxSpec -> the ordered MountOps the child
// applies. Testable without privileges.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
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

}  // namespace sbx::isolate
