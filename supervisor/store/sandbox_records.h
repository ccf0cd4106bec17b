// What the store keeps of long-lived sandboxes and the processes started in them (issue 18).
//
// A sandbox moves through these states:
//
//   PENDING -> AWAITING_REVIEW -> STARTING -> RUNNING <-> PAUSED
//   any non-terminal state -> STOPPED (deleted)     any non-terminal state -> FAILED (reason)
//
// (IsLegalSandboxTransition() is the table.) A process:
//
//   AWAITING_REVIEW -> RUNNING -> FINISHED        AWAITING_REVIEW -> REJECTED
//   AWAITING_REVIEW -> CANCELLED (its sandbox ended before anyone approved it)
//
// Every state change is a compare-and-set, as for runs (store.h).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "supervisor/store/end_reason.h"

namespace sbx::store {

enum class SandboxState {
  kPending,
  kAwaitingReview,
  kStarting,
  kRunning,
  kPaused,
  kStopped,
  kFailed,
};
// "PENDING", "AWAITING_REVIEW", "STARTING", "RUNNING", "PAUSED", "STOPPED", "FAILED".
const char* SandboxStateName(SandboxState state);
Result<SandboxState> ParseSandboxState(std::string_view name);
bool IsTerminal(SandboxState state);
// Whether `from` -> `to` is allowed (never `from` -> `from`).
bool IsLegalSandboxTransition(SandboxState from, SandboxState to);
const std::vector<SandboxState>& AllSandboxStates();
const std::vector<SandboxState>& NonTerminalSandboxStates();

// "sbx_" followed by 20 random base32 characters (100 bits from getrandom(2)).
std::string NewSandboxId();

// What a client asks for with POST /v1/sandboxes. The idempotency check compares requests whole.
struct SandboxRequest {
  // cpus, memory_bytes, pids as for a run; timeout_s is the sandbox's maximum lifetime;
  // output_bytes caps each process's stored output (stdout and stderr together).
  std::optional<double> cpus;
  std::optional<int64_t> memory_bytes;
  std::optional<int64_t> pids;
  std::optional<int64_t> timeout_s;
  std::optional<int64_t> output_bytes;
  // No process running and no API call on the sandbox for this long: it ends FAILED (idle).
  std::optional<int64_t> idle_timeout_s;
  std::string network;  // "none"
  std::string seccomp_profile;
  std::map<std::string, std::string> env;  // every process's environment starts from this
  // A host directory at /workspace: "ro", "cow" (writes land in the sandbox's own layer) or
  // "rw" (writes go to the host directory; only under roots the configuration marks writable).
  std::optional<std::string> workspace_path;
  std::string workspace_mode = "ro";
  std::map<std::string, std::string> labels;
  // Labels the node that starts it must carry (as a run's node_selector); empty: any node.
  std::map<std::string, std::string> node_selector;
  std::optional<std::string> idempotency_key;  // unique per submitter
  std::string backend;                         // "native", "docker", "auto" ("" = the default)
  std::string image;                           // Docker: the image
  std::optional<std::string> from_snapshot;    // start from this snapshot's files
  bool operator==(const SandboxRequest&) const = default;
};

struct SandboxApproval {
  std::string approved_by;  // an API key name, or "policy"
  int64_t approved_at_ms = 0;
  std::string rule;
  bool operator==(const SandboxApproval&) const = default;
};

// A sandbox as the store keeps it: its request (defaults filled in by the review) and what
// became of it.
struct SandboxRecord : SandboxRequest {
  std::string id;         // empty in CreateSandbox: NewSandboxId() is used
  std::string submitter;  // API key name
  SandboxState state = SandboxState::kPending;
  nlohmann::json policy;  // the policy decision; null until decided
  std::optional<SandboxApproval> approval;
  std::optional<std::string> node;  // the daemon that started it
  int64_t created_at_ms = 0;
  std::optional<int64_t> started_at_ms;  // entered RUNNING
  std::optional<int64_t> ended_at_ms;    // entered STOPPED or FAILED
  int64_t last_activity_ms = 0;          // the last API call on it or process end (idle timer)
  EndReason reason;                      // set on STOPPED ("deleted") and FAILED
  std::string backend_used;              // the backend that started it ("native", "docker")
  // What the engine reported once it started: isolation layers, the init's host pid, the
  // snapshot it came from. Shown by GET /v1/sandboxes/{id}; opaque to the store.
  nlohmann::json info;

