// `sandboxd serve` configuration: a YAML file (--config FILE) whose settings can also be given as
// flags. Unknown keys and bad values are refused at start with a message naming the key.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "supervisor/run_manager.h"

namespace sbx::supervisor {

struct ApiKeyConfig {
  std::string name;
  Role role = Role::kSubmitter;
  std::string key_sha256;  // 64 lowercase hex digits; the key itself is never stored
};

struct ServiceConfig {
  std::vector<std::string> listen = {"127.0.0.1:8080"};  // HOST:PORT or unix:PATH
  std::string database = "sqlite:///var/lib/sandboxd/sandboxd.db";
  std::string data_dir = "/var/lib/sandboxd";
  std::string node;  // this daemon's name in a shared database; default: the hostname
  std::vector<ApiKeyConfig> api_keys;
  ServiceLimits limits;
  std::string seccomp_profiles_dir = "/etc/sandboxd/seccomp";
  std::string policy_dir = "/etc/sandboxd/policies";
  std::string cgroup_parent = "sandboxd";
  uint64_t max_body_bytes = 1 << 20;
};

// Parses the YAML text over the defaults. `source` names the file in messages.
Result<ServiceConfig> ParseConfig(std::string_view yaml, const std::string& source);
Result<ServiceConfig> LoadConfig(const std::string& path);

// Flags that override the file: --listen (repeatable; replaces the file's list), --database,
// --data-dir, --node. Unknown flags are an error; `args` must hold flags only.
Status ApplyFlags(const std::vector<std::string>& args, ServiceConfig& config);

// Checks what the parser cannot: at least one listener, absolute paths, unique key names,
// defaults within maxima.
Status Validate(const ServiceConfig& config);

Result<Role> ParseRole(std::string_view name);

}  // namespace sbx::supervisor
