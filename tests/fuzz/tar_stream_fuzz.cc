// A tar stream as PUT …/files:tar sends it (supervisor/files/tar_format.h): every entry read,
// its data consumed, until the end or the first error. The reader's own bounds (names, pax
// records) must hold whatever the headers claim.
#include <cstdint>
#include <cstring>
#include <string>

#include "supervisor/files/tar_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  size_t pos = 0;
  sbx::files::TarReader reader([&](char* buf, size_t n) -> sbx::Result<size_t> {
    const size_t take = std::min(n, size - pos);
    std::memcpy(buf, data + pos, take);
    pos += take;
    return take;
  });
  char chunk[4096];
  for (int entries = 0; entries < 10'000; ++entries) {
    sbx::files::TarEntry e;
    auto more = reader.Next(&e);
    if (!more.ok() || !*more) break;
    (void)sbx::files::TarHeader(e);  // what an entry read back would be written as
    for (;;) {
      auto n = reader.ReadData(chunk, sizeof chunk);
      if (!n.ok() || *n == 0) break;
    }
  }
  return 0;
}
