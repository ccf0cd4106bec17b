// How a run or one of its steps ended, as a value: a code, and for the codes that carry one a
// detail. The API and the store show it as one string, "code" or "code: detail"
// ("setup_failed: mkdir …", "policy_denied: …", "rejected: not today"); RenderEndReason() writes
// that string and ParseEndReason() reads it back, also from records written before this type
// existed.
#pragma once

#include <string>
#include <string_view>

namespace sbx::store {

enum class EndCode {
  kNone,                // not ended: ""
  kExited,              // "exited"
  kSignaled,            // "signaled"
  kOomKilled,           // "oom_killed"
  kTimedOut,            // "timed_out"
  kCancelled,           // "cancelled"
  kSetupFailed,         // "setup_failed: what failed"
  kPolicyDenied,        // "policy_denied: the rule's message"
  kRejected,            // "rejected" or "rejected: the reviewer's reason"
  kSupervisorRestart,   // "supervisor_restart": its daemon died while it ran
  kSupervisorShutdown,  // "supervisor_shutdown": its daemon stopped while it ran
  kKilled,              // "killed": a process killed by a client, or by its sandbox's end
  kExpired,             // "expired": a sandbox that reached its timeout_s
  kIdle,                // "idle": a sandbox idle for its idle_timeout_s
  kDeleted,             // "deleted": a sandbox a client deleted
  kReviewExpired,       // "review_expired": nobody decided within the policy's expire_after_s
  kCheckoutDirty,       // "checkout_dirty: modified a, untracked b/": a read-only checkout changed
  kNodeLost,            // "node_lost": the node it ran on stopped beating (or lost the database)
  kOther,               // a string of none of these forms, kept whole in `detail`
};

// "exited", "setup_failed", … ("" for kNone and kOther).
const char* EndCodeName(EndCode code);

struct EndReason {
  EndCode code = EndCode::kNone;
  std::string detail;
  bool operator==(const EndReason&) const = default;
};

// "code", or "code: detail" when there is a detail; kOther: the detail itself.
std::string RenderEndReason(const EndReason& reason);
// The inverse: RenderEndReason(ParseEndReason(s)) == s for every string s.
EndReason ParseEndReason(std::string_view text);

}  // namespace sbx::store
