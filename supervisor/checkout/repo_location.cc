#include "supervisor/checkout/repo_location.h"

#include <algorithm>
#include <cctype>
#include <vector>

namespace sbx::supervisor::checkout {
namespace {

constexpr size_t kMaxRepoLength = 4096;
constexpr char kAccepted[] = "give an absolute path or a file://, https:// or http:// URL";

Error Invalid(std::string message) {
  return Error{ErrorCode::kInvalidArgument, 0, std::move(message), {}};
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IsControl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

// "/a//b/./c/" -> "/a/b/c"; ".." refused.
Result<std::string> NormalizePath(std::string_view path) {
  if (path.empty() || path.front() != '/') {
    return Invalid(fmt::format("a repository path must be absolute; {}", kAccepted));
  }
  if (std::any_of(path.begin(), path.end(), IsControl)) {
    return Invalid("the repository path holds control characters");
  }
  std::string out;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view part = path.substr(i, j - i);
    i = j + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      return Invalid("'..' is not accepted in a repository path; give the path without it");
    }
    out += '/';
    out += part;
  }
  if (out.empty()) return Invalid("the repository path '/' names no repository");
  return out;
}

bool IsHostChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.';
}

Result<RepoLocation> ParseHttp(RepoLocation::Kind kind, const std::string& scheme,
                               std::string_view rest) {
  for (char c : rest) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return Invalid(fmt::format(
          "the {}:// URL holds spaces, control characters or non-ASCII bytes; percent-encode them "
          "(and write the host in punycode)",
          scheme));
    }
    if (c == '\\') return Invalid(fmt::format("the {}:// URL holds a backslash", scheme));
    if (c == '?' || c == '#') {
      return Invalid(fmt::format(
          "the {}:// URL has a query or a fragment; give the repository's URL without them",
          scheme));
    }
  }
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  if (authority.find('@') != std::string_view::npos) {
    return Invalid(fmt::format(
        "credentials in repository URLs are not accepted (the mirror never stores them); give "
        "the {}:// URL without 'user:password@'",
        scheme));
  }
  std::string host;
  std::string_view port;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos || close == 1) {
      return Invalid(fmt::format("the {}:// URL has a malformed IPv6 host", scheme));
    }
    std::string_view inner = authority.substr(1, close - 1);
    for (char c : inner) {
      if (std::isxdigit(static_cast<unsigned char>(c)) == 0 && c != ':' && c != '.') {
        return Invalid(fmt::format("the {}:// URL has a malformed IPv6 host", scheme));
      }
    }
    host = "[";
    host += Lower(inner);
    host += "]";
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return Invalid(fmt::format("the {}:// URL has a malformed host", scheme));
      }
      port = after.substr(1);
      has_port = true;
    }
  } else {
    const size_t colon = authority.find(':');
    std::string_view name = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      has_port = true;
    }
    if (name.empty() || !std::all_of(name.begin(), name.end(), IsHostChar) || name.front() == '-' ||
        name.front() == '.') {
      return Invalid(fmt::format(
          "the {}:// URL has no host or a malformed one (letters, digits, '-' and '.', or an "
          "[IPv6] address)",
          scheme));
    }
    host = Lower(name);
  }
  if (has_port) {
    if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) {
          return std::isdigit(static_cast<unsigned char>(c)) != 0;
        })) {
      return Invalid(fmt::format("the {}:// URL has a malformed port", scheme));
    }
    const int value = std::stoi(std::string(port));
    if (value < 1 || value > 65535) {
      return Invalid(fmt::format("the {}:// URL's port is out of range", scheme));
    }
    const int default_port = kind == RepoLocation::Kind::kHttps ? 443 : 80;
    port = value == default_port ? std::string_view() : port;
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  if (path.empty()) {
    return Invalid(fmt::format("the {}:// URL names no repository (its path is empty)", scheme));
  }
  for (size_t i = 1; i <= path.size();) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view part = path.substr(i, j - i);
    if (part == "." || part == "..") {
      return Invalid(fmt::format(
          "'.' and '..' are not accepted in a {}:// URL's path; give the path without them",
          scheme));
    }
    i = j + 1;
  }
  RepoLocation loc;
  loc.kind = kind;
  loc.url = scheme + "://" + host;
  if (!port.empty()) loc.url += ":" + std::string(port);
  loc.url += path;
  return loc;
}

}  // namespace

Result<RepoLocation> ParseRepo(std::string_view repo) {
  if (repo.empty()) return Invalid(fmt::format("no repository given; {}", kAccepted));
  if (repo.size() > kMaxRepoLength) {
    return Invalid(fmt::format("the repository is longer than {} bytes", kMaxRepoLength));
  }
  if (repo.find('\0') != std::string_view::npos) {
    return Invalid("the repository holds a NUL byte");
  }
  if (repo.front() == '/') {
    auto path = NormalizePath(repo);
    if (!path.ok()) return std::move(path).error();
    return RepoLocation{RepoLocation::Kind::kLocalPath, std::move(path).value()};
  }
  const size_t sep = repo.find("://");
  if (sep == std::string_view::npos) {
    return Invalid(fmt::format(
        "the repository is neither an absolute path nor a URL (scp-style 'host:path' and "
        "relative paths are not accepted); {}",
        kAccepted));
  }
  const std::string scheme = Lower(repo.substr(0, sep));
  const bool scheme_ok =
      !scheme.empty() && scheme.size() <= 32 &&
      std::all_of(scheme.begin(), scheme.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '-' || c == '.';
      });
  if (!scheme_ok)
    return Invalid(fmt::format("the repository URL's scheme is malformed; {}", kAccepted));
  std::string_view rest = repo.substr(sep + 3);
  if (scheme == "file") {
    const size_t slash = rest.find('/');
    std::string_view host = rest.substr(0, slash);
    if (slash == std::string_view::npos || (!host.empty() && Lower(host) != "localhost")) {
      return Invalid(
          "a file:// URL names a path on this host: file:///absolute/path (no other host)");
    }
    std::string_view path = rest.substr(slash);
    if (path.find('%') != std::string_view::npos) {
      return Invalid("percent-escapes are not accepted in file:// URLs; give the path itself");
    }
    if (path.find('?') != std::string_view::npos || path.find('#') != std::string_view::npos) {
      return Invalid("the file:// URL has a query or a fragment; give the path alone");
    }
    auto normalized = NormalizePath(path);
    if (!normalized.ok()) return std::move(normalized).error();
    return RepoLocation{RepoLocation::Kind::kLocalPath, std::move(normalized).value()};
  }
  if (scheme == "https") return ParseHttp(RepoLocation::Kind::kHttps, scheme, rest);
  if (scheme == "http") return ParseHttp(RepoLocation::Kind::kHttp, scheme, rest);
  return Invalid(fmt::format("the scheme '{}://' is not accepted; {}", scheme, kAccepted));
}

bool IsCommitSha(std::string_view sha) {
  return sha.size() == 40 && std::all_of(sha.begin(), sha.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace sbx::supervisor::checkout
