#include <gtest/gtest.h>

#include "supervisor/policy/command_policy.h"
#include "supervisor/service/config.h"

namespace sbx::supervisor {
namespace {

constexpr char kFull[] = R"(
listen: ["127.0.0.1:9000", "unix:/run/sandboxd/api.sock"]
database: postgresql://sbx@db/sandboxd
data_dir: /srv/sandboxd
node: host-a
api_keys:
  - name: ci
    role: submitter
    key_sha256: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
  - name: lead
    role: reviewer
    key_sha256: fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9
max_concurrent_runs: 4
max_queue: 10
warm_sandboxes: 3
limits:
  defaults: {cpus: 0.5, memory: 256m, pids: 64, timeout_s: 60, output_bytes: 1m}
  maxima: {cpus: 2, memory: 2g, pids: 512, timeout_s: 3600, output_bytes: 64m}
)";

TEST(Config, ParsesEverySetting) {
  auto c = ParseConfig(kFull, "test.yaml");
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_EQ(c->listen.size(), 2u);
  EXPECT_EQ(c->database, "postgresql://sbx@db/sandboxd");
  EXPECT_EQ(c->data_dir, "/srv/sandboxd");
  EXPECT_EQ(c->node, "host-a");
  ASSERT_EQ(c->api_keys.size(), 2u);
  EXPECT_EQ(c->api_keys[1].role, Role::kReviewer);
  EXPECT_EQ(c->limits.max_concurrent_runs, 4);
  EXPECT_EQ(c->limits.max_queue, 10);
  EXPECT_EQ(c->limits.warm_sandboxes, 3);
  EXPECT_DOUBLE_EQ(c->limits.defaults.cpus, 0.5);
  EXPECT_EQ(c->limits.defaults.memory_bytes, 256ll << 20);
  EXPECT_EQ(c->limits.maxima.output_bytes, 64ll << 20);
}

TEST(Config, EmptyFileGivesDefaults) {
  auto c = ParseConfig("", "empty.yaml");
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_EQ(c->listen, std::vector<std::string>{"127.0.0.1:8080"});
}

TEST(Config, ErrorsNameTheKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"listne: []", "listne"},
      {"listen: 8080", "listen"},
      {"max_queue: -1", "max_queue"},
      {"max_concurrent_runs: lots", "max_concurrent_runs"},
      {"warm_sandboxes: -1", "warm_sandboxes"},
      {"warm_sandboxes: 65", "warm_sandboxes"},
      {"warm_sandboxes: some", "warm_sandboxes"},
      {"limits: {defaults: {memory: huge}}", "limits.defaults.memory"},
      {"limits: {maxima: {cpus: 0}}", "limits.maxima.cpus"},
      {"limits: {defaults: {gpu: 1}}", "limits.defaults.gpu"},
      {"api_keys: [{name: a, role: root, key_sha256: x}]", "api_keys[0].role"},
      {"api_keys: [{name: a, role: admin, key_sha256: abc}]", "api_keys[0].key_sha256"},
      {"api_keys: [{name: a, role: admin}]", "api_keys[0].key_sha256"},
      {"data_dir: relative/dir", "data_dir"},
      {"database: mysql://x", "database"},
      {"listen: [\"nowhere\"]", "listen"},
      {"limits: {defaults: {pids: 100}, maxima: {pids: 10}}", "limits"},
      {"listen: [unclosed", "line"},
  };
  for (const auto& [yaml, key] : cases) {
    auto c = ParseConfig(yaml, "bad.yaml");
    ASSERT_FALSE(c.ok()) << yaml;
    EXPECT_NE(c.error().message.find(key), std::string::npos) << yaml << " -> " << c.error().message;
  }
}

