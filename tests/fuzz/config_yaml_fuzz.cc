// The daemon's YAML configuration (sandboxd serve --config).
#include <cstdint>
#include <string_view>

#include "supervisor/service/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)sbx::supervisor::ParseConfig(std::string_view(reinterpret_cast<const char*>(data), size),
                                     "fuzz.yaml");
  return 0;
}
