// Standard base64 (RFC 4648, with padding): bytes that are not text, carried in JSON.
#pragma once

#include <string>
#include <string_view>

namespace sbx {

std::string Base64Encode(std::string_view bytes);
// Decodes standard base64; characters outside the alphabet (padding, whitespace) are skipped.
// Callers that must refuse malformed input check it first (api/v1's IsStrictBase64).
std::string Base64Decode(std::string_view text);

}  // namespace sbx
