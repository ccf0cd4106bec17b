// Three real daemons (sandboxd-server) on one PostgreSQL the suite starts, each with its own
// data directory, cgroup parent and network namespace, joined by veth pairs to a bridge in a hub
// namespace where the database listens (the test makes all of it with rtnetlink, and it goes
// away with the namespaces):
// - runs submitted to random nodes each run exactly once, on a node whose labels match their
//   node_selector, and clients of any node see their events as they happen;
// - a node killed with SIGKILL mid-run is declared lost by one survivor, its runs end FAILED
//   (node_lost) or run once more elsewhere (retry_on_node_loss);
// - a drained node finishes its run and takes no new one; GET /v1/nodes and /v1/info show all;
// - nodes the database refuses fence themselves and come back;
// - a copy-on-write run's changes are listed and applied (once) through any node;
// - a sandbox starts on a node its node_selector names whichever node was asked (also when a
//   reviewer approves it through another), and its processes, files, event stream and terminal
//   are reached through any node;
// - a node partitioned by its veth going down (its connections stall, as on a real partition,
//   rather than being reset) kills its runs by itself before a survivor declares it lost; its
//   retryable run runs again elsewhere, never at the same time; healed, it writes nothing over
//   what was decided without it and takes work again;
// - a runner in a namespace where nothing listens dials out to a node: a stall of its link
//   shorter than node_timeout loses no log byte and delivers none twice; a longer one makes it
//   kill what it ran by itself, and it comes back when the link heals.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "integration/server_harness.h"
#include "supervisor/store/store.h"
#include "tests/support/netns.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/raw_sql.h"

namespace sbx::testing {
namespace {

constexpr char kAlice[] = "nodes-test-alice";
constexpr char kAda[] = "nodes-test-ada";
constexpr char kBob[] = "nodes-test-bob";
constexpr char kCarol[] = "nodes-test-carol";
constexpr char kHub[] = "10.77.0.1";

using Clock = std::chrono::steady_clock;

// One daemon: the harness's fixture, driven from the test.
class NodeDaemon : public ServerTest {
 public:
  void TestBody() override {}
  using ServerTest::Call;
  using ServerTest::cgroup_parent_;
  using ServerTest::dir_;
  using ServerTest::host_;
  using ServerTest::node_;
  using ServerTest::pid_;
  using ServerTest::port_;
  using ServerTest::ReadUntilReady;
  using ServerTest::StartServer;
  using ServerTest::WaitForEvent;

  void Configure(const std::string& name, const std::string& database, const std::string& listen,
                 const std::string& labels, int heartbeat_ms, int node_timeout_ms,
                 const std::string& extra = "") {
    // Commands run without review; sandboxes within an hour start at once, longer ones wait
    // for a reviewer.
    SetUpServer(name,
                "  \"*\": allow\n"
                "sandboxes:\n"
                "  allow_within: {timeout_s: 3600, workspace: [none], backends: [native]}\n"
                "  otherwise: review\n");
    database_ = database;
    WriteConfig(listen,
                {{"alice", "submitter", kAlice},
                 {"ada", "admin", kAda},
                 {"bob", "reviewer", kBob},
                 {"carol", "submitter", kCarol}},
                "max_concurrent_runs: 2\nwarm_sandboxes: 0\nheartbeat_interval_ms: " +
                    std::to_string(heartbeat_ms) + "\nnode_timeout_ms: " +
                    std::to_string(node_timeout_ms) + "\nnode_labels: {" + labels + "}\n" +
                    extra);
  }
  // Started in network namespace `ns`, listening on host_.
  void StartIn(const NetNs& ns) {
    netns_fd_ = ns.fd();
    StartServerOnLoopback({.netns_fd = netns_fd_});
  }
  void Kill9() {
    ASSERT_EQ(::kill(pid_, SIGKILL), 0);
    ASSERT_EQ(::waitpid(pid_, nullptr, 0), pid_);
    pid_ = -1;
  }
  void Restart() { StartServerOnLoopback({.netns_fd = netns_fd_}); }
  void Stop() { TearDown(); }
  // Whether any process is in the run's cgroup on this daemon.
  bool RunAlive(const std::string& run_id) {
    for (const auto& root : CgroupRoots()) {
      std::ifstream in(root + "/" + cgroup_parent_ + "/" + run_id + "/cgroup.procs");
      std::string pid;
      if (in >> pid) return true;
    }
    return false;
  }

 private:
  int netns_fd_ = -1;
};

std::string Lines(int n) {
  std::string out;
  for (int i = 1; i <= n; ++i) out += "line-" + std::to_string(i) + "\n";
  return out;
}

// The hub namespace (its bridge br0 at 10.77.0.1/16, where the suite's PostgreSQL listens) is
// the suite's; each test gets a database, and three nodes each in a namespace of its own at
// 10.77.T.11-13 (T counts the tests), joined to the bridge by veths h<T>n1-3. The test itself
// works from the hub namespace.
class ServeNodesTest : public SandboxTest {
 protected:
  static void TearDownTestSuite() {
    if (cluster_) {
      EnterNetNs in(*hub_);
      EXPECT_TRUE(cluster_->Stop().ok());
      cluster_.reset();
    }
    hub_.reset();
    SandboxTest::TearDownTestSuite();
  }
  virtual int HeartbeatMs() const { return 100; }
  virtual int NodeTimeoutMs() const { return 1500; }

