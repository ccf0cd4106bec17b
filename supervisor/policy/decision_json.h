// The JSON form of a policy decision, as stored on a run and in the audit trail:
//
//   {"decision": "allow"|"review"|"deny", "risk": "low"|"medium"|"high",
//    "reasons": [{"code": "network", "message": "curl uses the network"}, …],
//    "rule": {"file": "/etc/sandboxd/policies/commands.yaml", "line": 12, "pattern": "git *"}
//            | null,
//    "rule_set": "ci" | null, "protection": "destructive" | null,
//    "command": "git status", "step": 0 | null}
#pragma once

#include <nlohmann/json.hpp>

#include "supervisor/policy/command_policy.h"

namespace sbx::policy {

nlohmann::json ToJson(const Decision& d);

}  // namespace sbx::policy