  const SandboxRequest& request() const { return *this; }
};

// Fields an UpdateSandbox() sets with the state; unset ones keep their value. started_at is set
// by the store on entering RUNNING (the first time), ended_at on STOPPED or FAILED.
struct SandboxUpdate {
  std::optional<nlohmann::json> policy;
  std::optional<SandboxApproval> approval;
  std::optional<std::string> node;
  std::optional<int64_t> last_activity_ms;
  std::optional<EndReason> reason;
  std::optional<std::string> backend_used;
  std::optional<nlohmann::json> info;
};

struct SandboxFilter {
  std::vector<SandboxState> states;           // any of these; empty: every state
  std::map<std::string, std::string> labels;  // every key=value must match
  std::optional<std::string> submitter;
  std::optional<std::string> node;
  std::string cursor;  // next_cursor of the previous page; empty: the newest
  int limit = 50;      // 1..1000
};

struct SandboxPage {
  std::vector<SandboxRecord> sandboxes;  // newest first
  std::string next_cursor;               // empty on the last page
};

struct CreateSandboxResult {
  SandboxRecord sandbox;
  bool created = false;  // false: the submitter's idempotency key named an existing one
};

enum class ProcessState { kAwaitingReview, kRunning, kFinished, kRejected, kCancelled };
// "AWAITING_REVIEW", "RUNNING", "FINISHED", "REJECTED", "CANCELLED".
const char* ProcessStateName(ProcessState state);
Result<ProcessState> ParseProcessState(std::string_view name);
bool IsTerminal(ProcessState state);
bool IsLegalProcessTransition(ProcessState from, ProcessState to);

struct PtyRequest {
  int cols = 80;
  int rows = 24;
  bool operator==(const PtyRequest&) const = default;
};

// POST /v1/sandboxes/{id}/processes.
struct ProcessRequest {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;  // over the sandbox's env
  std::string cwd;                         // "" = /workspace when there is one, else /
  std::string stdin_data;                  // bytes; may hold NULs
  bool stdin_open = false;                 // keep stdin open for the stream after stdin_data
  std::string tag;                         // "" = none; the newest process with a tag answers it
  std::optional<int64_t> timeout_s;
  std::optional<PtyRequest> pty;
  bool operator==(const ProcessRequest&) const = default;
};

struct ProcessResult {
  EndReason reason;  // exited, signaled, timed_out, killed, setup_failed, …
  std::optional<int> exit_code;
  std::optional<int> signal;
  int64_t wall_ms = 0;
  int64_t cpu_ms = 0;
  int64_t stdout_bytes = 0;  // stored bytes (after the cap)
  int64_t stderr_bytes = 0;
  bool output_truncated = false;
  bool operator==(const ProcessResult&) const = default;
};

struct ProcessRecord : ProcessRequest {
  std::string sandbox_id;
  int64_t id = 0;  // 1, 2, 3, … per sandbox; 0 in CreateProcess: the next one is used
  std::string submitter;
  ProcessState state = ProcessState::kAwaitingReview;
  nlohmann::json policy;  // the command policy's decision
  std::optional<SandboxApproval> approval;
  int64_t created_at_ms = 0;
  std::optional<int64_t> started_at_ms;
  std::optional<int64_t> finished_at_ms;
  std::optional<ProcessResult> result;

  const ProcessRequest& request() const { return *this; }
};

struct ProcessUpdate {
  std::optional<SandboxApproval> approval;
  std::optional<ProcessResult> result;
};

struct ProcessFilter {
  std::optional<std::string> tag;
  std::vector<ProcessState> states;  // empty: every state
  int64_t after_id = 0;              // oldest first, ids above this
  int limit = 100;                   // 1..1000
};

}  // namespace sbx::store
