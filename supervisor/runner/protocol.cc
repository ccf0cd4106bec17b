#include "supervisor/runner/protocol.h"

#include <nlohmann/json.hpp>

namespace sbx::supervisor::runner {

std::string EncodeFileChunk(std::string_view run_id, std::string_view file, uint64_t offset,
                            std::string_view bytes) {
  const std::string head =
      nlohmann::json{{"run_id", run_id}, {"file", file}, {"offset", offset}}.dump();
  std::string out;
  out.reserve(4 + head.size() + bytes.size());
  const uint32_t n = static_cast<uint32_t>(head.size());
  for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<char>((n >> shift) & 0xff));
  out += head;
  out += bytes;
  return out;
}

Status CheckRunFileName(std::string_view file) {
  if (file == "stdout" || file == "stderr" || file == "artifacts.json") return Ok();
  constexpr std::string_view kPrefix = "artifacts/";
  if (file.size() > 1024 || !file.starts_with(kPrefix) || file.find('\0') != file.npos) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' is not one of a run's files",
                     file.substr(0, 80));
  }
  std::string_view rest = file.substr(kPrefix.size());
  while (true) {
    const size_t slash = rest.find('/');
    const std::string_view part = rest.substr(0, slash);
    if (part.empty() || part.front() == '.') {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'{}' is not one of a run's files (an empty or hidden component)",
                       file.substr(0, 80));
    }
    if (slash == rest.npos) return Ok();
    rest.remove_prefix(slash + 1);
  }
}

Result<FileChunk> DecodeFileChunk(std::string_view message) {
  if (message.size() < 4) return MakeError(ErrorCode::kInvalidArgument, "a file chunk is short");
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n = (n << 8) | static_cast<unsigned char>(message[i]);
  if (n > message.size() - 4) {
    return MakeError(ErrorCode::kInvalidArgument, "a file chunk's header runs past its end");
  }
  FileChunk chunk;
  try {
    const nlohmann::json head = nlohmann::json::parse(message.substr(4, n));
    chunk.run_id = head.at("run_id").get<std::string>();
    chunk.file = head.at("file").get<std::string>();
    // A whole number from 0: a negative or fractional one would not convert (undefined).
    const nlohmann::json& offset = head.at("offset");
    if (!offset.is_number_unsigned()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "a file chunk's offset must be a whole number from 0");
    }
    chunk.offset = offset.get<uint64_t>();
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInvalidArgument, "a file chunk's header: {}", e.what());
  }
  if (chunk.run_id.empty() || chunk.run_id.size() > 128 ||
      chunk.run_id.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "0123456789_-") != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "a file chunk names no valid run");
  }
  SBX_TRY(CheckRunFileName(chunk.file));
  chunk.bytes = message.substr(4 + n);
  return chunk;
}

}  // namespace sbx::supervisor::runner
