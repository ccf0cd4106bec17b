// ParseProfile / LoadProfileFile: the Docker/OCI seccomp JSON format and its error messages.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <string>

#include "seccomp/seccomp.h"

namespace sbx::seccomp {
namespace {

const std::string kDockerProfile =
    std::string(SBX_SOURCE_DIR) + "/tests/testdata/seccomp/docker-default.json";
const std::string kPodmanProfile =
    std::string(SBX_SOURCE_DIR) + "/tests/testdata/seccomp/podman-default.json";

const SyscallRule* FindRule(const Profile& p, std::string_view name, std::string_view action) {
  for (const SyscallRule& r : p.syscalls) {
    if (r.action != action) continue;
    for (const std::string& n : r.names) {
      if (n == name) return &r;
    }
  }
  return nullptr;
}

TEST(SeccompProfileTest, ParsesDockerDefault) {
  auto p = LoadProfileFile(kDockerProfile);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->name, "docker-default");
  EXPECT_EQ(p->default_action, "SCMP_ACT_ERRNO");
  EXPECT_EQ(p->default_errno_ret, 1u);
  EXPECT_TRUE(p->architectures.empty());
  ASSERT_EQ(p->arch_map.size(), 9u);
  EXPECT_EQ(p->arch_map[0].architecture, "SCMP_ARCH_X86_64");
  EXPECT_EQ(p->arch_map[0].sub_architectures,
            (std::vector<std::string>{"SCMP_ARCH_X86", "SCMP_ARCH_X32"}));
  EXPECT_EQ(p->arch_map[7].architecture, "SCMP_ARCH_RISCV64");
  EXPECT_TRUE(p->arch_map[7].sub_architectures.empty());  // "subArchitectures": null
  ASSERT_GE(p->syscalls.size(), 30u);
  EXPECT_EQ(p->syscalls[0].action, "SCMP_ACT_ALLOW");
  EXPECT_EQ(p->syscalls[0].names.front(), "accept");

  const SyscallRule* ptrace = FindRule(*p, "ptrace", "SCMP_ACT_ALLOW");
  ASSERT_NE(ptrace, nullptr);
  EXPECT_EQ(ptrace->includes.min_kernel, "4.8");

  const SyscallRule* clone3 = FindRule(*p, "clone3", "SCMP_ACT_ERRNO");
  ASSERT_NE(clone3, nullptr);
  EXPECT_EQ(clone3->errno_ret, 38u);
  EXPECT_EQ(clone3->excludes.caps, std::vector<std::string>{"CAP_SYS_ADMIN"});

  int masked_clone_rules = 0;
  for (const SyscallRule& r : p->syscalls) {
    if (r.names != std::vector<std::string>{"clone"} || r.args.size() != 1) continue;
    ++masked_clone_rules;
    EXPECT_EQ(r.args[0].op, "SCMP_CMP_MASKED_EQ");
    EXPECT_EQ(r.args[0].value, 2114060288u);
    EXPECT_EQ(r.args[0].value_two, 0u);
    if (r.args[0].index == 1) {
      EXPECT_EQ(r.comment, "s390 parameter ordering for clone is different");
      EXPECT_EQ(r.includes.arches, (std::vector<std::string>{"s390", "s390x"}));
    } else {
      EXPECT_EQ(r.excludes.arches, (std::vector<std::string>{"s390", "s390x"}));
    }
  }
  EXPECT_EQ(masked_clone_rules, 2);
}

// containers/common's profile (Podman, Buildah, CRI-O) names each errno beside its number.
TEST(SeccompProfileTest, ParsesPodmanDefault) {
  auto p = LoadProfileFile(kPodmanProfile);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->name, "podman-default");
  EXPECT_EQ(p->default_action, "SCMP_ACT_ERRNO");
  EXPECT_EQ(p->default_errno_ret, static_cast<unsigned>(ENOSYS));  // "defaultErrno": "ENOSYS"
  ASSERT_FALSE(p->arch_map.empty());
  EXPECT_EQ(p->arch_map[0].architecture, "SCMP_ARCH_X86_64");
  ASSERT_GE(p->syscalls.size(), 30u);

