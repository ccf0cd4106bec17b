// Byte-string helpers for events: log bytes travel as text when they are valid UTF-8, else as
// base64.
#pragma once

#include <string>
#include <string_view>

namespace sbx::supervisor {

bool IsValidUtf8(std::string_view s);
std::string Base64Encode(std::string_view bytes);
// Decodes standard base64; characters outside the alphabet (padding, whitespace) are skipped.
std::string Base64Decode(std::string_view text);

}  // namespace sbx::supervisor
