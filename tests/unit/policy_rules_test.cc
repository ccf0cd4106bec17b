#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "supervisor/policy/command_policy.h"
#include "supervisor/policy/decision_json.h"
#include "supervisor/policy/shell_words.h"

namespace sbx::policy {
namespace {

using Argv = std::vector<std::string>;

std::shared_ptr<const CommandPolicy> Load(std::string_view yaml) {
  auto p = CommandPolicy::LoadText(yaml, "test.yaml");
  EXPECT_TRUE(p.ok()) << p.error().ToString();
  return p.ok() ? *p : nullptr;
}

Decision Judge(const CommandPolicy& p, std::vector<Argv> argvs, std::string key = "",
               std::map<std::string, std::string> labels = {}) {
  CommandInput in;
  in.argvs = std::move(argvs);
  in.api_key_name = std::move(key);
  in.labels = std::move(labels);
  return p.Evaluate(in);
}

Decision Cmd(const CommandPolicy& p, std::string command, std::string key = "") {
  CommandInput in;
  in.command = std::move(command);
  in.api_key_name = std::move(key);
  return p.Evaluate(in);
}

bool HasReason(const Decision& d, ReasonCode code) {
  return std::any_of(d.reasons.begin(), d.reasons.end(),
                     [&](const Reason& r) { return r.code == code; });
}

std::string Dump(const Decision& d) { return ToJson(d).dump(); }

constexpr char kOrdered[] = R"(
rules:
  "*": deny
  "git *": allow
  "git push *": review
)";

TEST(PolicyRules, LastMatchingRuleWins) {
  auto p = Load(kOrdered);
  Decision d = Judge(*p, {{"git", "status"}});
  EXPECT_EQ(d.action, Action::kAllow) << Dump(d);
  ASSERT_TRUE(d.rule);
  EXPECT_EQ(d.rule->pattern, "git *");
  EXPECT_EQ(d.rule->line, 4);
  EXPECT_EQ(d.rule->file, "test.yaml");

  d = Judge(*p, {{"git", "push", "origin", "main"}});
  EXPECT_EQ(d.action, Action::kReview) << Dump(d);
  EXPECT_EQ(d.rule->line, 5);

  d = Judge(*p, {{"ls"}});
  EXPECT_EQ(d.action, Action::kDeny);
  EXPECT_EQ(d.rule->pattern, "*");
}

TEST(PolicyRules, OrderIsTheFilesOrder) {
  auto p = Load(R"(
rules:
  "git push *": review
  "git *": allow
  "*": deny
)");
  // "*" comes last, so it wins over everything.
  EXPECT_EQ(Judge(*p, {{"git", "status"}}).action, Action::kDeny);
  auto q = Load(R"(
rules:
  "*": deny
  "git push *": review
  "git *": allow
)");
  EXPECT_EQ(Judge(*q, {{"git", "push"}}).action, Action::kAllow);
}

TEST(PolicyRules, EmptyPolicyDeniesEverything) {
  for (std::string_view text :
       {"", "# only a comment\n", "rules: {}\n", "rules:\n", "shell: allow\n"}) {
    auto p = Load(text);
    ASSERT_TRUE(p) << text;
    Decision d = Judge(*p, {{"ls"}});
    EXPECT_EQ(d.action, Action::kDeny) << text;
    EXPECT_TRUE(HasReason(d, ReasonCode::kNoRule)) << Dump(d);
    EXPECT_FALSE(d.rule);
    EXPECT_EQ(Cmd(*p, "echo hi").action, Action::kDeny) << text;
  }
}

TEST(PolicyRules, UnmatchedCommandIsDenied) {
  auto p = Load("rules:\n  \"git *\": allow\n");
  Decision d = Judge(*p, {{"make"}});
  EXPECT_EQ(d.action, Action::kDeny);
  EXPECT_TRUE(HasReason(d, ReasonCode::kNoRule));
  EXPECT_EQ(d.command, "make");
}

TEST(PolicyRules, ProgramPathMatchesByPathAndByName) {
  auto p = Load(R"(
rules:
  "git *": allow
  "/opt/evil/git *": deny
)");
  EXPECT_EQ(Judge(*p, {{"/usr/bin/git", "status"}}).action, Action::kAllow);
  EXPECT_EQ(Judge(*p, {{"/bin/git", "status"}}).action, Action::kAllow);
  EXPECT_EQ(Judge(*p, {{"/usr/local/bin/git"}}).action, Action::kAllow);
  EXPECT_EQ(Cmd(*p, "/usr/bin/git log").action, Action::kAllow);
  // A full-path pattern matches that path only.
  EXPECT_EQ(Judge(*p, {{"/opt/evil/git", "status"}}).action, Action::kDeny);
  // Outside the system directories a program is not matched by its name: a file in the
  // workspace cannot pass for git.
  for (std::string_view path : {"./git", "bin/git", "/tmp/git", "/work/space/git",
                                "/usr/bin/../../tmp/git", "/usr/bin/x/git"}) {
    Decision d = Judge(*p, {{std::string(path), "status"}});
    EXPECT_EQ(d.action, Action::kDeny) << path;
    EXPECT_TRUE(HasReason(d, ReasonCode::kNoRule)) << path;
  }
}

TEST(PolicyRules, ArgvWordsAreMatchedAsGivenWithQuoting) {
  auto p = Load(R"(
rules:
  "git commit -m *": allow
  "echo 'a b'": review
)");
  EXPECT_EQ(Judge(*p, {{"git", "commit", "-m", "fix the build"}}).action, Action::kAllow);
  EXPECT_EQ(Judge(*p, {{"echo", "a b"}}).action, Action::kReview);
  // Two words "a" and "b" are a different line than the one word "a b".
  EXPECT_EQ(Judge(*p, {{"echo", "a", "b"}}).action, Action::kDeny);
  // Shell metacharacters in argv words are just characters: no shell runs them.
  Decision d = Judge(*p, {{"git", "commit", "-m", "x; rm -rf ~"}});
  EXPECT_EQ(d.action, Action::kAllow) << Dump(d);
  EXPECT_FALSE(HasReason(d, ReasonCode::kNeedsShell));
}

constexpr char kSets[] = R"(
rules:
  "*": review
  "ls *": allow
rule_sets:
  ci:
    select: {api_keys: [ci-bot, nightly]}
    rules:
      "make *": allow
  infra:
    select: {api_keys: [alice, bob], labels: {team: infra, env: staging}}
    inherit: false
    rules:
      "kubectl get *": allow
  both:
    select: {api_keys: [ci-bot], labels: {team: infra}}
    rules:
      "*": deny
  shelly:
    select: {api_keys: [shelly]}
    shell: allow
)";

