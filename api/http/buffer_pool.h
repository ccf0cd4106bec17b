// Message buffers kept for reuse between WebSocket messages.
//
// A binary step.log message carries up to 1 MiB of output read back from the log file. Built in
// a fresh std::string each time, every such buffer is a new mapping from the allocator: a page
// fault and a zeroed page per 4 KiB, then the string's own zero fill, then the read. Measured
// while streaming 1 GiB to a WebSocket client, those faults and fills were about a quarter of
// the host's CPU time. A buffer whose message has been written goes back here, and the next
// message reuses its pages while they are still mapped (and cached). It comes back with its
// size too: std::string zero-fills whatever resize() adds, and a fill of 1 MiB per message was
// still 5 % of the host's CPU while streaming. A message that overwrites the stale bytes in
// place, and resizes only past them, pays for no fill.
//
// Bounded: at most kMaxBuffers are kept, each of a capacity between kMinCapacity and
// kMaxCapacity; anything else is simply freed. Thread-safe.
#pragma once

#include <cstddef>
#include <string>

namespace sbx::api {

class BufferPool {
 public:
  static constexpr size_t kMaxBuffers = 4;
  static constexpr size_t kMinCapacity = 64 * 1024;
  static constexpr size_t kMaxCapacity = 4 * 1024 * 1024;

  // A kept buffer, with its capacity and its size; its bytes are stale, for the caller to
  // overwrite. An empty string when none is kept.
  static std::string Take();
  // Keeps `buffer` for a later Take() when it is worth keeping and there is room.
  static void Give(std::string&& buffer);
  // How many buffers are kept now (for tests).
  static size_t Kept();
};

}  // namespace sbx::api
