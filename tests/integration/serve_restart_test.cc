// The real daemon (sandboxd-server) killed with SIGKILL in the middle of a run and started again:
// the run that was running ends FAILED (supervisor_restart) with its logs up to that moment; runs
// waiting for review or queued carry on; no sandbox or cgroup is left behind. Then SIGTERM stops
// the daemon cleanly.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "api/testing/raw_client.h"
#include "base/sha256.h"
#include "integration/sandbox_harness.h"

namespace sbx::testing {
namespace {

using api::testing::HttpReply;
using api::testing::MakeRequest;
using api::testing::MakeWsUpgrade;
using api::testing::RawConn;
using api::testing::RoundTrip;
using api::testing::WsReadFrame;

constexpr char kAlice[] = "restart-test-alice";
constexpr char kBob[] = "restart-test-bob";

class ServeRestartTest : public SandboxTest {
 protected:
  void SetUp() override {
    SandboxTest::SetUp();
    if (IsSkipped()) return;
    char dir[] = "/tmp/sbx-restart-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    ::chmod(dir, 0711);  // the sandboxes reach their mount points through it
    dir_ = dir;
    cgroup_parent_ = "sandboxd-restart-test-" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_ + "/policies");
    std::ofstream(dir_ + "/policies/commands.yaml") << "rules:\n  \"*\": review\n";
    std::ofstream(dir_ + "/sandboxd.yaml")
        << "listen: [\"127.0.0.1:0\"]\n"
        << "database: sqlite://" << dir_ << "/sandboxd.db\n"
        << "data_dir: " << dir_ << "/data\n"
        << "node: restart-test\n"
        << "cgroup_parent: " << cgroup_parent_ << "\n"
        << "policy_dir: " << dir_ << "/policies\n"
        << "max_concurrent_runs: 1\n"
        << "api_keys:\n"
        << "  - {name: alice, role: submitter, key_sha256: " << Sha256Hex(kAlice) << "}\n"
        << "  - {name: bob, role: reviewer, key_sha256: " << Sha256Hex(kBob) << "}\n";
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    // The daemon's parent cgroup, in every hierarchy (its children were checked and removed).
    for (const auto& root : CgroupRoots()) ::rmdir((root + "/" + cgroup_parent_).c_str());
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
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

  // Starts the daemon and reads its stdout until it is ready; learns its port.
  void StartDaemon() {
    int out[2];
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    std::string server = std::string(SBX_BINARY_DIR) + "/supervisor/sandboxd-server";
    std::string config = dir_ + "/sandboxd.yaml";
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::execl(server.c_str(), server.c_str(), "--config", config.c_str(), nullptr);
      ::_exit(127);
    }
    ::close(out[1]);
    std::string text;
    char buf[4096];
    while (text.find("sandboxd: ready") == std::string::npos) {
      ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
    ::close(out[0]);  // later output goes to a closed pipe: SIGPIPE is ignored by the daemon
    ASSERT_NE(text.find("sandboxd: ready"), std::string::npos) << text;
    size_t at = text.find("listening on 127.0.0.1:");
    ASSERT_NE(at, std::string::npos) << text;
    port_ = static_cast<uint16_t>(std::stoi(text.substr(at + 23)));
  }

  HttpReply Call(const std::string& method, const std::string& target, const char* key,
                 const std::string& body = "") {
    auto c = RawConn::Tcp(port_);
    EXPECT_TRUE(c.has_value());
    if (!c) return {};
    std::vector<std::pair<std::string, std::string>> headers = {{"x-api-key", key}};
    if (!body.empty()) headers.push_back({"Content-Type", "application/json"});
    auto r = RoundTrip(*c, MakeRequest(method, target, headers, body));
    EXPECT_TRUE(r.has_value()) << method << " " << target;
    return r ? *r : HttpReply{};
  }
  std::string Submit(const std::string& body) {
    auto r = Call("POST", "/v1/runs", kAlice, body);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.Json().value("id", "");
  }
  // Reads the run's events until one of `type` arrives (or the stream ends).
  bool WaitForEvent(const std::string& id, const std::string& type) {
    auto ws = RawConn::Tcp(port_);
    if (!ws) return false;
    ws->Send(MakeWsUpgrade("/v1/runs/" + id + "/events?after=0", {{"x-api-key", kAlice}}));
    auto head = api::testing::ReadHead(*ws);
    if (!head || head->status != 101) return false;
    for (;;) {
      auto f = WsReadFrame(*ws);
      if (!f || f->opcode == 8) return false;
      if (nlohmann::json::parse(f->payload).value("type", "") == type) return true;
    }
  }

  std::string dir_;
  std::string cgroup_parent_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
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

  ASSERT_EQ(::kill(pid_, SIGKILL), 0);
  ASSERT_EQ(::waitpid(pid_, nullptr, 0), pid_);
  pid_ = -1;

  StartDaemon();
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
  // The killed daemon's sandbox cgroups were killed and removed at the restart; the queued
  // run's own is gone too.
  EXPECT_TRUE(DaemonCgroups().empty());
  // No mount is left under the data directory.
  std::ifstream mounts("/proc/self/mountinfo");
  for (std::string line; std::getline(mounts, line);) {
    EXPECT_EQ(line.find(dir_), std::string::npos) << line;
  }

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
}

}  // namespace
}  // namespace sbx::testing
