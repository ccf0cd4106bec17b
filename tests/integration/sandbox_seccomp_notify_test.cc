// Denials named and counted, and `sandboxd seccomp learn`, in real sandboxes: the profile's error
// actions compiled to user notifications, answered by the supervisor with the profile's errno.
// The hostile program runs only inside sandboxes.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/fs.h"
#include "integration/sandbox_harness.h"
#include "seccomp/seccomp.h"
#include "tests/support/skip.h"

namespace sbx::testing {
namespace {

std::string ReadOr(const std::string& path, std::string fallback) {
  auto r = ReadFile(path);
  return r.ok() ? *r : fallback;
}

uint64_t DenialCount(const isolate::ProcessResult& r, std::string_view name) {
  for (const auto& d : r.seccomp_denials) {
    if (d.name == name) return d.count;
  }
  return 0;
}

class SeccompNotifyTest : public SandboxTest {
 protected:
  void SetUp() override {
    SandboxTest::SetUp();
    if (IsSkipped()) return;
    if (!seccomp::NotifySupported()) SBX_SKIP_PRIVILEGED("seccomp user notification needs Linux 5.5");
  }

  isolate::SandboxSpec NotifyingSpec(std::string_view json = {}) {
    isolate::SandboxSpec spec = DefaultSpec();
    auto profile =
        seccomp::ParseProfile(json.empty() ? seccomp::DefaultProfileJson() : json, "test");
    EXPECT_TRUE(profile.ok()) << profile.error().ToString();
    seccomp::CompileOptions o;
    o.notify_errors = true;
    auto prog = seccomp::Compile(*profile, o);
    EXPECT_TRUE(prog.ok()) << prog.error().ToString();
    spec.seccomp = std::move(*prog);
    return spec;
  }
};

TEST_F(SeccompNotifyTest, PtraceDeniedThreeTimesIsReportedByName) {
  RunOutput r = Run(NotifyingSpec(), {Hostile(), "ptrace-times", "3"});
  EXPECT_EQ(r.result.reason, isolate::EndReason::kExited) << r.err;
  EXPECT_EQ(r.result.exit_code, 1);
  // The profile's own errno reached the program: EPERM, not the ENOSYS of a missing listener.
  EXPECT_NE(r.out.find("DENIED errno=1 "), std::string::npos) << r.out;
  EXPECT_EQ(DenialCount(r.result, "ptrace"), 3u);
  ASSERT_FALSE(r.result.seccomp_denials.empty());
  EXPECT_EQ(r.result.seccomp_denials.front().name, "ptrace");  // most frequent first
}

TEST_F(SeccompNotifyTest, MountAndUnshareDenialsKeepTheirErrno) {
  RunOutput mount = Run(NotifyingSpec(), {Hostile(), "mount"});
  EXPECT_EQ(mount.result.exit_code, 1);
  EXPECT_NE(mount.out.find("DENIED errno=1 "), std::string::npos) << mount.out;
  EXPECT_EQ(DenialCount(mount.result, "mount"), 1u);

  RunOutput unshare = Run(NotifyingSpec(), {Hostile(), "unshare"});
  EXPECT_EQ(unshare.result.exit_code, 1);
  EXPECT_GE(DenialCount(unshare.result, "unshare"), 1u);
}

TEST_F(SeccompNotifyTest, UnnamedSyscallNumbersAreAnsweredByTheKernelAndCostNoEntries) {
  // 20,000 distinct numbers no table names: the default errno each time, answered in the
  // kernel, so the result names only what has a name (and -1, which reaches the listener).
  RunOutput r = Run(NotifyingSpec(), {Hostile(), "unnamed-syscalls", "20000"});
  EXPECT_EQ(r.result.reason, isolate::EndReason::kExited) << r.err;
  // The profile's default errno (ENOSYS), as for any syscall it does not list.
  EXPECT_NE(r.out.find("unnamed errno=38\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("DENIED errno=1 "), std::string::npos) << r.out;
  EXPECT_EQ(DenialCount(r.result, "ptrace"), 1u);
  EXPECT_LE(r.result.seccomp_denials.size(), 2u);
  for (const auto& d : r.result.seccomp_denials) {
    EXPECT_TRUE(d.name == "ptrace" || d.name == "syscall_-1") << d.name;
  }
}

TEST_F(SeccompNotifyTest, TheRulesErrnoRetIsWhatTheProgramSees) {
  // A permissive profile with one ERRNO rule: its errnoRet (ENOSYS) is the answer.
  std::string json = R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
      {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]})";
  RunOutput r = Run(NotifyingSpec(json), {Hostile(), "ptrace-times", "2"});
  EXPECT_NE(r.out.find("DENIED errno=38 "), std::string::npos) << r.out;
  EXPECT_EQ(DenialCount(r.result, "ptrace"), 2u);
}

TEST_F(SeccompNotifyTest, AProgramThatIsNotDeniedAnythingReportsNothing) {
  RunOutput r = Run(NotifyingSpec(), {Hostile(), "print", "5"});
  EXPECT_EQ(r.result.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "xxxxx");
  EXPECT_TRUE(r.result.seccomp_denials.empty());
}

TEST_F(SeccompNotifyTest, TheListenerHandoffNeedsNoSyscallTheProfileDenies) {
  // A profile that denies futex: the payload still waits for its release on the handoff word
  // (the filter's prefix lets that one futex through), so a program that never calls futex
  // itself is denied nothing, and nothing of the handoff is counted against it.
  std::string json(seccomp::DefaultProfileJson());
  const std::string name = "\"futex\",";
  auto at = json.find(name);
  ASSERT_NE(at, std::string::npos);
  json.erase(at, name.size());
  RunOutput r = Run(NotifyingSpec(json), {Hostile(), "print", "5"});
  EXPECT_EQ(r.result.reason, isolate::EndReason::kExited) << r.err;
  EXPECT_EQ(r.result.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "xxxxx");
  EXPECT_EQ(DenialCount(r.result, "futex"), 0u);
  EXPECT_TRUE(r.result.seccomp_denials.empty());
}

TEST_F(SeccompNotifyTest, StepsInOneSandboxEachGetTheirOwnCounts) {
  auto sb = Create(NotifyingSpec());
  ASSERT_NE(sb, nullptr);
  RunOutput first = RunIn(*sb, {Hostile(), "ptrace-times", "2"});
  RunOutput second = RunIn(*sb, {Hostile(), "ptrace-times", "5"});
  RunOutput third = RunIn(*sb, {"/bin/sh", "-c", "echo ok"});
  EXPECT_EQ(DenialCount(first.result, "ptrace"), 2u);
  EXPECT_EQ(DenialCount(second.result, "ptrace"), 5u);
  EXPECT_EQ(third.out, "ok\n");
  EXPECT_EQ(DenialCount(third.result, "ptrace"), 0u);
}

TEST_F(SeccompNotifyTest, ChildrenOfThePayloadAreCountedAndAnswered) {
  RunOutput r =
      Run(NotifyingSpec(), {"/bin/sh", "-c", "/t/hostile ptrace; /t/hostile ptrace; echo done"});
  EXPECT_EQ(r.result.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("done"), std::string::npos);
  EXPECT_EQ(DenialCount(r.result, "ptrace"), 2u);
}

TEST_F(SeccompNotifyTest, ExecFailureBeforeTheFilterIsStillASetupFailure) {
  RunOutput r = Run(NotifyingSpec(), {"/nonexistent/program"});
  EXPECT_EQ(r.result.reason, isolate::EndReason::kSetupFailed);
  EXPECT_TRUE(r.result.seccomp_denials.empty());
}

// `sandboxd seccomp learn`, then `sandboxd exec` with what it wrote: the command runs, and a
// syscall it never made is refused and named.
class SeccompLearnTest : public SeccompNotifyTest {
 protected:
  void SetUp() override {
    SeccompNotifyTest::SetUp();
    if (IsSkipped()) return;
    char tmpl[] = "/tmp/sbx-learn-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_EQ(::chmod(dir_.c_str(), 0711), 0);
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Runs the sandboxd binary; returns its exit status.
  int Sandboxd(const std::string& args, std::string* err = nullptr) {
    std::string cmd =
        std::string(SBX_BINARY_DIR) + "/supervisor/sandboxd " + args + " 2>" + dir_ + "/stderr";
    int st = std::system(cmd.c_str());
    if (err != nullptr) *err = ReadOr(dir_ + "/stderr", "");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1000;
  }

  std::string dir_;
};

TEST_F(SeccompLearnTest, LearnedProfileRunsTheCommandAndDeniesWhatItNeverUsed) {
  const std::string t = std::string(SBX_TESTCASES_DIR);
  const std::string learned = dir_ + "/learned.json";
  std::string err;
  ASSERT_EQ(
      Sandboxd("seccomp learn -o " + learned + " -v " + t + ":/t -- /t/hostile print 5", &err), 0)
      << err;
  auto text = ReadFile(learned);
  ASSERT_TRUE(text.ok());
  auto doc = nlohmann::json::parse(*text);
  EXPECT_EQ(doc["defaultAction"], "SCMP_ACT_ERRNO");
  ASSERT_EQ(doc["syscalls"].size(), 1u);
  auto names = doc["syscalls"][0]["names"].get<std::vector<std::string>>();
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_NE(std::find(names.begin(), names.end(), "execve"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "write"), names.end());
  EXPECT_EQ(std::find(names.begin(), names.end(), "ptrace"), names.end());
  // A valid profile by the validator's standard.
  EXPECT_EQ(Sandboxd("seccomp validate " + learned), 0);

  // The same command under the learned profile: it runs.
  const std::string result = dir_ + "/result.json";
  EXPECT_EQ(Sandboxd("exec --security-opt seccomp=" + learned + " -v " + t + ":/t --result " +
                         result + " -- /t/hostile print 5",
                     &err),
            0)
      << err;
  auto ok = nlohmann::json::parse(ReadOr(result, "{}"));
  EXPECT_EQ(ok["exit_code"], 0);
  EXPECT_TRUE(ok["seccomp_denials"].empty()) << ok.dump();

  // ptrace was never used while learning: refused with EPERM and named.
  EXPECT_EQ(Sandboxd("exec --security-opt seccomp=" + learned + " -v " + t + ":/t --result " +
                         result + " -- /t/hostile ptrace",
                     &err),
            1);
  EXPECT_NE(err.find("ptrace denied 1 time"), std::string::npos) << err;
  auto denied = nlohmann::json::parse(ReadOr(result, "{}"));
  bool found = false;
  for (const auto& d : denied["seccomp_denials"]) {
    if (d["syscall"] == "ptrace" && d["count"] == 1) found = true;
  }
  EXPECT_TRUE(found) << denied.dump();
}

TEST_F(SeccompLearnTest, LearningOnABaseAddsOnlyWhatTheBaseRefused) {
  const std::string learned = dir_ + "/learned.json";
  std::string err;
  ASSERT_EQ(Sandboxd("seccomp learn --profile default -o " + learned +
                         " -- /usr/bin/unshare -U true",
                     &err),
            0)
      << err;
  auto doc = nlohmann::json::parse(ReadOr(learned, "{}"));
  ASSERT_TRUE(doc["syscalls"].is_array());
  const auto& added = doc["syscalls"].back();
  EXPECT_EQ(added["action"], "SCMP_ACT_ALLOW");
  EXPECT_EQ(added["names"], nlohmann::json::array({"unshare"})) << added.dump();
  // The base's own rule for unshare is gone, so the result is consistent and runs the command.
  EXPECT_EQ(Sandboxd("seccomp validate " + learned, &err), 0) << err;
  EXPECT_EQ(Sandboxd("exec --security-opt seccomp=" + learned + " -- /usr/bin/unshare -U true",
                     &err),
            0)
      << err;
  // Under the base itself the same command is refused, and the denial named.
  EXPECT_NE(Sandboxd("exec -- /usr/bin/unshare -U true", &err), 0);
  EXPECT_NE(err.find("unshare denied"), std::string::npos) << err;
}

}  // namespace
}  // namespace sbx::testing
