// `sandboxctl sandbox …` end to end: the real daemon (sandboxd-server, through server_harness) on
// a Unix socket and the real CLI run as a child process whose stdout, stderr and exit status are
// checked: a sandbox created (approved by the policy's sandboxes section), a command run in it
// with its output and exit status, a binary file copied in and out byte for byte, the logs, ls
// and inspect as JSON, rm, and a reviewer's approve and reject (a submitter's refused).
// tests/unit/sandboxctl_fake_daemon_test.cc checks the client's side of each call against a
// stand-in; this checks that the daemon answers as the client reads.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/fs.h"
#include "base/unique_fd.h"
#include "integration/server_harness.h"
#include "tests/support/child_process.h"

namespace sbx::testing {
namespace {

constexpr char kSubmitterKey[] = "ctl-sandbox-test-submitter";
constexpr char kOtherKey[] = "ctl-sandbox-test-other-submitter";
constexpr char kReviewerKey[] = "ctl-sandbox-test-reviewer";

class CtlSandboxTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    if (IsSkipped()) return;
    // Commands run without review but `/bin/echo needs-review …`; sandboxes of at most 1 CPU
    // and 512 MiB start at once (the other bounds are the shipped policy's business, not this
    // test's).
    SetUpServer("ctlsbx",
                "  \"*\": allow\n"
                "  \"/bin/echo needs-review*\": review\n"
                "sandboxes:\n"
                "  allow_within: {cpus: 1, memory: 512MiB, workspace: [none]}\n"
                "  otherwise: review\n");
    api_sock_ = dir_ + "/api.sock";
    WriteConfig("unix:" + api_sock_,
                {{"sub", "submitter", kSubmitterKey},
                 {"other", "submitter", kOtherKey},
                 {"rev", "reviewer", kReviewerKey}},
                "default_backend: native\n");
    StartServer();
    const std::string text = ReadUntilReady();
    ASSERT_NE(text.find("sandboxd: ready"), std::string::npos) << text;
    stdout_fd_.reset();  // the daemon ignores SIGPIPE
  }

  // sandboxctl ARGS as `key`, stdin /dev/null, in the test's directory; both streams read to
  // their end (90 s at most, then it is killed).
  CtlResult Ctl(std::vector<std::string> args, const char* key = kSubmitterKey) {
    args.insert(args.begin(), SandboxctlPath());
    Child::Options o;
    o.env = {"PATH=/usr/bin:/bin", "SANDBOXD_HOST=unix:" + api_sock_,
             std::string("SANDBOXD_API_KEY=") + key, "TMPDIR=" + dir_};
    o.cwd = dir_;
    o.death_signal = SIGKILL;
    auto c = Child::Start(args, o);
    EXPECT_NE(c, nullptr);
    return Collect(c.get());
  }

  static nlohmann::json Json(const CtlResult& r) {
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON:\n" << r.out << "\nstderr:\n" << r.err;
    return j;
  }
};

