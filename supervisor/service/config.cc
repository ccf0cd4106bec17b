// The one file that calls yaml-cpp; its exceptions stop here.
#include "supervisor/service/config.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <tuple>

#include "base/fs.h"
#include "base/http_url.h"
#include "isolate/id_range.h"

namespace sbx::supervisor {
namespace {

Error KeyError(const std::string& source, const std::string& key, const std::string& what) {
  return MakeError(ErrorCode::kInvalidArgument, "{}: {}: {}", source, key, what);
}

Status CheckKeys(const YAML::Node& map, const std::set<std::string>& known,
                 const std::string& source, const std::string& prefix) {
  if (!map.IsMap()) return KeyError(source, prefix.empty() ? "(top level)" : prefix, "must be a mapping");
  for (const auto& kv : map) {
    std::string key = kv.first.as<std::string>();
    if (!known.count(key)) {
      std::string all;
      for (const auto& k : known) all += (all.empty() ? "" : ", ") + k;
      return KeyError(source, prefix + key, "unknown setting (known: " + all + ")");
    }
  }
  return Ok();
}

Result<std::string> String(const YAML::Node& n, const std::string& source, const std::string& key) {
  if (!n.IsScalar()) return KeyError(source, key, "must be a string");
  return n.as<std::string>();
}

Result<int64_t> Int(const YAML::Node& n, const std::string& source, const std::string& key,
                    int64_t min) {
  if (!n.IsScalar()) return KeyError(source, key, "must be an integer");
  int64_t v;
  if (!YAML::convert<int64_t>::decode(n, v)) return KeyError(source, key, "must be an integer");
  if (v < min) return KeyError(source, key, fmt::format("must be at least {}", min));
  return v;
}

// A list of absolute directories ("workspace_roots", a key's "workspace_roots").
Result<std::vector<std::string>> AbsolutePaths(const YAML::Node& n, const std::string& source,
                                               const std::string& key) {
  if (!n.IsSequence()) return KeyError(source, key, "must be a list of absolute directories");
  std::vector<std::string> out;
  for (size_t i = 0; i < n.size(); ++i) {
    auto s = String(n[i], source, fmt::format("{}[{}]", key, i));
    if (!s.ok()) return std::move(s).error();
    if (s->empty() || (*s)[0] != '/') {
      return KeyError(source, fmt::format("{}[{}]", key, i), "must be an absolute path");
    }
    out.push_back(*s);
  }
  return out;
}

// Whether `path` is `root` or below it, by whole components ("/srv/work2" is not under
// "/srv/work").
bool PathIsUnder(std::string_view path, std::string_view root) {
  while (root.size() > 1 && root.back() == '/') root.remove_suffix(1);
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  if (root == "/") return true;
  return path == root || (path.starts_with(root) && path[root.size()] == '/');
}

Result<int64_t> Size(const YAML::Node& n, const std::string& source, const std::string& key) {
  if (!n.IsScalar()) return KeyError(source, key, "must be a size such as 512m");
  auto b = ParseByteSize(n.as<std::string>());
  if (!b.ok()) return KeyError(source, key, b.error().message);
  return static_cast<int64_t>(*b);
}

Status ParseLimitSet(const YAML::Node& n, const std::string& source, const std::string& prefix,
                     LimitSet& out) {
  SBX_TRY(CheckKeys(n, {"cpus", "memory", "pids", "timeout_s", "output_bytes"}, source, prefix));
  if (n["cpus"]) {
    double c = 0;
    if (!n["cpus"].IsScalar() || !YAML::convert<double>::decode(n["cpus"], c) || !(c > 0)) {
      return KeyError(source, prefix + "cpus", "must be a positive number");
    }
    out.cpus = c;
  }
  if (n["memory"]) {
    auto v = Size(n["memory"], source, prefix + "memory");
    if (!v.ok()) return std::move(v).error();
    out.memory_bytes = *v;
  }
  if (n["pids"]) {
    auto v = Int(n["pids"], source, prefix + "pids", 1);
    if (!v.ok()) return std::move(v).error();
    out.pids = *v;
  }
  if (n["timeout_s"]) {
    auto v = Int(n["timeout_s"], source, prefix + "timeout_s", 1);
    if (!v.ok()) return std::move(v).error();
    out.timeout_s = *v;
  }
  if (n["output_bytes"]) {
    auto v = Size(n["output_bytes"], source, prefix + "output_bytes");
    if (!v.ok()) return std::move(v).error();
    out.output_bytes = *v;
  }
  return Ok();
}

// Every top-level key of sandboxd.yaml (also the SANDBOXD_* variables that set them).
const std::set<std::string>& TopLevelKeys() {
  static const std::set<std::string> kKeys = {
      "listen", "database", "data_dir", "node", "api_keys", "max_concurrent_runs",
      "max_queue", "limits", "seccomp_profiles_dir", "policy_dir", "cgroup_parent",
      "max_body_bytes", "max_connections_per_address", "max_connections_per_key",
      "ws_queue_budget", "workspace_roots", "workspace_rw_roots", "artifacts_quota",
      "log_level", "metrics_require_key", "cgroup_delegation", "default_backend", "docker_host",
      "docker_image", "warm_sandboxes", "workspace_cow_root_owned", "sandbox_id_base",
      "docker_images", "sandboxes", "mcp", "web_root", "planners", "node_labels",
      "node_address", "heartbeat_interval_ms", "node_timeout_ms"};
  return kKeys;
}

Result<ServiceConfig> ParseTree(const YAML::Node& root, const std::string& source) {
  ServiceConfig c;
  if (root.IsNull()) return c;
  SBX_TRY(CheckKeys(root, TopLevelKeys(),
                    source, ""));
  if (auto n = root["sandboxes"]) {
    SBX_TRY(CheckKeys(n, {"max", "default_timeout_s", "max_timeout_s", "default_idle_timeout_s"},
                      source, "sandboxes."));
    if (n["max"]) {
      auto v = Int(n["max"], source, "sandboxes.max", 1);
      if (!v.ok()) return std::move(v).error();
      c.sandboxes.max = static_cast<int>(std::min<int64_t>(*v, 100000));
    }
    struct Field {
      const char* key;
      int64_t* out;
      int64_t min;
    };
    for (Field f : {Field{"default_timeout_s", &c.sandboxes.default_timeout_s, 1},
                    Field{"max_timeout_s", &c.sandboxes.max_timeout_s, 1},
                    Field{"default_idle_timeout_s", &c.sandboxes.default_idle_timeout_s, 0}}) {
      if (!n[f.key]) continue;
      auto v = Int(n[f.key], source, std::string("sandboxes.") + f.key, f.min);
      if (!v.ok()) return std::move(v).error();
      *f.out = *v;
    }
    if (c.sandboxes.default_timeout_s > c.sandboxes.max_timeout_s) {
      return KeyError(source, "sandboxes.default_timeout_s", "must not exceed max_timeout_s");
    }
  }
  if (auto n = root["planners"]) {
    if (!n.IsSequence()) return KeyError(source, "planners", "must be a list of planners");
    for (size_t i = 0; i < n.size(); ++i) {
      const std::string p = fmt::format("planners[{}].", i);
      SBX_TRY(CheckKeys(n[i], {"name", "url", "command", "timeout_s"}, source, p));
      PlannerConfig planner;
      if (!n[i]["name"]) return KeyError(source, p + "name", "is required");
      auto name = String(n[i]["name"], source, p + "name");
      if (!name.ok()) return std::move(name).error();
      planner.name = *name;
      if (n[i]["url"]) {
        auto url = String(n[i]["url"], source, p + "url");
        if (!url.ok()) return std::move(url).error();
        planner.url = *url;
      }
      if (auto cmd = n[i]["command"]) {
        if (!cmd.IsSequence() || cmd.size() == 0) {
          return KeyError(source, p + "command", "must be a list: [/abs/program, args…]");
        }
        for (size_t j = 0; j < cmd.size(); ++j) {
          auto a = String(cmd[j], source, fmt::format("{}command[{}]", p, j));
          if (!a.ok()) return std::move(a).error();
          planner.command.push_back(*a);
        }
      }
      if (n[i]["timeout_s"]) {
        auto v = Int(n[i]["timeout_s"], source, p + "timeout_s", 1);
        if (!v.ok()) return std::move(v).error();
        planner.timeout_s = *v;
      }
      if (Status st = CheckPlannerConfig(planner); !st.ok()) {
        return KeyError(source, fmt::format("planners[{}]", i), st.error().message);
      }
      for (const PlannerConfig& other : c.planners) {
        if (other.name == planner.name) {
          return KeyError(source, p + "name", "'" + planner.name + "' is listed twice");
        }
      }
      c.planners.push_back(std::move(planner));
    }
  }
  if (auto n = root["mcp"]) {
    SBX_TRY(CheckKeys(n, {"review_wait_s", "allowed_origins", "max_output_bytes"}, source, "mcp."));
    if (n["review_wait_s"]) {
      auto v = Int(n["review_wait_s"], source, "mcp.review_wait_s", 0);
      if (!v.ok()) return std::move(v).error();
      c.mcp.review_wait_s = std::min<int64_t>(*v, 24 * 3600);
    }
    if (n["max_output_bytes"]) {
      auto v = Int(n["max_output_bytes"], source, "mcp.max_output_bytes", 1);
      if (!v.ok()) return std::move(v).error();
      if (*v > (4 << 20)) return KeyError(source, "mcp.max_output_bytes", "must be at most 4 MiB");
      c.mcp.max_output_bytes = *v;
    }
    if (auto o = n["allowed_origins"]) {
      if (!o.IsSequence()) return KeyError(source, "mcp.allowed_origins", "must be a list of origins");
      for (size_t i = 0; i < o.size(); ++i) {
        auto origin = String(o[i], source, fmt::format("mcp.allowed_origins[{}]", i));
        if (!origin.ok()) return std::move(origin).error();
        if (origin->rfind("http://", 0) != 0 && origin->rfind("https://", 0) != 0) {
          return KeyError(source, fmt::format("mcp.allowed_origins[{}]", i),
                          "must be an origin such as https://agent.example.org");
        }
        c.mcp.allowed_origins.push_back(*origin);
      }
    }
  }
  if (auto n = root["workspace_rw_roots"]) {
    auto roots = AbsolutePaths(n, source, "workspace_rw_roots");
    if (!roots.ok()) return std::move(roots).error();
    c.limits.workspace_rw_roots = std::move(*roots);
  }
  if (auto n = root["workspace_roots"]) {
    auto roots = AbsolutePaths(n, source, "workspace_roots");
    if (!roots.ok()) return std::move(roots).error();
    c.limits.workspace_roots = std::move(*roots);
  }
  if (auto n = root["workspace_cow_root_owned"]) {
    bool b = false;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, b)) {
      return KeyError(source, "workspace_cow_root_owned", "must be true or false");
    }
    c.limits.workspace_cow_root_owned = b;
  }
  if (root["artifacts_quota"]) {
    auto v = Size(root["artifacts_quota"], source, "artifacts_quota");
    if (!v.ok()) return std::move(v).error();
    if (*v <= 0) return KeyError(source, "artifacts_quota", "must be positive");
    c.limits.artifacts_quota_bytes = static_cast<uint64_t>(*v);
  }
  if (auto n = root["listen"]) {
    if (!n.IsSequence()) return KeyError(source, "listen", "must be a list of HOST:PORT or unix:PATH");
    c.listen.clear();
    for (size_t i = 0; i < n.size(); ++i) {
      auto s = String(n[i], source, fmt::format("listen[{}]", i));
      if (!s.ok()) return std::move(s).error();
      c.listen.push_back(*s);
    }
  }
  struct {
    const char* key;
    std::string* out;
  } strings[] = {{"database", &c.database},
                 {"data_dir", &c.data_dir},
                 {"web_root", &c.web_root},
                 {"node", &c.node},
                 {"node_address", &c.node_address},
                 {"seccomp_profiles_dir", &c.seccomp_profiles_dir},
                 {"policy_dir", &c.policy_dir},
                 {"cgroup_parent", &c.cgroup_parent},
                 {"log_level", &c.log_level},
                 {"cgroup_delegation", &c.cgroup_delegation},
                 {"default_backend", &c.default_backend},
                 {"docker_host", &c.docker_host},
                 {"docker_image", &c.docker_image}};
  for (auto& [key, out] : strings) {
    if (!root[key]) continue;
    auto s = String(root[key], source, key);
    if (!s.ok()) return std::move(s).error();
    *out = *s;
  }
  if (auto n = root["api_keys"]) {
    if (!n.IsSequence()) return KeyError(source, "api_keys", "must be a list");
    for (size_t i = 0; i < n.size(); ++i) {
      std::string p = fmt::format("api_keys[{}].", i);
      SBX_TRY(CheckKeys(n[i], {"name", "role", "key_sha256", "workspace_roots", "permissive_seccomp",
                         "mcp_profiles"},
                        source, p));
      ApiKeyConfig k;
      for (const char* field : {"name", "role", "key_sha256"}) {
        if (!n[i][field]) return KeyError(source, p + field, "is required");
      }
      auto name = String(n[i]["name"], source, p + "name");
      auto role = String(n[i]["role"], source, p + "role");
      auto hash = String(n[i]["key_sha256"], source, p + "key_sha256");
      if (!name.ok()) return std::move(name).error();
      if (!role.ok()) return std::move(role).error();
      if (!hash.ok()) return std::move(hash).error();
      auto r = ParseRole(*role);
      if (!r.ok()) return KeyError(source, p + "role", r.error().message);
      bool hex = hash->size() == 64;
      for (char ch : *hash) hex = hex && ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'));
      if (!hex) {
        return KeyError(source, p + "key_sha256",
                        "must be 64 lowercase hex digits (sha256sum of the key)");
      }
      std::vector<std::string> roots;
      if (auto w = n[i]["workspace_roots"]) {
        auto parsed = AbsolutePaths(w, source, p + "workspace_roots");
        if (!parsed.ok()) return std::move(parsed).error();
        if (parsed->empty()) {
          return KeyError(source, p + "workspace_roots",
                          "must list at least one directory (leave it out for every root)");
        }
        roots = std::move(*parsed);
      }
      bool permissive = false;
      if (auto b = n[i]["permissive_seccomp"];
          b && (!b.IsScalar() || !YAML::convert<bool>::decode(b, permissive))) {
        return KeyError(source, p + "permissive_seccomp", "must be true or false");
      }
      std::optional<std::vector<std::string>> profiles;
      if (auto m = n[i]["mcp_profiles"]) {
        if (!m.IsSequence()) {
          return KeyError(source, p + "mcp_profiles", "must be a list of executor, developer, full");
        }
        profiles.emplace();
        for (size_t j = 0; j < m.size(); ++j) {
          auto name = String(m[j], source, fmt::format("{}mcp_profiles[{}]", p, j));
          if (!name.ok()) return std::move(name).error();
          if (*name != "executor" && *name != "developer" && *name != "full") {
            return KeyError(source, fmt::format("{}mcp_profiles[{}]", p, j),
                            "must be executor, developer or full");
          }
          profiles->push_back(*name);
        }
      }
      c.api_keys.push_back({*name, *r, *hash, std::move(roots), permissive, std::move(profiles)});
    }
  }
  if (root["max_concurrent_runs"]) {
    auto v = Int(root["max_concurrent_runs"], source, "max_concurrent_runs", 1);
    if (!v.ok()) return std::move(v).error();
    c.limits.max_concurrent_runs = static_cast<int>(*v);
  }
  if (auto n = root["node_labels"]) {
    if (!n.IsMap()) return KeyError(source, "node_labels", "must be a mapping of label: value");
    for (auto it = n.begin(); it != n.end(); ++it) {
      const std::string key = it->first.as<std::string>();
      auto v = String(it->second, source, "node_labels." + key);
      if (!v.ok()) return std::move(v).error();
      c.node_labels[key] = *v;
    }
    if (Status st = store::CheckNodeLabels(c.node_labels, "node_labels"); !st.ok()) {
      return KeyError(source, "node_labels", st.error().message);
    }
  }
  for (auto [key, out, least] :
       {std::tuple{"heartbeat_interval_ms", &c.heartbeat_interval_ms, int64_t{50}},
        std::tuple{"node_timeout_ms", &c.node_timeout_ms, int64_t{200}}}) {
    if (!root[key]) continue;
    auto v = Int(root[key], source, key, least);
    if (!v.ok()) return std::move(v).error();
    *out = *v;
  }
  if (!c.node_address.empty()) {
    if (auto u = ParseHttpUrl(c.node_address, "node_address"); !u.ok()) {
      return KeyError(source, "node_address", u.error().message);
    }
  }
  if (c.node_timeout_ms < 2 * c.heartbeat_interval_ms) {
    return KeyError(source, "node_timeout_ms",
                    fmt::format("must be at least twice heartbeat_interval_ms ({}): one late beat "
                                "must not make a node lost",
                                c.heartbeat_interval_ms));
  }
  if (root["warm_sandboxes"]) {
    auto v = Int(root["warm_sandboxes"], source, "warm_sandboxes", 0);
    if (!v.ok()) return std::move(v).error();
    if (*v > 64) return KeyError(source, "warm_sandboxes", "must be at most 64");
    c.limits.warm_sandboxes = static_cast<int>(*v);
  }
  if (auto n = root["docker_images"]) {
    if (!n.IsSequence()) return KeyError(source, "docker_images", "must be a list of image patterns");
    for (size_t i = 0; i < n.size(); ++i) {
      auto img = String(n[i], source, fmt::format("docker_images[{}]", i));
      if (!img.ok()) return std::move(img).error();
      if (img->empty()) return KeyError(source, fmt::format("docker_images[{}]", i), "is empty");
      c.docker_images.push_back(*img);
    }
  }
  if (root["sandbox_id_base"]) {
    auto v = Int(root["sandbox_id_base"], source, "sandbox_id_base", 1);
    if (!v.ok()) return std::move(v).error();
    c.sandbox_id_base = static_cast<uint64_t>(*v);
  }
  if (root["max_queue"]) {
    auto v = Int(root["max_queue"], source, "max_queue", 0);
    if (!v.ok()) return std::move(v).error();
    c.limits.max_queue = static_cast<int>(*v);
  }
  if (auto n = root["metrics_require_key"]) {
    bool b = false;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, b)) {
      return KeyError(source, "metrics_require_key", "must be true or false");
    }
    c.metrics_require_key = b;
  }
  for (auto [key, out] : {std::pair{"max_connections_per_address", &c.max_connections_per_address},
                          std::pair{"max_connections_per_key", &c.max_connections_per_key}}) {
    if (!root[key]) continue;
    auto v = Int(root[key], source, key, 0);
    if (!v.ok()) return std::move(v).error();
    *out = static_cast<uint64_t>(*v);
  }
  if (root["ws_queue_budget"]) {
    auto v = Size(root["ws_queue_budget"], source, "ws_queue_budget");
    if (!v.ok()) return std::move(v).error();
    c.ws_queue_budget_bytes = static_cast<uint64_t>(*v);
  }
  if (root["max_body_bytes"]) {
    auto v = Size(root["max_body_bytes"], source, "max_body_bytes");
    if (!v.ok()) return std::move(v).error();
    c.max_body_bytes = static_cast<uint64_t>(*v);
  }
  if (auto n = root["limits"]) {
    SBX_TRY(CheckKeys(n, {"defaults", "maxima"}, source, "limits."));
    if (n["defaults"]) SBX_TRY(ParseLimitSet(n["defaults"], source, "limits.defaults.", c.limits.defaults));
    if (n["maxima"]) SBX_TRY(ParseLimitSet(n["maxima"], source, "limits.maxima.", c.limits.maxima));
  }
  return c;
}

}  // namespace

