// The POSIX shell-word splitter the command policy judges command strings with. A property on
// top: a plain command (no shell feature), written back with QuoteWord and JoinWords, splits
// into the same words again.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "supervisor/policy/shell_words.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using sbx::policy::SplitShell;
  auto parsed = SplitShell(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!parsed.ok() || parsed->NeedsShell() || parsed->commands.size() != 1) return 0;
  const auto& words = parsed->commands[0].words;
  if (words.empty()) return 0;
  auto again = SplitShell(sbx::policy::JoinWords(words));
  if (!again.ok() || again->commands.size() != 1 || again->commands[0].words != words) {
    std::abort();  // JoinWords wrote something SplitShell reads differently
  }
  return 0;
}