  void SetUp() override {
    SandboxTest::SetUp();
    if (IsSkipped()) return;
    if (!hub_) {
      auto hub = NetNs::Create();
      ASSERT_TRUE(hub.ok()) << hub.error().ToString();
      hub_ = std::make_unique<NetNs>(std::move(*hub));
      Status bridge = hub_->AddBridge("br0", std::string(kHub) + "/16");
      ASSERT_TRUE(bridge.ok()) << bridge.error().ToString();
    }
    enter_ = std::make_unique<EnterNetNs>(*hub_);
    ASSERT_TRUE(enter_->ok());
    if (!cluster_) {
      auto c = PgCluster::Start({.also_listen = kHub, .trusted_network = "10.77.0.0/16"});
      ASSERT_TRUE(c.ok()) << "cannot start the test PostgreSQL: " << c.error().ToString();
      cluster_ = std::move(*c);
    }
    test_ = ++counter_;
    database_ = "sbx_nodes_" + std::to_string(::getpid()) + "_" + std::to_string(test_);
    ASSERT_TRUE(cluster_->CreateDatabase(database_).ok());
    // The schema first, so that the three do not race to create it (they may; this is quicker).
    auto s = store::Open(cluster_->Url(database_));
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    ASSERT_TRUE((*s)->Migrate().ok());
    store_ = std::move(*s);
    // Workspaces, the same path on every node (one host).
    ws_root_ = "/tmp/sbx-nodes-ws-" + std::to_string(::getpid()) + "-" + std::to_string(test_);
    ASSERT_EQ(::mkdir(ws_root_.c_str(), 0711), 0);
    const char* labels[] = {"zone: a", "zone: b", "zone: b"};
    for (int i = 0; i < 3; ++i) {
      const std::string address = Address(11 + i);
      Link(HubEnd(i), address);
      if (HasFatalFailure()) return;
      nodes_.push_back(std::make_unique<NodeDaemon>());
      NodeDaemon& d = *nodes_.back();
      d.host_ = address;
      d.Configure("nodes" + std::to_string(i + 1), cluster_->Url(database_, kHub), address + ":0",
                  labels[i], HeartbeatMs(), NodeTimeoutMs(),
                  "workspace_roots: [\"" + ws_root_ + "\"]\n");
      if (HasFatalFailure()) return;
      d.StartIn(*spaces_.back());
      if (HasFatalFailure()) return;
    }
  }
  void TearDown() override {
    if (runner_) runner_->Stop();
    for (auto& n : nodes_) n->Stop();
    nodes_.clear();
    store_.reset();
    if (cluster_ && !database_.empty()) {
      EXPECT_TRUE(cluster_->DropDatabase(database_).ok());
    }
    spaces_.clear();
    enter_.reset();
    if (!ws_root_.empty()) std::filesystem::remove_all(ws_root_);
  }

  std::string Address(int host) const {
    return "10.77." + std::to_string(test_) + "." + std::to_string(host);
  }
  std::string HubEnd(int node) const {
    return "h" + std::to_string(test_) + "n" + std::to_string(node + 1);
  }
  // A namespace of its own, joined to the bridge by `hub_end`, with `address`.
  void Link(const std::string& hub_end, const std::string& address) {
    auto ns = NetNs::Create();
    ASSERT_TRUE(ns.ok()) << ns.error().ToString();
    spaces_.push_back(std::make_unique<NetNs>(std::move(*ns)));
    Status linked =
        hub_->AddVethToBridge(hub_end, "br0", *spaces_.back(), "eth0", address + "/16");
    ASSERT_TRUE(linked.ok()) << linked.error().ToString();
  }
  // The veth's hub end down: the namespace behind it is cut off, its packets dropped.
  void Cut(const std::string& hub_end) { ASSERT_TRUE(hub_->SetUp(hub_end, false).ok()); }
  void Heal(const std::string& hub_end) { ASSERT_TRUE(hub_->SetUp(hub_end, true).ok()); }

  NodeDaemon& Node(size_t i) { return *nodes_.at(i); }
  // The run as the store has it.
  store::RunRecord Run(const std::string& id) {
    auto r = store_->GetRun(id);
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    return r.ok() ? *r : store::RunRecord{};
  }
  // How many audit records of the run have `action`.
  int Count(const std::string& id, const std::string& action) {
    auto a = store_->ListAudit({.run_id = id, .limit = 1000});
    EXPECT_TRUE(a.ok());
    int n = 0;
    for (const auto& rec : *a) n += rec.action == action;
    return n;
  }
  // How many times the run was started (run.started audit records).
  int Starts(const std::string& id) { return Count(id, "run.started"); }
  // The node's entry in GET /v1/nodes, asked of node `via`.
  nlohmann::json NodeEntry(size_t via, const std::string& name) {
    auto r = Node(via).Call("GET", "/v1/nodes", kBob);
    EXPECT_EQ(r.status, 200) << r.body;
    const nlohmann::json list = r.Json();
    for (const auto& n : list.value("nodes", nlohmann::json::array())) {
      if (n.value("name", "") == name) return n;
    }
    return nullptr;
  }
  bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds limit) {
    const auto until = Clock::now() + limit;
    while (!done()) {
      if (Clock::now() > until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  }
  std::string Submit(size_t via, const nlohmann::json& body) {
    auto r = Node(via).Call("POST", "/v1/runs", kAlice, body.dump());
    EXPECT_EQ(r.status, 201) << r.body;
    return r.Json().value("id", "");
  }
  // Every event of the run after seq `after`, read through node `via`, to run.completed.
  std::vector<nlohmann::json> Events(size_t via, const std::string& id, int64_t after = 0) {
    std::vector<nlohmann::json> out;
    auto ws = api::testing::RawConn::Tcp(Node(via).port_, 0, Node(via).host_.c_str());
    if (!ws) return out;
    ws->SetTimeout(std::chrono::seconds(60));
    ws->Send(api::testing::MakeWsUpgrade(
        "/v1/runs/" + id + "/events?after=" + std::to_string(after), {{"x-api-key", kAlice}}));
    auto head = api::testing::ReadHead(*ws);
    if (!head || head->status != 101) {
      ADD_FAILURE() << "node " << via + 1 << " refused the event stream: "
                    << (head ? head->status : -1);
      return out;
    }
    for (;;) {
      auto f = api::testing::WsReadFrame(*ws);
      if (!f || f->opcode == 8) {
        ADD_FAILURE() << "the event stream ended before run.completed";
        return out;
      }
      out.push_back(nlohmann::json::parse(f->payload));
      if (out.back().value("type", "") == "run.completed") return out;
    }
  }

  static std::unique_ptr<NetNs> hub_;
  static std::unique_ptr<PgCluster> cluster_;
  static int counter_;
  int test_ = 0;
  std::string ws_root_;
  std::unique_ptr<EnterNetNs> enter_;
  std::vector<std::unique_ptr<NetNs>> spaces_;
  std::string database_;
  std::unique_ptr<store::Store> store_;
  std::vector<std::unique_ptr<NodeDaemon>> nodes_;
  std::unique_ptr<NodeDaemon> runner_;
};

std::unique_ptr<NetNs> ServeNodesTest::hub_;
std::unique_ptr<PgCluster> ServeNodesTest::cluster_;
int ServeNodesTest::counter_ = 0;

TEST_F(ServeNodesTest, RunsGoToMatchingNodesAndEachRunsOnceWhicheverNodeTookTheRequest) {
  // Every node lists the three, ready, with their labels.
  for (size_t via = 0; via < 3; ++via) {
    for (size_t i = 0; i < 3; ++i) {
      auto n = NodeEntry(via, Node(i).node_);
      ASSERT_FALSE(n.is_null()) << Node(i).node_ << " not listed by node " << via;
      EXPECT_EQ(n["state"], "ready");
      EXPECT_EQ(n["labels"]["zone"], i == 0 ? "a" : "b");
      EXPECT_EQ(n["labels"]["node"], Node(i).node_);
      EXPECT_EQ(n["self"], i == via);
      EXPECT_EQ(n["capacity"], 2);
      // Its first TCP listener, where the others forward what only it has.
      EXPECT_EQ(n["address"], "http://" + Node(i).host_ + ":" + std::to_string(Node(i).port_));
    }
  }
  auto info = Node(1).Call("GET", "/v1/info", kAlice);
  ASSERT_EQ(info.status, 200);
  EXPECT_EQ(info.Json()["cluster"]["nodes"]["ready"], 3);
  // Each node's /metrics names it, and counts the cluster.
  auto metrics = Node(1).Call("GET", "/metrics", nullptr);
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("sandboxd_node_info{node=\"" + Node(1).node_ + "\",version=\""),
            std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("sandboxd_cluster_nodes{state=\"ready\"} 3\n"), std::string::npos);
  // A submitter does not list nodes; a malformed selector is refused with the field named.
  EXPECT_EQ(Node(0).Call("GET", "/v1/nodes", kAlice).status, 403);
  auto bad = Node(0).Call("POST", "/v1/runs", kAlice,
                          R"({"argv":["/bin/true"],"node_selector":{"zo\"ne":"a"}})");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_NE(bad.body.find("node_selector"), std::string::npos) << bad.body;
  auto no_key = Node(0).Call("POST", "/v1/runs", kAlice,
                             R"({"argv":["/bin/true"],"retry_on_node_loss":true})");
  EXPECT_EQ(no_key.status, 400) << no_key.body;

