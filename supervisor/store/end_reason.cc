#include "supervisor/store/end_reason.h"

namespace sbx::store {

namespace {

constexpr EndCode kNamed[] = {
    EndCode::kExited,
    EndCode::kSignaled,
    EndCode::kOomKilled,
    EndCode::kTimedOut,
    EndCode::kCancelled,
    EndCode::kSetupFailed,
    EndCode::kPolicyDenied,
    EndCode::kRejected,
    EndCode::kSupervisorRestart,
    EndCode::kSupervisorShutdown,
    EndCode::kKilled,
    EndCode::kExpired,
    EndCode::kIdle,
    EndCode::kDeleted,
    EndCode::kReviewExpired,
    EndCode::kCheckoutDirty,
    EndCode::kNodeLost,
};

}  // namespace

const char* EndCodeName(EndCode code) {
  switch (code) {
    case EndCode::kNone:
      return "";
    case EndCode::kExited:
      return "exited";
    case EndCode::kSignaled:
      return "signaled";
    case EndCode::kOomKilled:
      return "oom_killed";
    case EndCode::kTimedOut:
      return "timed_out";
    case EndCode::kCancelled:
      return "cancelled";
    case EndCode::kSetupFailed:
      return "setup_failed";
    case EndCode::kPolicyDenied:
      return "policy_denied";
    case EndCode::kRejected:
      return "rejected";
    case EndCode::kSupervisorRestart:
      return "supervisor_restart";
    case EndCode::kSupervisorShutdown:
      return "supervisor_shutdown";
    case EndCode::kKilled:
      return "killed";
    case EndCode::kExpired:
      return "expired";
    case EndCode::kIdle:
      return "idle";
    case EndCode::kDeleted:
      return "deleted";
    case EndCode::kReviewExpired:
      return "review_expired";
    case EndCode::kCheckoutDirty:
      return "checkout_dirty";
    case EndCode::kNodeLost:
      return "node_lost";
    case EndCode::kOther:
      return "";
  }
  return "";
}

std::string RenderEndReason(const EndReason& reason) {
  if (reason.code == EndCode::kOther) return reason.detail;
  std::string out = EndCodeName(reason.code);
  if (!reason.detail.empty()) out += (out.empty() ? "" : ": ") + reason.detail;
  return out;
}

EndReason ParseEndReason(std::string_view text) {
  if (text.empty()) return {};
  for (EndCode code : kNamed) {
    const std::string_view name = EndCodeName(code);
    if (text == name) return {code, ""};
    // "name: detail" with a detail; "name: " alone is kept whole so that it renders the same.
    if (text.size() > name.size() + 2 && text.substr(0, name.size()) == name &&
        text.substr(name.size(), 2) == ": ") {
      return {code, std::string(text.substr(name.size() + 2))};
    }
  }
  return {EndCode::kOther, std::string(text)};
}

}  // namespace sbx::store