TEST(PolicyRules, RuleSetSelectedByApiKey) {
  auto p = Load(kSets);
  Decision d = Judge(*p, {{"make", "all"}}, "ci-bot");
  EXPECT_EQ(d.action, Action::kAllow) << Dump(d);
  EXPECT_EQ(d.rule_set, "ci");
  EXPECT_EQ(Judge(*p, {{"make", "all"}}, "nightly").action, Action::kAllow);
  // Inherited top-level rules still apply within the set.
  EXPECT_EQ(Judge(*p, {{"ls"}}, "ci-bot").action, Action::kAllow);
  EXPECT_EQ(Judge(*p, {{"rm", "x"}}, "ci-bot").action, Action::kReview);
  // Another key gets the top-level rules.
  d = Judge(*p, {{"make", "all"}}, "alice");
  EXPECT_EQ(d.action, Action::kReview);
  EXPECT_EQ(d.rule_set, "");
  EXPECT_EQ(Judge(*p, {{"make"}}, "").action, Action::kReview);
}

TEST(PolicyRules, RuleSetSelectedByAllItsLabels) {
  auto p = Load(kSets);
  Decision d = Judge(*p, {{"kubectl", "get", "pods"}}, "alice",
                     {{"team", "infra"}, {"env", "staging"}, {"extra", "x"}});
  EXPECT_EQ(d.action, Action::kAllow);
  EXPECT_EQ(d.rule_set, "infra");
  // inherit: false: the top-level "ls *" and "*" are not there.
  d = Judge(*p, {{"ls"}}, "alice", {{"team", "infra"}, {"env", "staging"}});
  EXPECT_EQ(d.action, Action::kDeny);
  EXPECT_TRUE(HasReason(d, ReasonCode::kNoRule));
  // One label missing or different: not selected.
  EXPECT_EQ(Judge(*p, {{"kubectl", "get", "pods"}}, "alice", {{"team", "infra"}}).rule_set, "");
  EXPECT_EQ(Judge(*p, {{"kubectl", "get", "pods"}}, "alice", {{"team", "infra"}, {"env", "prod"}})
                .rule_set,
            "");  // The same labels from a key the set does not name: not selected.
  EXPECT_EQ(Judge(*p, {{"kubectl", "get", "pods"}}, "mallory",
                  {{"team", "infra"}, {"env", "staging"}})
                .rule_set,
            "");
}