  // Followed live through node 1 while node 3 runs it: node 1 learns of node 3's commits from
  // the database as they happen.
  auto live = Node(0).Call("POST", "/v1/runs", kAlice,
                           R"({"argv":["/bin/sh","-c","echo early; sleep 1; echo late"],)"
                           R"("node_selector":{"node":")" + Node(2).node_ + R"("}})");
  ASSERT_EQ(live.status, 201) << live.body;
  const std::string live_id = live.Json()["id"];
  const auto followed = std::chrono::steady_clock::now();
  // Its log, followed through node 1 as node 3 writes it (node 1 forwards to node 3, whose
  // files they are).
  auto log = Node(0).Call("GET", "/v1/runs/" + live_id + "/logs?follow=true", kAlice);
  EXPECT_EQ(log.status, 200);
  EXPECT_EQ(log.body, "early\nlate\n");
  auto completed = Node(0).WaitForEvent(live_id, "run.completed", kAlice);
  ASSERT_FALSE(completed.is_null());
  EXPECT_EQ(completed["state"], "SUCCEEDED");
  EXPECT_LT(std::chrono::steady_clock::now() - followed, std::chrono::seconds(5));
  EXPECT_EQ(*Run(live_id).node, Node(2).node_);
  // Its events through node 1, and from a position on: node 3's stream relayed, the step.log
  // events with their bytes (in node 3's log files).
  std::string streamed;
  int64_t first_log = 0;
  for (const auto& e : Events(0, live_id)) {
    if (e.value("type", "") != "step.log") continue;
    streamed += e.value("data", "");
    if (first_log == 0) first_log = e.value("seq", int64_t{0});
  }
  EXPECT_EQ(streamed, "early\nlate\n");
  ASSERT_GT(first_log, 0);
  std::string rest;
  for (const auto& e : Events(1, live_id, first_log)) {
    EXPECT_GT(e.value("seq", int64_t{0}), first_log);
    if (e.value("type", "") == "step.log") rest += e.value("data", "");
  }
  EXPECT_EQ(rest, "late\n");
  // Read again once it has ended, through node 2: forwarded to node 3 (its node by then).
  auto again = Node(1).Call("GET", "/v1/runs/" + live_id + "/logs?stream=stdout", kAlice);
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.body, "early\nlate\n");
  // Its artifacts, listed and read through node 2, are node 3's.
  auto here = Node(2).Call("GET", "/v1/runs/" + live_id + "/artifacts", kAlice);
  auto there = Node(1).Call("GET", "/v1/runs/" + live_id + "/artifacts", kAlice);
  ASSERT_EQ(there.status, 200) << there.body;
  EXPECT_EQ(there.Json(), here.Json());
  EXPECT_FALSE(there.Json().empty());
  auto report = Node(1).Call("GET", "/v1/runs/" + live_id + "/artifacts/report.md", kAlice);
  EXPECT_EQ(report.status, 200);
  EXPECT_EQ(report.body, Node(2).Call("GET", "/v1/runs/" + live_id + "/artifacts/report.md",
                                      kAlice).body);
  EXPECT_EQ(Node(1).Call("GET", "/v1/runs/" + live_id + "/artifacts/nope", kAlice).status, 404);
  // Another submitter's key gets what a run it cannot see gets, from any node.
  EXPECT_EQ(Node(1).Call("GET", "/v1/runs/" + live_id + "/logs", kCarol).status, 404);

  // 300 runs, each sent to a random node: a third for zone a, a third for zone b, a third for
  // any node.
  constexpr int kRuns = 300;
  std::mt19937 rng(20261207);
  std::vector<std::pair<std::string, int>> runs;  // id, selector kind
  for (int i = 0; i < kRuns; ++i) {
    const int kind = i % 3;
    const std::string selector = kind == 0   ? R"("node_selector":{"zone":"a"},)"
                                 : kind == 1 ? R"("node_selector":{"zone":"b"},)"
                                             : "";
    auto r = Node(rng() % 3).Call("POST", "/v1/runs", kAlice,
                                  "{" + selector + R"("argv":["/bin/sh","-c","echo run )" +
                                      std::to_string(i) + R"("]})");
    ASSERT_EQ(r.status, 201) << r.body;
    runs.emplace_back(r.Json()["id"].get<std::string>(), kind);
  }
  // Followed through a random node, which need not be the one running it: its events arrive as
  // they are committed, whichever node commits them.
  std::map<std::string, int> per_node;
  for (const auto& [id, kind] : runs) {
    auto done = Node(rng() % 3).WaitForEvent(id, "run.completed", kAlice);
    ASSERT_FALSE(done.is_null()) << id;
    const store::RunRecord run = Run(id);
    ASSERT_EQ(run.state, store::RunState::kSucceeded) << id;
    ASSERT_TRUE(run.node.has_value());
    EXPECT_EQ(run.attempt, 1) << id;
    EXPECT_EQ(Starts(id), 1) << id;
    if (kind == 0) {
      EXPECT_EQ(*run.node, Node(0).node_) << id;
    } else if (kind == 1) {
      EXPECT_NE(*run.node, Node(0).node_) << id;
    }
    ++per_node[*run.node];
  }
  // Each node took a share.
  for (size_t i = 0; i < 3; ++i) EXPECT_GE(per_node[Node(i).node_], 20) << Node(i).node_;
}

