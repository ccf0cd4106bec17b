// `sandboxd exec` options, spelled as `docker run` spells the same idea. Pure parsing: testable
// without privileges.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "isolate/spec.h"

namespace sbx::supervisor {

struct ExecOptions {
  isolate::SandboxSpec sandbox;
  isolate::ProcessSpec process;
  std::string seccomp;       // "" = builtin default, "unconfined", or a profile file
  std::string result_file;   // --result
  std::string cgroup_parent = "sandboxd";
  std::string log_level = "warn";
  bool interactive = false;  // -i: pass our stdin
  bool help = false;
};

// argv: the words after "exec". Everything after "--" (or the first word that is not an
// option) is the command.
Result<ExecOptions> ParseExecArgs(const std::vector<std::string>& args);
std::string ExecUsage();

}  // namespace sbx::supervisor