TEST(Config, WorkspaceRootsPerKeyNarrowTheDaemons) {
  constexpr char kKeys[] = R"(
workspace_roots: [/srv/work, /data/]
workspace_cow_root_owned: true
api_keys:
  - name: ci
    role: submitter
    key_sha256: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
    workspace_roots: [/srv/work/ci, /data/ci]
    permissive_seccomp: true
  - name: lead
    role: reviewer
    key_sha256: fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9
)";
  auto c = ParseConfig(kKeys, "keys.yaml");
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_TRUE(c->limits.workspace_cow_root_owned);
  EXPECT_EQ(c->api_keys[0].workspace_roots,
            (std::vector<std::string>{"/srv/work/ci", "/data/ci"}));
  EXPECT_TRUE(c->api_keys[1].workspace_roots.empty());
  EXPECT_TRUE(c->api_keys[0].permissive_seccomp);
  EXPECT_FALSE(c->api_keys[1].permissive_seccomp);
  EXPECT_FALSE(ParseConfig("", "x")->limits.workspace_cow_root_owned);

  const std::string key = "api_keys: [{name: a, role: submitter, key_sha256: "
                          "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae, ";
  const std::vector<std::pair<std::string, std::string>> bad = {
      // Not under the daemon's roots (by whole components), or none configured.
      {"workspace_roots: [/srv/work]\n" + key + "workspace_roots: [/srv/work2]}]",
       "not under any of workspace_roots"},
      {"workspace_roots: [/srv/work]\n" + key + "workspace_roots: [/srv]}]",
       "not under any of workspace_roots"},
      {key + "workspace_roots: [/srv/work]}]", "not under any of workspace_roots"},
      {"workspace_roots: [/srv]\n" + key + "workspace_roots: [srv/a]}]",
       "api_keys[0].workspace_roots[0]"},
      {"workspace_roots: [/srv]\n" + key + "workspace_roots: []}]", "at least one"},
      {"workspace_cow_root_owned: maybe", "workspace_cow_root_owned"},
      {key + "permissive_seccomp: sometimes}]", "api_keys[0].permissive_seccomp"},
  };
  for (const auto& [yaml, mention] : bad) {
    auto r = ParseConfig(yaml, "bad.yaml");
    ASSERT_FALSE(r.ok()) << yaml;
    EXPECT_NE(r.error().message.find(mention), std::string::npos)
        << yaml << " -> " << r.error().message;
  }
}

TEST(Config, BackendSettings) {
  auto c = ParseConfig(
      "default_backend: auto\ndocker_host: unix:///run/docker.sock\ndocker_image: debian:12\n",
      "backends.yaml");
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_EQ(c->default_backend, "auto");
  EXPECT_EQ(c->docker_host, "unix:///run/docker.sock");
  EXPECT_EQ(c->docker_image, "debian:12");
  EXPECT_TRUE(c->docker_images.empty());
  EXPECT_EQ(ParseConfig("", "empty.yaml")->default_backend, "native");
  auto images = ParseConfig("docker_images: [\"busybox:*\", registry.local/team/*]\n"
                            "sandbox_id_base: 2000000\n", "images.yaml");
  ASSERT_TRUE(images.ok()) << images.error().ToString();
  EXPECT_EQ(images->docker_images,
            (std::vector<std::string>{"busybox:*", "registry.local/team/*"}));
  EXPECT_EQ(images->sandbox_id_base, 2000000u);
  EXPECT_EQ(ParseConfig("", "empty.yaml")->sandbox_id_base, 100000u);
  for (const char* bad : {"default_backend: podman", "docker_host: tcp://10.0.0.1:2375",
                          "docker_images: busybox", "docker_images: [\"\"]",
                          "sandbox_id_base: 0", "sandbox_id_base: 4294967000"}) {
    auto b = ParseConfig(bad, "bad.yaml");
    ASSERT_FALSE(b.ok()) << bad;
    EXPECT_NE(b.error().message.find(std::string(bad).substr(0, std::string(bad).find(':'))),
              std::string::npos)
        << b.error().message;
  }
}

TEST(Config, FlagsOverrideTheFile) {
  auto c = ParseConfig(kFull, "test.yaml");
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(ApplyFlags({"--listen", "127.0.0.1:1", "--listen=unix:/tmp/s.sock", "--database",
                          "sqlite:///tmp/x.db", "--data-dir=/tmp/d"},
                         *c)
                  .ok());
  EXPECT_EQ(c->listen, (std::vector<std::string>{"127.0.0.1:1", "unix:/tmp/s.sock"}));
  EXPECT_EQ(c->database, "sqlite:///tmp/x.db");
  EXPECT_EQ(c->data_dir, "/tmp/d");
  EXPECT_FALSE(ApplyFlags({"--frobnicate", "1"}, *c).ok());
  EXPECT_FALSE(ApplyFlags({"--database"}, *c).ok());
}

TEST(Config, SandboxesSection) {
  auto c = ParseConfig(R"(
sandboxes: {max: 8, default_timeout_s: 60, max_timeout_s: 600, default_idle_timeout_s: 0}
)",
                       "s.yaml");
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_EQ(c->sandboxes.max, 8);
  EXPECT_EQ(c->sandboxes.default_timeout_s, 60);
  EXPECT_EQ(c->sandboxes.max_timeout_s, 600);
  EXPECT_EQ(c->sandboxes.default_idle_timeout_s, 0);
  auto d = ParseConfig("", "d.yaml");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->sandboxes.max, 64);
  EXPECT_EQ(d->sandboxes.default_timeout_s, 3600);
  for (const char* bad : {"sandboxes: {max: 0}", "sandboxes: {maximum: 3}",
                          "sandboxes: {default_timeout_s: 10, max_timeout_s: 5}",
                          "sandboxes: {default_idle_timeout_s: -1}", "sandboxes: 3"}) {
    auto r = ParseConfig(bad, "bad.yaml");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().message.find("sandboxes"), std::string::npos) << r.error().message;
  }
}

