#include "api/v1/sandbox_json.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <set>

#include "api/v1/route_util.h"
#include "api/v1/run_routes.h"
#include "supervisor/exec/result_json.h"
#include "supervisor/workspace/text.h"

namespace sbx::api {
namespace {

using nlohmann::json;

Status CheckKnown(const json& object, const std::set<std::string>& known, const std::string& prefix,
                  const char* list) {
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (!known.count(it.key())) {
      return FieldError(prefix + it.key(), std::string("unknown field (") + list + ")");
    }
  }
  return Ok();
}

Result<int64_t> PositiveInt(const json& j, const std::string& field) {
  if (!j.is_number_integer() || j.get<int64_t>() <= 0) {
    return FieldError(field, "must be a positive integer");
  }
  return j.get<int64_t>();
}

Result<std::string> Text(const json& j, const std::string& field) {
  if (!j.is_string()) return FieldError(field, "must be a string");
  std::string s = j.get<std::string>();
  if (s.find('\0') != std::string::npos) return FieldError(field, "must not contain NUL");
  return s;
}


json Approval(const std::optional<store::SandboxApproval>& a) {
  if (!a) return nullptr;
  return {{"approved_by", a->approved_by}, {"approved_at", a->approved_at_ms}, {"rule", a->rule}};
}

json RedactedEnv(const std::map<std::string, std::string>& env) {
  // Values are secrets (tokens, passwords): the names alone go out, to anyone.
  json out = json::object();
  for (const auto& [name, value] : env) out[name] = kRedacted;
  return out;
}

// `bytes` as `data` when it is UTF-8 text, else as `data_b64`, under `name` / `name_b64`.
void PutBytes(json& j, const std::string& name, std::string bytes) {
  if (supervisor::IsValidUtf8(bytes)) {
    j[name] = std::move(bytes);
  } else {
    j[name + "_b64"] = supervisor::Base64Encode(bytes);
  }
}

json EventHead(const supervisor::ProcessEvent& event, std::string_view sandbox_id,
               int64_t process_id) {
  json j = supervisor::ProcessEventHead(event);
  if (!j.is_object()) j = json::object();
  j["type"] = supervisor::ProcessEventTypeName(event.type);
  j["seq"] = event.seq;
  j["ts"] = event.ts_ms;
  j["sandbox_id"] = sandbox_id;
  j["process_id"] = process_id;
  if (event.type == supervisor::ProcessEventType::kLog) {
    j["stream"] = event.stream == 2 ? "stderr" : "stdout";
    j["offset"] = event.offset;
    j["length"] = event.length;
  }
  return j;
}

}  // namespace

// Standard base64 with padding, nothing else (no whitespace, no URL alphabet): a client's
// mistake is an error rather than bytes silently skipped.
bool IsStrictBase64(std::string_view s) {
  if (s.size() % 4 != 0) return false;
  size_t pad = 0;
  while (pad < 2 && pad < s.size() && s[s.size() - 1 - pad] == '=') ++pad;
  for (size_t i = 0; i < s.size() - pad; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (!std::isalnum(c) && c != '+' && c != '/') return false;
  }
  return true;
}