Result<Role> ParseRole(std::string_view name) {
  if (name == "submitter") return Role::kSubmitter;
  if (name == "reviewer") return Role::kReviewer;
  if (name == "admin") return Role::kAdmin;
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown role '{}' (use submitter, reviewer or admin)", name);
}

std::vector<std::pair<std::string, std::string>> ConfigEnvironment() {
  std::vector<std::pair<std::string, std::string>> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry = *e;
    const size_t eq = entry.find('=');
    if (eq == std::string_view::npos || !entry.starts_with("SANDBOXD_")) continue;
    out.emplace_back(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  return out;
}

Result<ServiceConfig> ParseConfig(std::string_view yaml, const std::string& source,
                                  const std::vector<std::pair<std::string, std::string>>& env) {
  Result<ServiceConfig> out = MakeError(ErrorCode::kInternal, "unparsed");
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return MakeError(ErrorCode::kInvalidArgument, "{}: line {}, column {}: {}", source,
                     e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  // SANDBOXD_KEY=VALUE sets the top-level key `key` to VALUE read as YAML (a scalar, or flow
  // text for a list or a mapping), over the file. Other SANDBOXD_ variables (sandboxctl's
  // SANDBOXD_HOST and SANDBOXD_API_KEY) are not settings, and are left alone.
  std::string from = source;
  for (const auto& [name, value] : env) {
    std::string key = name.substr(std::min(name.size(), std::string_view("SANDBOXD_").size()));
    std::transform(key.begin(), key.end(), key.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    if (!name.starts_with("SANDBOXD_") || !TopLevelKeys().count(key)) continue;
    if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
    if (!root.IsMap()) break;  // ParseTree says what is wrong with the file
    try {
      root[key] = YAML::Load(value);
    } catch (const YAML::Exception& e) {
      return MakeError(ErrorCode::kInvalidArgument, "environment {}: column {}: {}", name,
                       e.mark.column + 1, e.msg);
    }
    if (from == source) from += " with SANDBOXD_ variables";
    from += from.ends_with("variables") ? " (" + name : ", " + name;
  }
  if (from != source) from += ")";
  try {
    out = ParseTree(root, from);
  } catch (const YAML::Exception& e) {
    return MakeError(ErrorCode::kInvalidArgument, "{}: line {}, column {}: {}", from,
                     e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  if (!out.ok()) return out;
  SBX_TRY(Validate(*out));
  return out;
}

Result<ServiceConfig> LoadConfig(const std::string& path) {
  if (path.empty()) return ParseConfig("", "the defaults", ConfigEnvironment());
  auto text = ReadFile(path, 1 << 20);
  if (!text.ok()) return WithContext(std::move(text).error(), "--config");
  return ParseConfig(*text, path, ConfigEnvironment());
}

Status ApplyFlags(const std::vector<std::string>& args, ServiceConfig& c) {
  bool listen_replaced = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i], v;
    size_t eq = a.find('=');
    if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
      v = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (i + 1 < args.size()) {
      v = args[++i];
    } else {
      return MakeError(ErrorCode::kInvalidArgument, "{} needs a value", a);
    }
    if (a == "--listen") {
      if (!listen_replaced) c.listen.clear();
      listen_replaced = true;
      c.listen.push_back(v);
    } else if (a == "--database") {
      c.database = v;
    } else if (a == "--data-dir") {
      c.data_dir = v;
    } else if (a == "--node") {
      c.node = v;
    } else if (a == "--web-root") {
      c.web_root = v;
    } else if (a == "--log-level") {
      c.log_level = v;
    } else if (a == "--cgroup-delegation") {
      c.cgroup_delegation = v;
    } else {
      return MakeError(ErrorCode::kInvalidArgument, "unknown option '{}'", a);
    }
  }
  return Validate(c);
}

Status Validate(const ServiceConfig& c) {
  if (c.listen.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "listen: at least one listener is needed");
  }
  for (const auto& l : c.listen) {
    bool unix_ok = l.rfind("unix:/", 0) == 0;
    bool tcp_ok = l.rfind(':') != std::string::npos && l.rfind(':') + 1 < l.size();
    if (!unix_ok && !tcp_ok) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "listen: '{}' is neither HOST:PORT nor unix:/ABSOLUTE/PATH", l);
    }
  }
  if (c.data_dir.empty() || c.data_dir[0] != '/') {
    return MakeError(ErrorCode::kInvalidArgument, "data_dir: '{}' must be an absolute path",
                     c.data_dir);
  }
  if (c.web_root.empty() || c.web_root[0] != '/') {
    return MakeError(ErrorCode::kInvalidArgument, "web_root: '{}' must be an absolute path",
                     c.web_root);
  }
  if (c.database.rfind("sqlite:///", 0) != 0 && c.database.rfind("postgresql://", 0) != 0 &&
      c.database.rfind("postgres://", 0) != 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "database: use sqlite:///ABSOLUTE/PATH or postgresql://…");
  }
  if (c.log_level != "error" && c.log_level != "warning" && c.log_level != "notice" &&
      c.log_level != "info" && c.log_level != "debug") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "log_level: '{}' is not one of error, warning, notice, info, debug",
                     c.log_level);
  }
  if (c.default_backend != "native" && c.default_backend != "docker" &&
      c.default_backend != "auto") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "default_backend: '{}' is not one of native, docker, auto", c.default_backend);
  }
  if (!c.docker_host.empty() && c.docker_host.rfind("unix:/", 0) != 0 && c.docker_host[0] != '/') {
    return MakeError(ErrorCode::kInvalidArgument,
                     "docker_host: '{}' must be unix:///ABSOLUTE/PATH (a local socket)",
                     c.docker_host);
  }
  if (c.cgroup_delegation != "auto" && c.cgroup_delegation != "yes" &&
      c.cgroup_delegation != "no") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "cgroup_delegation: '{}' is not one of auto, yes, no", c.cgroup_delegation);
  }
  std::set<std::string> names;
  for (const auto& k : c.api_keys) {
    if (k.name.empty() || !names.insert(k.name).second) {
      return MakeError(ErrorCode::kInvalidArgument, "api_keys: name '{}' is empty or repeated",
                       k.name);
    }
  }
  for (const auto& k : c.api_keys) {
    for (const auto& r : k.workspace_roots) {
      if (!std::any_of(c.limits.workspace_roots.begin(), c.limits.workspace_roots.end(),
                       [&](const std::string& root) { return PathIsUnder(r, root); })) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "api_keys '{}': workspace root '{}' is not under any of workspace_roots; "
                         "a key's roots narrow the daemon's, they cannot widen them",
                         k.name, r);
      }
    }
  }
  if (Status ids = isolate::CheckSandboxIds(c.sandbox_id_base, {}, ""); !ids.ok()) {
    return std::move(ids).error();
  }
  const LimitSet& d = c.limits.defaults;
  const LimitSet& m = c.limits.maxima;
  if (d.cpus > m.cpus || d.memory_bytes > m.memory_bytes || d.pids > m.pids ||
      d.timeout_s > m.timeout_s || d.output_bytes > m.output_bytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "limits: every default must be within its maximum");
  }
  return Ok();
}

}  // namespace sbx::supervisor
