// `sandboxd serve` configuration: a YAML file (--config FILE) whose settings can also be given as
// flags. Unknown keys and bad values are refused at start with a message naming the key.
#pragma once

#include <map>
#include <optional>
#include <utility>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "supervisor/service/run_manager.h"

namespace sbx::supervisor {

struct ApiKeyConfig {
  std::string name;
  Role role = Role::kSubmitter;
  std::string key_sha256;  // 64 lowercase hex digits; the key itself is never stored
  // The directories under which this key's runs may name a workspace, each under one of the
  // configured workspace_roots; empty: all of those.
  std::vector<std::string> workspace_roots;
  // IMPORTANT: whether this key's runs may name a permissive seccomp profile (one whose default
  // action lets unlisted syscalls run: NAME.permissive.json). Off by default.
  bool permissive_seccomp = false;
  // The MCP profiles (api/mcp/) this key may use: "executor", "developer", "full". nullopt: all
  // three; an empty list: none (every /mcp/ endpoint answers 403 for this key).
  std::optional<std::vector<std::string>> mcp_profiles;
};

struct ServiceConfig {
  std::vector<std::string> listen = {"127.0.0.1:8080"};  // HOST:PORT or unix:PATH
  std::string database = "sqlite:///var/lib/sandboxd/sandboxd.db";
  std::string data_dir = "/var/lib/sandboxd";
  // The web page's built files (api/web/), served at / and /ui/ (api/http/static_files.h).
  std::string web_root = "/usr/share/sandboxd/web";
  std::string node;  // this daemon's name in a shared database; default: the hostname
  // Several nodes on one PostgreSQL (docs/operations.md): labels that runs' node_selector match
  // (os, arch, hostname and backend.NAME are added), the address clients and other nodes reach
  // this node's API at, and how often it beats and how long the others wait before declaring it
  // lost (which is also how long it waits, cut off from the database, before it fences itself).
  std::map<std::string, std::string> node_labels;
  std::string node_address;
  int64_t heartbeat_interval_ms = 2000;
  int64_t node_timeout_ms = 6000;
  std::vector<ApiKeyConfig> api_keys;
  ServiceLimits limits;
  std::string seccomp_profiles_dir = "/etc/sandboxd/seccomp";
  std::string policy_dir = "/etc/sandboxd/policies";
  std::string cgroup_parent = "sandboxd";
  uint64_t max_body_bytes = 1 << 20;
  // Open connections from one client address (TCP) and per API key; past either, 429 and the
  // connection is closed. 0: no cap. And the bytes every WebSocket queue may hold together.
  uint64_t max_connections_per_address = 256;
  uint64_t max_connections_per_key = 512;
  uint64_t ws_queue_budget_bytes = 256ull << 20;
  // "error", "warning", "notice", "info" or "debug" (supervisor/observability/log.h).
  std::string log_level = "info";
  // GET /metrics needs any valid API key when true; without a key otherwise.
  bool metrics_require_key = false;
  // Whether the daemon owns the cgroup it was started in (systemd's Delegate=yes): "auto" (yes
  // when systemd started it: $INVOCATION_ID is set and the cgroup is a .service's), "yes", "no".
  // Delegated, the sandboxes' parent is <own cgroup>/<cgroup_parent> and the daemon moves itself
  // into <own cgroup>/supervisor, as cgroup v2 wants (no processes in an inner cgroup).
  std::string cgroup_delegation = "auto";
  // For runs that name no backend: "native", "docker" or "auto" (native where this host supports
  // it, else Docker). A run naming an image always goes to Docker.
  std::string default_backend = "native";
  // The Docker daemon's socket: unix:///PATH; "" = $DOCKER_HOST, else /var/run/docker.sock.
  std::string docker_host;
  // The image for Docker runs that name none; "" = such runs need an image.
  std::string docker_image;
  // The images Docker runs may name (fnmatch patterns: "busybox:*", "registry.local/team/*");
  // empty: docker_image only. Images that declare volumes are refused whatever this says.
  std::vector<std::string> docker_images;
  // The host ids of every sandbox's user namespace: [sandbox_id_base, sandbox_id_base + 65536).
  // The daemon refuses to start when /etc/subuid or /etc/subgid gives any of them to a user.
  uint64_t sandbox_id_base = 100000;
  // Long-lived sandboxes (docs/sandboxes.md), `sandboxes:` in the file.
  struct Sandboxes {
    int max = 64;                           // live on this node at once
    int64_t default_timeout_s = 3600;       // lifetime when a sandbox names none
    int64_t max_timeout_s = 7 * 24 * 3600;  // the longest it may ask for
    int64_t default_idle_timeout_s = 600;   // idle timeout when it names none (0: none)
  } sandboxes;
  // Pluggable planners (supervisor/project/projects.h), `planners:` in the file: a list of
  // {name, url: http://…} or {name, command: [/abs/path, …]}, each with timeout_s.
  std::vector<PlannerConfig> planners;
  // The MCP server (docs/mcp.md), `mcp:` in the file.
  struct Mcp {
    // How long process_run waits for a reviewer's decision on a command that needs one before it
    // answers with the pending process (sending progress notifications meanwhile). 0: no wait.
    int64_t review_wait_s = 120;
    // Browser origins allowed to call /mcp/ besides the daemon's own ("http://host:port"); a
    // request with any other Origin header is refused (403): DNS rebinding.
    std::vector<std::string> allowed_origins;
    // The most output of each stream a tool result carries (the rest is cut, with a flag).
    int64_t max_output_bytes = 256 << 10;
  } mcp;
};

// Parses the YAML text over the defaults, then `env` over it: SANDBOXD_KEY=VALUE sets the
// top-level key `key` (SANDBOXD_MAX_CONCURRENT_RUNS=8, SANDBOXD_NODE_LABELS='{zone: a}',
// SANDBOXD_LISTEN='["0.0.0.0:8080"]'), VALUE read as YAML; variables that name no key are
// ignored. `source` names the file in messages.
Result<ServiceConfig> ParseConfig(std::string_view yaml, const std::string& source,
                                  const std::vector<std::pair<std::string, std::string>>& env = {});
// The file at `path` ("" for none: the defaults), with the process's SANDBOXD_ variables over
// it (ConfigEnvironment).
Result<ServiceConfig> LoadConfig(const std::string& path);
// The SANDBOXD_* variables of the process's environment, NAME and value.
std::vector<std::pair<std::string, std::string>> ConfigEnvironment();

// Flags that override the file: --listen (repeatable; replaces the file's list), --database,
// --data-dir, --node, --log-level, --cgroup-delegation. Unknown flags are an error; `args` must hold flags only.
Status ApplyFlags(const std::vector<std::string>& args, ServiceConfig& config);

// Checks what the parser cannot: at least one listener, absolute paths, unique key names,
// defaults within maxima.
Status Validate(const ServiceConfig& config);

Result<Role> ParseRole(std::string_view name);

}  // namespace sbx::supervisor