TEST(PolicyRules, FirstMatchingRuleSetWins) {
  auto p = Load(kSets);
  // ci-bot with team=infra matches both "ci" (first) and "both": "ci" applies.
  Decision d = Judge(*p, {{"make"}}, "ci-bot", {{"team", "infra"}});
  EXPECT_EQ(d.rule_set, "ci");
  EXPECT_EQ(d.action, Action::kAllow);
}

TEST(PolicyRules, RuleSetMayAllowTheShell) {
  auto p = Load(kSets);
  // The top-level shell is deny.
  Decision d = Cmd(*p, "ls && ls -la");
  EXPECT_EQ(d.action, Action::kDeny);
  EXPECT_TRUE(HasReason(d, ReasonCode::kNeedsShell));
  d = Cmd(*p, "ls && ls -la", "shelly");
  EXPECT_EQ(d.action, Action::kAllow) << Dump(d);
  EXPECT_EQ(d.rule_set, "shelly");
}

constexpr char kShell[] = R"(
shell: allow
rules:
  "*": deny
  "ls *": allow
  "echo *": allow
  "git *": allow
  "curl *": review
)";

TEST(PolicyRules, CommandNeedingAShellIsDeniedUnlessAllowed) {
  auto p = Load(R"(
rules:
  "*": allow
)");
  for (std::string_view c :
       {"ls; pwd", "ls && pwd", "ls || pwd", "ls | cat", "sleep 1 &", "echo $(whoami)", "echo `id`",
        "echo $HOME", "ls > out", "ls 2>&1", "cat < in", "(ls)", "ls *.py", "ls ~", "A=1 ls"}) {
    Decision d = Cmd(*p, std::string(c));
    EXPECT_EQ(d.action, Action::kDeny) << c;
    EXPECT_TRUE(HasReason(d, ReasonCode::kNeedsShell)) << c << ": " << Dump(d);
    EXPECT_FALSE(d.rule) << c;
  }
  // A plain command string needs no shell.
  Decision d = Cmd(*p, "git commit -m 'fix it'");
  EXPECT_EQ(d.action, Action::kAllow) << Dump(d);
  EXPECT_EQ(d.command, "git commit -m 'fix it'");
  // The reason says what needs the shell and what to do.
  d = Cmd(*p, "ls | wc -l");
  auto it = std::find_if(d.reasons.begin(), d.reasons.end(),
                         [](const Reason& r) { return r.code == ReasonCode::kNeedsShell; });
  ASSERT_NE(it, d.reasons.end());
  EXPECT_NE(it->message.find("'|' (pipe)"), std::string::npos) << it->message;
  EXPECT_NE(it->message.find("shell: allow"), std::string::npos) << it->message;
}

TEST(PolicyRules, CompoundCommandStrictestWins) {
  auto p = Load(kShell);
  EXPECT_EQ(Cmd(*p, "ls && git status").action, Action::kAllow);
  Decision d = Cmd(*p, "ls; curl https://example.com; echo done");
  EXPECT_EQ(d.action, Action::kReview) << Dump(d);
  EXPECT_EQ(d.command, "curl https://example.com");
  EXPECT_EQ(d.rule->pattern, "curl *");
  d = Cmd(*p, "ls | make");
  EXPECT_EQ(d.action, Action::kDeny);
  EXPECT_EQ(d.command, "make");
  // Commands inside substitutions are judged too.
  d = Cmd(*p, "echo $(make)");
  EXPECT_EQ(d.action, Action::kDeny) << Dump(d);
  EXPECT_EQ(d.command, "make");
  // The shell is allowed, yet a destructive command in the list is still refused.
  d = Cmd(*p, "ls; rm -rf /");
  EXPECT_EQ(d.action, Action::kDeny);
  EXPECT_EQ(d.protection, "destructive");
}

