// The JSON bodies the /v1/sandboxes routes take from clients (POST /v1/sandboxes and
// POST …/processes, and a signal's name or number), parsed as the server parses them, decoded,
// and encoded back as the API would answer records holding them.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "api/v1/sandbox_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto body = nlohmann::json::parse(std::string_view(reinterpret_cast<const char*>(data), size),
                                    nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return 0;
  if (auto sb = sbx::api::SandboxRequestFromJson(body); sb.ok()) {
    sbx::store::SandboxRecord record;
    static_cast<sbx::store::SandboxRequest&>(record) = *sb;
    (void)sbx::api::SandboxToJson(record, {}).dump();
  }
  if (auto p = sbx::api::ProcessRequestFromJson(body); p.ok()) {
    sbx::store::ProcessRecord record;
    static_cast<sbx::store::ProcessRequest&>(record) = *p;
    (void)sbx::api::ProcessToJson(record).dump();
  }
  if (body.is_object() && body.contains("signal")) (void)sbx::api::ParseSignal(body["signal"]);
  return 0;
}
