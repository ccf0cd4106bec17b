#include "docker_backend/container_plan.h"

#include <fnmatch.h>

#include <charconv>
#include <cmath>

namespace sbx::docker {
namespace {

using nlohmann::json;

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

bool HasKey(const std::vector<std::string>& env, std::string_view key) {
  for (const auto& e : env) {
    if (e.size() > key.size() && e.compare(0, key.size(), key) == 0 && e[key.size()] == '=') {
      return true;
    }
  }
  return false;
}

uint64_t U64(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return 0;
  return it->is_number_unsigned() ? it->get<uint64_t>()
                                  : static_cast<uint64_t>(std::max<int64_t>(0, it->get<int64_t>()));
}

}  // namespace

Result<json> CreateBody(const ContainerSpec& spec) {
  if (spec.image.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "a Docker run needs an image");
  }
  if (spec.user.empty() || spec.user == "0" || StartsWith(spec.user, "0:") ||
      spec.user.find_first_not_of("0123456789:") != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "container user '{}' must be a numeric non-root uid:gid", spec.user);
  }
  if (spec.idle_command.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "the container needs an idle command");
  }
  json mounts = json::array();
  for (const Bind& b : spec.binds) {
    if (b.source.empty() || b.source[0] != '/' || b.target.empty() || b.target[0] != '/') {
      return MakeError(ErrorCode::kInvalidArgument, "bind {} -> {}: paths must be absolute",
                       b.source, b.target);
    }
    mounts.push_back({{"Type", "bind"},
                      {"Source", b.source},
                      {"Target", b.target},
                      {"ReadOnly", !b.writable},
                      {"BindOptions", {{"Propagation", "rprivate"}}}});
  }
  json labels = json::object();
  for (const auto& [k, v] : spec.labels) labels[k] = v;
  labels[kLabelManaged] = "true";
  labels[kLabelDaemon] = spec.daemon_identity;
  labels[kLabelRunId] = spec.run_id;

  json security = json::array({"no-new-privileges:true"});
  security.push_back(spec.seccomp_json.empty() ? "seccomp=unconfined"
                                               : "seccomp=" + spec.seccomp_json);
  json host = {
      {"NetworkMode", "none"},
      {"CapDrop", json::array({"ALL"})},
      {"SecurityOpt", security},
      {"ReadonlyRootfs", true},
      {"Tmpfs", {{"/tmp", fmt::format("rw,nosuid,nodev,size={},mode=1777", spec.tmp_size_bytes)}}},
      {"Mounts", mounts},
      {"Init", true},
      {"IpcMode", "private"},
      // Docker's default on a cgroup v1 host is the host's cgroup namespace; a native
      // sandbox always has its own (Engine API >= 1.41).
      {"CgroupnsMode", "private"},
      {"Privileged", false},
      {"RestartPolicy", {{"Name", "no"}}},
      {"LogConfig", {{"Type", "none"}, {"Config", json::object()}}},
      {"Ulimits",
       json::array({{{"Name", "nofile"}, {"Soft", spec.max_open_files}, {"Hard", spec.max_open_files}},
                    {{"Name", "core"}, {"Soft", 0}, {"Hard", 0}}})},
  };
  if (spec.cpus > 0) host["NanoCpus"] = static_cast<int64_t>(std::llround(spec.cpus * 1e9));
  if (spec.memory_bytes > 0) {
    host["Memory"] = spec.memory_bytes;
    host["MemorySwap"] = spec.memory_bytes;  // equal: no swap
  }
  if (spec.pids > 0) host["PidsLimit"] = spec.pids;
  json body = {
      {"Image", spec.image},
      {"Entrypoint", json::array({spec.idle_command[0]})},
      {"Cmd", json(std::vector<std::string>(spec.idle_command.begin() + 1,
                                            spec.idle_command.end()))},
      {"User", spec.user},
      {"Hostname", spec.hostname},
      {"WorkingDir", "/"},
      {"Env", DefaultEnv()},
      {"Labels", labels},
      {"Tty", false},
      {"OpenStdin", false},
      {"AttachStdin", false},
      {"AttachStdout", false},
      {"AttachStderr", false},
      {"NetworkDisabled", spec.network_disabled},
      {"HostConfig", host},
  };
  return body;
}

Status CheckImageAllowed(const std::string& image, const std::vector<std::string>& allowed,
                         const std::string& default_image) {
  if (allowed.empty()) {
    if (!image.empty() && image == default_image) return Ok();
    return MakeError(ErrorCode::kPermissionDenied,
                     "image '{}' is not allowed: with no docker_images configured, runs may use "
                     "the docker_image ('{}') only",
                     image, default_image);
  }
  for (const std::string& pattern : allowed) {
    if (::fnmatch(pattern.c_str(), image.c_str(), 0) == 0) return Ok();
  }
  std::string list;
  for (const std::string& pattern : allowed) list += (list.empty() ? "" : ", ") + pattern;
  return MakeError(ErrorCode::kPermissionDenied,
                   "image '{}' is not allowed (docker_images: {})", image, list);
}

