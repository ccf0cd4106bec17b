// The `sandboxd` subcommands. Each returns the process exit status.
#pragma once

#include <string>
#include <vector>

namespace sbx::supervisor {

int ExecCommand(const std::vector<std::string>& args);
int CheckCommand(const std::vector<std::string>& args);
int SeccompCommand(const std::vector<std::string>& args);

}  // namespace sbx::supervisor
