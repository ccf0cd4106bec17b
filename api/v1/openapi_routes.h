// GET /v1/openapi.json: the OpenAPI 3.0 description of the /v1 API (api/v1/openapi.yaml, embedded
// at build time), served as JSON.
#pragma once

#include <nlohmann/json.hpp>

#include "api/http/router.h"
#include "base/result.h"

namespace sbx::api {

// The embedded api/v1/openapi.yaml converted to JSON. Scalars are typed as YAML 1.2's core schema
// reads them: plain `true`, `42`, `1.5`, `null` become a bool, an integer, a number and null;
// quoted and block scalars stay strings; the explicit tags !!str, !!int, !!float, !!bool and
// !!null are honoured. Mapping keys are always strings ("200", not 200). Fails with
// kInvalidArgument, naming the line, on what would read differently elsewhere or cannot be JSON:
// a plain scalar that YAML 1.1 reads as another type (yes, off, 010, 1_000, 1:30), .inf/.nan,
// an integer outside int64, a duplicate or non-scalar key, a `<<` merge key, any other tag, or
// more than one document.
Result<nlohmann::json> OpenApiDocument();

// Converts any YAML text as OpenApiDocument() does; `source` names it in error messages.
Result<nlohmann::json> YamlToJson(std::string_view yaml, std::string_view source);

// Adds GET /v1/openapi.json (public: no API key). The document is converted once, here; fails
// when it does not convert, so a broken document stops the server at start-up.
Status AddOpenApiRoute(Router& router);

}  // namespace sbx::api