  const SyscallRule* kexec = FindRule(*p, "kexec_load", "SCMP_ACT_ERRNO");
  ASSERT_NE(kexec, nullptr);
  EXPECT_EQ(kexec->errno_ret, static_cast<unsigned>(EPERM));
  const SyscallRule* audit_socket = FindRule(*p, "socket", "SCMP_ACT_ERRNO");
  ASSERT_NE(audit_socket, nullptr);
  EXPECT_EQ(audit_socket->errno_ret, static_cast<unsigned>(EINVAL));  // "errno": "EINVAL"
  EXPECT_EQ(audit_socket->excludes.caps, std::vector<std::string>{"CAP_AUDIT_WRITE"});
  EXPECT_NE(FindRule(*p, "mount", "SCMP_ACT_ALLOW"), nullptr);
}

TEST(SeccompProfileTest, ErrnoNamesSetTheNumber) {
  auto p = ParseProfile(R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrno": "ENOSYS",
      "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errno": "EACCES"},
        {"names": ["write"], "action": "SCMP_ACT_TRACE", "errno": "EIO"},
        {"names": ["open"], "action": "SCMP_ACT_ERRNO", "errno": "EWOULDBLOCK"},
        {"names": ["close"], "action": "SCMP_ACT_ERRNO", "errno": null}]})",
                        "names");
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->default_errno_ret, static_cast<unsigned>(ENOSYS));
  ASSERT_EQ(p->syscalls.size(), 4u);
  EXPECT_EQ(p->syscalls[0].errno_ret, static_cast<unsigned>(EACCES));
  EXPECT_EQ(p->syscalls[1].errno_ret, static_cast<unsigned>(EIO));
  EXPECT_EQ(p->syscalls[2].errno_ret, static_cast<unsigned>(EAGAIN));  // an alias
  EXPECT_FALSE(p->syscalls[3].errno_ret.has_value());
}

TEST(SeccompProfileTest, ErrnoNameAndNumberThatAgree) {
  auto p = ParseProfile(R"({"defaultAction": "SCMP_ACT_ERRNO",
      "defaultErrnoRet": 1, "defaultErrno": "EPERM",
      "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 22, "errno": "EINVAL"}]})",
                        "agree");
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->default_errno_ret, static_cast<unsigned>(EPERM));
  ASSERT_EQ(p->syscalls.size(), 1u);
  EXPECT_EQ(p->syscalls[0].errno_ret, static_cast<unsigned>(EINVAL));
}

TEST(SeccompProfileTest, ParsesEveryField) {
  auto p = ParseProfile(R"({
    "comment": "top",
    "defaultAction": "SCMP_ACT_TRACE",
    "defaultErrnoRet": 4000,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_LOONGARCH64"],
    "syscalls": [
      {"name": "getpid", "action": "SCMP_ACT_ALLOW"},
      {"names": ["read", "write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
       "comment": "why",
       "args": [{"index": 5, "value": 18446744073709551615, "valueTwo": 7,
                 "op": "SCMP_CMP_MASKED_EQ"},
                {"index": 0, "value": 1, "op": "SCMP_CMP_NE"}],
       "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_NET_RAW"], "arches": ["amd64", "x86_64"],
                    "minKernel": "5.10"},
       "excludes": {"caps": ["CAP_BPF"], "arches": ["arm64"], "minKernel": "6.1.2"}},
      {"names": ["a"], "action": "SCMP_ACT_KILL"},
      {"names": ["a"], "action": "SCMP_ACT_KILL_PROCESS"},
      {"names": ["a"], "action": "SCMP_ACT_KILL_THREAD"},
      {"names": ["a"], "action": "SCMP_ACT_TRAP"},
      {"names": ["a"], "action": "SCMP_ACT_TRACE", "errnoRet": 65535},
      {"names": ["a"], "action": "SCMP_ACT_LOG"},
      {"names": ["a"], "action": "SCMP_ACT_NOTIFY"},
      {"names": ["a"], "action": "SCMP_ACT_ERRNO", "args": null, "includes": null,
       "excludes": {}, "errnoRet": null},
      {"names": ["a"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 0, "op": "SCMP_CMP_LT"}, {"index": 1, "value": 0, "op": "SCMP_CMP_LE"},
        {"index": 2, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 3, "value": 0, "op": "SCMP_CMP_GE"},
        {"index": 4, "value": 0, "op": "SCMP_CMP_GT"}]}
    ]})",
                        "every");
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->name, "every");
  EXPECT_EQ(p->default_action, "SCMP_ACT_TRACE");
  EXPECT_EQ(p->default_errno_ret, 4000u);
  EXPECT_EQ(p->architectures.size(), 3u);
  EXPECT_TRUE(p->arch_map.empty());
  ASSERT_EQ(p->syscalls.size(), 11u);

  EXPECT_EQ(p->syscalls[0].names, std::vector<std::string>{"getpid"});  // legacy "name"
  EXPECT_FALSE(p->syscalls[0].errno_ret.has_value());

  const SyscallRule& r = p->syscalls[1];
  EXPECT_EQ(r.names, (std::vector<std::string>{"read", "write"}));
  EXPECT_EQ(r.action, "SCMP_ACT_ERRNO");
  EXPECT_EQ(r.errno_ret, 5u);
  EXPECT_EQ(r.comment, "why");
  ASSERT_EQ(r.args.size(), 2u);
  EXPECT_EQ(r.args[0].index, 5u);
  EXPECT_EQ(r.args[0].value, UINT64_MAX);
  EXPECT_EQ(r.args[0].value_two, 7u);
  EXPECT_EQ(r.args[0].op, "SCMP_CMP_MASKED_EQ");
  EXPECT_EQ(r.args[1].value_two, 0u);
  EXPECT_EQ(r.args[1].op, "SCMP_CMP_NE");
  EXPECT_EQ(r.includes.caps, (std::vector<std::string>{"CAP_SYS_ADMIN", "CAP_NET_RAW"}));
  EXPECT_EQ(r.includes.arches, (std::vector<std::string>{"amd64", "x86_64"}));
  EXPECT_EQ(r.includes.min_kernel, "5.10");
  EXPECT_EQ(r.excludes.caps, std::vector<std::string>{"CAP_BPF"});
  EXPECT_EQ(r.excludes.arches, std::vector<std::string>{"arm64"});
  EXPECT_EQ(r.excludes.min_kernel, "6.1.2");

  EXPECT_EQ(p->syscalls[2].action, "SCMP_ACT_KILL");
  EXPECT_EQ(p->syscalls[6].errno_ret, 65535u);
  EXPECT_EQ(p->syscalls[8].action, "SCMP_ACT_NOTIFY");
  EXPECT_TRUE(p->syscalls[9].args.empty());
  EXPECT_TRUE(p->syscalls[9].includes.caps.empty());
  EXPECT_EQ(p->syscalls[10].args.size(), 5u);
}