Result<store::SandboxRequest> SandboxRequestFromJson(const json& body) {
  if (!body.is_object()) return FieldError("body", "must be a JSON object");
  static const std::set<std::string> kKnown = {
      "limits",          "idle_timeout_s", "network", "seccomp_profile", "env",
      "workspace",       "labels",         "node_selector", "idempotency_key", "backend",
      "image",           "from_snapshot"};
  SBX_TRY(CheckKnown(body, kKnown, "",
                     "limits, idle_timeout_s, network, seccomp_profile, env, workspace, labels, "
                     "node_selector, idempotency_key, backend, image, from_snapshot"));
  store::SandboxRequest r;
  if (auto l = body.find("limits"); l != body.end() && !l->is_null()) {
    if (!l->is_object()) return FieldError("limits", "must be an object");
    for (auto it = l->begin(); it != l->end(); ++it) {
      const std::string f = "limits." + it.key();
      if (it.key() == "cpus") {
        if (!it.value().is_number() || !(it.value().get<double>() > 0)) {
          return FieldError(f, "must be a positive number");
        }
        r.cpus = it.value().get<double>();
      } else if (it.key() == "memory_bytes" || it.key() == "memory") {
        if (r.memory_bytes) return FieldError(f, "give memory_bytes once");
        auto v = IntOrSize(it.value(), f);
        if (!v.ok()) return std::move(v).error();
        r.memory_bytes = *v;
      } else if (it.key() == "output_bytes") {
        auto v = IntOrSize(it.value(), f);
        if (!v.ok()) return std::move(v).error();
        r.output_bytes = *v;
      } else if (it.key() == "pids" || it.key() == "timeout_s") {
        auto v = PositiveInt(it.value(), f);
        if (!v.ok()) return std::move(v).error();
        (it.key() == "pids" ? r.pids : r.timeout_s) = *v;
      } else {
        return FieldError(f,
                          "unknown limit (cpus, memory_bytes, pids, timeout_s, output_bytes)");
      }
    }
  }
  if (auto it = body.find("idle_timeout_s"); it != body.end()) {
    // 0: no idle timeout.
    if (!it->is_number_integer() || it->get<int64_t>() < 0) {
      return FieldError("idle_timeout_s", "must be a non-negative integer (0: no idle timeout)");
    }
    r.idle_timeout_s = it->get<int64_t>();
  }
  for (const char* f :
       {"network", "seccomp_profile", "idempotency_key", "backend", "image", "from_snapshot"}) {
    if (!body.contains(f)) continue;
    auto v = Text(body[f], f);
    if (!v.ok()) return std::move(v).error();
  }
  if (body.contains("from_snapshot")) {
    r.from_snapshot = body["from_snapshot"].get<std::string>();
    if (r.from_snapshot->empty()) return FieldError("from_snapshot", "must name a snapshot");
  }
  r.network = body.value("network", "");
  r.seccomp_profile = body.value("seccomp_profile", "");
  if (body.contains("idempotency_key")) {
    r.idempotency_key = body["idempotency_key"].get<std::string>();
    if (r.idempotency_key->empty() || r.idempotency_key->size() > 256) {
      return FieldError("idempotency_key", "must be 1 to 256 characters");
    }
  }
  r.backend = body.value("backend", "");
  if (!r.backend.empty() && r.backend != "native" && r.backend != "docker" &&
      r.backend != "auto") {
    return FieldError("backend", "'" + r.backend + "' is not a backend (native, docker, auto)");
  }
  r.image = body.value("image", "");
  if (body.contains("image") && r.image.empty()) return FieldError("image", "must name an image");
  if (!r.image.empty() && r.backend == "native") {
    return FieldError("image",
                      "needs the docker backend; drop \"image\" or ask for docker or auto");
  }
  if (auto it = body.find("workspace"); it != body.end() && !it->is_null()) {
    // "PATH" (read-only) or {"path": PATH, "mode": "ro" | "cow" | "rw"}.
    std::string path, mode = "ro";
    if (it->is_string()) {
      path = it->get<std::string>();
    } else if (it->is_object()) {
      SBX_TRY(CheckKnown(*it, {"path", "mode"}, "workspace.", "path, mode"));
      for (auto f = it->begin(); f != it->end(); ++f) {
        if (!f.value().is_string()) return FieldError("workspace." + f.key(), "must be a string");
      }
      path = it->value("path", "");
      mode = it->value("mode", "ro");
    } else {
      return FieldError("workspace", "must be a path or {\"path\", \"mode\"}");
    }
    if (path.empty()) return FieldError("workspace.path", "must name a directory");
    if (path.find('\0') != std::string::npos) {
      return FieldError("workspace.path", "must not contain NUL");
    }
    if (mode != "ro" && mode != "cow" && mode != "rw") {
      return FieldError("workspace.mode",
                        "use \"ro\" (read-only), \"cow\" (copy-on-write) or \"rw\" (the host "
                        "directory itself, under workspace_rw_roots)");
    }
    r.workspace_path = std::move(path);
    r.workspace_mode = std::move(mode);
  }
  SBX_TRY(OptionalStringMap(body, "env", &r.env));
  SBX_TRY(OptionalStringMap(body, "labels", &r.labels));
  SBX_TRY(OptionalStringMap(body, "node_selector", &r.node_selector));
  SBX_TRY(store::CheckNodeLabels(r.node_selector, "node_selector"));
  return r;
}

