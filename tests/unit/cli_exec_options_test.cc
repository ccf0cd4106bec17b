#include <gtest/gtest.h>

#include "supervisor/cli/exec_options.h"

namespace sbx::supervisor {
namespace {

Result<ExecOptions> Parse(std::vector<std::string> a) { return ParseExecArgs(a); }

TEST(ExecOptions, DefaultsAreFullyIsolated) {
  auto o = Parse({"--", "/bin/true"});
  ASSERT_TRUE(o.ok()) << o.error().ToString();
  EXPECT_EQ(o->process.argv, std::vector<std::string>{"/bin/true"});
  EXPECT_FALSE(o->sandbox.allow_host_network);
  EXPECT_TRUE(o->sandbox.read_only_root);
  EXPECT_EQ(o->sandbox.uid, 1000u);
  EXPECT_EQ(o->seccomp, "");  // the builtin profile
  EXPECT_FALSE(o->sandbox.limits.memory_bytes.has_value());
}

TEST(ExecOptions, DockerSpellings) {
  auto o = Parse({"--memory", "256m", "--cpus=0.5", "--pids-limit", "64", "--network", "none",
                  "--security-opt", "seccomp=/p.json", "-v", "/src:/work:rw", "--tmpfs",
                  "/scratch:size=8m,mode=700", "-e", "A=b", "-w", "/work", "-u", "0:0",
                  "--timeout", "30s", "--result", "r.json", "--read-only", "--", "make", "-j2"});
  ASSERT_TRUE(o.ok()) << o.error().ToString();
  EXPECT_EQ(*o->sandbox.limits.memory_bytes, 256ull << 20);
  EXPECT_DOUBLE_EQ(*o->sandbox.limits.cpus, 0.5);
  EXPECT_EQ(*o->sandbox.limits.pids, 64u);
  EXPECT_EQ(o->seccomp, "/p.json");
  ASSERT_EQ(o->sandbox.binds.size(), 1u);
  EXPECT_EQ(o->sandbox.binds[0].source, "/src");
  EXPECT_EQ(o->sandbox.binds[0].target, "/work");
  EXPECT_TRUE(o->sandbox.binds[0].writable);
  ASSERT_EQ(o->sandbox.tmpfs.size(), 1u);
  EXPECT_EQ(o->sandbox.tmpfs[0].size_bytes, 8ull << 20);
  EXPECT_EQ(o->sandbox.tmpfs[0].mode, 0700u);
  EXPECT_EQ(o->process.env, std::vector<std::string>{"A=b"});
  EXPECT_EQ(o->process.cwd, "/work");
  EXPECT_EQ(o->sandbox.uid, 0u);
  EXPECT_EQ(o->process.timeout_ms, 30'000u);
  EXPECT_EQ(o->result_file, "r.json");
  EXPECT_EQ(o->process.argv, (std::vector<std::string>{"make", "-j2"}));
}

TEST(ExecOptions, CommandStartsAtFirstNonOption) {
  auto o = Parse({"--memory", "64m", "sh", "-c", "--memory"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->process.argv, (std::vector<std::string>{"sh", "-c", "--memory"}));
}

TEST(ExecOptions, VolumesDefaultToReadOnly) {
  auto o = Parse({"-v", "/a:/b", "true"});
  ASSERT_TRUE(o.ok());
  EXPECT_FALSE(o->sandbox.binds[0].writable);
}

TEST(ExecOptions, BadInputIsAClearError) {
  const std::vector<std::vector<std::string>> bad = {
      {},                                        // no command
      {"--memory"},                              // missing value
      {"--memory", "lots", "true"},              // not a size
      {"--cpus", "0", "true"},                   // not positive
      {"--cpus", "half", "true"},
      {"--pids-limit", "0", "true"},
      {"--pids-limit", "-3", "true"},
      {"--network", "bridge", "true"},           // unsupported
      {"--security-opt", "apparmor=x", "true"},
      {"--security-opt", "seccomp=", "true"},
      {"-v", "/only-source", "true"},
      {"-v", "/a:/b:rx", "true"},
      {"--tmpfs", "/t:size=huge", "true"},
      {"--tmpfs", "/t:uid=3", "true"},
      {"-u", "root", "true"},
      {"-u", "70000", "true"},
      {"--timeout", "soon", "true"},
      {"--read-only=false", "true"},
      {"--cgroup-parent", "../escape", "true"},
      {"--frobnicate", "true"},
      {"-e", "=x", "true"},
  };
  for (const auto& args : bad) {
    auto o = Parse(args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_FALSE(o.ok()) << joined;
    if (!o.ok()) {
      EXPECT_FALSE(o.error().message.empty()) << joined;
    }
  }
}

TEST(ExecOptions, HelpNeedsNoCommand) {
  auto o = Parse({"--help"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->help);
  for (const char* flag : {"--memory", "--cpus", "--pids-limit", "--network", "--security-opt",
                           "--volume", "--tmpfs", "--env", "--workdir", "--user", "--read-only",
                           "--timeout", "--result"}) {
    EXPECT_NE(ExecUsage().find(flag), std::string::npos) << flag;
  }
}

}  // namespace
}  // namespace sbx::supervisor