TEST_F(ServeNodesTest, AKilledNodesRunsEndNodeLostOrRunOnceMoreElsewhere) {
  // Node 2 drained (through itself: at once), so that both zone-b runs start on node 3.
  ASSERT_EQ(Node(1).Call("POST", "/v1/nodes/" + Node(1).node_ + ":drain", kAda).status, 200);
  auto plain = Node(0).Call("POST", "/v1/runs", kAlice,
                            R"({"argv":["/bin/sleep","30"],"node_selector":{"zone":"b"}})");
  ASSERT_EQ(plain.status, 201) << plain.body;
  auto retried = Node(0).Call(
      "POST", "/v1/runs", kAlice,
      R"({"argv":["/bin/sh","-c","sleep 1; echo done"],"node_selector":{"zone":"b"},)"
      R"("retry_on_node_loss":true,"idempotency_key":"k1"})");
  ASSERT_EQ(retried.status, 201) << retried.body;
  const std::string plain_id = plain.Json()["id"];
  const std::string retried_id = retried.Json()["id"];
  ASSERT_FALSE(Node(0).WaitForEvent(plain_id, "step.started", kAlice).is_null());
  ASSERT_FALSE(Node(0).WaitForEvent(retried_id, "step.started", kAlice).is_null());
  ASSERT_EQ(*Run(plain_id).node, Node(2).node_);
  ASSERT_EQ(*Run(retried_id).node, Node(2).node_);

  // Node 3 dies mid-run; node 2 takes work again.
  Node(2).Kill9();
  const auto killed_at = std::chrono::steady_clock::now();
  ASSERT_EQ(Node(0).Call("POST", "/v1/nodes/" + Node(1).node_ + ":resume", kAda).status, 200);

  auto lost = Node(0).WaitForEvent(plain_id, "run.completed", kAlice);
  ASSERT_FALSE(lost.is_null());
  const auto failover = std::chrono::steady_clock::now() - killed_at;
  EXPECT_EQ(lost["state"], "FAILED");
  EXPECT_EQ(lost["reason"], "node_lost");
  // A 100 ms heartbeat and a 1.5 s timeout: taken over within the timeout and a beat or two.
  EXPECT_LT(failover, std::chrono::seconds(10));
  EXPECT_EQ(Starts(plain_id), 1);

  // Queued again, and run once more on node 2, the zone-b node left.
  auto again = Node(1).WaitForEvent(retried_id, "run.completed", kAlice);
  ASSERT_FALSE(again.is_null());
  EXPECT_EQ(again["state"], "SUCCEEDED");
  const store::RunRecord r = Run(retried_id);
  EXPECT_EQ(r.attempt, 2);
  EXPECT_EQ(*r.node, Node(1).node_);
  EXPECT_EQ(Starts(retried_id), 2);

  EXPECT_EQ(NodeEntry(0, Node(2).node_)["state"], "lost");
  auto info = Node(0).Call("GET", "/v1/info", kAlice);
  EXPECT_EQ(info.Json()["cluster"]["nodes"]["lost"], 1);
  // One node.lost record, although two nodes survived to notice.
  auto audit = store_->ListAudit({.limit = 1000});
  ASSERT_TRUE(audit.ok());
  int declared = 0, requeued = 0;
  for (const auto& rec : *audit) {
    declared += rec.action == "node.lost" && rec.details.value("node", "") == Node(2).node_;
    requeued += rec.action == "run.requeued";
  }
  EXPECT_EQ(declared, 1);
  EXPECT_EQ(requeued, 1);

  // Started again, it registers as ready, removes what the killed daemon left, and takes work.
  Node(2).Restart();
  EXPECT_EQ(NodeEntry(0, Node(2).node_)["state"], "ready");
  auto back = Node(0).Call("POST", "/v1/runs", kAlice,
                           R"({"argv":["/bin/true"],"node_selector":{"node":")" + Node(2).node_ +
                               R"("}})");
  ASSERT_EQ(back.status, 201);
  auto ran = Node(0).WaitForEvent(back.Json()["id"], "run.completed", kAlice);
  ASSERT_FALSE(ran.is_null());
  EXPECT_EQ(ran["state"], "SUCCEEDED");
}

