#include "supervisor/result_json.h"

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
          {"reason", s.reason},
          {"exit_code", s.exit_code ? nlohmann::json(*s.exit_code) : nlohmann::json(nullptr)},
          {"signal", s.signal ? nlohmann::json(SignalName(*s.signal)) : nlohmann::json(nullptr)},
          {"wall_ms", s.wall_ms},
          {"cpu_ms", s.cpu_ms},
          {"memory_peak_bytes", s.memory_peak_bytes}};
}

}  // namespace sbx::supervisor