json SandboxToJson(const store::SandboxRecord& s, const supervisor::SandboxLiveInfo& live) {
  json j;
  j["id"] = s.id;
  j["state"] = store::SandboxStateName(s.state);
  j["reason"] = store::RenderEndReason(s.reason);
  j["submitter"] = s.submitter;
  j["limits"] = {{"cpus", s.cpus ? json(*s.cpus) : json(nullptr)},
                 {"memory_bytes", OptInt(s.memory_bytes)},
                 {"pids", OptInt(s.pids)},
                 {"timeout_s", OptInt(s.timeout_s)},
                 {"output_bytes", OptInt(s.output_bytes)}};
  j["idle_timeout_s"] = OptInt(s.idle_timeout_s);
  j["network"] = s.network.empty() ? "none" : s.network;
  j["seccomp_profile"] = s.seccomp_profile.empty() ? "default" : s.seccomp_profile;
  j["env"] = RedactedEnv(s.env);
  j["workspace"] = s.workspace_path
                       ? json{{"path", *s.workspace_path}, {"mode", s.workspace_mode}}
                       : json(nullptr);
  j["labels"] = s.labels;
  j["node_selector"] = s.node_selector;
  j["idempotency_key"] = s.idempotency_key ? json(*s.idempotency_key) : json(nullptr);
  j["backend"] = s.backend.empty() ? "native" : s.backend;
  j["backend_used"] = s.backend_used.empty() ? json(nullptr) : json(s.backend_used);
  j["image"] = s.image.empty() ? json(nullptr) : json(s.image);
  j["policy"] = s.policy;
  j["approval"] = Approval(s.approval);
  j["node"] = s.node ? json(*s.node) : json(nullptr);
  j["created_at"] = s.created_at_ms;
  j["started_at"] = OptInt(s.started_at_ms);
  j["ended_at"] = OptInt(s.ended_at_ms);
  j["last_activity_at"] = s.last_activity_ms;
  std::optional<int64_t> expires = live.expires_at_ms;
  if (!expires && s.started_at_ms && s.timeout_s && !store::IsTerminal(s.state)) {
    expires = *s.started_at_ms + *s.timeout_s * 1000;
  }
  j["expires_at"] = OptInt(expires);
  j["idle_expires_at"] = OptInt(live.idle_expires_at_ms);
  j["init_pid"] = nullptr;
  j["from_snapshot"] = nullptr;
  if (s.info.is_object() && s.info.contains("isolation")) {
    j["isolation"] = s.info["isolation"];
    // The init's host pid while it runs here (for an operator's ps, nsenter and the benches).
    if (s.info.contains("init_pid") && !store::IsTerminal(s.state)) j["init_pid"] = s.info["init_pid"];
    if (s.info.contains("from_snapshot")) j["from_snapshot"] = s.info["from_snapshot"];
  } else {
    j["isolation"] = s.info.is_null() ? json(nullptr) : s.info;
  }
  if (live.stats) {
    const isolate::SandboxStats& st = *live.stats;
    auto opt = [](const std::optional<uint64_t>& v) { return v ? json(*v) : json(nullptr); };
    j["stats"] = {{"cpu_usec", opt(st.cpu_usec)},
                  {"memory_current_bytes", opt(st.memory_current_bytes)},
                  {"memory_peak_bytes", opt(st.memory_peak_bytes)},
                  {"pids_current", opt(st.pids_current)},
                  {"io_read_bytes", opt(st.io_read_bytes)},
                  {"io_write_bytes", opt(st.io_write_bytes)},
                  {"processes", st.processes},
                  {"paused", st.paused},
                  {"unavailable", st.unavailable}};
  } else {
    j["stats"] = nullptr;
  }
  return j;
}

bool IsValidProcessTag(std::string_view tag) {
  if (tag.empty() || tag.size() > 64 || tag == "." || tag == "..") return false;
  bool all_digits = true;
  for (char ch : tag) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (!std::isalnum(c) && c != '.' && c != '_' && c != '-') return false;
    all_digits = all_digits && std::isdigit(c);
  }
  return !all_digits;
}