TEST_F(ServeNodesTest, ADrainedNodeFinishesItsRunAndTakesNoNewOne) {
  const std::string name = Node(0).node_;
  auto first = Node(1).Call("POST", "/v1/runs", kAlice,
                            R"({"argv":["/bin/sleep","1"],"node_selector":{"zone":"a"}})");
  ASSERT_EQ(first.status, 201);
  const std::string first_id = first.Json()["id"];
  ASSERT_FALSE(Node(1).WaitForEvent(first_id, "step.started", kAlice).is_null());
  // Only an admin drains; an unknown node is 404.
  EXPECT_EQ(Node(0).Call("POST", "/v1/nodes/" + name + ":drain", kBob).status, 403);
  EXPECT_EQ(Node(0).Call("POST", "/v1/nodes/nobody:drain", kAda).status, 404);
  // Through the node itself, it applies at once (another node learns it at its next beat).
  auto drained = Node(0).Call("POST", "/v1/nodes/" + name + ":drain", kAda);
  ASSERT_EQ(drained.status, 200) << drained.body;
  EXPECT_EQ(drained.Json()["state"], "draining");
  EXPECT_EQ(NodeEntry(2, name)["state"], "draining");
  // A new zone-a run, sent while the first still runs, is not taken while the first finishes.
  auto second = Node(2).Call("POST", "/v1/runs", kAlice,
                             R"({"argv":["/bin/true"],"node_selector":{"zone":"a"}})");
  ASSERT_EQ(second.status, 201);
  const std::string second_id = second.Json()["id"];
  auto done = Node(1).WaitForEvent(first_id, "run.completed", kAlice);
  ASSERT_FALSE(done.is_null());
  EXPECT_EQ(done["state"], "SUCCEEDED");
  EXPECT_EQ(Run(second_id).state, store::RunState::kQueued);
  // Resumed (through another node), it takes the run.
  auto resumed = Node(2).Call("POST", "/v1/nodes/" + name + ":resume", kAda);
  ASSERT_EQ(resumed.status, 200) << resumed.body;
  EXPECT_EQ(resumed.Json()["state"], "ready");
  auto ran = Node(2).WaitForEvent(second_id, "run.completed", kAlice);
  ASSERT_FALSE(ran.is_null());
  EXPECT_EQ(*Run(second_id).node, name);
  auto audit = store_->ListAudit({.limit = 1000});
  ASSERT_TRUE(audit.ok());
  int drains = 0, resumes = 0;
  for (const auto& rec : *audit) {
    drains += rec.action == "node.drained";
    resumes += rec.action == "node.resumed";
  }
  EXPECT_EQ(drains, 1);
  EXPECT_EQ(resumes, 1);
}

TEST_F(ServeNodesTest, NodesCutOffFromTheDatabaseKillTheirRunsAndComeBack) {
  auto r = Node(1).Call("POST", "/v1/runs", kAlice,
                        R"({"argv":["/bin/sleep","60"],"node_selector":{"zone":"a"}})");
  ASSERT_EQ(r.status, 201);
  const std::string id = r.Json()["id"];
  ASSERT_FALSE(Node(1).WaitForEvent(id, "step.started", kAlice).is_null());
  // The run's cgroup holds its processes while it runs.
  std::vector<std::string> procs;
  for (const auto& root : CgroupRoots()) {
    procs.push_back(root + "/" + Node(0).cgroup_parent_ + "/" + id + "/cgroup.procs");
  }
  auto alive = [&] {
    for (const auto& p : procs) {
      std::ifstream in(p);
      std::string pid;
      if (in >> pid) return true;
    }
    return false;
  };
  ASSERT_TRUE(alive());

  // The database refuses every node (their connections cut, new ones refused) for longer than
  // node_timeout: each node fences itself, and node 1 kills the run it could not keep.
  const std::string admin = cluster_->Url("postgres");
  ASSERT_TRUE(ExecRawSql(admin, "ALTER DATABASE " + database_ + " ALLOW_CONNECTIONS false").ok());
  ASSERT_TRUE(ExecRawSql(admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                "datname = '" + database_ + "'")
                  .ok());
  store_.reset();
  const auto cut = std::chrono::steady_clock::now();
  // Nothing can be asked of the database meanwhile: the run's processes are watched instead.
  while (alive() && std::chrono::steady_clock::now() - cut < std::chrono::seconds(20)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_FALSE(alive()) << "node 1 kept running its run without the database";
  const auto fenced_after = std::chrono::steady_clock::now() - cut;
  EXPECT_GE(fenced_after, std::chrono::milliseconds(1000));  // not before node_timeout (1.5 s)
  ASSERT_TRUE(ExecRawSql(admin, "ALTER DATABASE " + database_ + " ALLOW_CONNECTIONS true").ok());
  auto s = store::Open(cluster_->Url(database_));
  ASSERT_TRUE(s.ok());
  store_ = std::move(*s);

  // Back: each node answers again once it has reconnected (503 until then).
  for (size_t i = 0; i < 3; ++i) {
    const auto back = std::chrono::steady_clock::now();
    int status = 0;
    while ((status = Node(i).Call("GET", "/v1/runs/" + id, kAlice).status) != 200 &&
           std::chrono::steady_clock::now() - back < std::chrono::seconds(20)) {
      EXPECT_EQ(status, 503);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_EQ(status, 200) << Node(i).node_;
  }
  // The run ended FAILED (node_lost), once (by node 1 itself, or by a node that came back
  // first and declared node 1 lost), and each node takes work again.
  auto ended = Node(2).WaitForEvent(id, "run.completed", kAlice);
  ASSERT_FALSE(ended.is_null());
  EXPECT_EQ(ended["state"], "FAILED");
  EXPECT_EQ(ended["reason"], "node_lost");
  EXPECT_EQ(Starts(id), 1);
  for (size_t i = 0; i < 3; ++i) {
    auto again = Node(i).Call("POST", "/v1/runs", kAlice,
                              R"({"argv":["/bin/true"],"node_selector":{"node":")" +
                                  Node(i).node_ + R"("}})");
    ASSERT_EQ(again.status, 201) << again.body;
    auto done = Node((i + 1) % 3).WaitForEvent(again.Json()["id"], "run.completed", kAlice);
    ASSERT_FALSE(done.is_null()) << Node(i).node_;
    EXPECT_EQ(done["state"], "SUCCEEDED") << Node(i).node_;
  }
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(NodeEntry(i, Node(i).node_)["state"], "ready");
}