TEST(SeccompProfileTest, MinimalProfile) {
  auto p = ParseProfile(R"({"defaultAction": "SCMP_ACT_ALLOW"})", "min");
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_TRUE(p->syscalls.empty());
  EXPECT_FALSE(p->default_errno_ret.has_value());
  // Empty "flags"/"listenerPath" as Docker exports them are accepted.
  EXPECT_TRUE(ParseProfile(R"({"defaultAction": "SCMP_ACT_ALLOW", "flags": [],
                               "listenerPath": "", "syscalls": null})",
                           "x")
                  .ok());
}

struct ErrorCase {
  const char* json;
  const char* want;  // substring of the message, starting with the JSON path
};

constexpr const char* kGood = R"("defaultAction": "SCMP_ACT_ERRNO")";

std::string Doc(std::string_view body) { return fmt::format("{{{}, {}}}", kGood, body); }
std::string Rules(std::string_view rules) { return Doc(fmt::format(R"("syscalls": [{}])", rules)); }

TEST(SeccompProfileTest, ErrorsNameTheJsonPath) {
  const std::string r0 = R"({"names": ["read"], "action": "SCMP_ACT_ALLOW"})";
  auto with_arg = [](std::string_view arg) {
    return Rules(
        fmt::format(R"({{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{}]}})", arg));
  };
  auto with_filter = [](std::string_view key, std::string_view f) {
    return Rules(
        fmt::format(R"({{"names": ["read"], "action": "SCMP_ACT_ALLOW", "{}": {}}})", key, f));
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{", "invalid JSON: parse error"},
      {"[]", "profile: expected a JSON object at the top level, got array"},
      {"{}", "defaultAction: missing"},
      {R"({"defaultAction": 3})", "defaultAction: expected a string, got number"},
      {R"({"defaultAction": "SCMP_ACT_FOO"})",
       "defaultAction: unknown action \"SCMP_ACT_FOO\"; use one of SCMP_ACT_ALLOW"},
      {R"({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1})",
       "defaultErrnoRet: SCMP_ACT_ALLOW does not return a value"},
      {Doc(R"("defaultErrnoRet": -1)"), "defaultErrnoRet: must not be negative"},
      {Doc(R"("defaultErrnoRet": 4096)"), "defaultErrnoRet: 4096 is out of range"},
      {Doc(R"("defaultErrnoRet": "1")"), "defaultErrnoRet: expected an unsigned integer"},
      {Doc(R"("defaultErrnoRet": 1.5)"), "defaultErrnoRet: expected an integer"},
      {Doc(R"("defaultAktion": 1)"), "defaultAktion: unknown field; the fields here are"},
      {Doc(R"("architectures": "SCMP_ARCH_X86")"), "architectures: expected an array"},
      {Doc(R"("architectures": ["SCMP_ARCH_X86", "x86"])"),
       "architectures[1]: unknown architecture \"x86\"; use one of SCMP_ARCH_X86"},
      {Doc(R"("archMap": {})"), "archMap: expected an array"},
      {Doc(R"("archMap": [{"architecture": "SCMP_ARCH_PDP11"}])"),
       "archMap[0].architecture: unknown architecture \"SCMP_ARCH_PDP11\""},
      {Doc(R"("archMap": [{"subArchitectures": []}])"), "archMap[0].architecture: missing"},
      {Doc(R"("archMap": [{"architecture": "SCMP_ARCH_X86_64",
                           "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_Z80"]}])"),
       "archMap[0].subArchitectures[1]: unknown architecture"},
      {Doc(R"("archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": "x"}])"),
       "archMap[0].subArchitectures: expected an array"},
      {Doc(R"("archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArches": []}])"),
       "archMap[0].subArches: unknown field"},
      {Doc(R"("architectures": ["SCMP_ARCH_X86"],
              "archMap": [{"architecture": "SCMP_ARCH_X86_64"}])"),
       "architectures: both \"architectures\" and \"archMap\" are set"},
      {Doc(R"("flags": ["SECCOMP_FILTER_FLAG_LOG"])"), "flags: seccomp filter flags are not"},
      {Doc(R"("listenerPath": "/run/x.sock")"), "listenerPath: seccomp notification listeners"},
      {Doc(R"("syscalls": {})"), "syscalls: expected an array, got object"},
      {Rules("[]"), "syscalls[0]: expected an object, got array"},
      {Rules(r0 + "," + r0 + "," + r0 + R"(, {"names": ["read"], "action": "SCMP_ACT_FOO"})"),
       "syscalls[3].action: unknown action \"SCMP_ACT_FOO\"; use one of SCMP_ACT_ALLOW, "
       "SCMP_ACT_ERRNO"},
      {Rules(R"({"names": ["read"]})"), "syscalls[0].action: missing"},
      {Rules(R"({"action": "SCMP_ACT_ALLOW"})"), "syscalls[0].names: no syscall names"},
      {Rules(R"({"names": [], "action": "SCMP_ACT_ALLOW"})"), "syscalls[0].names: no syscall"},
      {Rules(R"({"names": "read", "action": "SCMP_ACT_ALLOW"})"),
       "syscalls[0].names: expected an array of strings, got string"},
      {Rules(R"({"names": ["read", 3], "action": "SCMP_ACT_ALLOW"})"),
       "syscalls[0].names[1]: expected a string, got number"},
      {Rules(R"({"names": ["read", "Mount"], "action": "SCMP_ACT_ALLOW"})"),
       "syscalls[0].names[1]: \"Mount\" is not a syscall name"},
      {Rules(R"({"name": "", "action": "SCMP_ACT_ALLOW"})"),
       "syscalls[0].name: \"\" is not a syscall name"},
      {Rules(R"({"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"})"),
       "syscalls[0]: both \"name\" and \"names\" are set"},
      {Rules(R"({"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1})"),
       "syscalls[0].errnoRet: SCMP_ACT_ALLOW does not return a value"},
      {Rules(R"({"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000})"),
       "syscalls[0].errnoRet: 70000 is out of range; the maximum is 4095"},
      {Rules(R"({"names": ["read"], "action": "SCMP_ACT_TRACE", "errnoRet": 70000})"),
       "syscalls[0].errnoRet: 70000 is out of range; the maximum is 65535"},
      {Rules(R"({"names": ["read"], "action": "SCMP_ACT_ALLOW", "exclude": {}})"),
       "syscalls[0].exclude: unknown field; the fields here are names, name, action"},
      {Rules(R"({"names": ["read"], "action": "SCMP_ACT_ALLOW", "comment": 1})"),
       "syscalls[0].comment: expected a string"},
      {Rules(R"({"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": {}})"),
       "syscalls[0].args: expected an array"},
      {with_arg("3"), "syscalls[0].args[0]: expected an object, got number"},
      {with_arg(R"({"index": 6, "value": 1, "op": "SCMP_CMP_EQ"})"),
       "syscalls[0].args[0].index: 6 is out of range; syscalls have 6 arguments, indexed 0..5"},
      {with_arg(R"({"index": -1, "value": 1, "op": "SCMP_CMP_EQ"})"),
       "syscalls[0].args[0].index: must not be negative"},
      {with_arg(R"({"index": "0", "value": 1, "op": "SCMP_CMP_EQ"})"),
       "syscalls[0].args[0].index: expected an unsigned integer, got string"},
      {with_arg(R"({"value": 1, "op": "SCMP_CMP_EQ"})"), "syscalls[0].args[0].index: missing"},
      {with_arg(R"({"index": 0, "op": "SCMP_CMP_EQ"})"), "syscalls[0].args[0].value: missing"},
      {with_arg(R"({"index": 0, "value": 1.5, "op": "SCMP_CMP_EQ"})"),
       "syscalls[0].args[0].value: expected an integer"},
      {with_arg(R"({"index": 0, "value": -2, "op": "SCMP_CMP_EQ"})"),
       "syscalls[0].args[0].value: must not be negative"},
      {with_arg(R"({"index": 0, "value": 18446744073709551616, "op": "SCMP_CMP_EQ"})"),
       "syscalls[0].args[0].value: 18446744073709551616 is out of range"},
      {with_arg(R"({"index": 0, "value": 1, "valueTwo": "2", "op": "SCMP_CMP_MASKED_EQ"})"),
       "syscalls[0].args[0].valueTwo: expected an unsigned integer, got string"},
      {with_arg(R"({"index": 0, "value": 1})"), "syscalls[0].args[0].op: missing"},
      {with_arg(R"({"index": 0, "value": 1, "op": "SCMP_CMP_MASKED_NE"})"),
       "syscalls[0].args[0].op: unknown operator \"SCMP_CMP_MASKED_NE\"; use one of SCMP_CMP_NE"},
      {with_arg(R"({"index": 0, "value": 1, "op": "SCMP_CMP_EQ", "indx": 1})"),
       "syscalls[0].args[0].indx: unknown field"},
      {with_filter("includes", "[]"), "syscalls[0].includes: expected an object, got array"},
      {with_filter("includes", R"({"caps": ["SYS_ADMIN"]})"),
       "syscalls[0].includes.caps[0]: \"SYS_ADMIN\" is not a capability name"},
      {with_filter("excludes", R"({"caps": "CAP_SYS_ADMIN"})"),
       "syscalls[0].excludes.caps: expected an array of strings"},
      {with_filter("includes", R"({"arches": ["amd64", "vax"]})"),
       "syscalls[0].includes.arches[1]: unknown architecture \"vax\"; use one of 386"},
      {with_filter("excludes", R"({"minKernel": "five"})"),
       "syscalls[0].excludes.minKernel: \"five\" is not a kernel version"},
      {with_filter("includes", R"({"minKernel": "5"})"),
       "syscalls[0].includes.minKernel: \"5\" is not a kernel version"},
      {with_filter("includes", R"({"minKernel": 5.8})"),
       "syscalls[0].includes.minKernel: expected a string, got number"},
      {with_filter("includes", R"({"cap": []})"), "syscalls[0].includes.cap: unknown field"},
  };
  for (const auto& [json, want] : cases) {
    auto p = ParseProfile(json, "t");
    ASSERT_FALSE(p.ok()) << "accepted: " << json;
    EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument) << json;
    EXPECT_NE(p.error().message.find(want), std::string::npos)
        << "message: " << p.error().message << "\nwant: " << want << "\njson: " << json;
    EXPECT_EQ(p.error().context, "seccomp profile t") << json;
  }
}

