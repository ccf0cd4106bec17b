#include "api/mcp/tools.h"

namespace sbx::api::mcp {

using nlohmann::json;

const char* ProfileName(Profile profile) {
  switch (profile) {
    case Profile::kExecutor: return "executor";
    case Profile::kDeveloper: return "developer";
    case Profile::kFull: return "full";
  }
  return "full";
}

std::optional<Profile> ParseProfile(std::string_view name) {
  if (name == "executor") return Profile::kExecutor;
  if (name == "developer") return Profile::kDeveloper;
  if (name == "full") return Profile::kFull;
  return std::nullopt;
}

namespace {

json Str(std::string description) { return {{"type", "string"}, {"description", description}}; }
json Int(std::string description, int64_t min, int64_t max) {
  return {{"type", "integer"}, {"minimum", min}, {"maximum", max}, {"description", description}};
}
json Bool(std::string description) { return {{"type", "boolean"}, {"description", description}}; }
json NullableInt() { return {{"type", json::array({"integer", "null"})}}; }
json NullableStr() { return {{"type", json::array({"string", "null"})}}; }
json StringMap(std::string description) {
  return {{"type", "object"},
          {"additionalProperties", {{"type", "string"}}},
          {"description", description}};
}

json Object(json properties, std::vector<std::string> required) {
  json o = {{"type", "object"}, {"properties", std::move(properties)}};
  if (!required.empty()) o["required"] = required;
  o["additionalProperties"] = false;
  return o;
}
// Outputs allow fields beyond those listed: a newer daemon may add some.
json Output(json properties, std::vector<std::string> required) {
  json o = {{"type", "object"}, {"properties", std::move(properties)}};
  if (!required.empty()) o["required"] = required;
  return o;
}

const json kSandboxId = Str(
    "The sandbox (sbx_…) to act in. Default: this API key's own MCP sandbox, created on first "
    "use and kept until it is idle for its idle timeout.");

json Command() {
  return {{"description",
           "The program and its arguments as an array (run as they are, no shell), or one "
           "string run by /bin/sh -c. Every command passes the daemon's command policy: it "
           "runs, waits for a reviewer, or is refused."},
          {"oneOf", json::array({{{"type", "string"}, {"minLength", 1}},
                                 {{"type", "array"},
                                  {"items", {{"type", "string"}}},
                                  {"minItems", 1}}})}};
}

json ProcessId() {
  return {{"description", "The process: its number in the sandbox (1, 2, …) or its tag"},
          {"type", json::array({"integer", "string"})}};
}

json OutcomeOutput() {
  return Output({{"sandbox_id", {{"type", "string"}}},
                 {"process_id", {{"type", "integer"}}},
                 {"state", {{"type", "string"}}},
                 {"reason", NullableStr()},
                 {"exit_code", NullableInt()},
                 {"signal", NullableInt()},
                 {"wall_ms", NullableInt()},
                 {"stdout", {{"type", "string"}}},
                 {"stderr", {{"type", "string"}}},
                 {"stdout_truncated", {{"type", "boolean"}}},
                 {"stderr_truncated", {{"type", "boolean"}}}},
                {"sandbox_id", "process_id", "state", "stdout", "stderr", "stdout_truncated",
                 "stderr_truncated"});
}

json SandboxOutput() {
  return Output({{"id", {{"type", "string"}}}, {"state", {{"type", "string"}}}}, {"id", "state"});
}
json ProcessOutput() {
  return Output({{"sandbox_id", {{"type", "string"}}},
                 {"id", {{"type", "integer"}}},
                 {"state", {{"type", "string"}}}},
                {"sandbox_id", "id", "state"});
}

std::vector<ToolSpec> Build() {
  std::vector<ToolSpec> t;
  const json max_output =
      Int("The most bytes of stdout and of stderr to return (the rest is cut and flagged)", 1,
          4 << 20);
  t.push_back(
      {ToolId::kProcessRun, "process_run", "Run a command",
       "Runs a command in a sandbox (no network, its own file system) and waits for it to end: "
       "its exit code and the start of its stdout and stderr. A non-zero exit is reported, not "
       "an error of the tool. A command the policy sends to review waits for a reviewer's "
       "decision for a while, then reports the pending process.",
       Object({{"command", Command()},
               {"sandbox_id", kSandboxId},
               {"cwd", Str("Working directory inside the sandbox (default /workspace when there "
                           "is one, else /)")},
               {"env", StringMap("Environment variables over the sandbox's own")},
               {"stdin", Str("Bytes given to the command's standard input (UTF-8 text)")},
               {"timeout_s", Int("Kill the command after this many seconds", 1, 86400)},
               {"max_output_bytes", max_output}},
              {"command"}),
       OutcomeOutput(), {false, true, false, false}, Profile::kExecutor});
  t.push_back({ToolId::kFileRead, "file_read", "Read a file",
               "Reads a file inside the sandbox. Text comes back as UTF-8; other bytes as "
               "base64 (encoding says which). Large files are cut at max_bytes.",
               Object({{"path", Str("The file, e.g. /workspace/main.py")},
                       {"sandbox_id", kSandboxId},
                       {"offset", Int("Start at this byte", 0, int64_t{1} << 50)},
                       {"max_bytes", max_output}},
                      {"path"}),
               Output({{"path", {{"type", "string"}}},
                       {"size", {{"type", "integer"}}},
                       {"offset", {{"type", "integer"}}},
                       {"encoding", {{"type", "string"}, {"enum", {"utf-8", "base64"}}}},
                       {"content", {{"type", "string"}}},
                       {"truncated", {{"type", "boolean"}}}},
                      {"path", "size", "encoding", "content", "truncated"}),
               {true, false, true, false}, Profile::kDeveloper});
  t.push_back({ToolId::kFileWrite, "file_write", "Write a file",
               "Creates or replaces a file inside the sandbox in one atomic step (readers see "
               "the old file or the new one, never a part).",
               Object({{"path", Str("The file to write")},
                       {"content", Str("The new contents")},
                       {"encoding", {{"type", "string"},
                                     {"enum", {"utf-8", "base64"}},
                                     {"description", "How content is written (default utf-8)"}}},
                       {"make_parents", Bool("Create missing parent directories")},
                       {"mode", Int("Permission bits, e.g. 493 for 0755", 0, 0777)},
                       {"sandbox_id", kSandboxId}},
                      {"path", "content"}),
               Output({{"path", {{"type", "string"}}}, {"size", {{"type", "integer"}}}},
                      {"path", "size"}),
               {false, true, true, false}, Profile::kDeveloper});
  t.push_back({ToolId::kFileList, "file_list", "List a directory",
               "Lists a directory inside the sandbox: each entry's name, type, size, mode and "
               "modification time.",
               Object({{"path", Str("The directory (default /)")}, {"sandbox_id", kSandboxId}},
                      {}),
               Output({{"path", {{"type", "string"}}},
                       {"entries",
                        {{"type", "array"},
                         {"items",
                          Output({{"name", {{"type", "string"}}},
                                  {"type", {{"type", "string"}}},
                                  {"size", {{"type", "integer"}}},
                                  {"mode", {{"type", "integer"}}},
                                  {"mtime", {{"type", "string"}}}},
                                 {"name", "type", "size"})}}},
                       {"truncated", {{"type", "boolean"}}}},
                      {"path", "entries", "truncated"}),
               {true, false, true, false}, Profile::kDeveloper});
  t.push_back({ToolId::kFileMkdir, "file_mkdir", "Make a directory",
               "Creates a directory inside the sandbox, with its missing parents (an existing "
               "directory is fine).",
               Object({{"path", Str("The directory")}, {"sandbox_id", kSandboxId}}, {"path"}),
               Output({{"path", {{"type", "string"}}}}, {"path"}), {false, false, true, false},
               Profile::kDeveloper});
  t.push_back({ToolId::kFileRemove, "file_remove", "Remove a file or directory",
               "Removes a file, a symlink or an empty directory inside the sandbox; with "
               "recursive, a directory and everything in it.",
               Object({{"path", Str("What to remove")},
                       {"recursive", Bool("Remove a directory with its contents")},
                       {"sandbox_id", kSandboxId}},
                      {"path"}),
               Output({{"path", {{"type", "string"}}}, {"removed", {{"type", "boolean"}}}},
                      {"path", "removed"}),
               {false, true, true, false}, Profile::kDeveloper});

  const json lifecycle_in = Object({{"sandbox_id", Str("The sandbox (sbx_…)")}}, {"sandbox_id"});
  t.push_back(
      {ToolId::kSandboxCreate, "sandbox_create", "Create a sandbox",
       "Creates a long-lived sandbox (no network) that processes and files act in. The policy "
       "may start it at once or hold it for a reviewer (state AWAITING_REVIEW).",
       Object({{"cpus", {{"type", "number"}, {"exclusiveMinimum", 0}, {"description", "CPUs"}}},
               {"memory", {{"description", "Memory limit: bytes or a size such as \"512m\""},
                           {"type", json::array({"integer", "string"})}}},
               {"timeout_s", Int("Lifetime in seconds", 1, 7 * 86400)},
               {"idle_timeout_s", Int("End it after this long without activity (0: never)", 0,
                                      7 * 86400)},
               {"env", StringMap("Environment of every process")},
               {"labels", StringMap("Labels to find it by")},
               {"from_snapshot", Str("Start from this snapshot's files")}},
              {}),
       SandboxOutput(), {false, false, false, false}, Profile::kFull});
  t.push_back({ToolId::kSandboxList, "sandbox_list", "List sandboxes",
               "Lists this key's sandboxes, newest first.",
               Object({{"state", Str("Only those in this state (RUNNING, PAUSED, …)")},
                       {"labels", StringMap("Only those with every one of these labels")}},
                      {}),
               Output({{"sandboxes", {{"type", "array"}, {"items", SandboxOutput()}}}},
                      {"sandboxes"}),
               {true, false, true, false}, Profile::kFull});
  t.push_back({ToolId::kSandboxGet, "sandbox_get", "Show a sandbox",
               "Shows a sandbox: its state, limits, labels and live statistics.", lifecycle_in,
               SandboxOutput(), {true, false, true, false}, Profile::kFull});
  t.push_back({ToolId::kSandboxDelete, "sandbox_delete", "Delete a sandbox",
               "Ends a sandbox and every process in it; its files are gone. Its record and "
               "logs are kept.",
               lifecycle_in, SandboxOutput(), {false, true, true, false}, Profile::kFull});
  t.push_back({ToolId::kSandboxPause, "sandbox_pause", "Pause a sandbox",
               "Freezes every process of a sandbox (they keep their memory).", lifecycle_in,
               SandboxOutput(), {false, false, true, false}, Profile::kFull});
  t.push_back({ToolId::kSandboxResume, "sandbox_resume", "Resume a sandbox",
               "Thaws a paused sandbox.", lifecycle_in, SandboxOutput(),
               {false, false, true, false}, Profile::kFull});
  t.push_back(
      {ToolId::kProcessStart, "process_start", "Start a background process",
       "Starts a command in a sandbox and returns at once with its process id; follow it with "
       "process_logs, process_wait and process_signal.",
       Object({{"command", Command()},
               {"sandbox_id", kSandboxId},
               {"cwd", Str("Working directory")},
               {"env", StringMap("Environment variables over the sandbox's own")},
               {"stdin", Str("Bytes given to its standard input")},
               {"tag", Str("A name to find it by (1 to 64 of A-Z a-z 0-9 . _ -)")},
               {"timeout_s", Int("Kill it after this many seconds", 1, 7 * 86400)}},
              {"command"}),
       ProcessOutput(), {false, true, false, false}, Profile::kFull});
  t.push_back({ToolId::kProcessList, "process_list", "List processes",
               "Lists the processes started in a sandbox, oldest first.",
               Object({{"sandbox_id", kSandboxId}}, {}),
               Output({{"processes", {{"type", "array"}, {"items", ProcessOutput()}}}},
                      {"processes"}),
               {true, false, true, false}, Profile::kFull});
  t.push_back(
      {ToolId::kProcessLogs, "process_logs", "Read a process's output",
       "Reads a process's stored stdout and stderr from the given byte offsets, running or not.",
       Object({{"process_id", ProcessId()},
               {"sandbox_id", kSandboxId},
               {"stdout_offset", Int("Skip this many bytes of stdout", 0, int64_t{1} << 50)},
               {"stderr_offset", Int("Skip this many bytes of stderr", 0, int64_t{1} << 50)},
               {"max_bytes", max_output}},
              {"process_id"}),
       Output({{"sandbox_id", {{"type", "string"}}},
               {"process_id", {{"type", "integer"}}},
               {"state", {{"type", "string"}}},
               {"stdout", {{"type", "string"}}},
               {"stderr", {{"type", "string"}}},
               {"stdout_next_offset", {{"type", "integer"}}},
               {"stderr_next_offset", {{"type", "integer"}}}},
              {"sandbox_id", "process_id", "state", "stdout", "stderr", "stdout_next_offset",
               "stderr_next_offset"}),
       {true, false, true, false}, Profile::kFull});
  t.push_back({ToolId::kProcessWait, "process_wait", "Wait for a process",
               "Waits up to timeout_s for a process to end and returns its outcome like "
               "process_run.",
               Object({{"process_id", ProcessId()},
                       {"sandbox_id", kSandboxId},
                       {"timeout_s", Int("How long to wait (default 60)", 1, 3600)},
                       {"max_output_bytes", max_output}},
                      {"process_id"}),
               OutcomeOutput(), {true, false, true, false}, Profile::kFull});
  t.push_back({ToolId::kProcessSignal, "process_signal", "Signal a process",
               "Sends a signal (default SIGTERM) to a process's group; SIGKILL ends its whole "
               "tree.",
               Object({{"process_id", ProcessId()},
                       {"sandbox_id", kSandboxId},
                       {"signal", {{"description", "A name (SIGINT, TERM) or a number"},
                                   {"type", json::array({"integer", "string"})}}}},
                      {"process_id"}),
               Output({{"sandbox_id", {{"type", "string"}}},
                       {"process_id", {{"type", "integer"}}},
                       {"signal", {{"type", "integer"}}}},
                      {"sandbox_id", "process_id", "signal"}),
               {false, true, false, false}, Profile::kFull});
  return t;
}

}  // namespace

const std::vector<ToolSpec>& AllTools() {
  static const std::vector<ToolSpec> tools = Build();
  return tools;
}

const ToolSpec* FindTool(std::string_view name, Profile profile) {
  for (const ToolSpec& t : AllTools()) {
    if (t.name == name) return static_cast<int>(t.least) <= static_cast<int>(profile) ? &t : nullptr;
  }
  return nullptr;
}

json ToolListEntry(const ToolSpec& tool) {
  return {{"name", tool.name},
          {"title", tool.title},
          {"description", tool.description},
          {"inputSchema", tool.input_schema},
          {"outputSchema", tool.output_schema},
          {"annotations",
           {{"title", tool.title},
            {"readOnlyHint", tool.annotations.read_only},
            {"destructiveHint", tool.annotations.destructive},
            {"idempotentHint", tool.annotations.idempotent},
            {"openWorldHint", tool.annotations.open_world}}}};
}

}  // namespace sbx::api::mcp
