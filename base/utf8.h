// UTF-8 checks shared by every library that takes text from outside (API bodies, policy and job
// files, planner answers, a sandbox's output).
#pragma once

#include <cstddef>
#include <string_view>

namespace sbx {

// Whether `s` is well-formed UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF.
bool IsValidUtf8(std::string_view s);
// The offset of the first byte that is not part of well-formed UTF-8; s.size() when all is.
size_t FirstInvalidUtf8(std::string_view s);

}  // namespace sbx
