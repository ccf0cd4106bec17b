// Seccomp profiles (Docker/OCI JSON, Podman's errno names too): parsed, and compiled to BPF
// when they parse. Nothing is installed.
#include <cstdint>
#include <string_view>

#include "seccomp/seccomp.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto profile = sbx::seccomp::ParseProfile(
      std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!profile.ok()) return 0;
  (void)sbx::seccomp::Compile(*profile);
  return 0;
}
