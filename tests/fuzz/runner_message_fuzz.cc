// What a runner sends its coordinator (supervisor/runner/protocol.h), which the coordinator
// decodes from a peer it trusts only with its own runs: the first byte picks the decoder.
//   'c' + bytes: a file chunk; one that decodes names one of a run's files (nothing absolute,
//                no empty, "." or ".." component, no hidden one) and a run id of
//                [A-Za-z0-9_-] only;
//   'w' + JSON:  a commit's writes; writes that decode encode to JSON that decodes the same;
//   'r' + JSON:  a run record on the wire; one that decodes comes back whole.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "supervisor/runner/protocol.h"
#include "supervisor/store/wire_json.h"

namespace {

using namespace sbx;

void Chunk(std::string_view bytes) {
  auto c = supervisor::runner::DecodeFileChunk(bytes);
  if (!c.ok()) return;
  const std::string& f = c->file;
  if (f.empty() || f.front() == '/' || f.find('\0') != std::string::npos ||
      !supervisor::runner::CheckRunFileName(f).ok()) {
    __builtin_trap();
  }
  // No component is empty, "." or "..", or hidden ("~...." is a name like any other).
  for (size_t at = 0; at <= f.size();) {
    const size_t slash = std::min(f.find('/', at), f.size());
    const std::string_view part = std::string_view(f).substr(at, slash - at);
    if (part.empty() || part.front() == '.') __builtin_trap();
    at = slash + 1;
  }
  if (c->run_id.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
      std::string::npos) {
    __builtin_trap();
  }
  // What decodes encodes back to itself.
  const std::string again =
      supervisor::runner::EncodeFileChunk(c->run_id, c->file, c->offset, c->bytes);
  auto d = supervisor::runner::DecodeFileChunk(again);
  if (!d.ok() || d->file != c->file || d->offset != c->offset || d->bytes != c->bytes) {
    __builtin_trap();
  }
}

void Writes(std::string_view text) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return;
  auto w = store::WritesFromJson(j);
  if (!w.ok()) return;
  const nlohmann::json encoded = store::WritesToJson(*w);
  auto again = store::WritesFromJson(encoded);
  if (!again.ok() || again->size() != w->size() || store::WritesToJson(*again) != encoded) {
    __builtin_trap();
  }
}

void Run(std::string_view text) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return;
  auto run = store::RunFromWire(j);
  if (!run.ok()) return;
  auto wire = store::RunToWire(*run);
  if (!wire.ok()) return;  // e.g. a field the store would refuse to keep
  auto again = store::RunFromWire(*wire);
  if (!again.ok() || again->request() != run->request() || again->id != run->id ||
      again->attempt != run->attempt || again->state != run->state) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0]) {
      case 'c': Chunk(rest); break;
      case 'w': Writes(rest); break;
      case 'r': Run(rest); break;
      default: break;
    }
  } catch (const nlohmann::json::exception&) {
    // WritesToJson of a string that is not UTF-8 cannot be dumped; the decoders never throw.
  }
  return 0;
}
