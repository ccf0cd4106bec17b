// The one JSON shape of a sandbox's result, shared by `sandboxd exec --result`, the API and the
// Docker backend.
#pragma once

#include <nlohmann/json.hpp>

#include "isolate/spec.h"
#include "supervisor/store/store.h"

namespace sbx::supervisor {

nlohmann::json IsolationToJson(const isolate::IsolationReport& iso);
nlohmann::json ResultToJson(const isolate::ProcessResult& r);
// "SIGKILL" for 9; "SIG<n>" when the number has no name.
std::string SignalName(int sig);
// A step's outcome as runs and step.finished events show it: {name, reason, exit_code, signal,
// wall_ms, cpu_ms, memory_peak_bytes, seccomp_denials}.
nlohmann::json StepResultJson(const store::StepResult& s);
// [{"syscall": "ptrace", "count": 3}, …]
nlohmann::json SeccompDenialsJson(const std::vector<store::SeccompDenial>& denials);
// total plus more, by syscall, most frequent first.
std::vector<store::SeccompDenial> AddDenials(std::vector<store::SeccompDenial> total,
                                             const std::vector<store::SeccompDenial>& more);
// "ptrace denied 3 times, mount denied 1 time"; "" when none.
std::string DenialSummary(const std::vector<store::SeccompDenial>& denials);

}  // namespace sbx::supervisor
