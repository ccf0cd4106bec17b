// Byte-string helpers for events: log bytes travel as text when they are valid UTF-8, else as
// base64.
#pragma once

#include <string>
#include <string_view>

namespace sbx::supervisor {

bool IsValidUtf8(std::string_view s);
// Appends `utf8` (valid UTF-8) as the inside of a JSON string: `"` and `\` escaped, control
// characters as \n, \t, … or \u00XX, everything else as it is (as nlohmann's dump writes it).
void AppendJsonEscaped(std::string_view utf8, std::string* out);
std::string Base64Encode(std::string_view bytes);
// Decodes standard base64; characters outside the alphabet (padding, whitespace) are skipped.
std::string Base64Decode(std::string_view text);

}  // namespace sbx::supervisor
