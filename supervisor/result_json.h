// The one JSON shape of a sandbox's result, shared by `sandboxd exec --result`, the API and the
// Docker backend.
#pragma once

#include <nlohmann/json.hpp>

#include "isolate/spec.h"

namespace sbx::supervisor {

nlohmann::json IsolationToJson(const isolate::IsolationReport& iso);
nlohmann::json ResultToJson(const isolate::ProcessResult& r);
// "SIGKILL" for 9; "SIG<n>" when the number has no name.
std::string SignalName(int sig);

}  // namespace sbx::supervisor
