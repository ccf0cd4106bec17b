// What the /v1 route groups share: the caller as the service core sees it, tenancy, decoding of
// JSON fields and query parameters with errors that name the field, and a file streamed into a
// response at the client's pace.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/http/http.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "supervisor/events/audit.h"
#include "supervisor/service/config.h"
#include "supervisor/store/store.h"

namespace sbx::api {

// The authenticated caller with its key's settings from the configuration (workspace roots,
// permissive seccomp). An anonymous principal on public routes.
supervisor::Principal ToPrincipal(const supervisor::ServiceConfig& config, const Request& req);

// ErrorResponse(error), with "Retry-After: 5" when the error is kResourceExhausted (a bound that
// frees up: the sandboxes' or processes' limit, a full queue).
Response ErrorResponseWithRetry(const Error& error);

// Whose records the caller may see: everyone's for reviewers and admins; its own for a
// submitter (the name of its key), so one submitter never learns of another's.
std::optional<std::string> OwnerFilter(const Request& req);

// kInvalidArgument "FIELD: WHAT".
Error FieldError(const std::string& field, const std::string& what);
// A non-empty array of strings without NUL.
Result<std::vector<std::string>> StringArray(const nlohmann::json& j, const std::string& field);
// An object of strings whose names are non-empty and hold neither '=' nor NUL.
Result<std::map<std::string, std::string>> StringMap(const nlohmann::json& j,
                                                     const std::string& field);
// StringMap() of body[field] into *out when the body has the field; *out is left alone when not.
Status OptionalStringMap(const nlohmann::json& body, const std::string& field,
                         std::map<std::string, std::string>* out);
// A positive integer, or a size such as "256m".
Result<int64_t> IntOrSize(const nlohmann::json& j, const std::string& field);
nlohmann::json OptInt(const std::optional<int64_t>& v);
// {"cpus", "memory", "pids", "timeout_s", "output_bytes"} (memory and output_bytes integers or
// sizes such as "256m"; "memory_bytes" is taken for "memory"), each optional; errors name
// `field`.KEY.
Result<store::Limits> LimitsFromJson(const nlohmann::json& l, const std::string& field);

// The body as JSON (kInvalidArgument when it is not); an empty body is {} when allowed.
Result<nlohmann::json> ParseBody(const Request& req, bool allow_empty);
// A body that may be empty and is otherwise an object of the `allowed` fields, each a string:
// the fields given (kInvalidArgument naming an unknown field or one that is not a string).
Result<std::map<std::string, std::string>> OptionalStringFields(
    const Request& req, std::initializer_list<std::string_view> allowed);
// ?NAME=N, a non-negative integer; `fallback` when absent.
Result<int64_t> NonNegativeParam(const Request& req, std::string_view name, int64_t fallback = 0);
// ?NAME=true|false|1|0 (a bare ?NAME is true); false when absent.
Result<bool> FlagParam(const Request& req, std::string_view name);

// Up to `length` bytes of `fd` from `offset` (fewer when the file ends first).
Result<std::string> ReadAt(int fd, uint64_t offset, size_t length);

// Writes `bytes` whole into a streamed body from a thread of the caller's own that may block:
// when the buffer is full it waits for OnWritable (or the stream's end), never sleeps. Returns
// false when the stream closed first. IMPORTANT: replaces the sink's OnClose callback.
bool WriteWhole(const std::shared_ptr<StreamSink>& sink, std::string_view bytes);

// Streams bytes [offset, offset + length) of an open file into a response body at the client's
// pace, a piece at a time (a file cut short ends the body where it ended).
class FileStreamer : public std::enable_shared_from_this<FileStreamer> {
 public:
  FileStreamer(std::shared_ptr<StreamSink> sink, std::shared_ptr<const UniqueFd> fd,
               uint64_t offset, uint64_t length)
      : sink_(std::move(sink)), fd_(std::move(fd)), pos_(offset), end_(offset + length) {}
  void Pump();

 private:
  std::shared_ptr<StreamSink> sink_;
  std::shared_ptr<const UniqueFd> fd_;
  uint64_t pos_;
  uint64_t end_;
};

}  // namespace sbx::api