TEST_F(ServeNodesTest, ASandboxStartsWhereItsSelectorSaysAndIsWorkedThroughAnyNode) {
  // Asked of node 2 (zone b) for zone a: created, and started, on node 1.
  auto created = Node(1).Call("POST", "/v1/sandboxes", kAlice,
                              R"({"node_selector":{"zone":"a"},"limits":{"timeout_s":600}})");
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(created.Json()["state"], "RUNNING");
  EXPECT_EQ(created.Json()["node"], Node(0).node_);
  EXPECT_EQ(created.Json()["node_selector"]["zone"], "a");
  const std::string id = created.Json()["id"];
  const std::string base = "/v1/sandboxes/" + id;
  // Shown through any node with what only node 1 knows (its expiry, kept in memory there).
  auto shown = Node(2).Call("GET", base, kAlice);
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_FALSE(shown.Json()["expires_at"].is_null()) << shown.body;
  // A process started through node 3; a file written through node 2 and read through node 3.
  auto ran = Node(2).Call("POST", base + "/processes?wait=true", kAlice,
                          R"({"argv":["/bin/sh","-c","echo hi > /tmp/f; echo out"]})");
  ASSERT_EQ(ran.status, 200) << ran.body;
  EXPECT_EQ(ran.Json()["stdout"], "out\n");
  auto put = Node(1).Call("PUT", base + "/files?path=/tmp/g", kAlice, "payload bytes");
  EXPECT_LT(put.status, 300) << put.body;
  EXPECT_EQ(Node(2).Call("GET", base + "/files?path=/tmp/g", kAlice).body, "payload bytes");
  EXPECT_EQ(Node(1).Call("GET", base + "/files?path=/tmp/f", kAlice).body, "hi\n");
  // A process's events through node 3, a WebSocket relayed from node 1.
  auto bg = Node(0).Call("POST", base + "/processes", kAlice,
                         R"({"argv":["/bin/sh","-c","echo one; echo two"],"tag":"bg"})");
  ASSERT_EQ(bg.status, 201) << bg.body;
  auto open_ws = [&](size_t via, const std::string& target) -> std::optional<api::testing::RawConn> {
    auto ws = api::testing::RawConn::Tcp(Node(via).port_, 0, Node(via).host_.c_str());
    if (!ws) return std::nullopt;
    ws->SetTimeout(std::chrono::seconds(30));
    ws->Send(api::testing::MakeWsUpgrade(target, {{"x-api-key", kAlice}}));
    auto head = api::testing::ReadHead(*ws);
    EXPECT_TRUE(head && head->status == 101) << target << ": " << (head ? head->status : -1);
    if (!head || head->status != 101) return std::nullopt;
    return ws;
  };
  std::string out;
  if (auto ws = open_ws(2, base + "/processes/bg/events")) {
    for (;;) {
      auto f = api::testing::WsReadFrame(*ws);
      if (!f || f->opcode == 8) break;
      auto e = nlohmann::json::parse(f->payload, nullptr, false);
      if (e.value("type", "") == "process.log") out += e.value("data", "");
    }
  }
  EXPECT_EQ(out, "one\ntwo\n");
  // A terminal through node 2, both ways.
  auto term = Node(1).Call("POST", base + "/processes", kAlice,
                           R"({"argv":["/bin/sh"],"pty":{"cols":80,"rows":24},"tag":"term"})");
  ASSERT_EQ(term.status, 201) << term.body;
  if (auto ws = open_ws(1, base + "/processes/term/pty")) {
    ASSERT_TRUE(api::testing::WsSendFrame(*ws, 1, "stty size\n"));
    std::string seen;
    while (seen.find("24 80") == std::string::npos) {
      auto f = api::testing::WsReadFrame(*ws);
      if (!f || f->opcode == 8) break;
      seen += f->payload;
    }
    EXPECT_NE(seen.find("24 80"), std::string::npos) << seen;
    ASSERT_TRUE(api::testing::WsSendFrame(*ws, 1, "exit\n"));
  }
  // Another submitter's key finds nothing there, through any node.
  EXPECT_EQ(Node(1).Call("GET", base, kCarol).status, 404);
  EXPECT_EQ(Node(2).Call("POST", base + "/processes", kCarol, R"({"argv":["/bin/true"]})").status,
            404);

  // One that waits for review, created through node 3 for zone a: approved through node 2 (a
  // zone-b node), it starts on node 1.
  auto waiting = Node(2).Call("POST", "/v1/sandboxes", kAlice,
                              R"({"node_selector":{"zone":"a"},"limits":{"timeout_s":86400}})");
  ASSERT_EQ(waiting.status, 201) << waiting.body;
  EXPECT_EQ(waiting.Json()["state"], "AWAITING_REVIEW");
  const std::string reviewed = waiting.Json()["id"];
  auto approved = Node(1).Call("POST", "/v1/sandboxes/" + reviewed + ":approve", kBob);
  ASSERT_EQ(approved.status, 200) << approved.body;
  EXPECT_EQ(approved.Json()["state"], "RUNNING");
  EXPECT_EQ(approved.Json()["node"], Node(0).node_);
  // No node carries zone c; a malformed selector is refused where it is asked.
  auto nowhere =
      Node(0).Call("POST", "/v1/sandboxes", kAlice, R"({"node_selector":{"zone":"c"}})");
  EXPECT_EQ(nowhere.status, 409) << nowhere.body;
  EXPECT_NE(nowhere.body.find("zone=c"), std::string::npos) << nowhere.body;
  EXPECT_EQ(Node(1).Call("POST", "/v1/sandboxes", kAlice, R"({"node_selector":{"zone":7}})").status,
            400);

  // Deleted through node 3: stopped on node 1.
  for (const std::string& s : {id, reviewed}) {
    auto deleted = Node(2).Call("DELETE", "/v1/sandboxes/" + s, kAlice);
    ASSERT_EQ(deleted.status, 200) << deleted.body;
    EXPECT_EQ(deleted.Json()["state"], "STOPPED");
  }
  auto list = Node(1).Call("GET", "/v1/sandboxes?state=RUNNING", kAlice).Json();
  EXPECT_TRUE(list["sandboxes"].empty()) << list.dump();
}

TEST_F(ServeNodesTest, ACopyOnWriteRunsChangesAreReadAndAppliedThroughAnyNode) {
  // A workspace of a user's own (1234), changed by a run on node 3.
  const std::string proj = ws_root_ + "/proj";
  ASSERT_EQ(::mkdir(proj.c_str(), 0755), 0);
  std::ofstream(proj + "/a.txt") << "one\n";
  ASSERT_EQ(::chown(proj.c_str(), 1234, 1234), 0);
  ASSERT_EQ(::chown((proj + "/a.txt").c_str(), 1234, 1234), 0);
  const std::string id =
      Submit(0, {{"argv", {"/bin/sh", "-c", "echo two >> /workspace/a.txt"}},
                 {"workspace", {{"path", proj}, {"mode", "cow"}}},
                 {"node_selector", {{"node", Node(2).node_}}}});
  auto done = Node(0).WaitForEvent(id, "run.completed", kAlice);
  ASSERT_FALSE(done.is_null());
  ASSERT_EQ(done["state"], "SUCCEEDED");
  // Its changes, kept by node 3, listed through node 1 and applied through node 2.
  auto changes = Node(0).Call("GET", "/v1/runs/" + id + "/changes", kAlice);
  ASSERT_EQ(changes.status, 200) << changes.body;
  EXPECT_TRUE(changes.Json()["applicable"].get<bool>()) << changes.body;
  ASSERT_EQ(changes.Json()["entries"].size(), 1u) << changes.body;
  EXPECT_EQ(changes.Json()["entries"][0]["path"], "a.txt");
  std::ifstream before(proj + "/a.txt");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(before), {}), "one\n");
  const nlohmann::json body = {{"diff_sha256", changes.Json()["diff_sha256"]}};
  auto applied = Node(1).Call("POST", "/v1/runs/" + id + ":apply", kBob, body.dump());
  ASSERT_EQ(applied.status, 200) << applied.body;
  EXPECT_EQ(applied.Json()["files_written"], 1);
  std::ifstream after(proj + "/a.txt");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(after), {}), "one\ntwo\n");
  // Once only, whichever node is asked; a submitter may not.
  EXPECT_EQ(Node(0).Call("POST", "/v1/runs/" + id + ":apply", kBob).status, 409);
  EXPECT_EQ(Node(2).Call("POST", "/v1/runs/" + id + ":apply", kAlice).status, 403);
}

