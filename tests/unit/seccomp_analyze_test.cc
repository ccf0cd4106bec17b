// ValidateProfile, Explain, DiffProfiles, Disassemble and the notify_errors compile: the answers
// `sandboxd seccomp validate|explain|diff` print, checked against profiles whose behaviour is
// known. Nothing is installed in this process.
#include <gtest/gtest.h>
#include <linux/seccomp.h>

#include <algorithm>
#include <string>

#include "base/fs.h"
#include "seccomp/analyze.h"
#include "seccomp/seccomp.h"
#include "seccomp/simulate.h"

namespace sbx::seccomp {
namespace {

constexpr uint32_t Errno(int e) { return SECCOMP_RET_ERRNO | static_cast<uint32_t>(e); }

std::string DockerDefault() {
  auto text = ReadFile(std::string(SBX_SOURCE_DIR) + "/tests/testdata/seccomp/docker-default.json",
                       4 << 20);
  EXPECT_TRUE(text.ok());
  return text.ok() ? *text : "";
}

Profile Parse(std::string_view json) {
  auto p = ParseProfile(json, "test");
  EXPECT_TRUE(p.ok()) << p.error().ToString();
  return p.ok() ? std::move(p).value() : Profile{};
}

Program Build(const Profile& p, CompileOptions o = {}) {
  auto prog = Compile(p, o);
  EXPECT_TRUE(prog.ok()) << prog.error().ToString();
  return prog.ok() ? std::move(prog).value() : Program{};
}

std::vector<const Finding*> Errors(const ValidateReport& r) {
  std::vector<const Finding*> out;
  for (const auto& f : r.findings) {
    if (f.severity == Finding::Severity::kError) out.push_back(&f);
  }
  return out;
}

const Finding* WarningAt(const ValidateReport& r, std::string_view path) {
  for (const auto& f : r.findings) {
    if (f.severity == Finding::Severity::kWarning && f.path == path) return &f;
  }
  return nullptr;
}

TEST(SeccompValidate, DockerDefaultLoadsUnchangedAndFitsTheKernel) {
  ValidateReport r = ValidateProfile(DockerDefault(), "docker-default");
  EXPECT_TRUE(r.valid()) << (Errors(r).empty() ? "" : Errors(r)[0]->message);
  ASSERT_TRUE(r.profile.has_value());
  EXPECT_EQ(r.profile->default_action, "SCMP_ACT_ERRNO");
  EXPECT_GT(r.instructions, 100u);
  EXPECT_LE(r.instructions, 4096u);
  // Docker allows ptrace without capabilities (kernels >= 4.8): the validator says so.
  EXPECT_NE(std::find(r.dangerous_allowed.begin(), r.dangerous_allowed.end(), "ptrace"),
            r.dangerous_allowed.end());
  EXPECT_EQ(std::find(r.dangerous_allowed.begin(), r.dangerous_allowed.end(), "mount"),
            r.dangerous_allowed.end());
}

TEST(SeccompValidate, BuiltinDefaultAllowsNothingDangerous) {
  ValidateReport r = ValidateProfile(DefaultProfileJson(), "default");
  EXPECT_TRUE(r.valid());
  EXPECT_TRUE(r.dangerous_allowed.empty());
}

TEST(SeccompValidate, BrokenJsonIsOneErrorWithWhereItBroke) {
  ValidateReport r = ValidateProfile(R"({"defaultAction": "SCMP_ACT_ERRNO",)", "bad");
  ASSERT_EQ(Errors(r).size(), 1u);
  EXPECT_NE(Errors(r)[0]->message.find("invalid JSON"), std::string::npos);
  EXPECT_NE(Errors(r)[0]->message.find("line 1"), std::string::npos);
  EXPECT_FALSE(r.profile.has_value());
  EXPECT_EQ(r.instructions, 0u);
}

TEST(SeccompValidate, EveryBrokenRuleIsReportedWithItsPath) {
  ValidateReport r = ValidateProfile(R"({
    "defaultAction": "SCMP_ACT_ERRNO",
    "syscalls": [
      {"names": ["read"], "action": "SCMP_ACT_ALOW"},
      {"names": ["write"], "action": "SCMP_ACT_ALLOW"},
      {"names": ["Open"], "action": "SCMP_ACT_ALLOW"},
      {"names": ["close"], "action": "SCMP_ACT_ALLOW",
       "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}
    ]})",
                                     "t");
  auto errors = Errors(r);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0]->path, "syscalls[0].action");
  EXPECT_NE(errors[0]->message.find("SCMP_ACT_ALOW"), std::string::npos);
  EXPECT_NE(errors[0]->message.find("use one of"), std::string::npos);
  EXPECT_EQ(errors[1]->path, "syscalls[2].names[0]");
  EXPECT_EQ(errors[2]->path, "syscalls[3].args[0].index");
  EXPECT_FALSE(r.valid());
}

