// The HTTP request path of `sandboxd serve` up to the router: bytes from a client parsed as a
// request head and body under the server's limits, its target split, routed through the real
// /v1 route table, its query decoded and its key extracted.
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <string>

#include "api/http/auth.h"
#include "api/http/router.h"
#include "api/v1/run_routes.h"

namespace http = boost::beast::http;

namespace {

const sbx::api::Router& Routes() {
  static const sbx::api::Router* router = [] {
    auto* r = new sbx::api::Router;
    // The handlers are never called here: registering them reads nothing of the context.
    (void)sbx::api::AddRunRoutes(*r, {});
    return r;
  }();
  return *router;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(8 << 10);
  parser.body_limit(64 << 10);
  boost::beast::error_code ec;
  size_t used = 0;
  while (used < size && !parser.is_done()) {
    size_t n = parser.put(boost::asio::buffer(data + used, size - used), ec);
    if (ec == http::error::need_more) {
      ec = {};
      if (n == 0) break;
    }
    if (ec) return 0;
    used += n;
    if (n == 0) break;
  }
  if (!parser.is_header_done()) return 0;
  const auto& req = parser.get();
  const std::string target(req.target());
  const size_t q = target.find('?');
  const std::string path = target.substr(0, q);
  sbx::api::RouteMatch m = Routes().Find(sbx::api::ParseMethod(req.method_string()), path);
  (void)m;
  if (q != std::string::npos) (void)sbx::api::ParseQuery(std::string_view(target).substr(q + 1));
  auto header = [&](http::field f) -> std::optional<std::string_view> {
    auto it = req.find(f);
    if (it == req.end()) return std::nullopt;
    return std::string_view(it->value().data(), it->value().size());
  };
  std::optional<std::string_view> x_api_key;
  if (auto it = req.find("x-api-key"); it != req.end()) {
    x_api_key = std::string_view(it->value().data(), it->value().size());
  }
  (void)sbx::api::ExtractApiKey(x_api_key, header(http::field::authorization));
  return 0;
}
