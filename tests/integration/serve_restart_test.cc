// The real daemon (sandboxd-server) killed with SIGKILL in the middle of a run and started again:
// the run that was running ends FAILED (supervisor_restart) with its logs up to that moment; runs
// waiting for review or queued carry on; no sandbox or cgroup is left behind. Then SIGTERM stops
// the daemon cleanly.
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "integration/server_harness.h"

namespace sbx::testing {
namespace {

constexpr char kAlice[] = "restart-test-alice";
constexpr char kBob[] = "restart-test-bob";

class ServeRestartTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    if (IsSkipped()) return;
    SetUpServer("restart", "  \"*\": review\n");
    WriteConfig("127.0.0.1:0", {{"alice", "submitter", kAlice}, {"bob", "reviewer", kBob}},
                "max_concurrent_runs: 1\n");
  }

  // The cgroups under the daemon's parent, in any hierarchy.
  std::vector<std::string> DaemonCgroups() const {
    std::vector<std::string> out;
    for (const auto& root : CgroupRoots()) {
      DIR* d = ::opendir((root + "/" + cgroup_parent_).c_str());
      if (d == nullptr) continue;
      while (dirent* e = ::readdir(d)) {
        if (e->d_type == DT_DIR && e->d_name[0] != '.') out.push_back(root + "/" + e->d_name);
      }
      ::closedir(d);
    }
    return out;
  }

  // How many mount points in the host's table start with dir + prefix.
  static size_t MountsUnder(const std::string& dir, const std::string& prefix) {
    std::ifstream mounts("/proc/self/mountinfo");
    size_t n = 0;
    for (std::string line; std::getline(mounts, line);) {
      n += line.find(" " + dir + prefix) != std::string::npos;
    }
    return n;
  }

  // Starts the daemon, waits until it is ready and learns its port.
  void StartDaemon() {
    StartServerOnLoopback();
  }

  // SIGKILL, reaped, then a fresh daemon started on the same database and data directory.
  void KillNineAndRestart() {
    ASSERT_EQ(::kill(pid_, SIGKILL), 0);
    ASSERT_EQ(::waitpid(pid_, nullptr, 0), pid_);
    pid_ = -1;
    StartDaemon();
  }
  // Every cgroup left under the daemon's parent is one of the running daemon's warm sandboxes.
  void ExpectOnlyTheNewDaemonsWarmCgroups() const {
    const std::string mine = "warm-" + std::to_string(pid_) + "-";
    for (const auto& cg : DaemonCgroups()) {
      EXPECT_EQ(cg.rfind('/') + 1, cg.rfind("/" + mine) + 1) << cg << " left behind";
    }
  }

  std::string Submit(const std::string& body) {
    auto r = Call("POST", "/v1/runs", kAlice, body);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.Json().value("id", "");
  }
  bool WaitForEvent(const std::string& id, const std::string& type) {
    return !ServerTest::WaitForEvent(id, type, kAlice).is_null();
  }
};

