// Tables and helpers shared by the parser and the compiler. Not part of the public contract.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "seccomp/seccomp.h"

namespace sbx::seccomp::internal {

struct ArchInfo {
  std::string_view scmp_name;  // "SCMP_ARCH_X86_64", as architectures/archMap spell it
  uint32_t token;              // libseccomp's token; 0 when this libseccomp lacks the arch
  // Spellings accepted in includes/excludes.arches: Docker writes Go's GOARCH ("amd64"), older
  // profiles and libseccomp write "x86_64". The first one is the Go name.
  std::span<const std::string_view> aliases;
};

std::span<const ArchInfo> Arches();
const ArchInfo* FindArchByScmpName(std::string_view scmp_name);
const ArchInfo* FindArchByToken(uint32_t token);
bool IsKnownArchAlias(std::string_view alias);
// "amd64, arm64, …" for error messages.
std::string ArchAliasList();
std::string ScmpArchList();

inline constexpr std::string_view kActions[] = {
    "SCMP_ACT_ALLOW",        "SCMP_ACT_ERRNO",       "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_TRACE",        "SCMP_ACT_LOG",         "SCMP_ACT_NOTIFY",
};
inline constexpr std::string_view kOps[] = {
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE",        "SCMP_CMP_EQ",
    "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ",
};
// Only these actions carry a return value (errnoRet): the errno, or the tracer's message.
inline bool ActionTakesErrnoRet(std::string_view action) {
  return action == "SCMP_ACT_ERRNO" || action == "SCMP_ACT_TRACE";
}

// "EPERM" -> this architecture's EPERM; nullopt for a name that is not an errno's. Aliases
// (EWOULDBLOCK, EDEADLOCK, ENOTSUP) give their target's number.
std::optional<unsigned> ErrnoByName(std::string_view name);

// Linux kernel release "6.1", "5.10.0-21-amd64" -> {6, 1, 0}; leading numeric components only.
struct KernelVersion {
  unsigned major = 0;
  unsigned minor = 0;
  unsigned patch = 0;
  auto operator<=>(const KernelVersion&) const = default;
};
// Strict form for minKernel: "X.Y" or "X.Y.Z" (nothing else).
std::optional<KernelVersion> ParseMinKernel(std::string_view s);
// Lenient form for uname's release: numeric prefix "X.Y[.Z]" followed by anything.
std::optional<KernelVersion> ParseKernelRelease(std::string_view s);

// Whether Compile would use the rule under these options (includes/excludes against the native
// arch, options.caps and the kernel version).
Result<bool> RuleApplies(const SyscallRule& rule, const CompileOptions& options);

// ParseProfile, except that with rule_errors set a rule of "syscalls" that fails to parse is
// recorded there and left out of the result instead of failing the whole document.
Result<Profile> ParseProfileCollecting(std::string_view text, std::string name,
                                       std::vector<Error>* rule_errors);

// policies/seccomp/default.json, generated into the build tree by seccomp/embed_json.cmake.
extern const char kDefaultProfileJson[];
extern const std::size_t kDefaultProfileJsonSize;

}  // namespace sbx::seccomp::internal
