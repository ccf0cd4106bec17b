// The `destructive` protection: commands no rule may allow (see command_policy.h for the list).
// Internal to the policy library.
#pragma once

#include <string>
#include <vector>

#include "supervisor/policy/shell_words.h"

namespace sbx::policy::internal {

struct Finding {
  std::string message;  // "rm -r on '/' would delete the whole file system"
  std::string command;  // the offending command line (JoinWords form)
};

// One argv, as given (no shell involved). Strings it hands to a shell (sh -c, su -c, eval …)
// are split and checked too.
void CheckArgv(const std::vector<std::string>& words, std::vector<Finding>& out);

// A split command string: each command, its redirections, function definitions, and downloads
// piped or substituted into interpreters.
void CheckShell(const ShellParse& parse, std::vector<Finding>& out);

}  // namespace sbx::policy::internal
