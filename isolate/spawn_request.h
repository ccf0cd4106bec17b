// The spawn request the parent sends to a sandbox's init (see child.h, SpawnHeader): shared by
// Sandbox::Run() and Sandbox::Start().
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace sbx::isolate::internal {

// `env` with PATH, HOME and HOSTNAME added when it does not set them (and TERM, for a process on
// a terminal).
std::vector<std::string> WithDefaultEnv(std::vector<std::string> env, uid_t uid,
                                        const std::string& hostname, bool terminal = false);

// A SpawnHeader followed by argv, env and cwd. Fails with kInvalidArgument on an empty argv, a
// NUL byte, an env entry that is not KEY=VALUE, a cwd that is not an absolute normal path, or
// more than kMaxSpawnBytes / kMaxSpawnStrings.
Result<std::string> EncodeSpawnRequest(const std::vector<std::string>& argv,
                                       const std::vector<std::string>& env,
                                       const std::string& cwd, uint32_t flags = 0,
                                       uint16_t cols = 0, uint16_t rows = 0);

}  // namespace sbx::isolate::internal
