// `sandboxctl sandbox …` without a server: the options parsed as the CLI parses them, the request
// bodies built from them, sizes and durations, cp's ID:PATH operands, exit statuses.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "api/sandboxctl/args.h"
#include "api/sandboxctl/commands.h"
#include "api/sandboxctl/sandbox_args.h"

namespace sbx::ctl {
namespace {

std::optional<std::string> NoEnv(const std::string&) { return std::nullopt; }

ParsedArgs Parse(const std::vector<std::string>& args, const std::vector<OptionSpec>& specs) {
  auto p = ParseArgs(args, specs, false);
  EXPECT_TRUE(p.ok()) << p.error().message;
  return p.ok() ? *p : ParsedArgs{};
}

nlohmann::json Create(const std::vector<std::string>& args) {
  auto body = BuildCreateBody(Parse(args, SandboxCreateOptions()), "/home/me", NoEnv);
  EXPECT_TRUE(body.ok()) << body.error().message;
  return body.ok() ? *body : nlohmann::json();
}

std::string CreateError(const std::vector<std::string>& args) {
  auto p = ParseArgs(args, SandboxCreateOptions(), false);
  if (!p.ok()) return p.error().message;
  auto body = BuildCreateBody(*p, "/home/me", NoEnv);
  EXPECT_FALSE(body.ok()) << body->dump();
  return body.ok() ? "" : body.error().message;
}

TEST(SandboxctlArgs, CreateWithoutOptionsAsksForNothing) {
  EXPECT_EQ(Create({}), nlohmann::json::object());
}

TEST(SandboxctlArgs, CreateBodyFollowsTheApi) {
  std::map<std::string, std::string> env = {{"TOKEN", "from-here"}};
  auto lookup = [&](const std::string& k) -> std::optional<std::string> {
    auto it = env.find(k);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  auto args = Parse({"--cpus",    "0.5",       "-m",      "1GiB",           "--pids",
                     "128",       "--timeout", "1h",      "--idle-timeout", "90s",
                     "-w",        "src:cow",   "-l",      "team=infra",     "--label",
                     "ci=yes",    "-e",        "A=1",     "--env",          "TOKEN",
                     "--backend", "docker",    "--image", "busybox:1.36",   "--idempotency-key",
                     "k1"},
                    SandboxCreateOptions());
  auto body = BuildCreateBody(args, "/home/me", lookup);
  ASSERT_TRUE(body.ok()) << body.error().message;
  EXPECT_EQ(*body, nlohmann::json::parse(R"({
    "limits": {"cpus": 0.5, "memory_bytes": 1073741824, "pids": 128, "timeout_s": 3600},
    "idle_timeout_s": 90,
    "workspace": {"path": "/home/me/src", "mode": "cow"},
    "labels": {"team": "infra", "ci": "yes"},
    "env": {"A": "1", "TOKEN": "from-here"},
    "backend": "docker", "image": "busybox:1.36", "idempotency_key": "k1"})"))
      << body->dump();
}

TEST(SandboxctlArgs, CreateRefusesWhatTheApiWouldNot) {
  EXPECT_NE(CreateError({"--memory", "lots"}).find("--memory 'lots'"), std::string::npos);
  EXPECT_NE(CreateError({"--memory", "0"}).find("--memory"), std::string::npos);
  EXPECT_NE(CreateError({"--cpus", "-1"}).find("--cpus"), std::string::npos);
  EXPECT_NE(CreateError({"--pids", "0"}).find("--pids"), std::string::npos);
  EXPECT_NE(CreateError({"--timeout", "soon"}).find("--timeout 'soon'"), std::string::npos);
  EXPECT_NE(CreateError({"--idle-timeout", "0"}).find("--idle-timeout"), std::string::npos);
  EXPECT_NE(CreateError({"--label", "novalue"}).find("KEY=VALUE"), std::string::npos);
  EXPECT_NE(CreateError({"--env", "UNSET_HERE"}).find("not set here"), std::string::npos);
  EXPECT_NE(CreateError({"--backend", "vm"}).find("native, docker or auto"), std::string::npos);
  EXPECT_NE(CreateError({"extra"}).find("takes options only"), std::string::npos);
  EXPECT_NE(CreateError({"--frobnicate"}).find("unknown option '--frobnicate'"), std::string::npos);
}

TEST(SandboxctlArgs, MemorySizes) {
  EXPECT_EQ(*ParseMemory("536870912", "--memory"), 536870912);
  EXPECT_EQ(*ParseMemory("512m", "--memory"), 512ll << 20);
  EXPECT_EQ(*ParseMemory("512MiB", "--memory"), 512ll << 20);
  EXPECT_EQ(*ParseMemory("1g", "--memory"), 1ll << 30);
  EXPECT_EQ(*ParseMemory("1GiB", "--memory"), 1ll << 30);
  EXPECT_EQ(*ParseMemory("1.5k", "--memory"), 1536);
  for (const char* bad : {"", "0", "-1", "1x", "g", "1 GiB extra"}) {
    EXPECT_FALSE(ParseMemory(bad, "--memory").ok()) << bad;
  }
}

TEST(SandboxctlArgs, DurationsInWholeSeconds) {
  EXPECT_EQ(*ParseSeconds("600", "--timeout"), 600);
  EXPECT_EQ(*ParseSeconds("30s", "--timeout"), 30);
  EXPECT_EQ(*ParseSeconds("5m", "--timeout"), 300);
  EXPECT_EQ(*ParseSeconds("1h", "--timeout"), 3600);
  EXPECT_EQ(*ParseSeconds("1500ms", "--timeout"), 2);  // rounded up, never to 0
  EXPECT_EQ(*ParseSeconds("1ms", "--timeout"), 1);
  for (const char* bad : {"", "0", "0s", "-5", "5d", "soon"}) {
    EXPECT_FALSE(ParseSeconds(bad, "--timeout").ok()) << bad;
  }
}

TEST(SandboxctlArgs, Workspaces) {
  EXPECT_EQ(*ParseWorkspace("/srv/x", "/home/me"), (WorkspaceArg{"/srv/x", ""}));
  EXPECT_EQ(*ParseWorkspace("/srv/x:ro", "/home/me"), (WorkspaceArg{"/srv/x", "ro"}));
  EXPECT_EQ(*ParseWorkspace("/srv/x:cow", "/home/me"), (WorkspaceArg{"/srv/x", "cow"}));
  EXPECT_EQ(*ParseWorkspace("/srv/x:rw", "/home/me"), (WorkspaceArg{"/srv/x", "rw"}));
  EXPECT_EQ(*ParseWorkspace("src", "/home/me"), (WorkspaceArg{"/home/me/src", ""}));
  EXPECT_EQ(*ParseWorkspace("./src:ro", "/home/me/"), (WorkspaceArg{"/home/me/./src", "ro"}));
  // A ':' that is not a mode stays in the path.
  EXPECT_EQ(*ParseWorkspace("/srv/a:b", "/"), (WorkspaceArg{"/srv/a:b", ""}));
  EXPECT_FALSE(ParseWorkspace(":ro", "/home/me").ok());
  EXPECT_FALSE(ParseWorkspace("", "/home/me").ok());
}

TEST(SandboxctlArgs, ExecBody) {
  // The sandbox id is positional; the command comes after "--", options and all.
  auto args = Parse({"sbx_1", "--tag", "build", "--timeout", "2m", "-e", "K=V", "--cwd", "/w", "--",
                     "make", "-j2", "--keep-going"},
                    SandboxExecOptions());
  auto body = BuildExecBody(args, NoEnv);
  ASSERT_TRUE(body.ok()) << body.error().message;
  EXPECT_EQ(*body, nlohmann::json::parse(R"({"argv": ["make", "-j2", "--keep-going"],
    "env": {"K": "V"}, "cwd": "/w", "tag": "build", "timeout_s": 120})"))
      << body->dump();
  EXPECT_EQ(*BuildExecBody(Parse({"sbx_1", "--", "true"}, SandboxExecOptions()), NoEnv),
            nlohmann::json::parse(R"({"argv": ["true"]})"));

  auto error = [](const std::vector<std::string>& a) {
    auto b = BuildExecBody(Parse(a, SandboxExecOptions()), NoEnv);
    EXPECT_FALSE(b.ok());
    return b.ok() ? std::string() : b.error().message;
  };
  EXPECT_NE(error({"--", "ls"}).find("needs a sandbox ID"), std::string::npos);
  EXPECT_NE(error({"sbx_1"}).find("nothing to run"), std::string::npos);
  EXPECT_NE(error({"sbx_1", "ls"}).find("after --"), std::string::npos);
  EXPECT_NE(error({"sbx_1", "--timeout", "x", "--", "ls"}).find("--timeout"), std::string::npos);
  EXPECT_NE(error({"sbx_1", "--tag", "", "--", "ls"}).find("--tag"), std::string::npos);
}

TEST(SandboxctlArgs, CpOperands) {
  auto op = [](std::string_view s) {
    auto r = ParseCpOperand(s);
    EXPECT_TRUE(r.ok()) << s << ": " << r.error().message;
    return r.ok() ? *r : CpOperand{};
  };
  EXPECT_EQ(op("sbx_abc:/workspace/a.txt"), (CpOperand{true, "sbx_abc", "/workspace/a.txt"}));
  EXPECT_EQ(op("sbx_abc:rel/a"), (CpOperand{true, "sbx_abc", "rel/a"}));
  // Only the first ':' separates: the rest is the path's.
  EXPECT_EQ(op("sbx_abc:/a:b"), (CpOperand{true, "sbx_abc", "/a:b"}));
  // Local: no ':', "-", starting with / or ., or a '/' before the first ':'.
  EXPECT_EQ(op("a.txt"), (CpOperand{false, "", "a.txt"}));
  EXPECT_EQ(op("-"), (CpOperand{false, "", "-"}));
  EXPECT_EQ(op("/tmp/a:b"), (CpOperand{false, "", "/tmp/a:b"}));
  EXPECT_EQ(op("./a:b"), (CpOperand{false, "", "./a:b"}));
  EXPECT_EQ(op("dir/a:b"), (CpOperand{false, "", "dir/a:b"}));
  EXPECT_FALSE(ParseCpOperand("sbx_abc:").ok());
  EXPECT_FALSE(ParseCpOperand(":/a").ok());
  EXPECT_FALSE(ParseCpOperand("").ok());
}

TEST(SandboxctlArgs, Paths) {
  EXPECT_EQ(BaseName("/a/b/c.txt"), "c.txt");
  EXPECT_EQ(BaseName("a/b/"), "b");
  EXPECT_EQ(BaseName("c"), "c");
  EXPECT_EQ(BaseName("/"), "");
  EXPECT_EQ(JoinPath("/workspace", "a"), "/workspace/a");
  EXPECT_EQ(JoinPath("/workspace/", "/a"), "/workspace/a");
  EXPECT_EQ(JoinPath("/", "a"), "/a");
}

TEST(SandboxctlArgs, ProcessExitStatus) {
  std::string message;
  auto status = [&](const char* json) {
    return ProcessExitStatus(nlohmann::json::parse(json), &message);
  };
  EXPECT_EQ(status(R"({"id": 3, "state": "FINISHED", "result": {"reason": "exited",
                       "exit_code": 0, "signal": null}})"),
            0);
  EXPECT_EQ(message, "");
  EXPECT_EQ(status(R"({"id": 3, "state": "FINISHED", "result": {"reason": "exited",
                       "exit_code": 42}})"),
            42);
  EXPECT_EQ(status(R"({"id": 3, "state": "FINISHED", "result": {"reason": "signaled",
                       "exit_code": null, "signal": 9}})"),
            137);
  EXPECT_EQ(message, "process 3 was killed by SIGKILL");
  EXPECT_EQ(status(R"({"id": 3, "state": "FINISHED", "result": {"reason": "timed_out",
                       "signal": "SIGKILL"}})"),
            137);
  EXPECT_EQ(message, "process 3: timed_out (SIGKILL)");
  EXPECT_EQ(status(R"({"id": 3, "state": "FINISHED", "result": {"reason": "setup_failed: x"}})"),
            kExitRunFailed);
  EXPECT_EQ(message, "process 3 failed: setup_failed: x");
  EXPECT_EQ(status(R"({"id": 4, "state": "REJECTED", "result": {"reason": "rejected: no"}})"),
            kExitRunFailed);
  EXPECT_EQ(message, "process 4 was rejected: rejected: no");
  EXPECT_EQ(status(R"({"id": 5, "state": "RUNNING"})"), kExitRunFailed);
  EXPECT_EQ(message, "process 5 has not ended (state RUNNING)");
}

