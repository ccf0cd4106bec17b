// The Docker Engine API's multiplexed stream (attach, exec start and logs when the container has
// no TTY): frames of an 8-byte header {stream, 0, 0, 0, size (big-endian uint32)} and `size`
// bytes of payload. Stream 0 is stdin, 1 stdout, 2 stderr; 3 is the daemon's own error text
// ("systemerr", API 1.42+).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace sbx::docker {

class FrameDemuxer {
 public:
  using Sink = std::function<void(int stream, std::string_view payload)>;
  explicit FrameDemuxer(Sink sink) : sink_(std::move(sink)) {}

  // Feeds bytes as they arrive, in any split; calls the sink once per complete frame's payload
  // as soon as its bytes are in (a large frame is delivered in pieces, never held whole).
  void Feed(std::string_view bytes);
  // True when the stream ended in the middle of a frame (a daemon that died mid-write).
  bool mid_frame() const { return header_len_ != 0 || left_ != 0; }

 private:
  Sink sink_;
  unsigned char header_[8] = {};
  size_t header_len_ = 0;
  uint32_t left_ = 0;  // payload bytes of the current frame not yet delivered
  int stream_ = 0;
};

// One frame, for tests and for writing to a stream.
std::string EncodeFrame(int stream, std::string_view payload);

}  // namespace sbx::docker
