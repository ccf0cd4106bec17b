#include "api/mcp/tool_args.h"

#include <fmt/format.h>

#include <ctime>

#include "api/http/http.h"
#include "supervisor/workspace/text.h"

namespace sbx::api::mcp::internal {

using nlohmann::json;

std::string Clip(std::string s, size_t n) {
  if (s.size() > n) s.resize(n);
  return s;
}

std::string Utf8Lossy(std::string bytes) {
  if (supervisor::IsValidUtf8(bytes)) return bytes;
  return json::parse(DumpJson(json(std::move(bytes)))).get<std::string>();
}

std::string Explain(const Error& e) {
  switch (e.code) {
    case ErrorCode::kPermissionDenied: return "refused: " + e.message;
    case ErrorCode::kNotFound: return "not found: " + e.message;
    case ErrorCode::kInvalidArgument: return "invalid argument: " + e.message;
    case ErrorCode::kFailedPrecondition: return "not possible now: " + e.message;
    case ErrorCode::kResourceExhausted: return "limit reached: " + e.message;
    case ErrorCode::kAlreadyExists: return "already exists: " + e.message;
    case ErrorCode::kUnavailable: return "unavailable: " + e.message;
    default: return e.message;
  }
}

json ErrorJson(const Error& e) {
  return {{"error", {{"code", ErrorCodeName(e.code)}, {"message", e.message}}}};
}

std::string StringField(const json& object, const char* key) {
  if (!object.is_object()) return {};
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Result<std::string> StringArg(const json& args, const char* name, bool required) {
  auto it = args.find(name);
  if (it == args.end() || it->is_null()) {
    if (required) return MakeError(ErrorCode::kInvalidArgument, "missing argument \"{}\"", name);
    return std::string();
  }
  if (!it->is_string()) {
    return MakeError(ErrorCode::kInvalidArgument, "argument \"{}\" must be a string", name);
  }
  return it->get<std::string>();
}

Result<std::optional<int64_t>> IntArg(const json& args, const char* name, int64_t min,
                                      int64_t max) {
  auto it = args.find(name);
  if (it == args.end() || it->is_null()) return std::optional<int64_t>();
  if (!it->is_number_integer()) {
    return MakeError(ErrorCode::kInvalidArgument, "argument \"{}\" must be an integer", name);
  }
  int64_t v = it->get<int64_t>();
  if (v < min || v > max) {
    return MakeError(ErrorCode::kInvalidArgument, "argument \"{}\" must be from {} to {}", name,
                     min, max);
  }
  return std::optional<int64_t>(v);
}

Result<bool> BoolArg(const json& args, const char* name) {
  auto it = args.find(name);
  if (it == args.end() || it->is_null()) return false;
  if (!it->is_boolean()) {
    return MakeError(ErrorCode::kInvalidArgument, "argument \"{}\" must be true or false", name);
  }
  return it->get<bool>();
}

Result<std::vector<std::string>> CommandArg(const json& args) {
  const json& c = args["command"];
  if (c.is_string()) {
    const auto& s = c.get_ref<const std::string&>();
    if (s.empty()) return MakeError(ErrorCode::kInvalidArgument, "\"command\" is empty");
    return std::vector<std::string>{"/bin/sh", "-c", s};
  }
  if (c.is_array() && !c.empty()) {
    std::vector<std::string> argv;
    for (const auto& a : c) {
      if (!a.is_string()) {
        return MakeError(ErrorCode::kInvalidArgument, "\"command\" must hold strings only");
      }
      argv.push_back(a.get<std::string>());
    }
    return argv;
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "\"command\" must be a string (run by /bin/sh -c) or a non-empty array of "
                   "strings");
}

std::string ProcessIdArg(const json& args) {
  const json& p = args["process_id"];
  if (p.is_number_integer()) return std::to_string(p.get<int64_t>());
  if (p.is_string()) return p.get<std::string>();
  return {};
}

json OutcomeJson(const supervisor::ProcessOutcome& o) {
  const auto& p = o.process;
  json j = {{"sandbox_id", p.sandbox_id},
            {"process_id", p.id},
            {"state", store::ProcessStateName(p.state)},
            {"reason", nullptr},
            {"exit_code", nullptr},
            {"signal", nullptr},
            {"wall_ms", nullptr},
            {"stdout", Utf8Lossy(o.stdout_head)},
            {"stderr", Utf8Lossy(o.stderr_head)},
            {"stdout_truncated", o.stdout_truncated},
            {"stderr_truncated", o.stderr_truncated}};
  if (p.result) {
    j["reason"] = store::RenderEndReason(p.result->reason);
    if (p.result->exit_code) j["exit_code"] = *p.result->exit_code;
    if (p.result->signal) j["signal"] = *p.result->signal;
    j["wall_ms"] = p.result->wall_ms;
  }
  return j;
}

std::string FormatMtime(int64_t ns) {
  time_t secs = static_cast<time_t>(ns / 1'000'000'000);
  struct tm tm {};
  ::gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace sbx::api::mcp::internal