TEST(Config, McpSectionAndProfilesPerKey) {
  const std::string h(64, 'a');
  auto c = ParseConfig("mcp: {review_wait_s: 5, allowed_origins: [https://agent.example], "
                       "max_output_bytes: 1024}\n"
                       "api_keys:\n"
                       "  - {name: a, role: submitter, key_sha256: " + h +
                           ", mcp_profiles: [executor]}\n"
                       "  - {name: b, role: submitter, key_sha256: " + std::string(64, 'b') +
                           ", mcp_profiles: []}\n"
                       "  - {name: c, role: submitter, key_sha256: " + std::string(64, 'c') + "}\n",
                       "m.yaml");
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_EQ(c->mcp.review_wait_s, 5);
  EXPECT_EQ(c->mcp.allowed_origins, std::vector<std::string>{"https://agent.example"});
  EXPECT_EQ(c->mcp.max_output_bytes, 1024);
  ASSERT_TRUE(c->api_keys[0].mcp_profiles);
  EXPECT_EQ(*c->api_keys[0].mcp_profiles, std::vector<std::string>{"executor"});
  ASSERT_TRUE(c->api_keys[1].mcp_profiles);
  EXPECT_TRUE(c->api_keys[1].mcp_profiles->empty());  // none: every endpoint refuses it
  EXPECT_FALSE(c->api_keys[2].mcp_profiles);           // left out: all three
  const std::string key = "api_keys: [{name: a, role: submitter, key_sha256: " + h + ", ";
  for (const auto& [yaml, mention] : std::vector<std::pair<std::string, std::string>>{
           {key + "mcp_profiles: [root]}]", "api_keys[0].mcp_profiles[0]"},
           {key + "mcp_profiles: executor}]", "api_keys[0].mcp_profiles"},
           {"mcp: {review_wait_s: -1}", "mcp.review_wait_s"},
           {"mcp: {max_output_bytes: 99999999}", "mcp.max_output_bytes"},
           {"mcp: {allowed_origins: [evil]}", "mcp.allowed_origins[0]"},
           {"mcp: {sessions: 3}", "mcp."}}) {
    auto r = ParseConfig(yaml, "bad.yaml");
    ASSERT_FALSE(r.ok()) << yaml;
    EXPECT_NE(r.error().message.find(mention), std::string::npos)
        << yaml << " -> " << r.error().message;
  }
}

TEST(Config, TheShippedPolicyStartsADefaultSandboxWithoutAReviewer) {
  // POST /v1/sandboxes {} (and an MCP client's first call) under the shipped configuration and
  // command policy: the default limits and the sandboxes: section's lifetimes fit allow_within.
  const ServiceConfig c;
  policy::SandboxShape s;
  s.cpus = c.limits.defaults.cpus;
  s.memory_bytes = c.limits.defaults.memory_bytes;
  s.pids = c.limits.defaults.pids;
  s.timeout_s = c.sandboxes.default_timeout_s;
  s.idle_timeout_s = c.sandboxes.default_idle_timeout_s;
  s.network = "none";
  s.backend = c.default_backend;
  auto d = policy::CommandPolicy::Builtin()->EvaluateSandbox(s);
  EXPECT_EQ(d.action, policy::Action::kAllow);
}

}  // namespace
}  // namespace sbx::supervisor

