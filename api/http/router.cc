#include "api/http/router.h"

#include <algorithm>
#include <set>

namespace sbx::api {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// Splits "/a/b" into {"a", "b"} and "/" into {""}. `path` starts with '/'.
std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> out;
  path.remove_prefix(1);
  while (true) {
    size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

}  // namespace

Result<std::string> PercentDecode(std::string_view in, bool plus_as_space) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      int hi = i + 1 < in.size() ? HexValue(in[i + 1]) : -1;
      int lo = i + 2 < in.size() ? HexValue(in[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "bad percent-encoding at offset {}: '%' must be followed by two hex "
                         "digits",
                         i);
      }
      out.push_back(static_cast<char>(hi << 4 | lo));
      i += 2;
    } else if (plus_as_space && c == '+') {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Result<QueryParams> ParseQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> items;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view piece = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (piece.empty()) continue;
    size_t eq = piece.find('=');
    std::string_view raw_key = piece.substr(0, eq);
    std::string_view raw_value =
        eq == std::string_view::npos ? std::string_view() : piece.substr(eq + 1);
    Result<std::string> key = PercentDecode(raw_key, /*plus_as_space=*/true);
    if (!key.ok()) return WithContext(std::move(key).error(), "query string");
    Result<std::string> value = PercentDecode(raw_value, /*plus_as_space=*/true);
    if (!value.ok()) return WithContext(std::move(value).error(), "query string");
    if (key->find('\0') != std::string::npos || value->find('\0') != std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument, "query string contains an encoded NUL");
    }
    items.emplace_back(std::move(*key), std::move(*value));
  }
  return QueryParams(std::move(items));
}

Status Router::Add(Method method, std::string_view pattern, Access access, Handler handler) {
  return AddRoute(Route{method, std::string(pattern), access, false, std::move(handler)});
}

Status Router::AddWebSocket(std::string_view pattern, Access access, Handler handler) {
  return AddRoute(Route{Method::kGet, std::string(pattern), access, true, std::move(handler)});
}

Status Router::AddRoute(Route route) {
  const std::string& pattern = route.pattern;
  if (pattern.empty() || pattern[0] != '/') {
    return MakeError(ErrorCode::kInvalidArgument, "route pattern '{}' must start with '/'",
                     pattern);
  }
  if (!route.handler) {
    return MakeError(ErrorCode::kInvalidArgument, "route '{}' has no handler", pattern);
  }
  if (route.method == Method::kOther) {
    return MakeError(ErrorCode::kInvalidArgument, "route '{}': method OTHER cannot be routed",
                     pattern);
  }
  Compiled compiled;
  std::set<std::string, std::less<>> names;
  for (std::string_view seg : SplitPath(pattern)) {
    Segment s;
    if (!seg.empty() && seg.front() == '{') {
      size_t close = seg.find('}');
      if (close == std::string_view::npos) {
        return MakeError(ErrorCode::kInvalidArgument, "route '{}': unbalanced '{{'", pattern);
      }
      std::string_view name = seg.substr(1, close - 1);
      std::string_view rest = seg.substr(close + 1);
      bool greedy = name.ends_with('+');
      if (greedy) name.remove_suffix(1);
      if (name.empty() || !std::all_of(name.begin(), name.end(), IsNameChar)) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "route '{}': parameter names are [A-Za-z0-9_]+", pattern);
      }
      if (!names.insert(std::string(name)).second) {
        return MakeError(ErrorCode::kInvalidArgument, "route '{}': parameter '{}' repeats", pattern,
                         name);
      }
      s.text = std::string(name);
      if (greedy) {
        if (!rest.empty() || seg.data() + seg.size() != pattern.data() + pattern.size()) {
          return MakeError(ErrorCode::kInvalidArgument,
                           "route '{}': a greedy '{{{}+}}' must be the whole last segment",
                           pattern, name);
        }
        s.kind = Segment::Kind::kRest;
      } else if (rest.empty()) {
        s.kind = Segment::Kind::kParam;
      } else {
        std::string_view verb = rest.substr(1);
        if (rest[0] != ':' || verb.empty() || verb.find_first_of(":{}") != std::string_view::npos) {
          return MakeError(ErrorCode::kInvalidArgument,
                           "route '{}': after '{{{}}}' only ':verb' may follow, and the verb "
                           "must not contain ':', '{{' or '}}'",
                           pattern, name);
        }
        s.kind = Segment::Kind::kVerbParam;
        s.verb = std::string(verb);
      }
    } else {
      if (seg.find_first_of("{}%") != std::string_view::npos) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "route '{}': a literal segment must not contain '{{', '}}' or '%'",
                         pattern);
      }
      if (seg.empty() && pattern != "/") {
        return MakeError(ErrorCode::kInvalidArgument,
                         "route '{}': empty segment (no '//' and no trailing '/')", pattern);
      }
      s.kind = Segment::Kind::kLiteral;
      s.text = std::string(seg);
    }
    compiled.segments.push_back(std::move(s));
  }
  for (size_t i = 0; i < routes_.size(); ++i) {
    if (routes_[i].method != route.method) continue;
    const auto& a = compiled_[i].segments;
    const auto& b = compiled.segments;
    bool same = a.size() == b.size() &&
                std::equal(a.begin(), a.end(), b.begin(), [](const Segment& x, const Segment& y) {
                  if (x.kind != y.kind) return false;
                  if (x.kind == Segment::Kind::kLiteral) return x.text == y.text;
                  if (x.kind == Segment::Kind::kVerbParam) return x.verb == y.verb;
                  return true;
                });
    if (same) {
      return MakeError(ErrorCode::kAlreadyExists, "route {} '{}' clashes with '{}'",
                       MethodName(route.method), pattern, routes_[i].pattern);
    }
  }
  routes_.push_back(std::move(route));
  compiled_.push_back(std::move(compiled));
  return Ok();
}

