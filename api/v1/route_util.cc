#include "api/v1/route_util.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <mutex>

#include "base/fs.h"

namespace sbx::api {

supervisor::Principal ToPrincipal(const supervisor::ServiceConfig& config, const Request& req) {
  supervisor::Principal p;
  if (!req.principal) return p;
  p.name = req.principal->key_name;
  p.role = req.principal->role == Role::kAdmin      ? supervisor::Role::kAdmin
           : req.principal->role == Role::kReviewer ? supervisor::Role::kReviewer
                                                    : supervisor::Role::kSubmitter;
  for (const auto& k : config.api_keys) {
    if (k.name != p.name) continue;
    p.workspace_roots = k.workspace_roots;
    p.permissive_seccomp = k.permissive_seccomp;
  }
  return p;
}

Response ErrorResponseWithRetry(const Error& error) {
  Response r = ErrorResponse(error);
  if (error.code == ErrorCode::kResourceExhausted) r.headers.Add("Retry-After", "5");
  return r;
}

std::optional<std::string> OwnerFilter(const Request& req) {
  if (req.principal && req.principal->role == Role::kSubmitter) return req.principal->key_name;
  return std::nullopt;
}

nlohmann::json OptInt(const std::optional<int64_t>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

Error FieldError(const std::string& field, const std::string& what) {
  return MakeError(ErrorCode::kInvalidArgument, "{}: {}", field, what);
}

Result<std::vector<std::string>> StringArray(const nlohmann::json& j, const std::string& field) {
  if (!j.is_array() || j.empty()) return FieldError(field, "must be a non-empty array of strings");
  std::vector<std::string> out;
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_string()) return FieldError(fmt::format("{}[{}]", field, i), "must be a string");
    std::string s = j[i].get<std::string>();
    if (s.find('\0') != std::string::npos) {
      return FieldError(fmt::format("{}[{}]", field, i), "must not contain NUL");
    }
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::map<std::string, std::string>> StringMap(const nlohmann::json& j,
                                                     const std::string& field) {
  if (!j.is_object()) return FieldError(field, "must be an object of strings");
  std::map<std::string, std::string> out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_string()) return FieldError(field + "." + it.key(), "must be a string");
    if (it.key().empty() || it.key().find_first_of("=\0", 0, 2) != std::string::npos) {
      return FieldError(field, fmt::format("'{}' is not a valid name", it.key()));
    }
    out[it.key()] = it.value().get<std::string>();
  }
  return out;
}

Status OptionalStringMap(const nlohmann::json& body, const std::string& field,
                         std::map<std::string, std::string>* out) {
  if (!body.contains(field)) return Ok();
  auto m = StringMap(body[field], field);
  if (!m.ok()) return std::move(m).error();
  *out = std::move(*m);
  return Ok();
}