TEST(SeccompValidate, PermissiveDefaultIsRefusedUnlessAccepted) {
  std::string json = R"({"defaultAction": "SCMP_ACT_ALLOW",
                         "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]})";
  ValidateReport refused = ValidateProfile(json, "p");
  ASSERT_EQ(Errors(refused).size(), 1u);
  EXPECT_EQ(Errors(refused)[0]->path, "defaultAction");
  EXPECT_NE(Errors(refused)[0]->message.find("--allow-permissive"), std::string::npos);

  ValidateOptions o;
  o.allow_permissive = true;
  ValidateReport accepted = ValidateProfile(json, "p", o);
  EXPECT_TRUE(accepted.valid());
  EXPECT_NE(WarningAt(accepted, "defaultAction"), nullptr);
  // Everything dangerous but ptrace stays allowed: the warning lists them.
  EXPECT_EQ(
      std::find(accepted.dangerous_allowed.begin(), accepted.dangerous_allowed.end(), "ptrace"),
      accepted.dangerous_allowed.end());
  EXPECT_NE(
      std::find(accepted.dangerous_allowed.begin(), accepted.dangerous_allowed.end(), "mount"),
      accepted.dangerous_allowed.end());
  EXPECT_NE(WarningAt(accepted, ""), nullptr);
  EXPECT_TRUE(IsPermissive(*accepted.profile));
}

// libseccomp (runc, crun, Podman) keeps the first of two such rules, and so does Compile: the
// profile is valid, and a warning names both rules.
TEST(SeccompValidate, ContradictoryUnconditionalRulesAreWarnings) {
  ValidateReport r = ValidateProfile(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
      {"names": ["read", "ptrace"], "action": "SCMP_ACT_ALLOW"},
      {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]})",
                                     "c");
  EXPECT_TRUE(r.valid()) << (Errors(r).empty() ? "" : Errors(r)[0]->message);
  const Finding* w = nullptr;
  for (const Finding& f : r.findings) {
    if (f.path == "syscalls[1]") w = &f;
  }
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->severity, Finding::Severity::kWarning);
  EXPECT_NE(w->message.find("ptrace is also in syscalls[0]"), std::string::npos) << w->message;
  EXPECT_NE(w->message.find("the first holds"), std::string::npos) << w->message;
  EXPECT_TRUE(std::find(r.dangerous_allowed.begin(), r.dangerous_allowed.end(), "ptrace") !=
              r.dangerous_allowed.end());
}

TEST(SeccompValidate, RulesThatCannotHoldTogetherDoNotContradict) {
  ValidateReport r = ValidateProfile(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
      {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_PTRACE"]}},
      {"names": ["ptrace"], "action": "SCMP_ACT_KILL", "excludes": {"caps": ["CAP_SYS_PTRACE"]}}]})",
                                     "c");
  EXPECT_TRUE(r.valid()) << (Errors(r).empty() ? "" : Errors(r)[0]->message);
}