RouteMatch Router::Find(Method method, std::string_view raw_path) const {
  RouteMatch m;
  if (raw_path.empty() || raw_path[0] != '/') {
    m.kind = RouteMatch::Kind::kBadPath;
    m.error = "the request target must be a path starting with '/'";
    return m;
  }
  std::vector<std::string> segs;
  for (std::string_view raw : SplitPath(raw_path)) {
    Result<std::string> seg = PercentDecode(raw);
    if (!seg.ok()) {
      m.kind = RouteMatch::Kind::kBadPath;
      m.error = "path: " + seg.error().message;
      return m;
    }
    if (seg->find_first_of(std::string_view("/\0", 2)) != std::string::npos) {
      m.kind = RouteMatch::Kind::kBadPath;
      m.error = "a path segment must not contain an encoded '/' or NUL";
      return m;
    }
    if (*seg == "." || *seg == "..") {
      m.kind = RouteMatch::Kind::kBadPath;
      m.error = "a path segment must not be '.' or '..'";
      return m;
    }
    segs.push_back(std::move(*seg));
  }

  // Specificity of a match: per segment, literal 2, {x}:verb 1, {x} 0; compared left to right.
  std::vector<int> best;
  std::vector<size_t> group;  // routes matching the path with the best specificity
  for (size_t r = 0; r < routes_.size(); ++r) {
    const std::vector<Segment>& pattern = compiled_[r].segments;
    const bool rest = !pattern.empty() && pattern.back().kind == Segment::Kind::kRest;
    if (rest ? segs.size() < pattern.size() : pattern.size() != segs.size()) continue;
    std::vector<int> score;
    bool ok = true;
    for (size_t i = 0; ok && i < pattern.size(); ++i) {
      const Segment& p = pattern[i];
      const std::string& s = segs[i];
      switch (p.kind) {
        case Segment::Kind::kLiteral:
          ok = s == p.text;
          score.push_back(2);
          break;
        case Segment::Kind::kVerbParam:
          ok = s.size() > p.verb.size() + 1 && s.ends_with(p.verb) &&
               s[s.size() - p.verb.size() - 1] == ':';
          score.push_back(1);
          break;
        case Segment::Kind::kParam:
          ok = !s.empty();
          score.push_back(0);
          break;
        case Segment::Kind::kRest:
          for (size_t j = i; ok && j < segs.size(); ++j) ok = !segs[j].empty();
          score.push_back(-1);
          break;
      }
    }
    if (!ok) continue;
    if (group.empty() || score > best) {
      best = std::move(score);
      group.assign(1, r);
    } else if (score == best) {
      group.push_back(r);
    }
  }
  if (group.empty()) {
    m.kind = RouteMatch::Kind::kNotFound;
    return m;
  }
  for (size_t r : group) {
    if (routes_[r].method != method) continue;
    m.kind = RouteMatch::Kind::kFound;
    m.route = &routes_[r];
    const std::vector<Segment>& pattern = compiled_[r].segments;
    for (size_t i = 0; i < pattern.size(); ++i) {
      const Segment& p = pattern[i];
      if (p.kind == Segment::Kind::kRest) {
        std::string joined;
        for (size_t j = i; j < segs.size(); ++j) {
          if (j > i) joined.push_back('/');
          joined += segs[j];
        }
        m.params[p.text] = std::move(joined);
      } else if (p.kind == Segment::Kind::kParam) {
        m.params[p.text] = segs[i];
      } else if (p.kind == Segment::Kind::kVerbParam) {
        m.params[p.text] = segs[i].substr(0, segs[i].size() - p.verb.size() - 1);
      }
    }
    return m;
  }
  m.kind = RouteMatch::Kind::kMethodNotAllowed;
  for (size_t r : group) {
    Method allowed = routes_[r].method;
    if (std::find(m.allowed.begin(), m.allowed.end(), allowed) == m.allowed.end()) {
      m.allowed.push_back(allowed);
    }
  }
  return m;
}

}  // namespace sbx::api
