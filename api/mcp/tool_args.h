// Decoding of tool arguments and encoding of tool results shared by the MCP tools.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "supervisor/sandbox/sandbox_service.h"

namespace sbx::api::mcp::internal {

// `s` cut to at most `n` bytes.
std::string Clip(std::string s, size_t n);
// Text for a model: valid UTF-8, invalid sequences replaced with U+FFFD.
std::string Utf8Lossy(std::string bytes);
// A message that helps a model correct itself, from the service's error.
std::string Explain(const Error& e);
// {"error": {"code", "message"}}.
nlohmann::json ErrorJson(const Error& e);

// object[key] when it is a string, else "" (never operator[] on a const object: a missing key
// there is undefined behaviour).
std::string StringField(const nlohmann::json& object, const char* key);

// args[name] as a string ("" when absent and not required); kInvalidArgument naming it when it
// has another type.
Result<std::string> StringArg(const nlohmann::json& args, const char* name, bool required);
// args[name] as an integer within [min, max]; nullopt when absent.
Result<std::optional<int64_t>> IntArg(const nlohmann::json& args, const char* name, int64_t min,
                                      int64_t max);
// args[name] as a boolean; false when absent.
Result<bool> BoolArg(const nlohmann::json& args, const char* name);
// args.command: a string becomes {"/bin/sh", "-c", string}; an array of strings is the argv.
Result<std::vector<std::string>> CommandArg(const nlohmann::json& args);
// args.process_id (a number or a tag) as the id-or-tag string the service takes; "" when it is
// neither.
std::string ProcessIdArg(const nlohmann::json& args);

// A process's outcome as process_run returns it.
nlohmann::json OutcomeJson(const supervisor::ProcessOutcome& outcome);
// "2026-12-07T04:51:31Z".
std::string FormatMtime(int64_t ns);

}  // namespace sbx::api::mcp::internal