TEST_F(CtlSandboxTest, CreateExecCopyLogsListInspectRemove) {
  // create: the default shape is within the policy's sandboxes section, so it runs at once.
  CtlResult created = Ctl({"sandbox", "create", "--label", "suite=ctl"});
  ASSERT_EQ(created.code, 0) << created.err;
  EXPECT_EQ(created.err, "");  // RUNNING: nothing to say
  const std::string id = created.out.substr(0, created.out.find('\n'));
  ASSERT_EQ(id.rfind("sbx_", 0), 0u) << created.out;

  // exec: the output on our streams, the exit status as ours.
  CtlResult exec = Ctl({"sandbox", "exec", id, "--tag", "greet", "--", "/bin/sh", "-c",
                        "echo hello; echo oops >&2; exit 3"});
  EXPECT_EQ(exec.code, 3) << exec.err;
  EXPECT_EQ(exec.out, "hello\n");
  EXPECT_EQ(exec.err, "oops\n");
  CtlResult killed = Ctl({"sandbox", "exec", id, "--", "/bin/sh", "-c", "kill -9 $$"});
  EXPECT_EQ(killed.code, 137) << killed.err;

  // cp: every byte value, in and out again, the same.
  std::string binary;
  for (int i = 0; i < 256 * 1024; ++i) binary.push_back(static_cast<char>((i * 2654435761u) >> 24));
  {
    UniqueFd f(::open((dir_ + "/in.bin").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
    ASSERT_TRUE(f.valid());
    ASSERT_TRUE(WriteAll(f.get(), binary).ok());
  }
  CtlResult in = Ctl({"sandbox", "cp", dir_ + "/in.bin", id + ":/tmp/in.bin"});
  ASSERT_EQ(in.code, 0) << in.err;
  CtlResult sum = Ctl({"sandbox", "exec", id, "--", "/bin/sh", "-c", "wc -c < /tmp/in.bin"});
  EXPECT_EQ(sum.code, 0) << sum.err;
  EXPECT_EQ(std::stoul(sum.out), binary.size()) << sum.out;
  CtlResult back = Ctl({"sandbox", "cp", id + ":/tmp/in.bin", dir_ + "/out.bin"});
  ASSERT_EQ(back.code, 0) << back.err;
  auto copied = ReadFile(dir_ + "/out.bin", 16 << 20);
  ASSERT_TRUE(copied.ok()) << copied.error().ToString();
  EXPECT_TRUE(*copied == binary) << "the file came back different (" << copied->size() << " bytes)";
  CtlResult missing = Ctl({"sandbox", "cp", id + ":/tmp/none", dir_ + "/none"});
  EXPECT_EQ(missing.code, 1);

  // logs: by tag, each stream to its own, and one of them alone.
  CtlResult logs = Ctl({"sandbox", "logs", id, "greet"});
  EXPECT_EQ(logs.code, 0) << logs.err;
  EXPECT_EQ(logs.out, "hello\n");
  EXPECT_EQ(logs.err, "oops\n");
  CtlResult err_only = Ctl({"sandbox", "logs", "--stream", "stderr", id, "greet"});
  EXPECT_EQ(err_only.out, "oops\n");
  CtlResult followed = Ctl({"sandbox", "logs", "-f", id, "greet"});
  EXPECT_EQ(followed.code, 0) << followed.err;
  EXPECT_EQ(followed.out, "hello\n");  // the process ended: nothing twice, nothing more

  // ls and inspect, as JSON.
  auto list = Json(Ctl({"sandbox", "ls", "--json", "--label", "suite=ctl"}));
  ASSERT_TRUE(list["sandboxes"].is_array()) << list.dump();
  ASSERT_EQ(list["sandboxes"].size(), 1u) << list.dump();
  EXPECT_EQ(list["sandboxes"][0]["id"], id);
  EXPECT_EQ(list["sandboxes"][0]["state"], "RUNNING");
  auto inspect = Json(Ctl({"sandbox", "inspect", "--json", id}));
  EXPECT_EQ(inspect["id"], id);
  EXPECT_EQ(inspect["state"], "RUNNING");
  EXPECT_EQ(inspect["labels"]["suite"], "ctl");
  EXPECT_EQ(inspect["policy"]["decision"], "allow") << inspect.dump();
  EXPECT_TRUE(inspect["stats"].is_object()) << inspect.dump();
  // Another key's sandbox does not exist for it.
  EXPECT_EQ(Ctl({"sandbox", "inspect", id}, kOtherKey).code, 1);

  // rm: STOPPED, and the record stays.
  CtlResult rm = Ctl({"sandbox", "rm", id});
  EXPECT_EQ(rm.code, 0) << rm.err;
  EXPECT_EQ(rm.out, "removed sandbox " + id + " (STOPPED)\n");
  auto after = Json(Ctl({"sandbox", "inspect", "--json", id}));
  EXPECT_EQ(after["state"], "STOPPED");
  EXPECT_EQ(after["reason"], "deleted");
  // The logs outlive the sandbox.
  EXPECT_EQ(Ctl({"sandbox", "logs", id, "greet"}).out, "hello\n");
}

TEST_F(CtlSandboxTest, ALargerSandboxWaitsForReview) {
  CtlResult created = Ctl({"sandbox", "create", "--memory", "1g"});
  ASSERT_EQ(created.code, 0) << created.err;
  const std::string id = created.out.substr(0, created.out.find('\n'));
  EXPECT_NE(created.err.find("sandbox " + id + " is waiting for review"), std::string::npos)
      << created.err;
  EXPECT_NE(created.err.find("memory 1 GiB above allow_within.memory 512 MiB"), std::string::npos)
      << created.err;
  EXPECT_EQ(Json(Ctl({"sandbox", "inspect", "--json", id}))["state"], "AWAITING_REVIEW");
  EXPECT_EQ(Ctl({"sandbox", "rm", id}).code, 0);
}

TEST_F(CtlSandboxTest, AReviewerApprovesAndRejectsSandboxesAndProcesses) {
  CtlResult created = Ctl({"sandbox", "create", "--memory", "1g"});
  ASSERT_EQ(created.code, 0) << created.err;
  const std::string id = created.out.substr(0, created.out.find('\n'));
  EXPECT_NE(
      created.err.find("a reviewer approves it with:\n  sandboxctl sandbox approve " + id + "\n"),
      std::string::npos)
      << created.err;
  // A submitter's key is refused, its own sandbox or not.
  CtlResult own = Ctl({"sandbox", "approve", id});
  EXPECT_EQ(own.code, 1);
  EXPECT_NE(own.err.find("HTTP 403"), std::string::npos) << own.err;
  EXPECT_EQ(Json(Ctl({"sandbox", "inspect", "--json", id}))["state"], "AWAITING_REVIEW");
  // The reviewer's: it starts.
  CtlResult approved = Ctl({"sandbox", "approve", id}, kReviewerKey);
  EXPECT_EQ(approved.code, 0) << approved.err;
  EXPECT_EQ(approved.out, "approved sandbox " + id + " (RUNNING)\n");
  auto inspect = Json(Ctl({"sandbox", "inspect", "--json", id}));
  EXPECT_EQ(inspect["state"], "RUNNING");
  EXPECT_EQ(inspect["approval"]["approved_by"], "rev") << inspect.dump();

  // A process the command policy sends to review: the notice names the command, the submitter
  // cannot approve it, the reviewer can (by tag), and it runs.
  CtlResult started =
      Ctl({"sandbox", "exec", "-d", "--tag", "rev", id, "--", "/bin/echo", "needs-review", "now"});
  ASSERT_EQ(started.code, 0) << started.err;
  const std::string pid = started.out.substr(0, started.out.find('\n'));
  EXPECT_NE(started.err.find("sandboxctl sandbox approve " + id + " --process " + pid + "\n"),
            std::string::npos)
      << started.err;
  CtlResult not_mine = Ctl({"sandbox", "approve", id, "--process", "rev"});
  EXPECT_EQ(not_mine.code, 1);
  EXPECT_NE(not_mine.err.find("HTTP 403"), std::string::npos) << not_mine.err;
  CtlResult p_ok = Ctl({"sandbox", "approve", "--json", id, "--process", "rev"}, kReviewerKey);
  EXPECT_EQ(p_ok.code, 0) << p_ok.err;
  EXPECT_NE(Json(p_ok)["state"], "AWAITING_REVIEW") << p_ok.out;
  CtlResult logs = Ctl({"sandbox", "logs", "-f", id, "rev"});
  EXPECT_EQ(logs.code, 0) << logs.err;
  EXPECT_EQ(logs.out, "needs-review now\n");

  // Another process rejected with a reason: it never runs.
  ASSERT_EQ(
      Ctl({"sandbox", "exec", "-d", "--tag", "no", id, "--", "/bin/echo", "needs-review", "never"})
          .code,
      0);
  CtlResult p_no =
      Ctl({"sandbox", "reject", id, "-p", "no", "--reason", "not today"}, kReviewerKey);
  EXPECT_EQ(p_no.code, 0) << p_no.err;
  EXPECT_NE(p_no.out.find("rejected process no in sandbox " + id + " (REJECTED)"),
            std::string::npos)
      << p_no.out;

  // A sandbox rejected: FAILED, the reason kept.
  CtlResult other = Ctl({"sandbox", "create", "--memory", "1g"});
  ASSERT_EQ(other.code, 0) << other.err;
  const std::string other_id = other.out.substr(0, other.out.find('\n'));
  CtlResult rejected =
      Ctl({"sandbox", "reject", "--json", "--reason", "too big", other_id}, kReviewerKey);
  EXPECT_EQ(rejected.code, 0) << rejected.err;
  auto r = Json(rejected);
  EXPECT_EQ(r["state"], "FAILED");
  EXPECT_EQ(r["reason"], "rejected: too big");
  EXPECT_EQ(Ctl({"sandbox", "rm", id}).code, 0);
}

TEST_F(CtlSandboxTest, SnapshotAndBranchFromIt) {
  CtlResult created = Ctl({"sandbox", "create"});
  ASSERT_EQ(created.code, 0) << created.err;
  const std::string id = created.out.substr(0, created.out.find('\n'));
  ASSERT_EQ(Ctl({"sandbox", "exec", id, "--", "/bin/sh", "-c", "echo kept > /tmp/kept"}).code, 0);
  CtlResult snap = Ctl({"sandbox", "snapshot", id, "base"});
  ASSERT_EQ(snap.code, 0) << snap.err;
  EXPECT_EQ(snap.out.rfind("snapshot base (snap_", 0), 0u) << snap.out;
  EXPECT_EQ(Ctl({"sandbox", "snapshot", id, "base"}).code, 1);      // the name is taken
  EXPECT_EQ(Ctl({"sandbox", "snapshot", id, "../x"}).code, 1);      // a bad name
  EXPECT_EQ(Ctl({"sandbox", "snapshot", id}).code, 2);              // usage
  auto list = Json(Ctl({"sandbox", "snapshots", "--json"}));
  ASSERT_EQ(list["snapshots"].size(), 1u) << list.dump();
  EXPECT_EQ(list["snapshots"][0]["source_sandbox"], id);
  EXPECT_EQ(Json(Ctl({"sandbox", "snapshots", "--json"}, kOtherKey))["snapshots"].size(), 0u);

  CtlResult branch = Ctl({"sandbox", "create", "--from-snapshot", "base"});
  ASSERT_EQ(branch.code, 0) << branch.err;
  const std::string b = branch.out.substr(0, branch.out.find('\n'));
  CtlResult cat = Ctl({"sandbox", "exec", b, "--", "/bin/cat", "/tmp/kept"});
  EXPECT_EQ(cat.code, 0) << cat.err;
  EXPECT_EQ(cat.out, "kept\n");
  // Another key cannot start from it; once removed, nobody can.
  EXPECT_EQ(Ctl({"sandbox", "create", "--from-snapshot", "base"}, kOtherKey).code, 1);
  EXPECT_EQ(Ctl({"sandbox", "snapshot-rm", "base"}).code, 0);
  EXPECT_EQ(Ctl({"sandbox", "create", "--from-snapshot", "base"}).code, 1);
  EXPECT_EQ(Ctl({"sandbox", "rm", id, b}).code, 0);
}

}  // namespace
}  // namespace sbx::testing
