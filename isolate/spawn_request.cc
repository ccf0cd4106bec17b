#include "isolate/spawn_request.h"

#include <cstring>

#include "isolate/child.h"
#include "isolate/mount_plan.h"

namespace sbx::isolate::internal {

std::vector<std::string> WithDefaultEnv(std::vector<std::string> env, uid_t uid,
                                        const std::string& hostname, bool terminal) {
  auto has = [&](const char* key) {
    size_t n = std::strlen(key);
    for (const auto& e : env) {
      if (e.compare(0, n, key) == 0 && e.size() > n && e[n] == '=') return true;
    }
    return false;
  };
  if (!has("PATH")) env.push_back("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  if (!has("HOME")) env.push_back(uid == 0 ? "HOME=/root" : "HOME=/tmp");
  if (!has("HOSTNAME")) env.push_back("HOSTNAME=" + hostname);
  if (terminal && !has("TERM")) env.push_back("TERM=xterm-256color");
  return env;
}

Result<std::string> EncodeSpawnRequest(const std::vector<std::string>& argv,
                                       const std::vector<std::string>& env,
                                       const std::string& cwd_in, uint32_t flags, uint16_t cols,
                                       uint16_t rows) {
  if (argv.empty() || argv[0].empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "argv must name a command");
  }
  auto cwd = NormalizeSandboxPath(cwd_in.empty() ? "/" : cwd_in);
  if (!cwd.ok()) return std::move(cwd).error();
  std::string body;
  size_t strings = argv.size() + env.size();
  for (const auto& a : argv) {
    if (a.find('\0') != std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument, "argv contains a NUL byte");
    }
    body.append(a).push_back('\0');
  }
  for (const auto& e : env) {
    if (e.find('\0') != std::string::npos || e.find('=') == std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument, "env entry '{}' is not KEY=VALUE", e);
    }
    body.append(e).push_back('\0');
  }
  body.append(*cwd).push_back('\0');
  if (body.size() > kMaxSpawnBytes || strings > kMaxSpawnStrings) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "argv and env are too large ({} bytes in {} strings; at most {} bytes)",
                     body.size(), strings, kMaxSpawnBytes);
  }
  SpawnHeader h{kSpawnMagic, static_cast<uint32_t>(argv.size()), static_cast<uint32_t>(env.size()),
                static_cast<uint32_t>(body.size()), flags, cols, rows};
  std::string msg(reinterpret_cast<const char*>(&h), sizeof h);
  msg += body;
  return msg;
}

}  // namespace sbx::isolate::internal