TEST(SeccompValidate, UnknownSyscallNamesAreWarningsWithTheirPath) {
  ValidateReport r = ValidateProfile(R"({"defaultAction": "SCMP_ACT_ERRNO",
      "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
      "syscalls": [{"names": ["read", "nosuchcall"], "action": "SCMP_ACT_ALLOW"},
                   {"names": ["mmap2"], "action": "SCMP_ACT_ALLOW"}]})",
                                     "u");
  EXPECT_TRUE(r.valid());
  const Finding* unknown = WarningAt(r, "syscalls[0].names[1]");
  ASSERT_NE(unknown, nullptr);
  EXPECT_NE(unknown->message.find("nosuchcall"), std::string::npos);
  // mmap2 exists on 32-bit x86 and not on x86_64: that arch is named.
  const Finding* partial = WarningAt(r, "architectures");
  ASSERT_NE(partial, nullptr);
  EXPECT_NE(partial->message.find("mmap2"), std::string::npos);
  EXPECT_NE(partial->message.find("on SCMP_ARCH_X86_64 "), std::string::npos);
  EXPECT_EQ(WarningAt(r, "syscalls[0].names[0]"), nullptr);
}

TEST(SeccompValidate, HugeDocumentsAreRefused) {
  std::string huge =
      R"({"defaultAction": "SCMP_ACT_ERRNO", "comment": ")" + std::string(5 << 20, 'x') + "\"}";
  ValidateReport r = ValidateProfile(huge, "huge");
  ASSERT_EQ(Errors(r).size(), 1u);
  EXPECT_NE(Errors(r)[0]->message.find("4 MiB"), std::string::npos);
}