Result<store::ProcessRequest> ProcessRequestFromJson(const json& body) {
  if (!body.is_object()) return FieldError("body", "must be a JSON object");
  SBX_TRY(CheckKnown(body,
                     {"argv", "env", "cwd", "stdin", "stdin_b64", "stdin_open", "tag", "timeout_s",
                      "pty"},
                     "", "argv, env, cwd, stdin, stdin_b64, stdin_open, tag, timeout_s, pty"));
  store::ProcessRequest r;
  if (!body.contains("argv")) return FieldError("argv", "is required");
  auto argv = StringArray(body["argv"], "argv");
  if (!argv.ok()) return std::move(argv).error();
  r.argv = std::move(*argv);
  if (r.argv[0].empty()) return FieldError("argv[0]", "must name a program");
  SBX_TRY(OptionalStringMap(body, "env", &r.env));
  if (body.contains("cwd")) {
    auto cwd = Text(body["cwd"], "cwd");
    if (!cwd.ok()) return std::move(cwd).error();
    if (!cwd->empty() && (*cwd)[0] != '/') return FieldError("cwd", "must be an absolute path");
    r.cwd = std::move(*cwd);
  }
  if (body.contains("stdin") && body.contains("stdin_b64")) {
    return FieldError("stdin_b64", "give stdin or stdin_b64, not both");
  }
  if (body.contains("stdin")) {
    if (!body["stdin"].is_string()) return FieldError("stdin", "must be a string");
    r.stdin_data = body["stdin"].get<std::string>();
  }
  if (body.contains("stdin_b64")) {
    if (!body["stdin_b64"].is_string()) return FieldError("stdin_b64", "must be a string");
    const std::string& text = body["stdin_b64"].get_ref<const std::string&>();
    if (!IsStrictBase64(text)) return FieldError("stdin_b64", "must be standard base64");
    r.stdin_data = supervisor::Base64Decode(text);
  }
  if (body.contains("stdin_open")) {
    if (!body["stdin_open"].is_boolean()) return FieldError("stdin_open", "must be true or false");
    r.stdin_open = body["stdin_open"].get<bool>();
  }
  if (body.contains("tag") && !body["tag"].is_null()) {
    if (!body["tag"].is_string() || !IsValidProcessTag(body["tag"].get<std::string>())) {
      return FieldError("tag",
                        "must be 1 to 64 of A-Z a-z 0-9 . _ -, not only digits (those are ids)");
    }
    r.tag = body["tag"].get<std::string>();
  }
  if (body.contains("timeout_s") && !body["timeout_s"].is_null()) {
    auto v = PositiveInt(body["timeout_s"], "timeout_s");
    if (!v.ok()) return std::move(v).error();
    r.timeout_s = *v;
  }
  if (auto p = body.find("pty"); p != body.end() && !p->is_null()) {
    if (!p->is_object()) return FieldError("pty", "must be an object {cols, rows} or null");
    SBX_TRY(CheckKnown(*p, {"cols", "rows"}, "pty.", "cols, rows"));
    store::PtyRequest pty;
    for (auto [name, out] : {std::pair{"cols", &pty.cols}, std::pair{"rows", &pty.rows}}) {
      if (!p->contains(name)) continue;
      const json& v = (*p)[name];
      if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 1000) {
        return FieldError(std::string("pty.") + name, "must be an integer from 1 to 1000");
      }
      *out = static_cast<int>(v.get<int64_t>());
    }
    r.pty = pty;
  }
  return r;
}

json ProcessResultToJson(const store::ProcessResult& r) {
  return {{"reason", store::RenderEndReason(r.reason)},
          {"exit_code", r.exit_code ? json(*r.exit_code) : json(nullptr)},
          {"signal", r.signal ? json(*r.signal) : json(nullptr)},
          {"signal_name", r.signal ? json(supervisor::SignalName(*r.signal)) : json(nullptr)},
          {"wall_ms", r.wall_ms},
          {"cpu_ms", r.cpu_ms},
          {"stdout_bytes", r.stdout_bytes},
          {"stderr_bytes", r.stderr_bytes},
          {"output_truncated", r.output_truncated}};
}

