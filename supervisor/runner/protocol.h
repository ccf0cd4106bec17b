// What a runner and the serve node it dials (the coordinator) say to each other on the link
// (GET /v1/runners, a WebSocket; docs/operations.md, "Outbound runners").
//
// Text messages are JSON objects with a "type":
//   runner -> coordinator
//     hello    {name, instance, labels, capacity, version, protocol}   first, once
//     beat     {n, running: [{run_id, attempt}], free}                 every heartbeat
//     accepted {run_id}                                                an assign was taken
//     batch    {seq, run_id, attempt, after_end, writes}
//                                                one commit, the runner's outbox entry `seq`;
//                                                after_end: made after the run's end there
//   coordinator -> runner
//     welcome  {name, applied_seq, heartbeat_ms, node_timeout_ms, fence, beat_echo}
//                                                 after hello
//     beat     {n}                                the runner's beat n is in the store (when
//                                                 the welcome said beat_echo)
//     assign   {run}                              a run claimed for the runner (RunToWire)
//     ack      {seq}                              outbox entries up to seq are committed
//     kill     {run_id, why}                      the run is no longer the runner's to run
//     fence    {}                                 the runner was declared lost: kill every run
// Binary messages carry a run's file bytes, runner -> coordinator: a 4-byte big-endian length,
// that many bytes of JSON {run_id, file, offset}, then the bytes to write at offset. `file` is
// "stdout", "stderr", "artifacts.json" or "artifacts/NAME"; a run's files are sent before the
// batch that announces them, so a step.log event never points past the bytes the coordinator has.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace sbx::supervisor::runner {

inline constexpr int kProtocolVersion = 1;
// The largest text or binary message either side sends; the coordinator's WebSocket sessions
// accept this much.
inline constexpr size_t kMaxMessageBytes = 1 << 20;
// The bytes of one file chunk.
inline constexpr size_t kChunkBytes = 256 << 10;

struct FileChunk {
  std::string run_id;
  std::string file;
  uint64_t offset = 0;
  std::string_view bytes;  // into the message
};
std::string EncodeFileChunk(std::string_view run_id, std::string_view file, uint64_t offset,
                            std::string_view bytes);
// kInvalidArgument for a malformed message, a bad run id, or a file name that is not one of the
// run's files (no "..", no empty or hidden component, no absolute path).
Result<FileChunk> DecodeFileChunk(std::string_view message);
// Whether `file` is a name a run's files may have (above).
Status CheckRunFileName(std::string_view file);

}  // namespace sbx::supervisor::runner
