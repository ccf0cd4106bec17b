// The daemon's seccomp profile set (SeccompProfileSet::LoadDir) and the `sandboxd seccomp`
// commands' output and exit codes. No sandbox is started: validate, explain and diff only
// compile and evaluate.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "seccomp/seccomp.h"
#include "seccomp/simulate.h"
#include "supervisor/review/seccomp_profiles.h"

namespace sbx::supervisor {
namespace {

class SeccompProfilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sbx-seccomp-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ::chmod(dir_.c_str(), 0711);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& name, std::string_view text) {
    std::ofstream(dir_ + "/" + name) << text;
  }

  struct Cmd {
    int status;
    std::string out;
  };
  // Runs `sandboxd seccomp ARGS` from the source tree; stdout and stderr together.
  Cmd Seccomp(const std::string& args) {
    std::string cmd = "cd " + std::string(SBX_SOURCE_DIR) + " && " + SBX_BINARY_DIR +
                      "/supervisor/sandboxd seccomp " + args + " 2>&1";
    FILE* f = ::popen(cmd.c_str(), "r");
    Cmd c{-1, ""};
    if (f == nullptr) return c;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) c.out.append(buf, n);
    int st = ::pclose(f);
    c.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return c;
  }

  std::string dir_;
};

constexpr const char* kDocker = "tests/testdata/seccomp/docker-default.json";

TEST_F(SeccompProfilesTest, ADirectoryOfProfilesLoadsWithTheBuiltinDefault) {
  Write("strict.json", seccomp::DefaultProfileJson());
  Write("notes.txt", "not a profile");
  auto set = SeccompProfileSet::LoadDir(dir_);
  ASSERT_TRUE(set.ok()) << set.error().ToString();
  ASSERT_EQ((*set)->profiles().size(), 2u);
  EXPECT_EQ((*set)->profiles()[0].name, "default");
  EXPECT_EQ((*set)->profiles()[0].source, "builtin");
  const LoadedSeccompProfile* strict = (*set)->Find("strict");
  ASSERT_NE(strict, nullptr);
  EXPECT_EQ(strict->source, dir_ + "/strict.json");
  EXPECT_GT(strict->instructions, 100u);
  EXPECT_EQ(strict->sha256.size(), 64u);
  EXPECT_FALSE(strict->permissive);
  EXPECT_EQ((*set)->Find(""), (*set)->Find("default"));
  EXPECT_EQ((*set)->Find("nosuch"), nullptr);
  if (seccomp::NotifySupported()) {
    EXPECT_EQ(strict->program.notify, seccomp::NotifyMode::kDeny);
  }
}

// What administrators copy in unchanged: Docker's and containers/common's (Podman, Buildah,
// CRI-O) published profiles. Podman's contradicts itself over setns without CAP_SYS_ADMIN; it
// loads as under Podman and the rule left out is named.
TEST_F(SeccompProfilesTest, PublishedProfilesLoadUnchanged) {
  for (const char* name : {"docker-default", "podman-default"}) {
    auto text = ReadFile(std::string(SBX_SOURCE_DIR) + "/tests/testdata/seccomp/" + name + ".json",
                         4 << 20);
    ASSERT_TRUE(text.ok()) << text.error().ToString();
    Write(std::string(name) + ".json", *text);
  }
  auto set = SeccompProfileSet::LoadDir(dir_);
  ASSERT_TRUE(set.ok()) << set.error().ToString();
  const LoadedSeccompProfile* docker = (*set)->Find("docker-default");
  const LoadedSeccompProfile* podman = (*set)->Find("podman-default");
  ASSERT_NE(docker, nullptr);
  ASSERT_NE(podman, nullptr);
  EXPECT_TRUE(docker->program.shadowed.empty());
  ASSERT_EQ(podman->program.shadowed.size(), 1u);
  EXPECT_EQ(podman->program.shadowed[0].rfind("syscalls[16] (setns): syscalls[1]", 0), 0u)
      << podman->program.shadowed[0];
  auto setns = seccomp::NativeSyscallNumber("setns");
  ASSERT_TRUE(setns.has_value());
  auto verdict = seccomp::Evaluate(podman->plain_program, seccomp::MakeSeccompData(*setns));
  ASSERT_TRUE(verdict.ok());
  EXPECT_EQ(*verdict, static_cast<uint32_t>(SECCOMP_RET_ALLOW));
}

