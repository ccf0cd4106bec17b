#include "base/result.h"

#include <cstring>

namespace sbx {

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kPermissionDenied: return "permission_denied";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kAlreadyExists: return "already_exists";
    case ErrorCode::kFailedPrecondition: return "failed_precondition";
    case ErrorCode::kResourceExhausted: return "resource_exhausted";
    case ErrorCode::kAborted: return "aborted";
  }
  return "internal";
}

std::string Error::ToString() const {
  std::string s = message;
  if (sys_errno != 0) s += fmt::format(": {}", std::strerror(sys_errno));
  if (!context.empty()) s += fmt::format(" ({})", context);
  return s;
}

Error WithContext(Error e, std::string context) {
  if (e.context.empty()) {
    e.context = std::move(context);
  } else {
    e.context = context + ": " + e.context;
  }
  return e;
}

}  // namespace sbx
