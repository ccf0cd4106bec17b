#include "base/http_url.h"

namespace sbx {

Result<HttpUrl> ParseHttpUrl(std::string_view url, std::string_view what) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "{} '{}': http://HOST[:PORT]/PATH (https is not supported: put a TLS proxy "
                     "beside the service)",
                     what, url);
  }
  HttpUrl u;
  std::string rest(url.substr(kScheme.size()));
  const size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    u.target = rest.substr(slash);
    rest.resize(slash);
  }
  if (const size_t colon = rest.rfind(':'); colon != std::string::npos) {
    u.port = rest.substr(colon + 1);
    rest.resize(colon);
  }
  u.host = rest;
  if (u.host.empty() || u.port.empty() ||
      u.port.find_first_not_of("0123456789") != std::string::npos ||
      u.host.find_first_of(" \t\r\n@") != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "{} '{}' names no host and port", what, url);
  }
  return u;
}

}  // namespace sbx