TEST(SeccompProfileTest, ErrnoNameErrorsNameTheJsonPath) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {Doc(R"("defaultErrnoRet": 1, "defaultErrno": "ENOSYS")"),
       fmt::format("defaultErrno: \"ENOSYS\" is errno {}, but defaultErrnoRet is 1; make them "
                   "agree or remove one",
                   ENOSYS)},
      {Rules(R"({"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "errno": "EPERM"})"),
       fmt::format("syscalls[0].errno: \"EPERM\" is errno {}, but syscalls[0].errnoRet is 13",
                   EPERM)},
      {Doc(R"("defaultErrno": "ENOPE")"),
       "defaultErrno: \"ENOPE\" is not an errno name; write one such as \"EPERM\""},
      {Rules(R"({"names": ["read"], "action": "SCMP_ACT_ERRNO", "errno": "eperm"})"),
       "syscalls[0].errno: \"eperm\" is not an errno name"},
      {Rules(R"({"names": ["read"], "action": "SCMP_ACT_ERRNO", "errno": "1"})"),
       "syscalls[0].errno: \"1\" is not an errno name; write one such as \"EPERM\" or "
       "\"ENOSYS\", or give the number in errnoRet"},
      {Rules(R"({"names": ["read"], "action": "SCMP_ACT_ERRNO", "errno": ""})"),
       "syscalls[0].errno: \"\" is not an errno name"},
      {Rules(R"({"names": ["read"], "action": "SCMP_ACT_ERRNO", "errno": 1})"),
       "syscalls[0].errno: expected a string, got number"},
      {Rules(R"({"names": ["read"], "action": "SCMP_ACT_ALLOW", "errno": "EPERM"})"),
       "syscalls[0].errno: SCMP_ACT_ALLOW does not return a value; use errno only with"},
      {R"({"defaultAction": "SCMP_ACT_KILL", "defaultErrno": "EPERM"})",
       "defaultErrno: SCMP_ACT_KILL does not return a value; use defaultErrno only with"},
      {Rules(R"({"names": ["read"], "action": "SCMP_ACT_ERRNO", "errno": "EPERM",
                 "errnoRet": 5000})"),
       "syscalls[0].errnoRet: 5000 is out of range"},
  };
  for (const auto& [json, want] : cases) {
    auto p = ParseProfile(json, "t");
    ASSERT_FALSE(p.ok()) << "accepted: " << json;
    EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument) << json;
    EXPECT_NE(p.error().message.find(want), std::string::npos)
        << "message: " << p.error().message << "\nwant: " << want << "\njson: " << json;
  }
}

