// Who does what to a run: the principals of the API (an API key's name and role) and the daemon
// itself, and the audit records of what they did.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <string_view>

#include "supervisor/store/store.h"

namespace sbx::supervisor {

enum class Role { kSubmitter, kReviewer, kAdmin };

struct Principal {
  std::string name;  // the API key's name
  Role role = Role::kSubmitter;
  // Where this key's runs may name a workspace, each under ServiceLimits::workspace_roots;
  // empty: anywhere those allow.
  std::vector<std::string> workspace_roots;
  // Whether this key may name a permissive seccomp profile.
  bool permissive_seccomp = false;
  // The program acting with the key when it named itself, e.g. the MCP client's clientInfo
  // ("claude-desktop 1.2 via mcp/developer"); empty for plain API calls. Recorded in the audit
  // trail as details.client; it grants nothing.
  std::string client;
};

const char* RoleName(Role role);  // "submitter", "reviewer", "admin"

// The daemon acting on its own (starting, finishing, recovering runs).
inline Principal Daemon() { return {"sandboxd", Role::kAdmin}; }

// The audit record of `who` doing `action` (to run `run_id`; "" for the daemon itself), with
// the principal's role added to `details`.
store::AuditWrite AuditOf(const Principal& who, std::string_view action, std::string_view run_id,
                          nlohmann::json details);

}  // namespace sbx::supervisor
