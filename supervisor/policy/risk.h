// What a command does, as reasons with a risk each (see ReasonCode in command_policy.h).
// Internal to the policy library.
#pragma once

#include <string>
#include <vector>

#include "supervisor/policy/command_policy.h"
#include "supervisor/policy/shell_words.h"

namespace sbx::policy::internal {

// Appends the reasons `words` carry (privilege, network, destructive verb, writes, runs code,
// unknown program), looking through wrappers and into strings handed to a shell. Appends only
// reasons not already in `out`.
void ClassifyWords(const std::vector<std::string>& words, std::vector<Reason>& out);

// The same, plus what the command's redirections write.
void ClassifyShellCommand(const ShellCommand& command, std::vector<Reason>& out);

void AddReason(std::vector<Reason>& out, ReasonCode code, std::string message);

}  // namespace sbx::policy::internal