TEST(SeccompProfileTest, RejectsOversizedText) {
  std::string big = Rules(R"({"names": ["read"], "action": "SCMP_ACT_ALLOW"})");
  big.append(4 << 20, ' ');
  auto p = ParseProfile(big, "big");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message.find("the limit is 4 MiB"), std::string::npos) << p.error().message;
}

TEST(SeccompProfileTest, SurvivesDeepNesting) {
  std::string deep(200000, '[');
  auto p = ParseProfile(deep, "deep");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message.find("invalid JSON"), std::string::npos) << p.error().message;

  std::string nested = std::string(100000, '[') + std::string(100000, ']');
  auto q = ParseProfile(Doc(R"("comment": )" + nested), "nested");
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.error().message.find("comment: expected a string, got array"), std::string::npos)
      << q.error().message;
}

TEST(SeccompProfileTest, RejectsInvalidUtf8) {
  auto p = ParseProfile(Doc("\"comment\": \"\xff\""), "utf8");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message.find("invalid JSON"), std::string::npos) << p.error().message;
}

class SeccompProfileFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sbx-seccomp-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (const std::string& f : files_) unlink(f.c_str());
    rmdir(dir_.c_str());
  }
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    files_.push_back(path);
    return path;
  }
  std::string dir_;
  std::vector<std::string> files_;
};