TEST_F(SeccompProfilesTest, ADefaultJsonReplacesTheBuiltin) {
  Write("default.json", R"({"defaultAction": "SCMP_ACT_ERRNO",
                            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]})");
  auto set = SeccompProfileSet::LoadDir(dir_);
  ASSERT_TRUE(set.ok()) << set.error().ToString();
  ASSERT_EQ((*set)->profiles().size(), 1u);
  EXPECT_EQ((*set)->Find("default")->source, dir_ + "/default.json");
}

TEST_F(SeccompProfilesTest, OneBrokenFileRefusesTheWholeSetWithFileAndPath) {
  Write("a.json", seccomp::DefaultProfileJson());
  Write("b.json", R"({"defaultAction": "SCMP_ACT_ERRNO",
                      "syscalls": [{"names": ["read"], "action": "SCMP_ACT_MAYBE"}]})");
  auto set = SeccompProfileSet::LoadDir(dir_);
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.error().message.find(dir_ + "/b.json"), std::string::npos) << set.error().message;
  EXPECT_NE(set.error().message.find("syscalls[0].action"), std::string::npos);

  Write("b.json", "{\"defaultAction\": ");
  set = SeccompProfileSet::LoadDir(dir_);
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.error().message.find("invalid JSON"), std::string::npos) << set.error().message;
}

TEST_F(SeccompProfilesTest, HugeFilesAndSymlinksAreRefused) {
  Write("huge.json", std::string((4 << 20) + 10, ' '));
  auto set = SeccompProfileSet::LoadDir(dir_);
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.error().message.find("4 MiB"), std::string::npos) << set.error().message;
  std::filesystem::remove(dir_ + "/huge.json");

  Write("real.txt", seccomp::DefaultProfileJson());
  std::filesystem::create_symlink(dir_ + "/real.txt", dir_ + "/link.json");
  set = SeccompProfileSet::LoadDir(dir_);
  EXPECT_FALSE(set.ok());
}

TEST_F(SeccompProfilesTest, PermissiveProfilesNeedTheirFileNameToSaySo) {
  Write("open.json", R"({"defaultAction": "SCMP_ACT_ALLOW"})");
  auto refused = SeccompProfileSet::LoadDir(dir_);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("defaultAction"), std::string::npos);
  EXPECT_NE(refused.error().message.find("open.permissive.json"), std::string::npos);
  std::filesystem::rename(dir_ + "/open.json", dir_ + "/open.permissive.json");
  auto accepted = SeccompProfileSet::LoadDir(dir_);
  ASSERT_TRUE(accepted.ok()) << accepted.error().ToString();
  ASSERT_NE((*accepted)->Find("open"), nullptr);
  EXPECT_TRUE((*accepted)->Find("open")->permissive);
}

TEST_F(SeccompProfilesTest, AMissingDirectoryIsNotFound) {
  auto set = SeccompProfileSet::LoadDir(dir_ + "/nope");
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(SeccompProfileSet::Builtin()->profiles().size(), 1u);
}

