// jobs.yaml files (JobSet::Parse), then each job that loads started with a few fixed parameter
// sets, and the input's own text as every string parameter: whatever the file or the caller
// says, a job's argv only ever comes from its own template.
#include <cstdint>
#include <string>
#include <string_view>

#include "supervisor/policy/jobs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto set = sbx::policy::JobSet::Parse(text, "fuzz.yaml");
  if (!set.ok()) return 0;
  for (const sbx::policy::Job& job : (*set)->jobs()) {
    nlohmann::json own = nlohmann::json::object();
    nlohmann::json numbers = nlohmann::json::object();
    for (const auto& p : job.params) {
      own[p.name] = std::string(text.substr(0, 300));
      numbers[p.name] = static_cast<int64_t>(size) - 7;
    }
    for (const nlohmann::json& params :
         {nlohmann::json::object(), own, numbers, nlohmann::json{{"x", 1}}}) {
      auto argv = sbx::policy::InstantiateJob(job, params);
      if (argv.ok() && argv->size() != job.argv.size()) __builtin_trap();
    }
    (void)sbx::policy::JobToJson(job, (*set)->source()).dump();
  }
  return 0;
}
