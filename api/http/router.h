// The route table: {method, pattern} -> handler, plus the URL decoding it needs.
//
// A pattern is an absolute path whose segments are one of
//   literal        "runs", "v1", "runs:batch"
//   {name}         one whole segment, e.g. "/v1/runs/{id}"
//   {name}:verb    a segment ending in ":verb", e.g. "/v1/runs/{id}:approve" (Google API style
//                  custom methods); the parameter is what precedes the last ':'
//   {name+}        only as the last segment: one or more non-empty segments, joined with '/'
//                  ("/v1/runs/{id}/artifacts/{name+}" gives name = "files/a/b.txt"); each segment
//                  is checked like any other, so the value never holds "..", "." or NUL
// Segments are percent-decoded before they are compared, so "/v1/r%75ns" is "/v1/runs". A
// decoded segment must not contain '/' or NUL, nor be "." or "..": such a path is refused with
// 400 before any route is tried, so no handler ever sees such a parameter.
//
// When several patterns match a path, the most specific wins, segment by segment from the left:
// a literal beats {name}:verb beats {name} beats {name+}. If the winner has no route for the
// method, the answer is 405 with the methods it does have.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "api/http/auth.h"
#include "api/http/http.h"
#include "base/result.h"

namespace sbx::api {

struct Route {
  Method method = Method::kGet;
  std::string pattern;
  Access access = Access::kAdmin;
  bool websocket = false;
  Handler handler;
};

struct RouteMatch {
  enum class Kind {
    kFound,             // route and params are set
    kNotFound,          // 404: no pattern matches the path
    kMethodNotAllowed,  // 405: allowed lists the methods the path does have
    kBadPath,           // 400: error says why (bad percent-encoding, encoded '/', NUL, "..")
  };
  Kind kind = Kind::kNotFound;
  const Route* route = nullptr;
  std::map<std::string, std::string, std::less<>> params;
  std::vector<Method> allowed;
  std::string error;
};

class Router {
 public:
  // Adds a route. Fails with kInvalidArgument on a malformed pattern (not starting with '/',
  // unbalanced braces, an empty or repeated parameter name, a verb containing ':') and with
  // kAlreadyExists when the method already has a route of the same shape ("/a/{x}" and "/a/{y}"
  // are the same shape).
  Status Add(Method method, std::string_view pattern, Access access, Handler handler);
  // A WebSocket route: GET with an Upgrade. A GET without Upgrade on it answers 426.
  Status AddWebSocket(std::string_view pattern, Access access, Handler handler);

  // Looks up the route for `raw_path` (the path part of the request target, not decoded).
  RouteMatch Find(Method method, std::string_view raw_path) const;

  const std::vector<Route>& routes() const { return routes_; }

 private:
  struct Segment {
    enum class Kind { kLiteral, kVerbParam, kParam, kRest };  // in decreasing specificity
    Kind kind;
    std::string text;  // the literal, or the parameter name
    std::string verb;  // for kVerbParam
  };
  struct Compiled {
    std::vector<Segment> segments;
  };

  Status AddRoute(Route route);

  std::vector<Route> routes_;
  std::vector<Compiled> compiled_;  // parallel to routes_
};

// Decodes %XX escapes. With plus_as_space (query strings), '+' is a space. Fails with
// kInvalidArgument on a '%' not followed by two hex digits.
Result<std::string> PercentDecode(std::string_view in, bool plus_as_space = false);

// Parses "a=1&b=&c&a=2" (without the '?'). Empty pieces are skipped; a piece without '=' has an
// empty value. Fails with kInvalidArgument on bad percent-encoding or a decoded NUL.
Result<QueryParams> ParseQuery(std::string_view query);

}  // namespace sbx::api
