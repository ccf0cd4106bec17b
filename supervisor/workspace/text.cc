#include "supervisor/workspace/text.h"

#include <cstdint>

namespace sbx::supervisor {

void AppendJsonEscaped(std::string_view utf8, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  // Runs of bytes that need nothing go out in one append.
  size_t run = 0;
  for (size_t i = 0; i < utf8.size(); ++i) {
    const auto c = static_cast<unsigned char>(utf8[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(utf8.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        out->append("\\u00");
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 0xF]);
    }
  }
  out->append(utf8.data() + run, utf8.size() - run);
}

}  // namespace sbx::supervisor
