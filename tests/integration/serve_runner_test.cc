// An outbound runner (sandboxd-server runner) and its coordinator (sandboxd-server on SQLite),
// both real daemons, the runner's link going through a TCP relay the test can cut: the runner
// has no listening socket; runs routed to it by label run there and everything they record
// (events, logs, artifacts, the end) reaches the coordinator; a link cut mid-run and restored
// loses no log byte and delivers none twice; what the runner could not send survives its
// restart; a runner cut off for longer than node_timeout is lost (its run ends node_lost, once)
// and kills what it ran; a run cancelled on the coordinator is killed on the runner and ends
// once; a forged token is refused; a revoked one ends the link and is refused from then on;
// through a TLS terminator, the runner links over wss:// only with the CA that signed the
// coordinator's certificate. (serve_nodes_test puts a runner in a network namespace of its own.)
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <dirent.h>
#include <fstream>
#include <iterator>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "api/testing/raw_client.h"
#include "base/fs.h"
#include "integration/server_harness.h"
#include "supervisor/runner/protocol.h"
#include "supervisor/store/store.h"
#include "tests/support/child_process.h"
#include "tests/support/test_certs.h"

namespace sbx::testing {
namespace {

constexpr char kAlice[] = "runner-test-alice";
constexpr char kAda[] = "runner-test-ada";
constexpr char kBob[] = "runner-test-bob";

// A TCP relay on 127.0.0.1: each connection accepted is joined to a new connection to `target`.
// Cut() ends every joined pair at once; while refusing, new connections are closed on accept.
class Relay {
 public:
  explicit Relay(uint16_t target) : target_(target) {
    listen_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listen_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listen_.get(), 16), 0);
    socklen_t len = sizeof a;
    ::getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    EXPECT_EQ(::pipe2(stop_, O_CLOEXEC), 0);
    thread_ = std::thread([this] { Loop(); });
  }
  ~Relay() {
    (void)::write(stop_[1], "x", 1);
    thread_.join();
    ::close(stop_[0]);
    ::close(stop_[1]);
  }
  uint16_t port() const { return port_; }
  void Cut(bool refuse) {
    refusing_ = refuse;
    cut_ = true;
    (void)::write(stop_[1], "c", 1);
  }
  void Restore() { refusing_ = false; }
  int accepted() const { return accepted_; }

