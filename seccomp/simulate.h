// Runs a compiled Program on one syscall, the way the kernel's seccomp would, without installing
// it. For unit tests and for tools that explain a profile ("what happens to clone(CLONE_NEWNS)?").
// Not used for enforcement.
#pragma once

#include <linux/seccomp.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>

#include "base/result.h"
#include "seccomp/seccomp.h"

namespace sbx::seccomp {

// The AUDIT_ARCH_* value the kernel puts in seccomp_data.arch for this process's native ABI.
uint32_t NativeAuditArch();

// The native syscall number for name, as libseccomp knows it; nullopt when the name is unknown or
// has no native number (e.g. "chown32" on x86_64).
std::optional<int> NativeSyscallNumber(const std::string& name);

// A seccomp_data for syscall nr with up to 6 arguments; arch defaults to the native one.
seccomp_data MakeSeccompData(int nr, std::initializer_list<uint64_t> args = {},
                             uint32_t arch = NativeAuditArch());

// The filter's SECCOMP_RET_* value for data (action in SECCOMP_RET_ACTION_FULL, data such as the
// errno in SECCOMP_RET_DATA). Fails with kInvalidArgument on instructions seccomp would refuse,
// jumps out of the program, or a program that runs off its end.
Result<uint32_t> Evaluate(const Program& program, const seccomp_data& data);

}  // namespace sbx::seccomp