json ProcessToJson(const store::ProcessRecord& p) {
  json j;
  j["id"] = p.id;
  j["sandbox_id"] = p.sandbox_id;
  j["tag"] = p.tag.empty() ? json(nullptr) : json(p.tag);
  j["state"] = store::ProcessStateName(p.state);
  j["argv"] = p.argv;
  j["env"] = RedactedEnv(p.env);
  j["cwd"] = p.cwd;
  j["stdin_bytes"] = p.stdin_data.size();
  j["stdin_open"] = p.stdin_open;
  j["timeout_s"] = OptInt(p.timeout_s);
  j["pty"] = p.pty ? json{{"cols", p.pty->cols}, {"rows", p.pty->rows}} : json(nullptr);
  j["submitter"] = p.submitter;
  j["policy"] = p.policy;
  j["approval"] = Approval(p.approval);
  j["created_at"] = p.created_at_ms;
  j["started_at"] = OptInt(p.started_at_ms);
  j["finished_at"] = OptInt(p.finished_at_ms);
  j["result"] = p.result ? ProcessResultToJson(*p.result) : json(nullptr);
  return j;
}

json ProcessOutcomeToJson(const supervisor::ProcessOutcome& outcome) {
  json j = ProcessToJson(outcome.process);
  PutBytes(j, "stdout", outcome.stdout_head);
  PutBytes(j, "stderr", outcome.stderr_head);
  j["stdout_truncated"] = outcome.stdout_truncated;
  j["stderr_truncated"] = outcome.stderr_truncated;
  return j;
}

Result<int> ParseSignal(const json& value) {
  auto bad = [] {
    return FieldError("signal", "must be a signal name (SIGINT, INT) or a number from 1 to 64");
  };
  int64_t number = 0;
  if (value.is_number_integer()) {
    number = value.get<int64_t>();
  } else if (value.is_string()) {
    std::string s = value.get<std::string>();
    if (s.empty() || s.size() > 16) return bad();
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), number);
    if (ec != std::errc() || end != s.data() + s.size()) {
      std::transform(s.begin(), s.end(), s.begin(),
                     [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
      if (!s.starts_with("SIG")) s = "SIG" + s;
      number = 0;
      for (int n = 1; n <= 64 && number == 0; ++n) {
        // SignalName gives "SIG<n>" for numbers without a name: those are given as numbers.
        std::string name = supervisor::SignalName(n);
        if (name == s && name != "SIG" + std::to_string(n)) number = n;
      }
    }
  } else {
    return bad();
  }
  if (number < 1 || number > 64) return bad();
  return static_cast<int>(number);
}

std::shared_ptr<const UniqueFd> ProcessStreams::Open(int stream) {
  auto& slot = fds_[stream == 2 ? 1 : 0];
  if (!slot) {
    std::string path = supervisor::ProcessOutput::StreamPath(dir_, stream == 2 ? 2 : 1);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) return nullptr;
    slot = std::make_shared<const UniqueFd>(std::move(fd));
  }
  return slot;
}

std::string ProcessStreams::Read(int stream, int64_t offset, int64_t length) {
  auto fd = Open(stream);
  if (!fd || offset < 0 || length <= 0) return "";
  auto bytes = ReadAt(fd->get(), static_cast<uint64_t>(offset), static_cast<size_t>(length));
  return bytes.ok() ? std::move(*bytes) : std::string();
}

FileBytes ProcessStreams::Range(int stream, int64_t offset, int64_t length) {
  auto fd = Open(stream);
  struct stat st {};
  if (!fd || offset < 0 || length < 0 || ::fstat(fd->get(), &st) < 0 || !S_ISREG(st.st_mode) ||
      st.st_size < offset + length) {
    return {};
  }
  return FileBytes{fd, offset, static_cast<size_t>(length)};
}

json ProcessEventToJson(const supervisor::ProcessEvent& event, std::string_view sandbox_id,
                        int64_t process_id, ProcessStreams& streams) {
  json j = EventHead(event, sandbox_id, process_id);
  if (event.type == supervisor::ProcessEventType::kLog) {
    PutBytes(j, "data", streams.Read(event.stream, event.offset, event.length));
  }
  return j;
}

std::string ProcessEventBinaryHead(const supervisor::ProcessEvent& event,
                                   std::string_view sandbox_id, int64_t process_id) {
  std::string head = DumpJson(EventHead(event, sandbox_id, process_id));
  head.push_back('\n');
  return head;
}

}  // namespace sbx::api
