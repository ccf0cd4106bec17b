// sandboxctl's commands and the output helpers they share. Each command gets its parsed
// arguments (the global options already applied) and returns the process exit code:
// 0 on success, 1 when the operation failed (the server's message is printed), 2 for a usage
// error; `run`, `sandbox exec` and `sandbox shell` return the program's own exit status (see
// kRunUsage in main.cc).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/sandboxctl/args.h"
#include "api/sandboxctl/client.h"
#include "base/result.h"

namespace sbx::ctl {

inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;
// `run`: the run did not end with a status of its own (setup failed, rejected, cancelled, the
// daemon restarted), or sandboxctl could not submit or follow it; the same for `sandbox exec`.
inline constexpr int kExitRunFailed = 125;

struct Context {
  Client* client = nullptr;
  bool json = false;           // print the API's JSON instead of text
  bool api_key_given = false;  // whether a key came from --api-key or SANDBOXD_API_KEY
  std::string command;         // for messages: "ps", "artifacts get"
};

// Prints "sandboxctl: MESSAGE (HTTP 403 permission_denied)" to stderr, with a hint for a 401
// (how to give a key); returns kExitError.
int ReportError(const Context& ctx, const Error& error);
// Prints "sandboxctl COMMAND: MESSAGE" and where to find the command's usage; returns kExitUsage.
int ReportUsage(const Context& ctx, std::string_view message);

int CmdRun(Context& ctx, const ParsedArgs& args);
int CmdPs(Context& ctx, const ParsedArgs& args);
int CmdInspect(Context& ctx, const ParsedArgs& args);
int CmdLogs(Context& ctx, const ParsedArgs& args);
int CmdApprove(Context& ctx, const ParsedArgs& args);
int CmdReject(Context& ctx, const ParsedArgs& args);
int CmdCancel(Context& ctx, const ParsedArgs& args);
int CmdChanges(Context& ctx, const ParsedArgs& args);
int CmdProjectLs(Context& ctx, const ParsedArgs& args);
int CmdProjectShow(Context& ctx, const ParsedArgs& args);
int CmdProjectCreate(Context& ctx, const ParsedArgs& args);
int CmdProjectRm(Context& ctx, const ParsedArgs& args);
int CmdPlan(Context& ctx, const ParsedArgs& args);
int CmdJobLs(Context& ctx, const ParsedArgs& args);
// node_commands.cc
int CmdNodeLs(Context& ctx, const ParsedArgs& args);
int CmdNodeDrain(Context& ctx, const ParsedArgs& args);
int CmdNodeResume(Context& ctx, const ParsedArgs& args);
int CmdRunnerAdd(Context& ctx, const ParsedArgs& args);
int CmdRunnerShow(Context& ctx, const ParsedArgs& args);
int CmdRunnerRevoke(Context& ctx, const ParsedArgs& args);
int CmdApply(Context& ctx, const ParsedArgs& args);
int CmdArtifacts(Context& ctx, const ParsedArgs& args);
int CmdAudit(Context& ctx, const ParsedArgs& args);
int CmdPolicy(Context& ctx, const ParsedArgs& args);
int CmdInfo(Context& ctx, const ParsedArgs& args);

// `sandbox …` (sandbox_commands.cc, sandbox_exec.cc, sandbox_cp.cc). exec and shell return the
// process's own status like `run`.
int CmdSandboxCreate(Context& ctx, const ParsedArgs& args);
int CmdSandboxLs(Context& ctx, const ParsedArgs& args);
int CmdSandboxInspect(Context& ctx, const ParsedArgs& args);
int CmdSandboxRm(Context& ctx, const ParsedArgs& args);
int CmdSandboxPause(Context& ctx, const ParsedArgs& args);
int CmdSandboxResume(Context& ctx, const ParsedArgs& args);
int CmdSandboxApprove(Context& ctx, const ParsedArgs& args);
int CmdSandboxReject(Context& ctx, const ParsedArgs& args);
int CmdSandboxExec(Context& ctx, const ParsedArgs& args);
int CmdSandboxShell(Context& ctx, const ParsedArgs& args);
int CmdSandboxCp(Context& ctx, const ParsedArgs& args);
int CmdSandboxLogs(Context& ctx, const ParsedArgs& args);
int CmdSandboxWatch(Context& ctx, const ParsedArgs& args);
int CmdSandboxSnapshot(Context& ctx, const ParsedArgs& args);
int CmdSandboxSnapshots(Context& ctx, const ParsedArgs& args);
int CmdSandboxSnapshotRm(Context& ctx, const ParsedArgs& args);

// ---- output helpers (output.cc) ----

// Writes all of `bytes` to fd (1 or 2), retrying on EINTR and short writes.
Status WriteOut(int fd, std::string_view bytes);
// Pretty JSON and a newline on stdout.
void PrintJson(const nlohmann::json& value);
// Columns padded to their widest cell (counted in code points), two spaces apart; the first row
// is the header. The last column is not padded.
void PrintTable(const std::vector<std::vector<std::string>>& rows);
// "12s", "5m", "3h", "2d" since `ms` (milliseconds since the epoch).
std::string FormatAge(int64_t ms);
// "2024-05-01 12:00:03" in local time; "-" for 0.
std::string FormatTime(int64_t ms);
// "512 B", "1.5 KiB", "256 MiB".
std::string FormatBytes(int64_t bytes);
// Cuts `s` to at most `max` code points, ending with "…" when cut.
std::string Truncate(const std::string& s, size_t max);
// A string field of a JSON object, or `fallback` when absent or not a string.
std::string Str(const nlohmann::json& j, const char* key, std::string fallback = "");
// An integer field of a JSON object (a number, truncated), or `fallback` when absent or not one.
int64_t Int(const nlohmann::json& j, const char* key, int64_t fallback = 0);
// `s` in upper case (ASCII).
std::string Upper(std::string s);
// "Key:  value" lines on stdout, the values lined up after the longest key.
void PrintFacts(const std::vector<std::pair<std::string, std::string>>& rows);
// "cpus 1, memory 256 MiB, pids 64, timeout 30s, output 1 MiB" from a limits object (memory
// under `memory_key`: runs say "memory", sandboxes "memory_bytes"); "-" when it has none.
std::string LimitsText(const nlohmann::json& limits, const char* memory_key);
// A run's command for display: its argv, or "NAME: ARGV; NAME: ARGV" for steps.
std::string CommandSummary(const nlohmann::json& run);
// What the EXIT column shows: the exit code, the signal name, or "-".
std::string ExitSummary(const nlohmann::json& run);
// "SIGKILL" (or "SIG9") to 9; 0 when unknown.
int SignalNumber(std::string_view name);
// This shell's value of the environment variable `name`; nullopt when it is not set.
std::optional<std::string> LookupEnv(const std::string& name);
// The whole of a file, or of standard input for "-"; `what` ("--stdin") starts the messages.
Result<std::string> ReadInput(const std::string& path, std::string_view what);

}  // namespace sbx::ctl
