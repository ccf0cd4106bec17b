#include "supervisor/exec/result_json.h"

#include <algorithm>
#include <cstring>

namespace sbx::supervisor {

std::string SignalName(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  if (abbrev == nullptr) return fmt::format("SIG{}", sig);
  return std::string("SIG") + abbrev;
}

nlohmann::json IsolationToJson(const isolate::IsolationReport& iso) {
  return {
      {"namespaces", iso.namespaces},
      {"network", iso.network},
      {"cgroup", {{"version", iso.cgroup_version}, {"controllers", iso.cgroup_controllers}}},
      {"seccomp_profile", iso.seccomp_profile},
      {"user", iso.user},
      {"no_new_privs", iso.no_new_privs},
      {"capabilities", iso.capabilities},
  };
}

nlohmann::json ResultToJson(const isolate::ProcessResult& r) {
  nlohmann::json j;
  j["reason"] = isolate::EndReasonName(r.reason);
  j["exit_code"] = r.exit_code ? nlohmann::json(*r.exit_code) : nlohmann::json(nullptr);
  j["signal"] = r.signal ? nlohmann::json(SignalName(*r.signal)) : nlohmann::json(nullptr);
  j["wall_ms"] = r.wall_ms;
  j["cpu_ms"] = r.cpu_ms;
  j["memory_peak_bytes"] = r.memory_peak_bytes;
  j["stdout_bytes"] = r.stdout_bytes;
  j["stderr_bytes"] = r.stderr_bytes;
  j["output_truncated"] = r.output_truncated;
  j["isolation"] = IsolationToJson(r.isolation);
  j["seccomp_denials"] = nlohmann::json::array();
  for (const auto& d : r.seccomp_denials) {
    j["seccomp_denials"].push_back({{"syscall", d.name}, {"count", d.count}});
  }
  if (r.error) {
    j["error"] = {{"stage", r.error->stage},
                  {"errno", r.error->sys_errno},
                  {"message", r.error->message}};
  } else {
    j["error"] = nullptr;
  }
  return j;
}

nlohmann::json StepResultJson(const store::StepResult& s) {
  return {{"name", s.name},
          {"reason", store::RenderEndReason(s.reason)},
          {"exit_code", s.exit_code ? nlohmann::json(*s.exit_code) : nlohmann::json(nullptr)},
          {"signal", s.signal ? nlohmann::json(SignalName(*s.signal)) : nlohmann::json(nullptr)},
          {"wall_ms", s.wall_ms},
          {"cpu_ms", s.cpu_ms},
          {"memory_peak_bytes", s.memory_peak_bytes},
          {"seccomp_denials", SeccompDenialsJson(s.seccomp_denials)}};
}

nlohmann::json SeccompDenialsJson(const std::vector<store::SeccompDenial>& denials) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& d : denials) a.push_back({{"syscall", d.syscall}, {"count", d.count}});
  return a;
}

std::vector<store::SeccompDenial> AddDenials(std::vector<store::SeccompDenial> total,
                                             const std::vector<store::SeccompDenial>& more) {
  for (const auto& d : more) {
    auto it = std::find_if(total.begin(), total.end(),
                           [&](const store::SeccompDenial& t) { return t.syscall == d.syscall; });
    if (it == total.end()) {
      total.push_back(d);
    } else {
      it->count += d.count;
    }
  }
  std::stable_sort(total.begin(), total.end(),
                   [](const store::SeccompDenial& a, const store::SeccompDenial& b) {
                     return a.count > b.count;
                   });
  return total;
}

std::string DenialSummary(const std::vector<store::SeccompDenial>& denials) {
  std::string out;
  for (const auto& d : denials) {
    if (!out.empty()) out += ", ";
    out += fmt::format("{} denied {} time{}", d.syscall, d.count, d.count == 1 ? "" : "s");
  }
  return out;
}

}  // namespace sbx::supervisor
