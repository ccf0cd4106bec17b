// SHA-256 (FIPS 180-4), for the audit trail's hash chain. Small and dependency-free; not
// constant-time with respect to anything but the input length, which is fine for hashing public
// records.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sbx::store {

class Sha256 {
 public:
  static constexpr size_t kDigestSize = 32;
  using Digest = std::array<uint8_t, kDigestSize>;

  Sha256();
  void Update(std::string_view data);
  // Finishes the hash; the object must not be updated afterwards.
  Digest Final();

 private:
  void Compress(const uint8_t* block);

  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

// Lowercase hex of SHA-256(data).
std::string Sha256Hex(std::string_view data);
std::string ToHex(const Sha256::Digest& digest);

}  // namespace sbx::store
