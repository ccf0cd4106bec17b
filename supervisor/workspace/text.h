// Byte-string helpers for events: log bytes travel as text when they are valid UTF-8, else as
// base64.
#pragma once

#include <string>
#include <string_view>

#include "base/base64.h"
#include "base/utf8.h"

namespace sbx::supervisor {

using ::sbx::IsValidUtf8;  // base/utf8.h
// Appends `utf8` (valid UTF-8) as the inside of a JSON string: `"` and `\` escaped, control
// characters as \n, \t, … or \u00XX, everything else as it is (as nlohmann's dump writes it).
void AppendJsonEscaped(std::string_view utf8, std::string* out);
using sbx::Base64Decode;  // base/base64.h
using sbx::Base64Encode;

}  // namespace sbx::supervisor
