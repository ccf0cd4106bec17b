// The parts of `sandboxctl sandbox …` that need no server: the subcommands' options, the request
// bodies built from them (docs/sandboxes.md), cp's ID:PATH operands and a process's exit status.
// Pure functions, for the commands (`run` too) and for their unit tests.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/sandboxctl/args.h"
#include "base/result.h"

namespace sbx::ctl {

// The options of each subcommand (main.cc adds the global ones).
const std::vector<OptionSpec>& SandboxCreateOptions();
const std::vector<OptionSpec>& SandboxLsOptions();
const std::vector<OptionSpec>& SandboxExecOptions();
const std::vector<OptionSpec>& SandboxShellOptions();
const std::vector<OptionSpec>& SandboxCpOptions();
const std::vector<OptionSpec>& SandboxLogsOptions();

// --memory: bytes, or with a suffix as docker spells them or as the policy file does (256m, 1g,
// 512MiB, 1GiB); more than 0. kInvalidArgument names `what`.
Result<int64_t> ParseMemory(std::string_view s, std::string_view what);
// --timeout, --idle-timeout: seconds, or 30s, 5m, 1h; whole seconds, rounded up, more than 0.
Result<int64_t> ParseSeconds(std::string_view s, std::string_view what);

struct WorkspaceArg {
  std::string path;  // absolute
  std::string mode;  // "ro", "cow", "rw"; "" leaves it to the daemon (read-only)
  bool operator==(const WorkspaceArg&) const = default;
};
// --workspace PATH[:ro|:cow|:rw]. A relative PATH is made absolute against `cwd` (the daemon
// does not know ours).
Result<WorkspaceArg> ParseWorkspace(std::string_view s, const std::string& cwd);

// --env K=V (repeatable) into body["env"]; --env K takes this shell's value from `lookup_env`
// (nullopt: not set, a usage error). Shared with `run`.
Status AddEnv(const ParsedArgs& args, nlohmann::json& body,
              const std::function<std::optional<std::string>(const std::string&)>& lookup_env);
// --label K=V (repeatable) into body["labels"]. Shared with `run`.
Status AddLabels(const ParsedArgs& args, nlohmann::json& body);

// The body of POST /v1/sandboxes from `sandbox create`'s options (no positionals). `lookup_env`
// gives this shell's value for --env NAME (nullopt: not set).
Result<nlohmann::json> BuildCreateBody(
    const ParsedArgs& args, const std::string& cwd,
    const std::function<std::optional<std::string>(const std::string&)>& lookup_env);

// The body of POST …/processes from `sandbox exec`'s options and ARGV (args.rest); stdin is
// added by the caller.
Result<nlohmann::json> BuildExecBody(
    const ParsedArgs& args,
    const std::function<std::optional<std::string>(const std::string&)>& lookup_env);

// One operand of `sandbox cp`. "ID:PATH" names PATH in sandbox ID; an operand is local when it
// is "-" (stdin or stdout), starts with '/' or '.', has no ':', or has a '/' before its first
// ':' (./a:b, dir/a:b). kInvalidArgument for "ID:" (no path) or ":PATH" (no ID).
struct CpOperand {
  bool remote = false;
  std::string sandbox_id;  // remote only
  std::string path;
  bool operator==(const CpOperand&) const = default;
};
Result<CpOperand> ParseCpOperand(std::string_view s);

// The last component of a path ("a/b/" gives "b"); "" when there is none ("/", "").
std::string BaseName(std::string_view path);
// dir + "/" + name, without doubling a '/'.
std::string JoinPath(std::string_view dir, std::string_view name);

// The status `sandbox exec` exits with for a process as the API shows it: its exit code; 128+N
// when signal N ended it; kExitRunFailed (125) when it has no status of its own (rejected,
// cancelled, setup failed, not ended), with `message` saying why ("" when nothing to say).
int ProcessExitStatus(const nlohmann::json& process, std::string* message);

// Milliseconds since the epoch of a timestamp field: `key`_ms when present, else `key` read as
// milliseconds when it is past 1e11 (in seconds that would be after the year 5000), else as
// seconds; 0 when absent or null.
int64_t TimestampMs(const nlohmann::json& j, const std::string& key);

}  // namespace sbx::ctl
