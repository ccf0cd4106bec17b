#include "api/sandboxctl/sandbox_args.h"

#include <signal.h>
#include <string.h>

#include "api/sandboxctl/commands.h"
#include "base/fs.h"

namespace sbx::ctl {
namespace {

Error Usage(std::string message) {
  return Error{ErrorCode::kInvalidArgument, 0, std::move(message), {}};
}

}  // namespace

Status AddEnv(const ParsedArgs& args, nlohmann::json& body,
              const std::function<std::optional<std::string>(const std::string&)>& lookup_env) {
  for (const auto& e : args.All("env")) {
    if (!e.empty() && e.find('=') == std::string::npos) {
      auto v = lookup_env(e);
      if (!v) return Usage("--env " + e + ": not set here (use --env " + e + "=VALUE)");
      body["env"][e] = *v;
      continue;
    }
    auto kv = ParseKeyValue(e, "--env");
    if (!kv.ok()) return std::move(kv).error();
    body["env"][kv->first] = kv->second;
  }
  return Ok();
}

Status AddLabels(const ParsedArgs& args, nlohmann::json& body) {
  for (const auto& l : args.All("label")) {
    auto kv = ParseKeyValue(l, "--label");
    if (!kv.ok()) return std::move(kv).error();
    body["labels"][kv->first] = kv->second;
  }
  return Ok();
}

const std::vector<OptionSpec>& SandboxCreateOptions() {
  static const std::vector<OptionSpec> kOptions = {
      {"cpus", 0, true},    {"memory", 'm', true},        {"pids", 0, true},
      {"timeout", 0, true}, {"idle-timeout", 0, true},    {"workspace", 'w', true},
      {"label", 'l', true}, {"env", 'e', true},           {"backend", 0, true},
      {"image", 0, true},   {"idempotency-key", 0, true}, {"quiet", 'q', false},
      {"from-snapshot", 0, true}};
  return kOptions;
}

const std::vector<OptionSpec>& SandboxLsOptions() {
  static const std::vector<OptionSpec> kOptions = {
      {"state", 0, true}, {"label", 'l', true}, {"limit", 'n', true}};
  return kOptions;
}

const std::vector<OptionSpec>& SandboxExecOptions() {
  static const std::vector<OptionSpec> kOptions = {
      {"tag", 't', true},     {"timeout", 0, true}, {"env", 'e', true},   {"cwd", 0, true},
      {"detach", 'd', false}, {"stdin", 0, true},   {"quiet", 'q', false}};
  return kOptions;
}

const std::vector<OptionSpec>& SandboxShellOptions() {
  static const std::vector<OptionSpec> kOptions = {
      {"cmd", 'c', true}, {"cwd", 0, true}, {"env", 'e', true}, {"quiet", 'q', false}};
  return kOptions;
}

const std::vector<OptionSpec>& SandboxCpOptions() {
  static const std::vector<OptionSpec> kOptions = {{"recursive", 'r', false}};
  return kOptions;
}

const std::vector<OptionSpec>& SandboxLogsOptions() {
  static const std::vector<OptionSpec> kOptions = {{"stream", 0, true}, {"follow", 'f', false}};
  return kOptions;
}

Result<int64_t> ParseMemory(std::string_view s, std::string_view what) {
  auto bytes = ParseByteSize(s);
  if (!bytes.ok() || *bytes == 0 || *bytes > static_cast<uint64_t>(INT64_MAX)) {
    return Usage(fmt::format("{} '{}': a size such as 512m, 1g or 1GiB", what, s));
  }
  return static_cast<int64_t>(*bytes);
}

Result<int64_t> ParseSeconds(std::string_view s, std::string_view what) {
  auto ms = ParseDurationMs(s);
  if (!ms.ok() || *ms == 0) {
    return Usage(fmt::format("{} '{}': seconds, or a duration such as 30s, 5m, 1h", what, s));
  }
  return static_cast<int64_t>((*ms + 999) / 1000);
}

Result<WorkspaceArg> ParseWorkspace(std::string_view s, const std::string& cwd) {
  WorkspaceArg w;
  std::string_view path = s;
  for (std::string_view mode : {"ro", "cow", "rw"}) {
    if (s.size() >= mode.size() + 1 && s.ends_with(mode) && s[s.size() - mode.size() - 1] == ':') {
      w.mode = std::string(mode);
      path = s.substr(0, s.size() - mode.size() - 1);
      break;
    }
  }
  if (path.empty()) return Usage(fmt::format("--workspace '{}': give a directory", s));
  w.path = path.front() == '/' ? std::string(path) : JoinPath(cwd, path);
  return w;
}

Result<nlohmann::json> BuildCreateBody(
    const ParsedArgs& args, const std::string& cwd,
    const std::function<std::optional<std::string>(const std::string&)>& lookup_env) {
  if (!args.positional.empty() || args.has_rest) {
    return Usage("takes options only (see 'sandboxctl help sandbox create')");
  }
  nlohmann::json body = nlohmann::json::object();
  nlohmann::json limits = nlohmann::json::object();
  if (auto v = args.Last("cpus")) {
    auto c = ParsePositiveNumber(*v, "--cpus");
    if (!c.ok()) return std::move(c).error();
    limits["cpus"] = *c;
  }
  if (auto v = args.Last("memory")) {
    auto m = ParseMemory(*v, "--memory");
    if (!m.ok()) return std::move(m).error();
    limits["memory_bytes"] = *m;
  }
  if (auto v = args.Last("pids")) {
    auto p = ParseInt(*v, "--pids", 1, 1 << 22);
    if (!p.ok()) return std::move(p).error();
    limits["pids"] = *p;
  }
  if (auto v = args.Last("timeout")) {
    auto t = ParseSeconds(*v, "--timeout");
    if (!t.ok()) return std::move(t).error();
    limits["timeout_s"] = *t;
  }
  if (!limits.empty()) body["limits"] = std::move(limits);
  if (auto v = args.Last("idle-timeout")) {
    auto t = ParseSeconds(*v, "--idle-timeout");
    if (!t.ok()) return std::move(t).error();
    body["idle_timeout_s"] = *t;
  }
  if (auto v = args.Last("workspace")) {
    auto w = ParseWorkspace(*v, cwd);
    if (!w.ok()) return std::move(w).error();
    body["workspace"] = {{"path", w->path}};
    if (!w->mode.empty()) body["workspace"]["mode"] = w->mode;
  }
  SBX_TRY(AddLabels(args, body));
  SBX_TRY(AddEnv(args, body, lookup_env));
  if (auto b = args.Last("backend")) {
    if (*b != "native" && *b != "docker" && *b != "auto") {
      return Usage(fmt::format("--backend '{}': native, docker or auto", *b));
    }
    body["backend"] = *b;
  }
  if (auto i = args.Last("image")) {
    if (i->empty()) return Usage("--image: give an image name");
    body["image"] = *i;
  }
  if (auto k = args.Last("idempotency-key")) body["idempotency_key"] = *k;
  if (auto f = args.Last("from-snapshot")) {
    if (f->empty()) return Usage("--from-snapshot: give a snapshot's name or id");
    body["from_snapshot"] = *f;
  }
  return body;
}

Result<nlohmann::json> BuildExecBody(
    const ParsedArgs& args,
    const std::function<std::optional<std::string>(const std::string&)>& lookup_env) {
  if (args.positional.size() != 1) {
    return Usage(args.positional.empty()
                     ? "needs a sandbox ID"
                     : "put the command after --: sandbox exec ID [OPTIONS] -- ARGV…");
  }
  if (args.rest.empty()) return Usage("nothing to run: give -- ARGV…");
  nlohmann::json body = {{"argv", args.rest}};
  SBX_TRY(AddEnv(args, body, lookup_env));
  if (auto c = args.Last("cwd")) body["cwd"] = *c;
  if (auto t = args.Last("tag")) {
    if (t->empty()) return Usage("--tag: give a name");
    body["tag"] = *t;
  }
  if (auto v = args.Last("timeout")) {
    auto t = ParseSeconds(*v, "--timeout");
    if (!t.ok()) return std::move(t).error();
    body["timeout_s"] = *t;
  }
  return body;
}

Result<CpOperand> ParseCpOperand(std::string_view s) {
  CpOperand op;
  const size_t colon = s.find(':');
  const size_t slash = s.find('/');
  if (s.empty()) return Usage("an empty path");
  if (s == "-" || s.front() == '/' || s.front() == '.' || colon == std::string_view::npos ||
      (slash != std::string_view::npos && slash < colon)) {
    op.path = std::string(s);
    return op;
  }
  if (colon == 0) return Usage(fmt::format("'{}': give the sandbox ID before the ':'", s));
  if (colon + 1 == s.size()) {
    return Usage(fmt::format("'{}': give a path in the sandbox after the ':'", s));
  }
  op.remote = true;
  op.sandbox_id = std::string(s.substr(0, colon));
  op.path = std::string(s.substr(colon + 1));
  return op;
}

std::string BaseName(std::string_view path) {
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  const size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  std::string out(dir);
  while (!name.empty() && name.front() == '/') name.remove_prefix(1);
  if (out.empty() || out.back() != '/') out += '/';
  out += name;
  return out;
}

int ProcessExitStatus(const nlohmann::json& process, std::string* message) {
  const std::string id =
      process.contains("id") ? process["id"].dump() : std::string("(without an id)");
  const std::string state = Str(process, "state");
  const nlohmann::json result = process.value("result", nlohmann::json());
  const std::string reason = Str(result, "reason");
  message->clear();
  if (state == "REJECTED" || state == "CANCELLED") {
    *message =
        fmt::format("process {} was {}{}", id, state == "REJECTED" ? "rejected" : "cancelled",
                    reason.empty() ? "" : ": " + reason);
    return kExitRunFailed;
  }
  if (state != "FINISHED" || !result.is_object()) {
    *message = fmt::format("process {} has not ended (state {})", id, state.empty() ? "?" : state);
    return kExitRunFailed;
  }
  if (result.contains("exit_code") && result["exit_code"].is_number_integer()) {
    const int64_t code = result["exit_code"].get<int64_t>();
    if (code >= 0 && code <= 255) return static_cast<int>(code);
  }
  int sig = 0;
  std::string sig_name;
  if (result.contains("signal") && result["signal"].is_number_integer()) {
    const int64_t n = result["signal"].get<int64_t>();
    sig = n > 0 && n < 128 ? static_cast<int>(n) : 0;
    const char* abbrev = sig > 0 ? ::sigabbrev_np(sig) : nullptr;
    sig_name = abbrev != nullptr ? std::string("SIG") + abbrev : fmt::format("signal {}", n);
  } else if (result.contains("signal") && result["signal"].is_string()) {
    sig_name = result["signal"].get<std::string>();
    sig = SignalNumber(sig_name);
  }
  if (sig > 0) {
    *message = reason == "signaled" || reason.empty()
                   ? fmt::format("process {} was killed by {}", id, sig_name)
                   : fmt::format("process {}: {} ({})", id, reason, sig_name);
    return 128 + sig;
  }
  *message = fmt::format("process {} failed: {}", id, reason.empty() ? "no reason given" : reason);
  return kExitRunFailed;
}

int64_t TimestampMs(const nlohmann::json& j, const std::string& key) {
  if (!j.is_object()) return 0;
  const std::string ms_key = key + "_ms";
  if (j.contains(ms_key) && j[ms_key].is_number()) return j[ms_key].get<int64_t>();
  if (!j.contains(key) || !j[key].is_number()) return 0;
  const int64_t v = j[key].get<int64_t>();
  return v > 100'000'000'000 ? v : v * 1000;
}

}  // namespace sbx::ctl