std::vector<std::string> DefaultEnv() {
  return {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/tmp",
          "HOSTNAME=sandbox", "TERM=dumb"};
}

json ExecBody(const ExecSpec& spec) {
  std::vector<std::string> env = spec.env;
  for (const auto& d : DefaultEnv()) {
    if (!HasKey(env, d.substr(0, d.find('=')))) env.push_back(d);
  }
  json body = {{"Cmd", spec.argv},
               {"Env", env},
               {"WorkingDir", spec.cwd.empty() ? "/" : spec.cwd},
               {"AttachStdin", spec.attach_stdin},
               {"AttachStdout", true},
               {"AttachStderr", true},
               {"Tty", false},
               {"Privileged", false}};
  if (!spec.user.empty()) body["User"] = spec.user;
  return body;
}

Result<json> CreateBodyFor(const ContainerSpec& spec, const ExecSpec& main) {
  if (main.argv.empty() || main.argv[0].empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "the container's process needs an argv");
  }
  ContainerSpec s = spec;
  s.idle_command = main.argv;
  auto body = CreateBody(s);
  if (!body.ok()) return body;
  json exec = ExecBody(main);
  json& b = *body;
  b["Env"] = exec["Env"];
  b["WorkingDir"] = exec["WorkingDir"];
  if (!main.user.empty()) b["User"] = main.user;
  b["AttachStdout"] = true;
  b["AttachStderr"] = true;
  b["AttachStdin"] = main.attach_stdin;
  b["OpenStdin"] = main.attach_stdin;
  b["StdinOnce"] = main.attach_stdin;  // the attach that closes stdin closes the process's
  return body;
}

StatsFigures ParseStats(const json& stats) {
  StatsFigures f;
  if (!stats.is_object()) return f;
  if (auto cpu = stats.find("cpu_stats"); cpu != stats.end() && cpu->is_object()) {
    if (auto u = cpu->find("cpu_usage"); u != cpu->end() && u->is_object()) {
      f.cpu_total_ns = U64(*u, "total_usage");
    }
  }
  if (auto mem = stats.find("memory_stats"); mem != stats.end() && mem->is_object()) {
    f.memory_peak_bytes = U64(*mem, "max_usage");
    if (f.memory_peak_bytes == 0) f.memory_peak_bytes = U64(*mem, "peak");
    if (f.memory_peak_bytes == 0) f.memory_peak_bytes = U64(*mem, "usage");
  }
  return f;
}

void JsonLines::Feed(std::string_view bytes,
                     const std::function<void(const nlohmann::json&)>& each) {
  partial_.append(bytes);
  size_t start = 0;
  for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string_view line(partial_.data() + start, nl - start);
    if (line.find_first_not_of(" \r\t") == std::string_view::npos) continue;
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object()) each(j);
  }
  partial_.erase(0, start);
  if (partial_.size() > (1u << 20)) partial_.clear();  // no newline in a MiB: not a document
}

void StatsLines::Feed(std::string_view bytes) {
  lines_.Feed(bytes, [this](const json& j) {
    StatsFigures f = ParseStats(j);
    figures_.cpu_total_ns = std::max(figures_.cpu_total_ns, f.cpu_total_ns);
    figures_.memory_peak_bytes = std::max(figures_.memory_peak_bytes, f.memory_peak_bytes);
    ++samples_;
  });
}

std::optional<int> ExecDieLines::Feed(std::string_view bytes) {
  lines_.Feed(bytes, [this](const json& j) {
    if (exit_code_ || j.value("Action", "") != "exec_die") return;
    auto actor = j.find("Actor");
    if (actor == j.end() || !actor->is_object()) return;
    auto attrs = actor->find("Attributes");
    if (attrs == actor->end() || !attrs->is_object()) return;
    if (attrs->value("execID", "") != exec_id_) return;
    const std::string code = attrs->value("exitCode", "");
    int value = 0;
    auto [end, ec] = std::from_chars(code.data(), code.data() + code.size(), value);
    if (ec == std::errc() && end == code.data() + code.size() && !code.empty()) exit_code_ = value;
  });
  return exit_code_;
}

std::string DaemonLabelFilter(const std::string& daemon_identity) {
  return json{{"label", json::array({std::string(kLabelDaemon) + "=" + daemon_identity})}}.dump();
}

bool IsExecStartFailure(std::string_view first_stdout, int exit_code) {
  return (exit_code == 126 || exit_code == 127) &&
         (first_stdout.find("OCI runtime exec failed") != std::string_view::npos ||
          first_stdout.find("executable file not found") != std::string_view::npos);
}

bool IsInitExecFailure(std::string_view first_stderr, int exit_code) {
  return (exit_code == 126 || exit_code == 127) &&
         first_stderr.substr(0, kInitExecFailurePrefix.size()) == kInitExecFailurePrefix &&
         first_stderr.find(" failed: ") != std::string_view::npos;
}

}  // namespace sbx::docker
