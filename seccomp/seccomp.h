// seccomp profiles in the Docker/OCI JSON format, compiled to BPF with libseccomp.
//
// profile (JSON text) -> ParseProfile -> Profile (plain data) -> Compile -> Program (BPF).
// Compile() runs in the parent; InstallProgram() is async-signal-safe and runs in the child right
// before execve, after no_new_privs is set.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace sbx::seccomp {

// One argument comparison: args[].{index,value,valueTwo,op}.
struct ArgCmp {
  unsigned index = 0;
  uint64_t value = 0;
  uint64_t value_two = 0;
  std::string op;  // "SCMP_CMP_EQ", "SCMP_CMP_MASKED_EQ", …
};

struct Filter {  // includes / excludes
  std::vector<std::string> caps;
  std::vector<std::string> arches;
  std::string min_kernel;  // "5.8", "" when absent
};

struct SyscallRule {
  std::vector<std::string> names;
  std::string action;              // "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", …
  std::optional<unsigned> errno_ret;
  std::vector<ArgCmp> args;
  Filter includes;
  Filter excludes;
  std::string comment;
};

struct ArchMapEntry {
  std::string architecture;
  std::vector<std::string> sub_architectures;
};

struct Profile {
  std::string name;  // file stem, or "default" for the builtin
  std::string default_action;
  std::optional<unsigned> default_errno_ret;
  std::vector<std::string> architectures;
  std::vector<ArchMapEntry> arch_map;
  std::vector<SyscallRule> syscalls;
};

// Parses and validates the JSON document. Errors name the JSON path ("syscalls[3].action") and
// what to do. Never throws.
Result<Profile> ParseProfile(std::string_view json, std::string name);
Result<Profile> LoadProfileFile(const std::string& path);
// The builtin default profile (policies/seccomp/default.json, embedded at build time).
const Profile& DefaultProfile();
std::string_view DefaultProfileJson();

struct CompileOptions {
  // Capabilities the sandboxed process keeps ("CAP_SYS_ADMIN"…), for includes/excludes.caps.
  std::vector<std::string> caps;
  // Kernel version for minKernel ("6.1"); empty means the running kernel's (uname).
  std::string kernel_version;
};

// An immutable compiled filter for the native architecture (plus its sub-architectures).
struct Program {
  std::string profile_name;
  std::vector<sock_filter> insns;
};

Result<Program> Compile(const Profile& profile, const CompileOptions& options = {});

// Child side, async-signal-safe: seccomp(SECCOMP_SET_MODE_FILTER). Returns 0 or -errno.
// Requires no_new_privs (or CAP_SYS_ADMIN).
int InstallProgram(const Program& program);

}  // namespace sbx::seccomp