Result<int64_t> IntOrSize(const nlohmann::json& j, const std::string& field) {
  if (j.is_number_integer() && j.get<int64_t>() > 0) return j.get<int64_t>();
  if (j.is_string()) {
    auto b = ParseByteSize(j.get<std::string>());
    if (b.ok() && *b > 0 && *b <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(*b);
  }
  return FieldError(field, "must be a positive integer or a size such as \"256m\"");
}

Result<store::Limits> LimitsFromJson(const nlohmann::json& l, const std::string& field) {
  if (!l.is_object()) return FieldError(field, "must be an object");
  store::Limits out;
  for (auto it = l.begin(); it != l.end(); ++it) {
    const std::string f = field + "." + it.key();
    if (it.key() == "cpus") {
      if (!it.value().is_number() || !(it.value().get<double>() > 0)) {
        return FieldError(f, "must be a positive number");
      }
      out.cpus = it.value().get<double>();
    } else if (it.key() == "memory" || it.key() == "memory_bytes" || it.key() == "output_bytes") {
      auto v = IntOrSize(it.value(), f);
      if (!v.ok()) return std::move(v).error();
      (it.key() == "output_bytes" ? out.output_bytes : out.memory_bytes) = *v;
    } else if (it.key() == "pids" || it.key() == "timeout_s") {
      if (!it.value().is_number_integer() || it.value().get<int64_t>() <= 0) {
        return FieldError(f, "must be a positive integer");
      }
      (it.key() == "pids" ? out.pids : out.timeout_s) = it.value().get<int64_t>();
    } else {
      return FieldError(f, "unknown limit (cpus, memory, pids, timeout_s, output_bytes)");
    }
  }
  return out;
}

Result<nlohmann::json> ParseBody(const Request& req, bool allow_empty) {
  if (req.body.empty() && allow_empty) return nlohmann::json::object();
  auto j = nlohmann::json::parse(req.body, nullptr, false);
  if (j.is_discarded()) {
    return MakeError(ErrorCode::kInvalidArgument, "the body is not valid JSON");
  }
  return j;
}

Result<std::map<std::string, std::string>> OptionalStringFields(
    const Request& req, std::initializer_list<std::string_view> allowed) {
  auto body = ParseBody(req, true);
  if (!body.ok()) return std::move(body).error();
  std::map<std::string, std::string> out;
  if (body->is_null()) return out;
  if (!body->is_object()) return FieldError("body", "must be a JSON object");
  for (auto it = body->begin(); it != body->end(); ++it) {
    if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end()) {
      std::string names;
      for (std::string_view a : allowed) names += fmt::format("{}{}", names.empty() ? "" : ", ", a);
      return FieldError(it.key(), fmt::format("unknown field; this takes {}", names));
    }
    if (!it.value().is_string()) return FieldError(it.key(), "must be a string");
    out[it.key()] = it.value().get<std::string>();
  }
  return out;
}

Result<int64_t> NonNegativeParam(const Request& req, std::string_view name, int64_t fallback) {
  auto v = req.query.Get(name);
  if (!v) return fallback;
  int64_t out = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (v->empty() || ec != std::errc() || end != v->data() + v->size() || out < 0) {
    return FieldError(std::string(name), "must be a non-negative integer");
  }
  return out;
}

Result<bool> FlagParam(const Request& req, std::string_view name) {
  auto v = req.query.Get(name);
  if (!v || *v == "false" || *v == "0") return false;
  if (*v == "true" || *v == "1" || v->empty()) return true;
  return FieldError(std::string(name), "use true or false");
}

Result<std::string> ReadAt(int fd, uint64_t offset, size_t length) {
  std::string out(length, '\0');
  auto got = ReadAllAt(fd, out.data(), length, offset);
  if (!got.ok()) return std::move(got).error();
  out.resize(*got);
  return out;
}

void FileStreamer::Pump() {
  constexpr uint64_t kPiece = 256 << 10;
  while (pos_ < end_) {
    auto piece = ReadAt(fd_->get(), pos_, static_cast<size_t>(std::min(kPiece, end_ - pos_)));
    if (!piece.ok() || piece->empty()) break;  // cut short: the body ends where the file did
    auto w = sink_->Write(*piece);
    if (w == StreamSink::WriteResult::kClosed) return;
    if (w == StreamSink::WriteResult::kBackoff) {
      sink_->OnWritable([self = shared_from_this()] { self->Pump(); });
      return;
    }
    pos_ += piece->size();
  }
  sink_->Finish();
}

bool WriteWhole(const std::shared_ptr<StreamSink>& sink, std::string_view bytes) {
  struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    bool open = false;
  };
  for (;;) {
    switch (sink->Write(bytes)) {
      case StreamSink::WriteResult::kOk: return true;
      case StreamSink::WriteResult::kClosed: return false;
      case StreamSink::WriteResult::kBackoff: break;
    }
    auto gate = std::make_shared<Gate>();
    auto open = [gate] {
      {
        std::lock_guard lock(gate->mu);
        gate->open = true;
      }
      gate->cv.notify_all();
    };
    sink->OnClose([open](StreamSink::CloseReason) { open(); });
    sink->OnWritable(open);
    std::unique_lock lock(gate->mu);
    gate->cv.wait(lock, [&] { return gate->open; });
  }
}

}  // namespace sbx::api
