// A change set's manifest as the data directory holds it (ChangeSetFromJson): whatever it says,
// no path that loads may climb out of the workspace or be absolute, and a set that loads writes
// back to the same set.
#include <cstdint>
#include <string>
#include <string_view>

#include "supervisor/workspace/changes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return 0;
  auto set = sbx::supervisor::ChangeSetFromJson(j);
  if (!set.ok()) return 0;
  for (const auto& e : set->entries) {
    if (e.path.empty() || e.path.front() == '/' || e.path.find("..") == 0 ||
        e.path.find("/../") != std::string::npos || e.path.find('\0') != std::string::npos ||
        e.mode > 0777) {
      __builtin_trap();
    }
  }
  auto again = sbx::supervisor::ChangeSetFromJson(sbx::supervisor::ChangeSetToJson(*set));
  if (!again.ok() || !(*again == *set)) __builtin_trap();
  return 0;
}
