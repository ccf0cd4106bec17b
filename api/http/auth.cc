#include "api/http/auth.h"

#include <strings.h>

#include <set>

namespace sbx::api {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kSubmitter:
      return "submitter";
    case Role::kReviewer:
      return "reviewer";
    case Role::kAdmin:
      return "admin";
  }
  return "submitter";
}

Result<Role> ParseRole(std::string_view name) {
  if (name == "submitter") return Role::kSubmitter;
  if (name == "reviewer") return Role::kReviewer;
  if (name == "admin") return Role::kAdmin;
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown role '{}'; use submitter, reviewer or admin", name);
}

const char* AccessName(Access access) {
  switch (access) {
    case Access::kPublic:
      return "public";
    case Access::kSubmitter:
      return "submitter";
    case Access::kReviewer:
      return "reviewer";
    case Access::kAdmin:
      return "admin";
  }
  return "admin";
}

bool RoleAllows(Role role, Access access) {
  switch (access) {
    case Access::kPublic:
      return true;
    case Access::kSubmitter:
      return role >= Role::kSubmitter;
    case Access::kReviewer:
      return role >= Role::kReviewer;
    case Access::kAdmin:
      return role >= Role::kAdmin;
  }
  return false;
}

bool ConstantTimeEqual(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  if (a.size() != b.size()) return false;
  volatile uint8_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = diff | (a[i] ^ b[i]);
  return diff == 0;
}

Result<Authenticator> Authenticator::Create(const std::vector<ApiKeyConfig>& keys) {
  Authenticator auth;
  std::set<std::string> names;
  std::set<Sha256Digest> digests;
  for (const ApiKeyConfig& k : keys) {
    if (k.name.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "API key with an empty name; name every key");
    }
    if (!names.insert(k.name).second) {
      return MakeError(ErrorCode::kInvalidArgument, "API key name '{}' is configured twice",
                       k.name);
    }
    std::optional<Sha256Digest> digest = ParseDigestHex(k.key_sha256_hex);
    if (!digest) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "API key '{}': key_sha256 must be 64 hex digits (the SHA-256 of the key, "
                       "as printed by `printf %s KEY | sha256sum`)",
                       k.name);
    }
    if (!digests.insert(*digest).second) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "API key '{}' has the same key as another configured key; give each "
                       "principal its own key",
                       k.name);
    }
    auth.keys_.push_back(Key{k.name, k.role, *digest});
  }
  return auth;
}

std::optional<Principal> Authenticator::Authenticate(std::string_view presented_key) const {
  if (presented_key.empty()) return std::nullopt;
  Sha256Digest presented = Sha256(presented_key);
  const Key* found = nullptr;
  for (const Key& k : keys_) {
    // No early exit: every digest is compared.
    bool eq = ConstantTimeEqual(presented, k.digest);
    if (eq && found == nullptr) found = &k;
  }
  if (found == nullptr) return std::nullopt;
  return Principal{found->name, found->role};
}

std::optional<std::string_view> ExtractApiKey(std::optional<std::string_view> x_api_key,
                                              std::optional<std::string_view> authorization) {
  if (x_api_key) {
    std::string_view key = Trim(*x_api_key);
    if (!key.empty()) return key;
  }
  if (authorization) {
    std::string_view v = Trim(*authorization);
    constexpr std::string_view kScheme = "bearer";
    if (v.size() > kScheme.size() && strncasecmp(v.data(), kScheme.data(), kScheme.size()) == 0 &&
        (v[kScheme.size()] == ' ' || v[kScheme.size()] == '\t')) {
      std::string_view token = Trim(v.substr(kScheme.size()));
      if (!token.empty()) return token;
    }
  }
  return std::nullopt;
}

namespace {

// Each comma-separated token of a Sec-WebSocket-Protocol value, trimmed.
template <class F>
void ForEachOffer(std::string_view offers, F&& f) {
  while (!offers.empty()) {
    size_t comma = offers.find(',');
    std::string_view one = Trim(offers.substr(0, comma));
    if (!one.empty() && f(one)) return;
    if (comma == std::string_view::npos) break;
    offers.remove_prefix(comma + 1);
  }
}

}  // namespace

bool OffersWebSocketProtocol(std::string_view offers, std::string_view protocol) {
  bool found = false;
  ForEachOffer(offers, [&](std::string_view one) { return found = one == protocol; });
  return found;
}

std::optional<std::string> KeyFromWebSocketProtocols(std::string_view offers) {
  constexpr std::string_view kPrefix = "sandboxd.bearer.";
  std::optional<std::string> key;
  ForEachOffer(offers, [&](std::string_view one) {
    if (!one.starts_with(kPrefix)) return false;
    std::string_view b64 = one.substr(kPrefix.size());
    if (b64.empty() || b64.size() > 1024) return true;
    // base64url, no padding: 6 bits per character.
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    for (char c : b64) {
      int v = c >= 'A' && c <= 'Z'   ? c - 'A'
              : c >= 'a' && c <= 'z' ? c - 'a' + 26
              : c >= '0' && c <= '9' ? c - '0' + 52
              : c == '-'             ? 62
              : c == '_'             ? 63
                                     : -1;
      if (v < 0) return true;
      acc = (acc << 6) | static_cast<uint32_t>(v);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out.push_back(static_cast<char>((acc >> bits) & 0xff));
      }
    }
    if (b64.size() % 4 == 1) return true;  // not a whole number of bytes
    key = std::move(out);
    return true;
  });
  return key;
}

}  // namespace sbx::api
