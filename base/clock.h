// The wall clock as the records keep it: milliseconds since the Unix epoch.
#pragma once

#include <chrono>
#include <cstdint>

namespace sbx {

inline int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace sbx
