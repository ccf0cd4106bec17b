// UTF-8 helpers of the planner library.
#pragma once

#include <string_view>

#include "base/utf8.h"

namespace sbx::supervisor::plan::internal {

using ::sbx::IsValidUtf8;  // base/utf8.h

// The longest prefix of `s` (valid UTF-8) of at most `max_bytes` that does not split a
// character.
std::string_view TruncateUtf8(std::string_view s, size_t max_bytes);

}  // namespace sbx::supervisor::plan::internal