TEST_F(SeccompProfileFileTest, NameIsTheFileStem) {
  auto p = LoadProfileFile(Write("strict.json", R"({"defaultAction": "SCMP_ACT_KILL"})"));
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->name, "strict");
}

TEST_F(SeccompProfileFileTest, MissingFileIsNotFound) {
  auto p = LoadProfileFile(dir_ + "/absent.json");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kNotFound);
}

TEST_F(SeccompProfileFileTest, RejectsFilesOver4MiB) {
  std::string text = Doc(R"("comment": "")");
  text.append((4 << 20) + 1 - text.size(), '\n');
  auto p = LoadProfileFile(Write("huge.json", text));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(p.error().message.find("larger than"), std::string::npos) << p.error().message;
  // Exactly 4 MiB is fine.
  text.pop_back();
  EXPECT_TRUE(LoadProfileFile(Write("edge.json", text)).ok());
}

TEST_F(SeccompProfileFileTest, ErrorsCarryTheProfileName) {
  auto p = LoadProfileFile(Write("typo.json", Doc(R"("syscals": [])")));
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().ToString().find("syscals: unknown field"), std::string::npos);
  EXPECT_NE(p.error().ToString().find("seccomp profile typo"), std::string::npos);
}

}  // namespace
}  // namespace sbx::seccomp