TEST_F(ServeRestartTest, KillNineMidRunThenRestartLosesNothing) {
  StartDaemon();
  std::string running = Submit(R"({"argv": ["/bin/sh", "-c", "echo before; exec sleep 300"]})");
  ASSERT_EQ(Call("POST", "/v1/runs/" + running + ":approve", kBob).status, 200);
  ASSERT_TRUE(WaitForEvent(running, "step.log"));
  std::string waiting = Submit(R"({"argv": ["/bin/echo", "waiting"]})");
  std::string queued = Submit(R"({"argv": ["/bin/echo", "queued"]})");
  ASSERT_EQ(Call("POST", "/v1/runs/" + queued + ":approve", kBob).status, 200);
  EXPECT_EQ(Call("GET", "/v1/runs/" + queued, kAlice).Json()["state"], "QUEUED");
  EXPECT_FALSE(DaemonCgroups().empty());

  KillNineAndRestart();
  auto r = Call("GET", "/v1/runs/" + running, kAlice).Json();
  EXPECT_EQ(r["state"], "FAILED");
  EXPECT_EQ(r["result"]["reason"], "supervisor_restart");
  EXPECT_EQ(Call("GET", "/v1/runs/" + running + "/logs?stream=stdout", kAlice).body, "before\n");
  EXPECT_TRUE(WaitForEvent(running, "run.completed"));
  EXPECT_EQ(Call("GET", "/v1/runs/" + waiting, kAlice).Json()["state"], "AWAITING_REVIEW");
  ASSERT_TRUE(WaitForEvent(queued, "run.completed"));
  auto q = Call("GET", "/v1/runs/" + queued, kAlice).Json();
  EXPECT_EQ(q["state"], "SUCCEEDED");
  EXPECT_EQ(Call("GET", "/v1/runs/" + queued + "/logs", kAlice).body, "queued\n");
  // The killed daemon's sandbox cgroups (its runs', its warm sandboxes') were killed and
  // removed at the restart; the queued run's own is gone too. What is left is the new daemon's
  // warm sandboxes, waiting for runs.
  ExpectOnlyTheNewDaemonsWarmCgroups();
  const std::string mine = "warm-" + std::to_string(pid_) + "-";
  // Of the mounts under the data directory, only the new daemon's warm sandboxes' are left: one
  // tmpfs at data/warm and what is under it.
  EXPECT_EQ(MountsUnder(dir_, "/data/runs/"), 0u);
  EXPECT_EQ(MountsUnder(dir_, "/data/warm "), 1u);
  EXPECT_EQ(MountsUnder(dir_, "/data/warm/warm-"), MountsUnder(dir_, "/data/warm/" + mine));

  // The audit chain recorded the recovery.
  auto audit = Call("GET", "/v1/audit?run_id=" + running, kBob).Json();
  bool recovered = false;
  for (const auto& a : audit["records"]) recovered |= a["action"] == "run.recovered";
  EXPECT_TRUE(recovered);

  // SIGTERM: a clean stop.
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid_, &status, 0), pid_);
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  // And it leaves nothing: no cgroup, no mount.
  EXPECT_TRUE(DaemonCgroups().empty());
  EXPECT_EQ(MountsUnder(dir_, "/"), 0u);
}

TEST_F(ServeRestartTest, KillNineWithALiveSandboxThenRestartEndsItAndLeavesNothing) {
  StartDaemon();
  auto created = Call("POST", "/v1/sandboxes", kAlice, "{}");
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = created.Json().value("id", "");
  ASSERT_EQ(Call("POST", "/v1/sandboxes/" + id + ":approve", kBob).status, 200);
  auto p = Call("POST", "/v1/sandboxes/" + id + "/processes", kAlice,
                R"({"argv": ["/bin/sh", "-c", "echo before; exec sleep 300"], "tag": "t"})");
  ASSERT_EQ(p.status, 201) << p.body;
  ASSERT_EQ(Call("POST", "/v1/sandboxes/" + id + "/processes/t:approve", kBob).status, 200);
  const std::string logs = "/v1/sandboxes/" + id + "/processes/t/logs?stream=stdout";
  for (int i = 0; i < 500 && Call("GET", logs, kAlice).body != "before\n"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // bounded: no event to wait on
  }
  ASSERT_EQ(Call("GET", logs, kAlice).body, "before\n");
  // The sandbox's cgroups: its own and, in the unified hierarchy, the process's below it.
  bool nested = false;
  for (const auto& root : CgroupRoots()) {
    nested |= ::access((root + "/" + cgroup_parent_ + "/" + id + "/p1").c_str(), F_OK) == 0;
  }
  EXPECT_TRUE(nested);

  KillNineAndRestart();
  auto sb = Call("GET", "/v1/sandboxes/" + id, kAlice).Json();
  EXPECT_EQ(sb["state"], "FAILED");
  EXPECT_EQ(sb["reason"], "supervisor_restart");
  auto proc = Call("GET", "/v1/sandboxes/" + id + "/processes/t", kAlice).Json();
  EXPECT_EQ(proc["state"], "FINISHED");
  EXPECT_EQ(proc["result"]["reason"], "supervisor_restart");
  // Its output stays readable after the daemon that ran it died.
  EXPECT_EQ(Call("GET", logs, kAlice).body, "before\n");
  // The killed daemon's sandbox cgroups, nested ones included, and mounts are gone.
  ExpectOnlyTheNewDaemonsWarmCgroups();
  EXPECT_EQ(MountsUnder(dir_, "/data/sandboxes/"), 0u);

  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid_, &status, 0), pid_);
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_TRUE(DaemonCgroups().empty());
  EXPECT_EQ(MountsUnder(dir_, "/"), 0u);
}

}  // namespace
}  // namespace sbx::testing
