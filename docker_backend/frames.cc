#include "docker_backend/frames.h"

#include <algorithm>

namespace sbx::docker {

void FrameDemuxer::Feed(std::string_view bytes) {
  while (!bytes.empty()) {
    if (left_ == 0) {
      size_t take = std::min(sizeof header_ - header_len_, bytes.size());
      std::copy_n(bytes.data(), take, header_ + header_len_);
      header_len_ += take;
      bytes.remove_prefix(take);
      if (header_len_ < sizeof header_) return;
      header_len_ = 0;
      stream_ = header_[0];
      left_ = (uint32_t{header_[4]} << 24) | (uint32_t{header_[5]} << 16) |
              (uint32_t{header_[6]} << 8) | uint32_t{header_[7]};
      continue;
    }
    size_t take = std::min<size_t>(left_, bytes.size());
    left_ -= static_cast<uint32_t>(take);
    sink_(stream_, bytes.substr(0, take));
    bytes.remove_prefix(take);
  }
}

std::string EncodeFrame(int stream, std::string_view payload) {
  std::string out(8, '\0');
  out[0] = static_cast<char>(stream);
  const auto n = static_cast<uint32_t>(payload.size());
  out[4] = static_cast<char>(n >> 24);
  out[5] = static_cast<char>(n >> 16);
  out[6] = static_cast<char>(n >> 8);
  out[7] = static_cast<char>(n);
  out.append(payload);
  return out;
}

}  // namespace sbx::docker
