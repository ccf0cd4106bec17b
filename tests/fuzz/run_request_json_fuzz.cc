// Every JSON body POST /v1/runs accepts: parsed as the server parses it, decoded into a request,
// and encoded back as the API would answer a record holding it.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "api/v1/run_routes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto body = nlohmann::json::parse(std::string_view(reinterpret_cast<const char*>(data), size),
                                    nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return 0;
  auto req = sbx::api::RunRequestFromJson(body);
  if (!req.ok()) return 0;
  sbx::store::RunRecord record;
  static_cast<sbx::store::RunRequest&>(record) = *req;
  (void)sbx::api::RunToJson(record).dump();
  return 0;
}