TEST(PolicyRules, EveryStepIsJudgedStrictestWins) {
  auto p = Load(kShell);
  EXPECT_EQ(Judge(*p, {{"ls"}, {"git", "status"}}).action, Action::kAllow);
  Decision d = Judge(*p, {{"ls"}, {"curl", "x"}, {"git", "log"}});
  EXPECT_EQ(d.action, Action::kReview);
  EXPECT_EQ(d.step, 1u);
  d = Judge(*p, {{"ls"}, {"curl", "x"}, {"make"}, {"git", "log"}});
  EXPECT_EQ(d.action, Action::kDeny);
  EXPECT_EQ(d.step, 2u);
  EXPECT_EQ(d.command, "make");
  // argv steps and a command string together; the string is the last step.
  CommandInput in;
  in.argvs = {{"ls"}, {"git", "status"}};
  in.command = "curl https://example.com";
  d = p->Evaluate(in);
  EXPECT_EQ(d.action, Action::kReview);
  EXPECT_EQ(d.step, 2u);
  // Reasons of all steps are kept.
  d = Judge(*p, {{"curl", "x"}, {"git", "clone", "u"}, {"rm", "f"}});
  EXPECT_TRUE(HasReason(d, ReasonCode::kNetwork));
  EXPECT_TRUE(HasReason(d, ReasonCode::kDestructiveVerb));
}

TEST(PolicyRules, NothingToRunIsDenied) {
  auto p = Load("rules:\n  \"*\": allow\n");
  EXPECT_EQ(p->Evaluate(CommandInput{}).action, Action::kDeny);
  EXPECT_TRUE(HasReason(p->Evaluate(CommandInput{}), ReasonCode::kEmptyCommand));
  EXPECT_EQ(Judge(*p, {{}}).action, Action::kDeny);
  EXPECT_EQ(Judge(*p, {{"ls"}, {""}}).action, Action::kDeny);
  EXPECT_EQ(Cmd(*p, "   ").action, Action::kDeny);
  Decision d = Cmd(*p, "echo 'unclosed");
  EXPECT_EQ(d.action, Action::kDeny);
  EXPECT_TRUE(HasReason(d, ReasonCode::kUnparsable)) << Dump(d);
}

Decision Risky(std::vector<Argv> argvs) {
  static auto p = Load("rules:\n  \"*\": allow\n");
  return Judge(*p, std::move(argvs));
}

