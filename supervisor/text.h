// Byte-string helpers for events: log bytes travel as text when they are valid UTF-8, else as
// base64.
#pragma once

#include <string>
#include <string_view>

namespace sbx::supervisor {

bool IsValidUtf8(std::string_view s);
std::string Base64Encode(std::string_view bytes);

}  // namespace sbx::supervisor
