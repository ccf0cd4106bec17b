// Git's blob object ids: SHA-1 of "blob <length>\0" followed by the content, as lowercase hex.
// The clean-tree check recomputes them from files on disk. SHA-1 is what the repositories
// themselves use for object ids (not chosen here for strength): the id is compared with the id
// git recorded, nothing is trusted because of it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace sbx::supervisor::checkout {

// Incremental SHA-1 (FIPS 180-4).
class Sha1 {
 public:
  Sha1();
  void Update(std::string_view data);
  // Finishes the hash; the object must not be updated afterwards.
  std::array<uint8_t, 20> Final();

 private:
  void Compress(const uint8_t* block);

  std::array<uint32_t, 5> h_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

// The blob id of `content`.
std::string GitBlobId(std::string_view content);

// The blob id of the `size` bytes `fd` reads from its current position, read in chunks. A file
// that ends early or goes on past `size` is kFailedPrecondition (it changed while being read).
Result<std::string> GitBlobIdOfFd(int fd, uint64_t size);

}  // namespace sbx::supervisor::checkout
