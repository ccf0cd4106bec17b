// The MCP tools and the profiles that expose them (docs/mcp.md).
//
//   executor   process_run
//   developer  executor + file_read, file_write, file_list, file_mkdir, file_remove
//   full       developer + sandbox_create, sandbox_list, sandbox_get, sandbox_delete,
//              sandbox_pause, sandbox_resume, process_start, process_list, process_logs,
//              process_wait, process_signal
//
// A tool outside a client's profile does not exist for it: FindTool() answers null, so it is
// absent from tools/list and a call answers the protocol's unknown-tool error. The annotations
// say what each tool really does to the sandbox: only the reads are read-only, every tool acts
// inside sandboxes without a network (openWorldHint false).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sbx::api::mcp {

enum class Profile { kExecutor = 1, kDeveloper = 2, kFull = 3 };
const char* ProfileName(Profile profile);  // "executor", "developer", "full"
std::optional<Profile> ParseProfile(std::string_view name);

struct ToolAnnotations {
  bool read_only = false;
  bool destructive = false;
  bool idempotent = false;
  bool open_world = false;
};

enum class ToolId {
  kProcessRun,
  kFileRead,
  kFileWrite,
  kFileList,
  kFileMkdir,
  kFileRemove,
  kSandboxCreate,
  kSandboxList,
  kSandboxGet,
  kSandboxDelete,
  kSandboxPause,
  kSandboxResume,
  kProcessStart,
  kProcessList,
  kProcessLogs,
  kProcessWait,
  kProcessSignal,
};

struct ToolSpec {
  ToolId id;
  std::string name;
  std::string title;
  std::string description;
  nlohmann::json input_schema;
  nlohmann::json output_schema;
  ToolAnnotations annotations;
  Profile least = Profile::kFull;  // the smallest profile that has it
};

// Every tool, in the order tools/list shows them.
const std::vector<ToolSpec>& AllTools();
// The tool called `name` when `profile` has it, else null.
const ToolSpec* FindTool(std::string_view name, Profile profile);
// The tools/list entry: name, title, description, inputSchema, outputSchema, annotations.
nlohmann::json ToolListEntry(const ToolSpec& tool);

}  // namespace sbx::api::mcp
