// UTF-8 helpers of the planner library.
#pragma once

#include <string_view>

namespace sbx::supervisor::plan::internal {

// Whether `s` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, at most
// U+10FFFF).
bool IsValidUtf8(std::string_view s);

// The longest prefix of `s` (valid UTF-8) of at most `max_bytes` that does not split a
// character.
std::string_view TruncateUtf8(std::string_view s, size_t max_bytes);

}  // namespace sbx::supervisor::plan::internal