// The same cluster with a slower beat (200 ms) and a longer node_timeout (3 s), for cuts that
// must fall clearly before or after it; and an outbound runner in a namespace of its own.
class ServeNodesPartitionTest : public ServeNodesTest {
 protected:
  int HeartbeatMs() const override { return 200; }
  int NodeTimeoutMs() const override { return 3000; }

  // A runner in a namespace of its own (10.77.T.20, its hub end h<T>r), dialling node `via`.
  void StartRunner(const std::string& name, size_t via) {
    auto issued = Node(via).Call("POST", "/v1/runners", kAda, R"({"name":")" + name + R"("})");
    ASSERT_EQ(issued.status, 201) << issued.body;
    Link(RunnerHubEnd(), Address(20));
    if (HasFatalFailure()) return;
    runner_ = std::make_unique<NodeDaemon>();
    runner_->Configure(name, "", "127.0.0.1:0", "", HeartbeatMs(), NodeTimeoutMs());
    if (HasFatalFailure()) return;
    std::ofstream(runner_->dir_ + "/token") << issued.Json()["token"].get<std::string>() << "\n";
    runner_->StartServer({.args = {"runner", "--connect",
                                   "ws://" + Node(via).host_ + ":" +
                                       std::to_string(Node(via).port_) + "/v1/runners",
                                   "--token-file", runner_->dir_ + "/token", "--node", name},
                          .netns_fd = spaces_.back()->fd()});
    ASSERT_NE(runner_->ReadUntilReady().find("sandboxd: ready (runner " + name),
              std::string::npos);
    ASSERT_TRUE(WaitFor([&] { return RunnerReady(via, name); }, std::chrono::seconds(30)))
        << "the runner never registered";
  }
  std::string RunnerHubEnd() const { return "h" + std::to_string(test_) + "r"; }
  bool RunnerReady(size_t via, const std::string& name) {
    auto n = NodeEntry(via, name);
    return !n.is_null() && n.value("state", "") == "ready";
  }
  // Whether the run ended on the runner (its manifest, written last, is there).
  bool RunnerEnded(const std::string& id) {
    return ::access((runner_->dir_ + "/data/runs/" + id + "/artifacts.json").c_str(), F_OK) == 0;
  }
};