TEST_F(SeccompProfilesTest, ValidateExitsZeroOneTwoAndSpeaksJson) {
  Cmd ok = Seccomp(std::string("validate ") + kDocker);
  EXPECT_EQ(ok.status, 0) << ok.out;
  EXPECT_NE(ok.out.find("valid: 33 rules"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("BPF instructions"), std::string::npos);
  // containers/common's profile loads unchanged: its errnos by name are read, all 40 rules load,
  // and its own contradictions (setns and perf_event_open, each allowed by one rule and refused
  // by another that can apply with it) are warnings: the first rule holds, as under Podman.
  Cmd podman = Seccomp("validate --json tests/testdata/seccomp/podman-default.json");
  EXPECT_EQ(podman.status, 0) << podman.out;
  auto pj = nlohmann::json::parse(podman.out, nullptr, false);
  ASSERT_FALSE(pj.is_discarded()) << podman.out;
  EXPECT_EQ(pj["rules"], 40);
  EXPECT_TRUE(pj["errors"].empty()) << podman.out;
  std::set<std::string> contradicted;
  for (const auto& w : pj["warnings"]) {
    const std::string m = w["message"].get<std::string>();
    if (m.find("the first holds") == std::string::npos) continue;
    contradicted.insert(m.substr(0, m.find(' ')));
  }
  EXPECT_EQ(contradicted, (std::set<std::string>{"setns", "perf_event_open"})) << podman.out;

  Write("bad.json", R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
      {"names": ["read"], "action": "SCMP_ACT_NOPE"}, {"names": ["x y"], "action": "SCMP_ACT_ALLOW"}]})");
  Cmd bad = Seccomp("validate --json " + dir_ + "/bad.json");
  EXPECT_EQ(bad.status, 1) << bad.out;
  auto j = nlohmann::json::parse(bad.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << bad.out;
  EXPECT_EQ(j["valid"], false);
  std::set<std::string> paths;
  for (const auto& e : j["errors"]) paths.insert(e["path"].get<std::string>());
  EXPECT_EQ(paths,
            (std::set<std::string>{"syscalls[0].action", "syscalls[1].names[0]", "defaultAction"}))
      << bad.out;

  Write("loose.json", R"({"defaultAction": "SCMP_ACT_ALLOW"})");
  EXPECT_EQ(Seccomp("validate " + dir_ + "/loose.json").status, 1);
  Cmd accepted = Seccomp("validate --allow-permissive " + dir_ + "/loose.json");
  EXPECT_EQ(accepted.status, 0) << accepted.out;
  EXPECT_NE(accepted.out.find("dangerous syscalls are allowed"), std::string::npos);

  EXPECT_EQ(Seccomp("validate").status, 2);
  EXPECT_EQ(Seccomp("validate --bogus x.json").status, 2);
  EXPECT_EQ(Seccomp("frobnicate").status, 2);
  EXPECT_EQ(Seccomp("validate " + dir_ + "/missing.json").status, 1);
}

TEST_F(SeccompProfilesTest, ExplainNamesTheRuleAndPrintsTheFilter) {
  Cmd ptrace = Seccomp("explain default --syscall ptrace");
  EXPECT_EQ(ptrace.status, 0) << ptrace.out;
  EXPECT_NE(ptrace.out.find("SCMP_ACT_ERRNO(1)"), std::string::npos) << ptrace.out;
  EXPECT_NE(ptrace.out.find("decided by syscalls["), std::string::npos);

  Cmd clone =
      Seccomp(std::string("explain ") + kDocker + " --syscall clone --args 0x10000000 --json");
  EXPECT_EQ(clone.status, 0) << clone.out;
  auto j = nlohmann::json::parse(clone.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << clone.out;
  EXPECT_EQ(j["action"], "SCMP_ACT_ERRNO(1)");
  EXPECT_TRUE(j["rule"].is_null());
  EXPECT_FALSE(j["unmatched_rules"].empty());
  EXPECT_EQ(j["args"][0], 0x10000000);

  Cmd bpf = Seccomp("explain default --bpf");
  EXPECT_EQ(bpf.status, 0);
  EXPECT_NE(bpf.out.find("(mount)"), std::string::npos) << bpf.out;
  EXPECT_NE(bpf.out.find("ret  SCMP_ACT_ALLOW"), std::string::npos);

  EXPECT_EQ(Seccomp("explain default --syscall nosuchcall").status, 2);
  EXPECT_EQ(Seccomp("explain default --syscall read --args 1,zz").status, 2);
}

TEST_F(SeccompProfilesTest, DiffExitsZeroWhenTheSameAndOneWithTheDifferences) {
  Cmd same = Seccomp("diff default policies/seccomp/default.json");
  EXPECT_EQ(same.status, 0) << same.out;
  Cmd differ = Seccomp(std::string("diff --json default ") + kDocker);
  EXPECT_EQ(differ.status, 1) << differ.out;
  auto j = nlohmann::json::parse(differ.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << differ.out;
  bool ptrace = false;
  for (const auto& d : j["differences"]) {
    if (d["what"] == "ptrace") {
      ptrace = true;
      EXPECT_EQ(d["a"], "SCMP_ACT_ERRNO(1)");
      EXPECT_EQ(d["b"], "SCMP_ACT_ALLOW");
    }
  }
  EXPECT_TRUE(ptrace) << differ.out;
  Write("broken.json", "{");
  EXPECT_EQ(Seccomp("diff default " + dir_ + "/broken.json").status, 2);
}

}  // namespace
}  // namespace sbx::supervisor
