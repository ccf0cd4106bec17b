// What the `sandboxctl sandbox …` commands share (sandbox_commands.cc, sandbox_exec.cc,
// sandbox_cp.cc): API targets, following a process's output, notices.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "api/sandboxctl/client.h"
#include "api/sandboxctl/commands.h"
#include "base/result.h"

namespace sbx::ctl {

// "/v1/sandboxes/ID" and "/v1/sandboxes/ID/processes/PID" (PID: an id or a tag), encoded.
std::string SandboxTarget(const std::string& id);
std::string ProcessTarget(const std::string& id, const std::string& pid);
// "…/processes/PID/events?after=N", the process's events WebSocket from seq N on.
std::string ProcessEventsTarget(const std::string& id, const std::string& pid, int64_t after);
// A process's id as the API shows it ("3"), or "" when it has none.
std::string ProcessId(const nlohmann::json& process);

// How much of each stream (0: stdout, 1: stderr) has been written, and where each goes (an fd;
// -1 leaves the stream out).
struct OutputCursor {
  std::array<uint64_t, 2> written = {0, 0};
  std::array<int, 2> fds = {1, 2};
};

// Writes one stream's stored output (GET …/logs?stream=S&offset=N) from cursor.written on, and
// advances it.
Status WriteStoredLog(Client& client, const std::string& id, const std::string& pid, int stream,
                      OutputCursor& cursor);

// Follows the process's events from the start (…/events?after=0): writes process.log bytes past
// what the cursor has written, calls on_event (when given) with every event, and stops after
// process.finished (*finished = true) or when the server ends the stream (*finished = false).
Status FollowProcessOutput(Client& client, const std::string& id, const std::string& pid,
                           OutputCursor& cursor, bool* finished,
                           const std::function<void(const nlohmann::json&)>& on_event = {});

// The stderr notice for a process waiting for review, and for a sandbox.
void NoticeProcessReview(const std::string& id, const std::string& pid,
                         const nlohmann::json& process);
void NoticeSandboxState(const nlohmann::json& sandbox);

}  // namespace sbx::ctl
