// http://HOST[:PORT][/PATH] as the configuration names other services (a planner endpoint, a
// node's address). Plain HTTP only: TLS belongs to a proxy in front.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace sbx {

struct HttpUrl {
  std::string host;
  std::string port = "80";
  std::string target = "/";  // the path, "/" when none
};

// kInvalidArgument naming `what` (e.g. "planner url", "node_address") for anything else.
Result<HttpUrl> ParseHttpUrl(std::string_view url, std::string_view what);

}  // namespace sbx