TEST(SeccompParse, EveryActionAndOperatorLoads) {
  Profile p = Parse(R"({"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [
      {"names": ["a1"], "action": "SCMP_ACT_ALLOW"},
      {"names": ["a2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
      {"names": ["a3"], "action": "SCMP_ACT_KILL"},
      {"names": ["a4"], "action": "SCMP_ACT_KILL_PROCESS"},
      {"names": ["a5"], "action": "SCMP_ACT_KILL_THREAD"},
      {"names": ["a6"], "action": "SCMP_ACT_TRAP"},
      {"names": ["a7"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
      {"names": ["a8"], "action": "SCMP_ACT_LOG"},
      {"names": ["a9"], "action": "SCMP_ACT_NOTIFY"},
      {"names": ["b"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 1, "op": "SCMP_CMP_NE"},
        {"index": 1, "value": 2, "op": "SCMP_CMP_LT"},
        {"index": 2, "value": 3, "op": "SCMP_CMP_LE"},
        {"index": 3, "value": 4, "op": "SCMP_CMP_EQ"},
        {"index": 4, "value": 5, "op": "SCMP_CMP_GE"},
        {"index": 5, "value": 6, "op": "SCMP_CMP_GT"},
        {"index": 0, "value": 240, "valueTwo": 16, "op": "SCMP_CMP_MASKED_EQ"}]}]})");
  ASSERT_EQ(p.syscalls.size(), 10u);
  EXPECT_EQ(p.syscalls[1].errno_ret, 38u);
  EXPECT_EQ(p.syscalls[6].errno_ret, 7u);
  EXPECT_EQ(p.syscalls[8].action, "SCMP_ACT_NOTIFY");
  ASSERT_EQ(p.syscalls[9].args.size(), 7u);
  EXPECT_EQ(p.syscalls[9].args[6].value_two, 16u);
  EXPECT_EQ(p.syscalls[9].args[6].op, "SCMP_CMP_MASKED_EQ");
  // The operators as Explain evaluates them.
  EXPECT_TRUE(ArgMatches(p.syscalls[9].args[0], 2));
  EXPECT_FALSE(ArgMatches(p.syscalls[9].args[0], 1));
  EXPECT_TRUE(ArgMatches(p.syscalls[9].args[1], 1));
  EXPECT_TRUE(ArgMatches(p.syscalls[9].args[2], 3));
  EXPECT_TRUE(ArgMatches(p.syscalls[9].args[3], 4));
  EXPECT_TRUE(ArgMatches(p.syscalls[9].args[4], 5));
  EXPECT_FALSE(ArgMatches(p.syscalls[9].args[5], 6));
  EXPECT_TRUE(ArgMatches(p.syscalls[9].args[6], 0x1f));
  EXPECT_FALSE(ArgMatches(p.syscalls[9].args[6], 0x20));
  // index 0 is compared twice: the rule is split, its conditions ORed.
  EXPECT_NE(FormatConditions(p.syscalls[9].args).find(" || "), std::string::npos);
  EXPECT_EQ(FormatConditions({}), "none");
}

TEST(SeccompCompile, NotifyErrorsTurnsErrorsIntoNotificationsAndKeepsTheAnswers) {
  Profile p = Parse(R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
      {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
      {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
      {"names": ["kexec_load"], "action": "SCMP_ACT_KILL_PROCESS"}]})");
  CompileOptions o;
  o.notify_errors = true;
  Program prog = Build(p, o);
  ASSERT_EQ(prog.notify, NotifyMode::kDeny);
  ASSERT_FALSE(prog.answers.empty());
  Program answers;
  answers.insns = prog.answers;
  auto eval = [](const Program& pr, const char* name) {
    auto r = Evaluate(pr, MakeSeccompData(*NativeSyscallNumber(name)));
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : 0u;
  };
  EXPECT_EQ(eval(prog, "ptrace"), SECCOMP_RET_USER_NOTIF);
  EXPECT_EQ(eval(prog, "mount"), SECCOMP_RET_USER_NOTIF);
  EXPECT_EQ(eval(prog, "read"), SECCOMP_RET_ALLOW);
  EXPECT_EQ(eval(prog, "kexec_load"), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(eval(answers, "ptrace"), Errno(1));
  EXPECT_EQ(eval(answers, "mount"), Errno(38));
  EXPECT_EQ(eval(answers, "read"), SECCOMP_RET_ALLOW);
  // The plain compile is what `answers` holds.
  EXPECT_EQ(Build(p).insns.size(), prog.answers.size());
  EXPECT_EQ(Build(p).notify, NotifyMode::kNone);
}

TEST(SeccompCompile, NotifyActionInAProfileNeedsAListener) {
  Profile p = Parse(R"({"defaultAction": "SCMP_ACT_ERRNO",
                        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]})");
  auto prog = Compile(p);
  ASSERT_FALSE(prog.ok());
  EXPECT_NE(prog.error().message.find("syscalls[0].action"), std::string::npos);
}

TEST(SeccompNames, SyscallAndActionNames) {
  EXPECT_EQ(SyscallName(NativeAuditArch(), *NativeSyscallNumber("ptrace")), "ptrace");
  EXPECT_EQ(SyscallName(NativeAuditArch(), 9999), "syscall_9999");
  EXPECT_EQ(ActionName(Errno(1)), "SCMP_ACT_ERRNO(1)");
  EXPECT_EQ(ActionName(SECCOMP_RET_ALLOW), "SCMP_ACT_ALLOW");
  EXPECT_EQ(ActionName(SECCOMP_RET_KILL_PROCESS), "SCMP_ACT_KILL_PROCESS");
  EXPECT_EQ(ActionName(SECCOMP_RET_USER_NOTIF), "SCMP_ACT_NOTIFY");
}

TEST(SeccompExplain, NamesTheDecidingRuleAndItsConditions) {
  Profile p = Parse(DockerDefault());
  Program prog = Build(p);
  // clone without namespace flags: allowed by the MASKED_EQ rule for processes without
  // CAP_SYS_ADMIN.
  auto ex = Explain(p, prog, "clone", {0x11});
  ASSERT_TRUE(ex.ok()) << ex.error().ToString();
  EXPECT_EQ(ex->action, SECCOMP_RET_ALLOW);
  ASSERT_TRUE(ex->rule_index.has_value());
  EXPECT_EQ(ex->rule_path, "syscalls[" + std::to_string(*ex->rule_index) + "]");
  ASSERT_FALSE(ex->conditions.empty());
  EXPECT_EQ(ex->conditions[0].op, "SCMP_CMP_MASKED_EQ");
  EXPECT_TRUE(ex->agrees);
  // With CLONE_NEWUSER the condition fails: the default decides, the rule is listed as unmet.
  auto ns = Explain(p, prog, "clone", {0x10000000});
  ASSERT_TRUE(ns.ok());
  EXPECT_EQ(ns->action, Errno(1));
  EXPECT_FALSE(ns->rule_index.has_value());
  EXPECT_TRUE(ns->agrees);
  EXPECT_NE(std::find(ns->unmatched_rules.begin(), ns->unmatched_rules.end(), *ex->rule_index),
            ns->unmatched_rules.end());
  // The CAP_SYS_ADMIN rules name clone but do not apply without the capability.
  EXPECT_FALSE(ns->inapplicable_rules.empty());
}

TEST(SeccompExplain, ErrnoRuleOfTheBuiltinProfile) {
  Profile p = Parse(DefaultProfileJson());
  Program prog = Build(p);
  auto ex = Explain(p, prog, "ptrace", {});
  ASSERT_TRUE(ex.ok());
  EXPECT_EQ(ex->action, Errno(1));
  ASSERT_TRUE(ex->rule_index.has_value());
  EXPECT_NE(std::find(ex->rule_names.begin(), ex->rule_names.end(), "ptrace"),
            ex->rule_names.end());
  auto unknown = Explain(p, prog, "nosuchcall", {});
  EXPECT_FALSE(unknown.ok());
  auto too_many = Explain(p, prog, "read", {1, 2, 3, 4, 5, 6, 7});
  EXPECT_FALSE(too_many.ok());
}

TEST(SeccompDiff, SameProfileHasNoDifferences) {
  Profile p = Parse(DefaultProfileJson());
  Program prog = Build(p);
  EXPECT_TRUE(DiffProfiles(p, prog, p, prog).empty());
}

TEST(SeccompDiff, DifferencesBySyscallWithArgumentRules) {
  Profile a = Parse(R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
      {"names": ["read", "ptrace"], "action": "SCMP_ACT_ALLOW"},
      {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
       "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]})");
  Profile b = Parse(R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "syscalls": [
      {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
      {"names": ["personality"], "action": "SCMP_ACT_ALLOW"}]})");
  auto d = DiffProfiles(a, Build(a), b, Build(b));
  auto find = [&](std::string_view what) -> const DiffEntry* {
    for (const auto& e : d) {
      if (e.what.rfind(what, 0) == 0) return &e;
    }
    return nullptr;
  };
  EXPECT_EQ(find("defaultAction"), nullptr);  // both EPERM: errnoRet defaults to EPERM
  const DiffEntry* ptrace = find("ptrace");
  ASSERT_NE(ptrace, nullptr);
  EXPECT_EQ(ptrace->a, "SCMP_ACT_ALLOW");
  EXPECT_EQ(ptrace->b, "SCMP_ACT_ERRNO(1)");
  const DiffEntry* personality = find("personality");
  ASSERT_NE(personality, nullptr);
  EXPECT_EQ(personality->what, "personality");  // all-zero args already differ
  ASSERT_EQ(personality->rules.size(), 1u);
  EXPECT_NE(personality->rules[0].find("args[0] == 8"), std::string::npos);
  EXPECT_EQ(find("read"), nullptr);
  EXPECT_EQ(find("write"), nullptr);
}

TEST(SeccompDisassemble, OneLinePerInstructionWithSyscallNames) {
  Profile p = Parse(R"({"defaultAction": "SCMP_ACT_ERRNO",
                        "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ALLOW"}]})");
  Program prog = Build(p);
  std::string text = Disassemble(prog);
  size_t lines = static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
  EXPECT_EQ(lines, prog.insns.size());
  EXPECT_NE(text.find("(ptrace)"), std::string::npos) << text;
  EXPECT_NE(text.find("ret  SCMP_ACT_ALLOW"), std::string::npos);
  EXPECT_NE(text.find("ret  SCMP_ACT_ERRNO(1)"), std::string::npos);
  EXPECT_NE(text.find("ld   [0]  ; nr"), std::string::npos);
}

}  // namespace
}  // namespace sbx::seccomp
