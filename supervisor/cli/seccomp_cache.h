// A cache of compiled seccomp programs. Compiling a Docker-size profile with libseccomp costs
// tens of milliseconds, more than the rest of a sandbox's start; `sandboxd exec` is a new process
// each time, so it keeps compiled programs in a root-only directory (tmpfs under /run: empty
// after every boot, so a kernel update never meets a stale entry).
//
// The key is the whole input (profile text, compile options, kernel release, libseccomp
// version), stored in the entry and compared byte for byte on load: a hash collision or a
// damaged entry is a miss, never a wrong filter.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "seccomp/seccomp.h"

namespace sbx::supervisor {

// Returns the program for the profile whose JSON text is `source` (named `name`), from the cache
// in `cache_dir` or freshly compiled (and then stored; a failure to store is not an error).
Result<seccomp::Program> CompileProfileCached(std::string_view source, const std::string& name,
                                              const std::string& cache_dir,
                                              const seccomp::CompileOptions& options = {});

}  // namespace sbx::supervisor
