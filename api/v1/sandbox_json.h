// The wire forms of long-lived sandboxes (docs/sandboxes.md): the create and process request
// bodies, a sandbox, a process and its outcome, and a process's events as clients see them.
// Decoders refuse unknown fields and wrong types with an error naming the field, as
// RunRequestFromJson does; what the service core checks (limits against the maxima, workspace
// roots, backends available) it checks itself.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "api/http/http.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "supervisor/sandbox/process_output.h"
#include "supervisor/sandbox/sandbox_service.h"
#include "supervisor/store/sandbox_records.h"

namespace sbx::api {

// POST /v1/sandboxes. Every field is optional; idle_timeout_s 0 turns the idle timeout off.
Result<store::SandboxRequest> SandboxRequestFromJson(const nlohmann::json& body);
// A sandbox as GET /v1/sandboxes/{id} shows it: env values redacted (kRedacted), `stats`,
// `expires_at` and `idle_expires_at` from `live` (null when it is not live here).
nlohmann::json SandboxToJson(const store::SandboxRecord& sandbox,
                             const supervisor::SandboxLiveInfo& live = {});

// POST /v1/sandboxes/{id}/processes: argv (required), env, cwd, stdin or stdin_b64,
// stdin_open, tag (1 to 64 of [A-Za-z0-9._-], not all digits so that it never reads as an id),
// timeout_s, pty {cols, rows} (1 to 1000 each).
Result<store::ProcessRequest> ProcessRequestFromJson(const nlohmann::json& body);
// Whether `tag` is a valid process tag (see above).
bool IsValidProcessTag(std::string_view tag);
nlohmann::json ProcessResultToJson(const store::ProcessResult& result);
nlohmann::json ProcessToJson(const store::ProcessRecord& process);
// The process with the start of its output, for ?wait=true: `stdout` / `stderr` as text when
// they are UTF-8, else `stdout_b64` / `stderr_b64`, and `stdout_truncated` / `stderr_truncated`.
nlohmann::json ProcessOutcomeToJson(const supervisor::ProcessOutcome& outcome);

// A signal by name or number: "SIGINT", "INT", "sigint", "2", or a JSON number. 1 to 64.
Result<int> ParseSignal(const nlohmann::json& value);

// The stored output of one process (ProcessOutput::StreamPath), opened once and read by range.
// A missing file reads as empty (a process that never started has none).
class ProcessStreams {
 public:
  explicit ProcessStreams(std::string dir) : dir_(std::move(dir)) {}
  // Up to `length` bytes of `stream` (1 stdout, 2 stderr) from `offset`; fewer when the file is
  // shorter.
  std::string Read(int stream, int64_t offset, int64_t length);
  // The same range as a file range for WebSocket::SendBinary; no fd when the file is missing or
  // shorter than the range (the caller then sends Read()'s bytes).
  FileBytes Range(int stream, int64_t offset, int64_t length);

 private:
  std::shared_ptr<const UniqueFd> Open(int stream);
  std::string dir_;
  std::shared_ptr<const UniqueFd> fds_[2];
};

// A process event on the wire: ProcessEventHead(event) with `sandbox_id` and `process_id`; a
// process.log event carries its bytes as `data` (valid UTF-8) or `data_b64`.
nlohmann::json ProcessEventToJson(const supervisor::ProcessEvent& event,
                                  std::string_view sandbox_id, int64_t process_id,
                                  ProcessStreams& streams);
// ?format=binary: the head of a process.log event's binary message (the JSON without the bytes
// and a newline); the bytes follow it in the same message.
std::string ProcessEventBinaryHead(const supervisor::ProcessEvent& event,
                                   std::string_view sandbox_id, int64_t process_id);

// Standard base64 with padding and nothing else (stdin_b64, a WebSocket's data_b64).
bool IsStrictBase64(std::string_view s);

}  // namespace sbx::api
