#include "supervisor/events/audit.h"

#include <optional>

namespace sbx::supervisor {

const char* RoleName(Role role) {
  switch (role) {
    case Role::kSubmitter:
      return "submitter";
    case Role::kReviewer:
      return "reviewer";
    case Role::kAdmin:
      return "admin";
  }
  return "submitter";
}

store::AuditWrite AuditOf(const Principal& who, std::string_view action, std::string_view run_id,
                          nlohmann::json details) {
  details["role"] = RoleName(who.role);
  if (!who.client.empty() && details.is_object()) details["client"] = who.client;
  std::optional<std::string> run;
  if (!run_id.empty()) run = std::string(run_id);
  return {who.name, std::string(action), std::move(run), std::move(details)};
}

}  // namespace sbx::supervisor
