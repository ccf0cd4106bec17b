#include "supervisor/policy/decision_json.h"

namespace sbx::policy {

nlohmann::json ToJson(const Decision& d) {
  nlohmann::json reasons = nlohmann::json::array();
  for (const Reason& r : d.reasons) {
    reasons.push_back({{"code", ReasonCodeName(r.code)}, {"message", r.message}});
  }
  nlohmann::json j = {
      {"decision", ActionName(d.action)},
      {"risk", RiskName(d.risk)},
      {"reasons", std::move(reasons)},
      {"rule", nullptr},
      {"rule_set", nullptr},
      {"protection", nullptr},
      {"command", d.command},
      {"step", nullptr},
  };
  if (d.rule) {
    j["rule"] = {{"file", d.rule->file}, {"line", d.rule->line}, {"pattern", d.rule->pattern}};
  }
  if (!d.rule_set.empty()) j["rule_set"] = d.rule_set;
  if (!d.protection.empty()) j["protection"] = d.protection;
  if (d.step) j["step"] = *d.step;
  return j;
}

}  // namespace sbx::policy
