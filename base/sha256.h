// SHA-256 (FIPS 180-4): API-key hashes (api/) and the audit trail's hash chain (store/). Small,
// dependency-free, checked against the FIPS test vectors.
//
// Not constant-time with respect to anything but the input length, which is all the key check
// needs: the presented key is hashed, and only the digests are compared (in constant time, see
// ConstantTimeEqual in api/http/auth.h).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sbx {

using Sha256Digest = std::array<uint8_t, 32>;

class Sha256Hasher {
 public:
  Sha256Hasher();
  void Update(std::string_view data);
  // Finishes the hash; the hasher must not be updated afterwards.
  Sha256Digest Final();

 private:
  void Compress(const uint8_t* block);

  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

Sha256Digest Sha256(std::string_view data);
// Lowercase hex of SHA-256(data).
std::string Sha256Hex(std::string_view data);
std::string DigestHex(const Sha256Digest& digest);
// Parses 64 hex digits (either case); nullopt for anything else.
std::optional<Sha256Digest> ParseDigestHex(std::string_view hex);

}  // namespace sbx