TEST_F(ServeNodesPartitionTest, APartitionedNodeIsLostItsWorkRunsOnceElsewhereAndHealedItWorksAgain) {
  // Node 3 drained (through itself, at once) so that both zone-b runs start on node 2.
  ASSERT_EQ(Node(2).Call("POST", "/v1/nodes/" + Node(2).node_ + ":drain", kAda).status, 200);
  const std::string plain = Submit(0, {{"argv", {"/bin/sh", "-c", "echo started; sleep 60"}},
                                       {"node_selector", {{"zone", "b"}}}});
  const std::string retried =
      Submit(0, {{"argv", {"/bin/sh", "-c", "echo attempt; sleep 4; echo done"}},
                 {"node_selector", {{"zone", "b"}}},
                 {"retry_on_node_loss", true},
                 {"idempotency_key", "partition-1"}});
  ASSERT_FALSE(Node(0).WaitForEvent(plain, "step.log", kAlice).is_null());
  ASSERT_FALSE(Node(0).WaitForEvent(retried, "step.log", kAlice).is_null());
  ASSERT_EQ(*Run(plain).node, Node(1).node_);
  ASSERT_EQ(*Run(retried).node, Node(1).node_);
  ASSERT_TRUE(Node(1).RunAlive(plain));
  ASSERT_EQ(Node(0).Call("POST", "/v1/nodes/" + Node(2).node_ + ":resume", kAda).status, 200);

  // Node 2 cut off. Its processes and node 3's are watched until the retried run has ended
  // there: the run is never alive on both at once.
  Cut(HubEnd(1));
  if (HasFatalFailure()) return;
  const auto cut = Clock::now();
  std::optional<Clock::duration> killed_after;
  bool both = false;
  while (Clock::now() - cut < std::chrono::seconds(40)) {
    const bool here = Node(1).RunAlive(retried);
    both = both || (here && Node(2).RunAlive(retried));
    if (!killed_after && !here && !Node(1).RunAlive(plain)) killed_after = Clock::now() - cut;
    if (killed_after && Run(retried).state == store::RunState::kSucceeded) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_FALSE(both) << "the run was alive on two nodes at once";
  ASSERT_TRUE(killed_after.has_value()) << "the cut-off node kept running its runs";
  // Not before node_timeout (3 s) less a beat without a beat, and soon after.
  EXPECT_GE(*killed_after, std::chrono::milliseconds(NodeTimeoutMs() - 500));
  EXPECT_LT(*killed_after, std::chrono::milliseconds(NodeTimeoutMs() + 3000));

  // Decided without it: the plain run ended node_lost, the retried one ran again on node 3.
  auto lost = Node(2).WaitForEvent(plain, "run.completed", kAlice);
  ASSERT_FALSE(lost.is_null());
  EXPECT_EQ(lost["state"], "FAILED");
  EXPECT_EQ(lost["reason"], "node_lost");
  auto again = Node(2).WaitForEvent(retried, "run.completed", kAlice);
  ASSERT_FALSE(again.is_null());
  EXPECT_EQ(again["state"], "SUCCEEDED");
  EXPECT_EQ(*Run(retried).node, Node(2).node_);
  EXPECT_EQ(Run(retried).attempt, 2);
  EXPECT_EQ(NodeEntry(0, Node(1).node_)["state"], "lost");

  // Healed: node 2 learns it was lost, writes nothing over what was decided without it, and
  // registers again.
  Heal(HubEnd(1));
  if (HasFatalFailure()) return;
  ASSERT_TRUE(WaitFor([&] { return NodeEntry(0, Node(1).node_).value("state", "") == "ready"; },
                      std::chrono::seconds(60)))
      << "the healed node never came back";
  const std::string back =
      Submit(1, {{"argv", {"/bin/true"}}, {"node_selector", {{"node", Node(1).node_}}}});
  auto ran = Node(0).WaitForEvent(back, "run.completed", kAlice);
  ASSERT_FALSE(ran.is_null());
  EXPECT_EQ(ran["state"], "SUCCEEDED");
  EXPECT_EQ(Run(plain).state, store::RunState::kFailed);
  EXPECT_EQ(Run(retried).state, store::RunState::kSucceeded);
  EXPECT_EQ(Run(retried).attempt, 2);
  for (const std::string& id : {plain, retried}) {
    int completed = 0;
    for (const auto& e : Events(1, id)) completed += e.value("type", "") == "run.completed";
    EXPECT_EQ(completed, 1) << id;
  }
  EXPECT_EQ(Starts(plain), 1);
  EXPECT_EQ(Starts(retried), 2);
  // The retried run's log is its second attempt's, whole, read through the healed node.
  EXPECT_EQ(Node(1).Call("GET", "/v1/runs/" + retried + "/logs?stream=stdout", kAlice).body,
            "attempt\ndone\n");
}

TEST_F(ServeNodesPartitionTest, ARunnerWhereNothingListensSurvivesAStallAndFencesOnALongOne) {
  StartRunner("edge-ns", 1);
  if (HasFatalFailure()) return;
  // Nothing listens in the runner's namespace (/proc/PID/net/tcp is that namespace's table),
  // and nothing from outside gets in.
  for (const char* table : {"tcp", "tcp6"}) {
    std::ifstream in("/proc/" + std::to_string(runner_->pid_) + "/net/" + table);
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string sl, local, remote, st;
      f >> sl >> local >> remote >> st;
      EXPECT_NE(st, "0A") << "something listens in the runner's namespace on " << local;
    }
  }
  EXPECT_FALSE(api::testing::RawConn::Tcp(9, 0, Address(20).c_str()).has_value());

  // A stall shorter than node_timeout mid-run: every log byte arrives once, in order.
  const int n = 300;
  const std::string id = Submit(
      0, {{"argv", {"/bin/sh", "-c",
                    "for i in $(seq 1 " + std::to_string(n) +
                        "); do echo line-$i; sleep 0.01; done"}},
          {"node_selector", {{"runner", "true"}}}});
  ASSERT_FALSE(Node(0).WaitForEvent(id, "step.log", kAlice).is_null());
  Cut(RunnerHubEnd());
  if (HasFatalFailure()) return;
  // TCP retransmits 0.2, 0.6 and 1.4 s after a loss: healed at 1 s, the link resumes well
  // within node_timeout.
  std::this_thread::sleep_for(std::chrono::milliseconds(NodeTimeoutMs() / 3));
  Heal(RunnerHubEnd());
  if (HasFatalFailure()) return;
  auto done = Node(2).WaitForEvent(id, "run.completed", kAlice);
  ASSERT_FALSE(done.is_null());
  EXPECT_EQ(done["state"], "SUCCEEDED");
  EXPECT_EQ(Run(id).node, "edge-ns");
  EXPECT_EQ(Node(0).Call("GET", "/v1/runs/" + id + "/logs?stream=stdout", kAlice).body, Lines(n));
  int64_t next = 0;
  int completed = 0;
  for (const auto& e : Events(2, id)) {
    completed += e.value("type", "") == "run.completed";
    if (e.value("type", "") != "step.log" || e.value("stream", "") != "stdout") continue;
    EXPECT_EQ(e.value("offset", int64_t{-1}), next);
    next += e.value("length", int64_t{0});
  }
  EXPECT_EQ(next, static_cast<int64_t>(Lines(n).size()));
  EXPECT_EQ(completed, 1);

  // A stall longer than node_timeout: the runner notices the silence itself and kills its run
  // just before the coordinator's side declares it lost.
  const std::string held = Submit(0, {{"argv", {"/bin/sh", "-c", "echo started; sleep 120"}},
                                      {"node_selector", {{"runner", "true"}}}});
  ASSERT_FALSE(Node(0).WaitForEvent(held, "step.log", kAlice).is_null());
  Cut(RunnerHubEnd());
  if (HasFatalFailure()) return;
  const auto cut = Clock::now();
  ASSERT_TRUE(WaitFor([&] { return RunnerEnded(held); },
                      std::chrono::milliseconds(NodeTimeoutMs() + 3000)))
      << "the runner still runs what was given away";
  EXPECT_GE(Clock::now() - cut, std::chrono::milliseconds(NodeTimeoutMs() - 1000));
  auto lost = Node(2).WaitForEvent(held, "run.completed", kAlice);
  ASSERT_FALSE(lost.is_null());
  EXPECT_EQ(lost["state"], "FAILED");
  EXPECT_EQ(lost["reason"], "node_lost");
  // Healed: it links again and takes new work; the lost run stays as it was decided.
  Heal(RunnerHubEnd());
  if (HasFatalFailure()) return;
  ASSERT_TRUE(WaitFor([&] { return RunnerReady(1, "edge-ns"); }, std::chrono::seconds(60)));
  const std::string next_id = Submit(2, {{"argv", {"/bin/sh", "-c", "echo again"}},
                                         {"node_selector", {{"runner", "true"}}}});
  auto again = Node(1).WaitForEvent(next_id, "run.completed", kAlice);
  ASSERT_FALSE(again.is_null());
  EXPECT_EQ(again["state"], "SUCCEEDED");
  EXPECT_EQ(Run(held).state, store::RunState::kFailed);
  int ends = 0;
  for (const auto& e : Events(0, held)) ends += e.value("type", "") == "run.completed";
  EXPECT_EQ(ends, 1);
}

}  // namespace
}  // namespace sbx::testing
