// The shipped /etc/sandboxd/sandboxd.yaml (packaging/sandboxd.yaml) loads with the daemon's own
// parser, documents every setting it knows, and says what the units expect.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "supervisor/service/config.h"

namespace sbx::supervisor {
namespace {

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(ShippedConfig, LoadsWithTheDaemonsParser) {
  auto c = LoadConfig(std::string(SBX_SOURCE_DIR) + "/packaging/sandboxd.yaml");
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  ASSERT_EQ(c->listen.size(), 1u);
  // The socket unit's path: the listener is taken from systemd, not bound twice.
  EXPECT_EQ(c->listen[0], "unix:/run/sandboxd/api.sock");
  std::string socket_unit = Read(std::string(SBX_SOURCE_DIR) + "/systemd/sandboxd.socket");
  EXPECT_NE(socket_unit.find("ListenStream=/run/sandboxd/api.sock\n"), std::string::npos);
  EXPECT_EQ(c->database, "sqlite:///var/lib/sandboxd/sandboxd.db");
  EXPECT_EQ(c->data_dir, "/var/lib/sandboxd");
  EXPECT_EQ(c->policy_dir, "/etc/sandboxd/policies");
  EXPECT_EQ(c->cgroup_delegation, "auto");
  EXPECT_EQ(c->log_level, "info");
  EXPECT_FALSE(c->metrics_require_key);
  EXPECT_TRUE(c->api_keys.empty());
  // The values it spells out are the defaults.
  ServiceConfig d;
  EXPECT_EQ(c->limits.defaults.memory_bytes, d.limits.defaults.memory_bytes);
  EXPECT_EQ(c->limits.maxima.memory_bytes, d.limits.maxima.memory_bytes);
  EXPECT_EQ(c->limits.maxima.timeout_s, d.limits.maxima.timeout_s);
  EXPECT_EQ(c->limits.max_concurrent_runs, d.limits.max_concurrent_runs);
  EXPECT_EQ(c->limits.artifacts_quota_bytes, d.limits.artifacts_quota_bytes);
  EXPECT_EQ(c->max_body_bytes, d.max_body_bytes);
}

TEST(ShippedConfig, DocumentsEverySetting) {
  std::string text = Read(std::string(SBX_SOURCE_DIR) + "/packaging/sandboxd.yaml");
  for (const char* key :
       {"listen", "database", "data_dir", "node", "api_keys", "max_concurrent_runs", "max_queue",
        "limits", "seccomp_profiles_dir", "policy_dir", "cgroup_parent", "max_body_bytes",
        "workspace_roots", "artifacts_quota", "log_level", "metrics_require_key",
        "cgroup_delegation", "warm_sandboxes"}) {
    // Not "\n" + std::string(key) + ":": a bogus -Wrestrict from GCC 12 at -O3 (GCC PR 105329).
    const std::string line = std::string("\n").append(key).append(":");
    EXPECT_NE(text.find(line), std::string::npos) << key;
  }
  // Every key the parser accepts is in the file: an unknown key is refused, so adding one to
  // the parser without documenting it here makes this list (and the file) incomplete.
  auto refused = ParseConfig("no_such_setting: 1\n", "x.yaml");
  ASSERT_FALSE(refused.ok());
  std::string known = refused.error().message;
  known = known.substr(known.find("(known: ") + 8);
  known.pop_back();
  std::stringstream keys(known);
  for (std::string k; std::getline(keys, k, ',');) {
    if (k.starts_with(" ")) k.erase(0, 1);
    EXPECT_NE(text.find("\n" + k + ":"), std::string::npos) << "undocumented setting " << k;
  }
}

TEST(ShippedConfig, NewKeysAreValidated) {
  EXPECT_FALSE(ParseConfig("log_level: loud\n", "x").ok());
  EXPECT_FALSE(ParseConfig("cgroup_delegation: maybe\n", "x").ok());
  EXPECT_FALSE(ParseConfig("metrics_require_key: perhaps\n", "x").ok());
  auto c = ParseConfig("metrics_require_key: true\nlog_level: debug\n", "x");
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_TRUE(c->metrics_require_key);
  ServiceConfig f;
  ASSERT_TRUE(ApplyFlags({"--log-level", "error", "--cgroup-delegation=no"}, f).ok());
  EXPECT_EQ(f.log_level, "error");
  EXPECT_EQ(f.cgroup_delegation, "no");
}

}  // namespace
}  // namespace sbx::supervisor