namespace sbx::supervisor {
namespace {

TEST(Config, PlannersAreAnHttpEndpointOrACommand) {
  auto c = ParseConfig(
      "planners:\n"
      "  - {name: llm, url: 'http://127.0.0.1:9000/plan', timeout_s: 15}\n"
      "  - {name: script, command: [/usr/local/bin/plan, --json]}\n",
      "test.yaml");
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  ASSERT_EQ(c->planners.size(), 2u);
  EXPECT_EQ(c->planners[0].url, "http://127.0.0.1:9000/plan");
  EXPECT_EQ(c->planners[0].timeout_s, 15);
  EXPECT_EQ(c->planners[1].command, (std::vector<std::string>{"/usr/local/bin/plan", "--json"}));
  EXPECT_EQ(c->planners[1].timeout_s, 30);
  const std::pair<const char*, const char*> bad[] = {
      {"planners: {name: x}\n", "must be a list"},
      {"planners:\n  - {url: 'http://h:1/'}\n", "name"},
      {"planners:\n  - {name: builtin, url: 'http://h:1/'}\n", "builtin"},
      {"planners:\n  - {name: x, url: 'https://h/'}\n", "https is not supported"},
      {"planners:\n  - {name: x, url: 'http://h/p', command: [/bin/x]}\n", "either url or command"},
      {"planners:\n  - {name: x}\n", "either url or command"},
      {"planners:\n  - {name: x, command: [plan]}\n", "absolute path"},
      {"planners:\n  - {name: x, command: [/bin/x], timeout_s: 9999}\n", "1 to 600"},
      {"planners:\n  - {name: x, command: [/bin/x]}\n  - {name: x, command: [/bin/y]}\n",
       "listed twice"},
      {"planners:\n  - {name: x, command: [/bin/x], shell: true}\n", "shell"},
  };
  for (const auto& [yaml, want] : bad) {
    auto r = ParseConfig(yaml, "bad.yaml");
    ASSERT_FALSE(r.ok()) << yaml;
    EXPECT_NE(r.error().ToString().find(want), std::string::npos) << r.error().ToString();
  }
}

TEST(Config, SandboxdVariablesSetTopLevelKeysOverTheFile) {
  const std::string file =
      "node: from-file\nmax_concurrent_runs: 3\napi_keys:\n"
      "  - {name: a, role: admin, key_sha256: " + std::string(64, 'a') + "}\n";
  auto c = ParseConfig(file, "sandboxd.yaml",
                       {{"SANDBOXD_NODE", "from-env"},
                        {"SANDBOXD_MAX_CONCURRENT_RUNS", "8"},
                        {"SANDBOXD_NODE_LABELS", "{zone: eu-1, gpu: \"true\"}"},
                        {"SANDBOXD_LISTEN", "[\"127.0.0.1:9000\", \"unix:/run/x.sock\"]"},
                        {"SANDBOXD_HEARTBEAT_INTERVAL_MS", "500"},
                        // sandboxctl's, not settings: left alone.
                        {"SANDBOXD_HOST", "unix:/x"},
                        {"SANDBOXD_API_KEY", "secret"}});
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_EQ(c->node, "from-env");
  EXPECT_EQ(c->limits.max_concurrent_runs, 8);
  EXPECT_EQ(c->node_labels, (std::map<std::string, std::string>{{"gpu", "true"}, {"zone", "eu-1"}}));
  EXPECT_EQ(c->listen, (std::vector<std::string>{"127.0.0.1:9000", "unix:/run/x.sock"}));
  EXPECT_EQ(c->heartbeat_interval_ms, 500);
  ASSERT_EQ(c->api_keys.size(), 1u);  // the file's, untouched

  // Without a file, the defaults with the variables over them.
  auto bare = ParseConfig("", "the defaults", {{"SANDBOXD_DATA_DIR", "/srv/sbx"}});
  ASSERT_TRUE(bare.ok()) << bare.error().ToString();
  EXPECT_EQ(bare->data_dir, "/srv/sbx");

  // A value of the wrong shape is refused naming the key and the variable; broken YAML names
  // the variable.
  auto scalar = ParseConfig(file, "sandboxd.yaml", {{"SANDBOXD_LISTEN", "127.0.0.1:1"}});
  ASSERT_FALSE(scalar.ok());
  EXPECT_NE(scalar.error().message.find("listen"), std::string::npos) << scalar.error().message;
  EXPECT_NE(scalar.error().message.find("SANDBOXD_LISTEN"), std::string::npos)
      << scalar.error().message;
  auto broken = ParseConfig(file, "sandboxd.yaml", {{"SANDBOXD_NODE_LABELS", "{zone: [}"}});
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.error().message.find("environment SANDBOXD_NODE_LABELS"), std::string::npos)
      << broken.error().message;
  auto timeout = ParseConfig(file, "sandboxd.yaml",
                             {{"SANDBOXD_HEARTBEAT_INTERVAL_MS", "4000"}});
  ASSERT_FALSE(timeout.ok());  // node_timeout_ms (6000) must be at least twice the interval
  EXPECT_NE(timeout.error().message.find("node_timeout_ms"), std::string::npos);
  auto label = ParseConfig(file, "sandboxd.yaml", {{"SANDBOXD_NODE_LABELS", "{\"a b\": x}"}});
  EXPECT_FALSE(label.ok());
}

}  // namespace
}  // namespace sbx::supervisor