TEST(SandboxctlArgs, Timestamps) {
  EXPECT_EQ(TimestampMs(nlohmann::json::parse(R"({"created_at_ms": 1700000000123})"), "created_at"),
            1700000000123);
  EXPECT_EQ(TimestampMs(nlohmann::json::parse(R"({"created_at": 1700000000123})"), "created_at"),
            1700000000123);
  EXPECT_EQ(TimestampMs(nlohmann::json::parse(R"({"created_at": 1700000000})"), "created_at"),
            1700000000000);
  EXPECT_EQ(TimestampMs(nlohmann::json::parse(R"({"ended_at": null})"), "ended_at"), 0);
  EXPECT_EQ(TimestampMs(nlohmann::json::parse(R"({})"), "ended_at"), 0);
}

TEST(SandboxctlArgs, Base64AndUtf8) {
  const std::string all = [] {
    std::string s;
    for (int i = 0; i < 256; ++i) s.push_back(static_cast<char>(i));
    return s;
  }();
  for (size_t n = 0; n <= 5; ++n) {
    EXPECT_EQ(Base64Decode(Base64Encode(all.substr(0, n))), all.substr(0, n)) << n;
  }
  EXPECT_EQ(Base64Decode(Base64Encode(all)), all);
  EXPECT_EQ(Base64Encode("hello"), "aGVsbG8=");
  EXPECT_EQ(Base64Encode("hi"), "aGk=");
  EXPECT_EQ(Base64Encode("abc"), "YWJj");
  EXPECT_TRUE(IsValidUtf8("hello, wörld ✓"));
  EXPECT_FALSE(IsValidUtf8(std::string("\xff\xfe", 2)));
  EXPECT_FALSE(IsValidUtf8(std::string("\xc0\xaf", 2)));  // overlong '/'
}

}  // namespace
}  // namespace sbx::ctl
