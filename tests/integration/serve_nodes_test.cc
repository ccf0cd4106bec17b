// Three real daemons (sandboxd-server) on one PostgreSQL the suite starts, each with its own
// data directory, cgroup parent and port: runs submitted to random nodes each run exactly once,
// on a node whose labels match their node_selector, and clients of any node see their events as
// they happen; a node killed with SIGKILL mid-run is declared lost by one survivor, its runs end
// FAILED (node_lost) or run once more elsewhere (retry_on_node_loss); a drained node finishes
// its run and takes no new one; GET /v1/nodes and /v1/info show all of it.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include "integration/server_harness.h"
#include "supervisor/store/store.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/raw_sql.h"

namespace sbx::testing {
namespace {

constexpr char kAlice[] = "nodes-test-alice";
constexpr char kAda[] = "nodes-test-ada";
constexpr char kBob[] = "nodes-test-bob";
constexpr char kCarol[] = "nodes-test-carol";

// One daemon of the three: the harness's fixture, driven from the test.
class NodeDaemon : public ServerTest {
 public:
  void TestBody() override {}
  using ServerTest::Call;
  using ServerTest::cgroup_parent_;
  using ServerTest::node_;
  using ServerTest::pid_;
  using ServerTest::port_;
  using ServerTest::WaitForEvent;

  void Start(const std::string& name, const std::string& database, const std::string& labels) {
    SetUpServer(name, "  \"*\": allow\n");
    database_ = database;
    WriteConfig("127.0.0.1:0",
                {{"alice", "submitter", kAlice},
                 {"ada", "admin", kAda},
                 {"bob", "reviewer", kBob},
                 {"carol", "submitter", kCarol}},
                "max_concurrent_runs: 2\nwarm_sandboxes: 0\nheartbeat_interval_ms: 100\n"
                "node_timeout_ms: 1500\nnode_labels: {" +
                    labels + "}\n");
    StartServerOnLoopback();
  }
  void Kill9() {
    ASSERT_EQ(::kill(pid_, SIGKILL), 0);
    ASSERT_EQ(::waitpid(pid_, nullptr, 0), pid_);
    pid_ = -1;
  }
  void Restart() { StartServerOnLoopback(); }
  void Stop() { TearDown(); }
};

class ServeNodesTest : public SandboxTest {
 protected:
  static void TearDownTestSuite() {
    if (cluster_) {
      EXPECT_TRUE(cluster_->Stop().ok());
      cluster_.reset();
    }
    SandboxTest::TearDownTestSuite();
  }
  void SetUp() override {
    SandboxTest::SetUp();
    if (IsSkipped()) return;
    if (!cluster_) {
      auto c = PgCluster::Start();
      ASSERT_TRUE(c.ok()) << "cannot start the test PostgreSQL: " << c.error().ToString();
      cluster_ = std::move(*c);
    }
    database_ = "sbx_nodes_" + std::to_string(::getpid()) + "_" + std::to_string(++counter_);
    ASSERT_TRUE(cluster_->CreateDatabase(database_).ok());
    const std::string url = cluster_->Url(database_);
    // The schema first, so that the three do not race to create it (they may; this is quicker).
    auto s = store::Open(url);
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    ASSERT_TRUE((*s)->Migrate().ok());
    store_ = std::move(*s);
    const char* labels[] = {"zone: a", "zone: b", "zone: b"};
    for (int i = 0; i < 3; ++i) {
      nodes_.push_back(std::make_unique<NodeDaemon>());
      nodes_.back()->Start("nodes" + std::to_string(i + 1), url, labels[i]);
      if (HasFatalFailure()) return;
    }
  }
  void TearDown() override {
    for (auto& n : nodes_) n->Stop();
    nodes_.clear();
    store_.reset();
    if (cluster_ && !database_.empty()) {
      EXPECT_TRUE(cluster_->DropDatabase(database_).ok());
    }
  }

  NodeDaemon& Node(size_t i) { return *nodes_.at(i); }
  // The run as the store has it.
  store::RunRecord Run(const std::string& id) {
    auto r = store_->GetRun(id);
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    return r.ok() ? *r : store::RunRecord{};
  }
  // How many times the run was started (run.started audit records).
  int Starts(const std::string& id) {
    auto a = store_->ListAudit({.run_id = id, .limit = 1000});
    EXPECT_TRUE(a.ok());
    int n = 0;
    for (const auto& rec : *a) n += rec.action == "run.started";
    return n;
  }
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

  static std::unique_ptr<PgCluster> cluster_;
  static int counter_;
  std::string database_;
  std::unique_ptr<store::Store> store_;
  std::vector<std::unique_ptr<NodeDaemon>> nodes_;
};

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
      EXPECT_EQ(n["address"], "http://127.0.0.1:" + std::to_string(Node(i).port_));
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

}  // namespace
}  // namespace sbx::testing
