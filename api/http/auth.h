// API-key authentication and roles.
//
// Keys are configured as {name, role, hex SHA-256 of the key}; the server never holds a key
// itself. A request presents its key in `x-api-key: KEY` or `Authorization: Bearer KEY`; the key
// is hashed and the digest compared with every configured digest in constant time, so the time
// taken says nothing about how close a guess was (only how many keys are configured).
//
// Roles are ordered: submitter < reviewer < admin. A route declares the least role it needs, or
// Access::kPublic for routes that need no key at all (/healthz, /metrics).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/sha256.h"

namespace sbx::api {

enum class Role { kSubmitter = 1, kReviewer = 2, kAdmin = 3 };

// "submitter", "reviewer", "admin".
const char* RoleName(Role role);
Result<Role> ParseRole(std::string_view name);

// What a route requires of the caller.
enum class Access { kPublic, kSubmitter, kReviewer, kAdmin };
const char* AccessName(Access access);
// Whether a caller with `role` may use a route that requires `access` (admin may do everything).
bool RoleAllows(Role role, Access access);

// Who made a request: the configured key's name and its role. Handlers receive it in
// Request::principal (empty on public routes).
struct Principal {
  std::string key_name;
  Role role = Role::kSubmitter;
};

struct ApiKeyConfig {
  std::string name;
  Role role = Role::kSubmitter;
  std::string key_sha256_hex;  // 64 hex digits: `printf %s "$KEY" | sha256sum`
};

class Authenticator {
 public:
  // No keys: every non-public route answers 401.
  Authenticator() = default;

  // Fails with kInvalidArgument on an empty or duplicate name or a digest that is not 64 hex
  // digits. Two names with the same digest are refused too (the principal would be ambiguous).
  static Result<Authenticator> Create(const std::vector<ApiKeyConfig>& keys);

  // The principal whose key hashes to SHA-256(presented_key), or nullopt. Every configured
  // digest is compared, in constant time each, whatever the outcome.
  std::optional<Principal> Authenticate(std::string_view presented_key) const;

  size_t size() const { return keys_.size(); }

 private:
  struct Key {
    std::string name;
    Role role;
    Sha256Digest digest;
  };
  std::vector<Key> keys_;
};

// The key a request presents: `x-api-key` when present and non-empty, else the token of
// `Authorization: Bearer TOKEN` (scheme case-insensitive). nullopt when neither carries a key.
std::optional<std::string_view> ExtractApiKey(std::optional<std::string_view> x_api_key,
                                              std::optional<std::string_view> authorization);

// Browsers cannot set headers on a WebSocket: they offer the key as a subprotocol instead,
//   new WebSocket(url, ["sandboxd.v1", "sandboxd.bearer." + base64url(KEY)])
// The key from such a Sec-WebSocket-Protocol value (comma-separated offers; base64url without
// padding), or nullopt when none is offered or it is malformed. The server answers with
// kWebSocketProtocol when the client offered it.
inline constexpr std::string_view kWebSocketProtocol = "sandboxd.v1";
std::optional<std::string> KeyFromWebSocketProtocols(std::string_view offers);
// Whether `offers` (a Sec-WebSocket-Protocol value) names `protocol`.
bool OffersWebSocketProtocol(std::string_view offers, std::string_view protocol);

// Compares two byte ranges in time that depends only on their lengths.
bool ConstantTimeEqual(std::span<const uint8_t> a, std::span<const uint8_t> b);

}  // namespace sbx::api