 private:
  void Loop() {
    std::vector<std::pair<UniqueFd, UniqueFd>> pairs;
    for (;;) {
      std::vector<pollfd> fds = {{listen_.get(), POLLIN, 0}, {stop_[0], POLLIN, 0}};
      for (auto& [a, b] : pairs) {
        fds.push_back({a.get(), POLLIN, 0});
        fds.push_back({b.get(), POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), -1) < 0) continue;
      if (fds[1].revents) {
        char c = 0;
        (void)::read(stop_[0], &c, 1);
        if (c == 'x') return;
        if (cut_.exchange(false)) pairs.clear();
        continue;
      }
      if (fds[0].revents) {
        UniqueFd in(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (in && !refusing_) {
          UniqueFd out(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
          sockaddr_in a{};
          a.sin_family = AF_INET;
          a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
          a.sin_port = htons(target_);
          if (::connect(out.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
            ++accepted_;
            pairs.emplace_back(std::move(in), std::move(out));
          }
        }
        continue;
      }
      std::vector<size_t> dead;
      for (size_t i = 0; i < pairs.size(); ++i) {
        for (int side = 0; side < 2; ++side) {
          const pollfd& p = fds[2 + 2 * i + side];
          if (!p.revents) continue;
          int from = side == 0 ? pairs[i].first.get() : pairs[i].second.get();
          int to = side == 0 ? pairs[i].second.get() : pairs[i].first.get();
          char buf[65536];
          const ssize_t n = ::read(from, buf, sizeof buf);
          if (n <= 0 || !WriteAll(to, std::string_view(buf, static_cast<size_t>(n))).ok()) {
            dead.push_back(i);
            break;
          }
        }
      }
      for (auto it = dead.rbegin(); it != dead.rend(); ++it) pairs.erase(pairs.begin() + *it);
    }
  }

  uint16_t target_;
  uint16_t port_ = 0;
  UniqueFd listen_;
  int stop_[2] = {-1, -1};
  std::atomic<bool> refusing_{false};
  std::atomic<bool> cut_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

// One daemon of the two.
class Daemon : public ServerTest {
 public:
  void TestBody() override {}
  using ServerTest::Call;
  using ServerTest::dir_;
  using ServerTest::node_;
  using ServerTest::pid_;
  using ServerTest::port_;
  using ServerTest::WaitForEvent;
  using ServerTest::ReadUntilReady;
  using ServerTest::StartServer;
  using ServerTest::StopServer;

  void Configure(const std::string& name) {
    SetUpServer(name, "  \"*\": allow\n");
    WriteConfig("127.0.0.1:0",
                {{"alice", "submitter", kAlice}, {"ada", "admin", kAda}, {"bob", "reviewer", kBob}},
                "max_concurrent_runs: 2\nwarm_sandboxes: 0\nheartbeat_interval_ms: 200\n"
                "node_timeout_ms: 4000\n");
  }
  void StartOnLoopback() { StartServerOnLoopback(); }
  void Stop() { TearDown(); }
};

class ServeRunnerTest : public SandboxTest {
 protected:
  void SetUp() override {
    SandboxTest::SetUp();
    if (IsSkipped()) return;
    coordinator_.Configure("rcoord");
    if (HasFatalFailure()) return;
    coordinator_.StartOnLoopback();
    if (HasFatalFailure()) return;
    relay_ = std::make_unique<Relay>(coordinator_.port_);
  }
  void TearDown() override {
    runner_.Stop();
    relay_.reset();
    coordinator_.Stop();
  }

  // Issues a token for runner `name` (as the admin) and starts the runner daemon with it,
  // dialling through the relay.
  void StartRunner(const std::string& name) {
    auto issued = coordinator_.Call("POST", "/v1/runners", kAda, R"({"name":")" + name + R"("})");
    ASSERT_EQ(issued.status, 201) << issued.body;
    token_ = issued.Json()["token"];
    runner_.Configure(name);
    if (HasFatalFailure()) return;
    std::ofstream(runner_.dir_ + "/token") << token_ << "\n";
    RestartRunner(name);
    if (HasFatalFailure()) return;
    // Connected once its node shows in the coordinator's list.
    for (int i = 0; i < 600 && !NodeReady(name); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_TRUE(NodeReady(name)) << "the runner never registered";
  }
  void RestartRunner(const std::string& name) {
    runner_.StartServer(
        {.args = {"runner", "--connect",
                  "ws://127.0.0.1:" + std::to_string(relay_->port()) + "/v1/runners",
                  "--token-file", runner_.dir_ + "/token", "--node", name}});
    ASSERT_NE(runner_.ReadUntilReady().find("sandboxd: ready (runner " + name), std::string::npos);
  }
  bool NodeReady(const std::string& name) {
    auto r = coordinator_.Call("GET", "/v1/nodes", kBob);
    for (const auto& n : r.Json().value("nodes", nlohmann::json::array())) {
      if (n.value("name", "") == name && n.value("state", "") == "ready" &&
          n["labels"].value("runner", "") == "true") {
        return true;
      }
    }
    return false;
  }
  // The status of a WebSocket upgrade of /v1/runners presenting `token`.
  int UpgradeStatus(const std::string& token) {
    auto c = api::testing::RawConn::Tcp(coordinator_.port_);
    if (!c) return -1;
    c->Send(api::testing::MakeWsUpgrade("/v1/runners", {{"Authorization", "Bearer " + token}}));
    auto head = api::testing::ReadHead(*c);
    return head ? head->status : -1;
  }
  std::string Submit(const std::string& script) {
    nlohmann::json body = {{"argv", {"/bin/sh", "-c", script}},
                           {"node_selector", {{"runner", "true"}}}};
    auto r = coordinator_.Call("POST", "/v1/runs", kAlice, body.dump());
    EXPECT_EQ(r.status, 201) << r.body;
    return r.Json().value("id", "");
  }
  // Every event of the run, as a client of the coordinator reads them (its event stream from
  // the start, which ends after run.completed).
  std::vector<nlohmann::json> Events(const std::string& id) {
    std::vector<nlohmann::json> out;
    auto ws = api::testing::RawConn::Tcp(coordinator_.port_);
    if (!ws) return out;
    ws->SetTimeout(std::chrono::seconds(60));
    ws->Send(api::testing::MakeWsUpgrade("/v1/runs/" + id + "/events?after=0",
                                         {{"x-api-key", kAlice}}));
    auto head = api::testing::ReadHead(*ws);
    if (!head || head->status != 101) return out;
    for (;;) {
      auto f = api::testing::WsReadFrame(*ws);
      if (!f || f->opcode == 8) return out;
      out.push_back(nlohmann::json::parse(f->payload));
      if (out.back().value("type", "") == "run.completed") return out;
    }
  }

  Daemon coordinator_;
  Daemon runner_;
  std::unique_ptr<Relay> relay_;
  std::string token_;
};

std::string Lines(int n) {
  std::string out;
  for (int i = 1; i <= n; ++i) out += "line-" + std::to_string(i) + "\n";
  return out;
}

TEST_F(ServeRunnerTest, ARunRoutedToTheRunnerRunsThereAndEverythingItRecordsReachesTheCoordinator) {
  StartRunner("edge1");
  if (HasFatalFailure()) return;
  // The runner dials out and listens nowhere.
  std::set<std::string> sockets;
  const std::string fd_dir = "/proc/" + std::to_string(runner_.pid_) + "/fd";
  if (DIR* d = ::opendir(fd_dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      char target[256] = {};
      if (::readlink((fd_dir + "/" + e->d_name).c_str(), target, sizeof target - 1) > 0 &&
          std::string_view(target).starts_with("socket:[")) {
        sockets.insert(std::string(target).substr(8, std::strlen(target) - 9));
      }
    }
    ::closedir(d);
  }
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string sl, local, remote, st, queues, tr, retr, uid, timeout, inode;
      f >> sl >> local >> remote >> st >> queues >> tr >> retr >> uid >> timeout >> inode;
      EXPECT_FALSE(st == "0A" && sockets.count(inode) != 0) << "the runner listens on " << local;
    }
  }

  const std::string id = Submit("for i in $(seq 1 50); do echo line-$i; done; echo oops >&2");
  auto done = coordinator_.WaitForEvent(id, "run.completed", kAlice);
  ASSERT_FALSE(done.is_null());
  EXPECT_EQ(done["state"], "SUCCEEDED");
  auto run = coordinator_.Call("GET", "/v1/runs/" + id, kAlice).Json();
  EXPECT_EQ(run["node"], "edge1");
  EXPECT_EQ(run["result"]["exit_code"], 0);
  auto out = coordinator_.Call("GET", "/v1/runs/" + id + "/logs?stream=stdout", kAlice);
  EXPECT_EQ(out.body, Lines(50));
  auto err = coordinator_.Call("GET", "/v1/runs/" + id + "/logs?stream=stderr", kAlice);
  EXPECT_EQ(err.body, "oops\n");
  // Its artifacts were written on the runner and are served by the coordinator.
  auto report = coordinator_.Call("GET", "/v1/runs/" + id + "/artifacts/report.md", kAlice);
  EXPECT_EQ(report.status, 200) << report.body;
  EXPECT_NE(report.body.find("line-50"), std::string::npos);
  int completed = 0, started = 0;
  for (const auto& e : Events(id)) {
    completed += e.value("type", "") == "run.completed";
    started += e.value("type", "") == "step.started";
  }
  EXPECT_EQ(completed, 1);
  EXPECT_EQ(started, 1);
  // The coordinator's own node never ran it.
  auto other = coordinator_.Call("GET", "/v1/nodes", kBob).Json();
  EXPECT_EQ(other["nodes"].size(), 2u);
}

TEST_F(ServeRunnerTest, ALinkCutMidRunLosesNoLogByteAndDeliversNoneTwice) {
  StartRunner("edge2");
  if (HasFatalFailure()) return;
  const int n = 400;
  const std::string id =
      Submit("for i in $(seq 1 " + std::to_string(n) + "); do echo line-$i; sleep 0.01; done");
  ASSERT_FALSE(coordinator_.WaitForEvent(id, "step.log", kAlice).is_null());
  const int before = relay_->accepted();
  relay_->Cut(/*refuse=*/true);
  // Down for a while, output piling up on the runner, then back.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  relay_->Restore();
  auto done = coordinator_.WaitForEvent(id, "run.completed", kAlice);
  ASSERT_FALSE(done.is_null());
  EXPECT_EQ(done["state"], "SUCCEEDED");
  EXPECT_GT(relay_->accepted(), before) << "the runner never reconnected";
  auto out = coordinator_.Call("GET", "/v1/runs/" + id + "/logs?stream=stdout", kAlice);
  EXPECT_EQ(out.body, Lines(n));
  // The step.log events tile the log: each byte announced exactly once, in order, and a client
  // following the events reads each byte once.
  int64_t next = 0;
  int completed = 0;
  std::string streamed;
  for (const auto& e : Events(id)) {
    if (e.value("type", "") == "run.completed") ++completed;
    if (e.value("type", "") != "step.log" || e.value("stream", "") != "stdout") continue;
    EXPECT_EQ(e.value("offset", int64_t{-1}), next);
    next += e.value("length", int64_t{0});
    streamed += e.value("data", "");
  }
  EXPECT_EQ(next, static_cast<int64_t>(Lines(n).size()));
  EXPECT_EQ(streamed, Lines(n));
  EXPECT_EQ(completed, 1);
  auto runner = coordinator_.Call("GET", "/v1/runners/edge2", kAda).Json();
  EXPECT_GT(runner["applied_seq"].get<int64_t>(), 0);
}

TEST_F(ServeRunnerTest, WhatTheRunnerCouldNotSendSurvivesItsRestart) {
  StartRunner("edge4");
  if (HasFatalFailure()) return;
  const std::string id = Submit("sleep 1; for i in $(seq 1 20); do echo line-$i; done");
  ASSERT_FALSE(coordinator_.WaitForEvent(id, "step.started", kAlice).is_null());
  relay_->Cut(/*refuse=*/true);
  // The run ends on the runner while its link is down: its end is in the runner's outbox (and
  // its manifest, written last, in its data directory).
  const std::string manifest = runner_.dir_ + "/data/runs/" + id + "/artifacts.json";
  for (int i = 0; i < 200 && ::access(manifest.c_str(), F_OK) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(::access(manifest.c_str(), F_OK), 0) << "the run never ended on the runner";
  EXPECT_EQ(coordinator_.Call("GET", "/v1/runs/" + id, kAlice).Json()["state"], "RUNNING");
  // Killed, started again, and reconnected: it sends what it kept.
  runner_.StopServer(SIGKILL);
  RestartRunner("edge4");
  if (HasFatalFailure()) return;
  relay_->Restore();
  auto done = coordinator_.WaitForEvent(id, "run.completed", kAlice);
  ASSERT_FALSE(done.is_null());
  EXPECT_EQ(done["state"], "SUCCEEDED");
  EXPECT_EQ(coordinator_.Call("GET", "/v1/runs/" + id + "/logs?stream=stdout", kAlice).body,
            Lines(20));
  EXPECT_EQ(coordinator_.Call("GET", "/v1/runs/" + id + "/artifacts/report.md", kAlice).status,
            200);
}

TEST_F(ServeRunnerTest, ARunnerCutOffLongerThanTheTimeoutIsLostAndKillsWhatItRan) {
  StartRunner("edge5");
  if (HasFatalFailure()) return;
  const std::string id = Submit("echo started; sleep 120; echo never");
  ASSERT_FALSE(coordinator_.WaitForEvent(id, "step.log", kAlice).is_null());
  relay_->Cut(/*refuse=*/true);
  // Past node_timeout_ms (4 s) without a beat, the coordinator's node declares it lost.
  auto lost = coordinator_.WaitForEvent(id, "run.completed", kAlice);
  ASSERT_FALSE(lost.is_null());
  EXPECT_EQ(lost["state"], "FAILED");
  EXPECT_EQ(lost["reason"], "node_lost");
  // And the runner, cut off as long, killed the run rather than let it go on (its end, and
  // then its manifest, written on the runner long before the 120 s sleep would end).
  const std::string manifest = runner_.dir_ + "/data/runs/" + id + "/artifacts.json";
  for (int i = 0; i < 300 && ::access(manifest.c_str(), F_OK) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(::access(manifest.c_str(), F_OK), 0) << "the runner still runs what was given away";
  // Healed: it registers again and takes new work; what it sent about the lost run is dropped.
  relay_->Restore();
  for (int i = 0; i < 600 && !NodeReady("edge5"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(NodeReady("edge5"));
  const std::string next = Submit("echo again");
  auto done = coordinator_.WaitForEvent(next, "run.completed", kAlice);
  ASSERT_FALSE(done.is_null());
  EXPECT_EQ(done["state"], "SUCCEEDED");
  auto run = coordinator_.Call("GET", "/v1/runs/" + id, kAlice).Json();
  EXPECT_EQ(run["state"], "FAILED");
  int completed = 0;
  for (const auto& e : Events(id)) completed += e.value("type", "") == "run.completed";
  EXPECT_EQ(completed, 1);
  EXPECT_EQ(coordinator_.Call("GET", "/v1/runs/" + id + "/logs?stream=stdout", kAlice).body,
            "started\n");
}

TEST_F(ServeRunnerTest, ARunCancelledOnTheCoordinatorIsKilledOnTheRunnerAndEndsOnce) {
  StartRunner("edge6");
  if (HasFatalFailure()) return;
  const std::string id = Submit("echo started; sleep 120; echo never");
  ASSERT_FALSE(coordinator_.WaitForEvent(id, "step.log", kAlice).is_null());
  auto cancelled = coordinator_.Call("POST", "/v1/runs/" + id + ":cancel", kAlice);
  ASSERT_EQ(cancelled.status, 202) << cancelled.body;
  // Killed on the runner at its next beat (its end written there long before the sleep ends).
  const std::string manifest = runner_.dir_ + "/data/runs/" + id + "/artifacts.json";
  for (int i = 0; i < 300 && ::access(manifest.c_str(), F_OK) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(::access(manifest.c_str(), F_OK), 0) << "the runner still runs a cancelled run";
  // A later run's records come after the killed run's on the link: once it has completed, the
  // coordinator has seen everything the runner said about the cancelled one.
  auto next = coordinator_.WaitForEvent(Submit("echo next"), "run.completed", kAlice);
  ASSERT_FALSE(next.is_null());
  EXPECT_EQ(next["state"], "SUCCEEDED");
  auto run = coordinator_.Call("GET", "/v1/runs/" + id, kAlice).Json();
  EXPECT_EQ(run["state"], "CANCELLED");
  int completed = 0, after = 0;
  for (const auto& e : Events(id)) {
    if (completed > 0) ++after;
    completed += e.value("type", "") == "run.completed";
  }
  EXPECT_EQ(completed, 1);
  EXPECT_EQ(after, 0) << "events recorded after the run completed";
}

// A runner is trusted with its own runs' outcome, nothing more: a token holder speaking the
// protocol by hand cannot approve, re-plan or reopen a run, write outside a run's directory or
// send another runner's acknowledgements.
TEST_F(ServeRunnerTest, AHostileRunnerCannotRewriteWhatIsNotItsToSay) {
  auto issued = coordinator_.Call("POST", "/v1/runners", kAda, R"({"name":"rogue"})");
  ASSERT_EQ(issued.status, 201) << issued.body;
  const std::string token = issued.Json()["token"];
  // One link by hand: hello, welcome, then the run handed over.
  auto link = [&]() -> std::optional<api::testing::RawConn> {
    auto c = api::testing::RawConn::Tcp(coordinator_.port_);
    if (!c) return std::nullopt;
    c->SetTimeout(std::chrono::seconds(30));
    c->Send(api::testing::MakeWsUpgrade("/v1/runners", {{"Authorization", "Bearer " + token}}));
    auto head = api::testing::ReadHead(*c);
    if (!head || head->status != 101) return std::nullopt;
    api::testing::WsSendFrame(*c, 1, nlohmann::json{{"type", "hello"},
                                                    {"name", "rogue"},
                                                    {"labels", {{"zone", "r"}}},
                                                    {"capacity", 1},
                                                    {"protocol", 1}}
                                         .dump());
    return c;
  };
  // The next text message of `type` (others skipped); null when the link ends first.
  auto next = [](api::testing::RawConn& c, const std::string& type) -> nlohmann::json {
    for (;;) {
      auto f = api::testing::WsReadFrame(c);
      if (!f || f->opcode == 8) return nullptr;
      auto m = nlohmann::json::parse(f->payload, nullptr, false);
      if (m.value("type", "") == type) return m;
    }
  };
  auto c = link();
  ASSERT_TRUE(c);
  auto welcome = next(*c, "welcome");
  ASSERT_FALSE(welcome.is_null());
  EXPECT_EQ(welcome["applied_seq"], 0);
  // A beat, which the coordinator stores and echoes: a link silent for two beats gets no run.
  api::testing::WsSendFrame(
      *c, 1, nlohmann::json{{"type", "beat"}, {"n", 7}, {"running", nlohmann::json::array()},
                            {"free", 1}}.dump());
  auto echo = next(*c, "beat");
  ASSERT_FALSE(echo.is_null());
  EXPECT_EQ(echo["n"], 7);
  nlohmann::json body = {{"argv", {"/bin/true"}}, {"node_selector", {{"node", "rogue"}}}};
  auto submitted = coordinator_.Call("POST", "/v1/runs", kAlice, body.dump());
  ASSERT_EQ(submitted.status, 201);
  const std::string id = submitted.Json()["id"];
  auto assign = next(*c, "assign");
  ASSERT_FALSE(assign.is_null());
  // Its approval rewritten: refused, the link ended, and nothing of it committed.
  nlohmann::json forged = {
      {"type", "batch"},
      {"seq", 1},
      {"run_id", id},
      {"attempt", 1},
      {"writes",
       {{{"kind", "transition"},
         {"run_id", id},
         {"from", {"RUNNING"}},
         {"to", "SUCCEEDED"},
         {"update", {{"approval", {{"approved_by", "rogue"}, {"approved_at_ms", 1}, {"rule", "x"}}},
                     {"result", {{"reason", "exited"}, {"exit_code", 0}}}}}}}}};
  api::testing::WsSendFrame(*c, 1, forged.dump());
  auto error = next(*c, "error");
  ASSERT_FALSE(error.is_null());
  EXPECT_NE(error.value("message", "").find("only ends a RUNNING run"), std::string::npos)
      << error.dump();
  auto run = coordinator_.Call("GET", "/v1/runs/" + id, kAlice).Json();
  EXPECT_EQ(run["state"], "RUNNING");
  EXPECT_EQ(run["approval"]["approved_by"], "policy");
  // Again, with a file outside the run's directory, then another runner's acknowledgement.
  for (const std::string& bad : {std::string("binary"), std::string("ack")}) {
    SCOPED_TRACE(bad);
    auto again = link();
    ASSERT_TRUE(again);
    ASSERT_FALSE(next(*again, "welcome").is_null());
    if (bad == "binary") {
      api::testing::WsSendFrame(
          *again, 2,
          supervisor::runner::EncodeFileChunk(id, "artifacts/../../../../tmp/owned", 0, "x"));
    } else {
      nlohmann::json ack = {{"type", "batch"},   {"seq", 1},
                            {"run_id", id},      {"attempt", 1},
                            {"writes", {{{"kind", "runner_ack"}, {"runner", "other"}, {"seq", 1}}}}};
      api::testing::WsSendFrame(*again, 1, ack.dump());
    }
    EXPECT_FALSE(next(*again, "error").is_null());
  }
  EXPECT_NE(::access("/tmp/owned", F_OK), 0);
  EXPECT_EQ(coordinator_.Call("GET", "/v1/runners/rogue", kAda).Json()["applied_seq"], 0);
}

// wss:// through a TLS terminator in front of the coordinator (as docs/operations.md has it):
// the runner verifies the coordinator's certificate against the CA it was given, and against an
// unrelated one it never links.
TEST_F(ServeRunnerTest, OverTlsTheRunnerLinksOnlyToACoordinatorItsCaVouchesFor) {
  const std::string tls = coordinator_.dir_ + "/tls";
  ASSERT_EQ(::mkdir(tls.c_str(), 0700), 0);
  Status made = MakeTestCertificates(tls);
  ASSERT_TRUE(made.ok()) << made.error().message;
  auto terminator = Child::Start({"/usr/bin/python3", "-u",
                                  std::string(SBX_SOURCE_DIR) + "/tests/support/tls_relay.py",
                                  tls + "/server.pem", tls + "/server.key",
                                  std::to_string(coordinator_.port_)},
                                 {});
  ASSERT_NE(terminator, nullptr);
  ASSERT_TRUE(terminator->WaitFor(1, "\n", std::chrono::seconds(20))) << terminator->err();
  const std::string url = "wss://127.0.0.1:" + std::to_string(std::stoi(terminator->out())) +
                          "/v1/runners";
  auto issued = coordinator_.Call("POST", "/v1/runners", kAda, R"({"name":"edge-tls"})");
  ASSERT_EQ(issued.status, 201) << issued.body;
  runner_.Configure("edge-tls");
  if (HasFatalFailure()) return;
  std::ofstream(runner_.dir_ + "/token") << issued.Json()["token"].get<std::string>() << "\n";
  auto start = [&](const std::string& ca) {
    runner_.StartServer({.args = {"runner", "--connect", url, "--token-file",
                                  runner_.dir_ + "/token", "--ca-file", ca, "--node", "edge-tls"},
                         .stderr_path = runner_.dir_ + "/stderr.log"});
    ASSERT_NE(runner_.ReadUntilReady().find("sandboxd: ready (runner edge-tls"),
              std::string::npos);
  };
  // An unrelated CA: the handshake fails on the runner's side, which says why, and never links.
  start(tls + "/other-ca.pem");
  if (HasFatalFailure()) return;
  std::string log;
  for (int i = 0; i < 300 && log.find("certificate verify failed") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream in(runner_.dir_ + "/stderr.log");
    log.assign(std::istreambuf_iterator<char>(in), {});
  }
  EXPECT_NE(log.find("certificate verify failed"), std::string::npos) << log;
  EXPECT_FALSE(NodeReady("edge-tls"));
  runner_.StopServer(SIGTERM);
  // Its own CA: linked over TLS, it runs what is routed to it.
  start(tls + "/ca.pem");
  if (HasFatalFailure()) return;
  for (int i = 0; i < 600 && !NodeReady("edge-tls"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(NodeReady("edge-tls"));
  const std::string id = Submit("for i in $(seq 1 30); do echo line-$i; done");
  auto done = coordinator_.WaitForEvent(id, "run.completed", kAlice);
  ASSERT_FALSE(done.is_null());
  EXPECT_EQ(done["state"], "SUCCEEDED");
  EXPECT_EQ(coordinator_.Call("GET", "/v1/runs/" + id, kAlice).Json()["node"], "edge-tls");
  EXPECT_EQ(coordinator_.Call("GET", "/v1/runs/" + id + "/logs?stream=stdout", kAlice).body,
            Lines(30));
}

TEST_F(ServeRunnerTest, AForgedOrRevokedTokenIsRefused) {
  EXPECT_EQ(UpgradeStatus("sbxr_" + std::string(64, '0')), 401);
  EXPECT_EQ(UpgradeStatus("not-a-token"), 401);
  // Only an admin issues tokens.
  EXPECT_EQ(coordinator_.Call("POST", "/v1/runners", kAlice, R"({"name":"x"})").status, 403);
  EXPECT_EQ(coordinator_.Call("POST", "/v1/runners", kAda, R"({"name":"../x"})").status, 400);
  StartRunner("edge3");
  if (HasFatalFailure()) return;
  EXPECT_EQ(UpgradeStatus(token_), 101);
  auto revoked = coordinator_.Call("DELETE", "/v1/runners/edge3", kAda);
  ASSERT_EQ(revoked.status, 200) << revoked.body;
  EXPECT_EQ(revoked.Json()["revoked"], true);
  EXPECT_EQ(UpgradeStatus(token_), 401);
  // The link it had is ended: a run routed to it stays queued.
  const std::string id = Submit("echo never");
  std::this_thread::sleep_for(std::chrono::seconds(2));
  auto run = coordinator_.Call("GET", "/v1/runs/" + id, kAlice).Json();
  EXPECT_EQ(run["state"], "QUEUED");
  // A new token for it works again.
  auto again = coordinator_.Call("POST", "/v1/runners", kAda, R"({"name":"edge3"})");
  ASSERT_EQ(again.status, 201);
  EXPECT_EQ(UpgradeStatus(again.Json()["token"]), 101);
}

}  // namespace
}  // namespace sbx::testing