TEST(PolicyRules, RiskLevelsAndReasons) {
  Decision d = Risky({{"git", "status"}});
  EXPECT_EQ(d.risk, Risk::kLow) << Dump(d);
  EXPECT_TRUE(d.reasons.empty()) << Dump(d);
  EXPECT_EQ(Risky({{"ls", "-la"}, {"cat", "x"}, {"rg", "foo"}}).risk, Risk::kLow);

  struct Case {
    Argv argv;
    ReasonCode code;
    Risk risk;
  };
  const Case cases[] = {
      {{"curl", "https://example.com"}, ReasonCode::kNetwork, Risk::kHigh},
      {{"wget", "https://example.com"}, ReasonCode::kNetwork, Risk::kHigh},
      {{"ssh", "host", "uptime"}, ReasonCode::kNetwork, Risk::kHigh},
      {{"git", "clone", "https://example.com/r.git"}, ReasonCode::kNetwork, Risk::kHigh},
      {{"git", "push", "origin"}, ReasonCode::kNetwork, Risk::kHigh},
      {{"pip", "install", "requests"}, ReasonCode::kNetwork, Risk::kHigh},
      {{"python3", "-m", "pip", "install", "x"}, ReasonCode::kNetwork, Risk::kHigh},
      {{"npm", "install"}, ReasonCode::kNetwork, Risk::kHigh},
      {{"pnpm", "add", "left-pad"}, ReasonCode::kNetwork, Risk::kHigh},
      {{"sudo", "ls"}, ReasonCode::kPrivilege, Risk::kHigh},
      {{"su", "-", "root"}, ReasonCode::kPrivilege, Risk::kHigh},
      {{"rm", "build.log"}, ReasonCode::kDestructiveVerb, Risk::kHigh},
      {{"git", "reset", "--hard"}, ReasonCode::kDestructiveVerb, Risk::kHigh},
      {{"git", "clean", "-fdx"}, ReasonCode::kDestructiveVerb, Risk::kHigh},
      {{"find", ".", "-name", "*.o", "-delete"}, ReasonCode::kDestructiveVerb, Risk::kHigh},
      {{"sed", "-i", "s/a/b/", "f"}, ReasonCode::kWritesWorkspace, Risk::kMedium},
      {{"cp", "a", "b"}, ReasonCode::kWritesWorkspace, Risk::kMedium},
      {{"git", "commit", "-m", "x"}, ReasonCode::kWritesWorkspace, Risk::kMedium},
      {{"python3", "x.py"}, ReasonCode::kRunsCode, Risk::kMedium},
      {{"pytest", "-q"}, ReasonCode::kRunsCode, Risk::kMedium},
      {{"npm", "test"}, ReasonCode::kRunsCode, Risk::kMedium},
      {{"bash", "-c", "ls"}, ReasonCode::kRunsCode, Risk::kMedium},
      {{"frobnicate", "--all"}, ReasonCode::kUnknownProgram, Risk::kMedium},
  };
  for (const Case& c : cases) {
    d = Risky({c.argv});
    EXPECT_TRUE(HasReason(d, c.code)) << JoinWords(c.argv) << ": " << Dump(d);
    EXPECT_EQ(d.risk, c.risk) << JoinWords(c.argv) << ": " << Dump(d);
  }
  // Read-only use of the same programs is low.
  EXPECT_EQ(Risky({{"sed", "-n", "1p", "f"}}).risk, Risk::kLow);
  EXPECT_EQ(Risky({{"git", "log", "--oneline"}}).risk, Risk::kLow);
  EXPECT_EQ(Risky({{"pip", "list"}}).risk, Risk::kLow);
  // A shell string is classified by what it runs.
  d = Risky({{"bash", "-c", "curl https://x -o f"}});
  EXPECT_TRUE(HasReason(d, ReasonCode::kNetwork)) << Dump(d);
  EXPECT_EQ(d.risk, Risk::kHigh);
  // Wrappers are looked through.
  d = Risky({{"timeout", "10", "curl", "x"}});
  EXPECT_TRUE(HasReason(d, ReasonCode::kNetwork)) << Dump(d);
  EXPECT_FALSE(HasReason(d, ReasonCode::kUnknownProgram)) << Dump(d);
}

TEST(PolicyRules, ShellCommandRisk) {
  auto p = Load(kShell);
  Decision d = Cmd(*p, "ls > listing.txt");
  EXPECT_TRUE(HasReason(d, ReasonCode::kWritesWorkspace)) << Dump(d);
  EXPECT_TRUE(HasReason(d, ReasonCode::kNeedsShell));
  EXPECT_EQ(d.risk, Risk::kMedium);
  d = Cmd(*p, "ls 2>&1 >/dev/null");
  EXPECT_FALSE(HasReason(d, ReasonCode::kWritesWorkspace)) << Dump(d);
}

TEST(PolicyRules, DecisionJson) {
  auto p = Load(kSets);
  nlohmann::json j = ToJson(Judge(*p, {{"make", "all"}}, "ci-bot"));
  EXPECT_EQ(j["decision"], "allow");
  EXPECT_EQ(j["risk"], "medium");
  EXPECT_EQ(j["rule"]["file"], "test.yaml");
  EXPECT_EQ(j["rule"]["line"], 9);
  EXPECT_EQ(j["rule"]["pattern"], "make *");
  EXPECT_EQ(j["rule_set"], "ci");
  EXPECT_TRUE(j["protection"].is_null());
  EXPECT_EQ(j["command"], "make all");
  EXPECT_EQ(j["step"], 0);
  ASSERT_TRUE(j["reasons"].is_array());
  EXPECT_EQ(j["reasons"][0]["code"], "runs_code");
  EXPECT_EQ(j["reasons"][0]["message"], "make runs code");

  j = ToJson(Judge(*p, {{"rm", "-rf", "/"}}));
  EXPECT_EQ(j["decision"], "deny");
  EXPECT_EQ(j["risk"], "high");
  EXPECT_TRUE(j["rule"].is_null());
  EXPECT_TRUE(j["rule_set"].is_null());
  EXPECT_EQ(j["protection"], "destructive");
  EXPECT_EQ(j["reasons"][0]["code"], "destructive");
}

}  // namespace
}  // namespace sbx::policy
