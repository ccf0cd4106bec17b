// The store contract for several nodes on one database (store.h), against SQLite and a real
// PostgreSQL server: a run is claimed only by a node whose labels satisfy its node_selector,
// each claim counts an attempt and a stale attempt cannot end the run, a lost node is declared
// once however many nodes race to do it, its runs end FAILED (node_lost) or go back to the
// queue, and a node's state (ready, draining, lost) follows registrations, beats and operators.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "supervisor/store/store.h"
#include "tests/support/sandbox_store_fixture.h"

namespace sbx::store {
namespace {

using testing::Backend;
using testing::BackendName;
using S = RunState;

using testing::ExpectFailedWith;

class NodeContractTest : public testing::StoreBackendTest {
 protected:
  RunRecord Queued(std::map<std::string, std::string> selector, bool retry = false) {
    RunRecord r = NewRun();
    r.node_selector = std::move(selector);
    if (retry) {
      r.retry_on_node_loss = true;
      r.idempotency_key = "key-" + std::to_string(++keys_);
    }
    return CreateIn(S::kQueued, r);
  }
  int keys_ = 0;
};

TEST_P(NodeContractTest, ARunIsClaimedOnlyByANodeWhoseLabelsMatchItsSelector) {
  RunRecord zone_a = Queued({{"zone", "a"}});
  RunRecord any = Queued({});
  RunRecord gpu_b = Queued({{"zone", "b"}, {"gpu", "true"}});
  RunRecord dotted = Queued({{"backend.docker", "true"}});

  // Oldest first among the runs it may take: not zone_a, and not gpu_b (no gpu label).
  auto b = store_->ClaimNextQueued("node-b", {{"zone", "b"}});
  SBX_ASSERT_OK(b);
  ASSERT_TRUE(b->has_value());
  EXPECT_EQ((*b)->id, any.id);
  EXPECT_EQ((*b)->attempt, 1);
  auto none = store_->ClaimNextQueued("node-b", {{"zone", "b"}, {"gpu", "false"}});
  SBX_ASSERT_OK(none);
  EXPECT_FALSE(none->has_value());
  // A label whose value differs does not match, nor does one missing; extra labels are fine.
  auto gpu = store_->ClaimNextQueued("node-g", {{"zone", "b"}, {"gpu", "true"}, {"x", "y"}});
  SBX_ASSERT_OK(gpu);
  ASSERT_TRUE(gpu->has_value());
  EXPECT_EQ((*gpu)->id, gpu_b.id);
  auto docker = store_->ClaimNextQueued("node-d", {{"backend.docker", "true"}});
  SBX_ASSERT_OK(docker);
  ASSERT_TRUE(docker->has_value());
  EXPECT_EQ((*docker)->id, dotted.id);
  auto a = store_->ClaimNextQueued("node-a", {{"zone", "a"}});
  SBX_ASSERT_OK(a);
  ASSERT_TRUE(a->has_value());
  EXPECT_EQ((*a)->id, zone_a.id);
  EXPECT_EQ((*a)->node_selector, zone_a.node_selector);
  auto got = store_->GetRun(zone_a.id);
  SBX_ASSERT_OK(got);
  EXPECT_EQ(got->node, "node-a");
}

TEST_P(NodeContractTest, SelectorsAndRetriesAreCheckedWhenStored) {
  RunRecord quote = NewRun();
  quote.node_selector = {{"a\"b", "x"}};
  ExpectFailedWith(store_->CreateRun(quote), ErrorCode::kInvalidArgument);
  RunRecord long_value = NewRun();
  long_value.node_selector = {{"zone", std::string(64, 'a')}};
  ExpectFailedWith(store_->CreateRun(long_value), ErrorCode::kInvalidArgument);
  RunRecord no_key = NewRun();
  no_key.retry_on_node_loss = true;
  ExpectFailedWith(store_->CreateRun(no_key), ErrorCode::kInvalidArgument);
  ExpectFailedWith(store_->ClaimNextQueued("node-a", {{"bad key", "x"}}), ErrorCode::kInvalidArgument);
}

TEST_P(NodeContractTest, ALostNodeIsDeclaredOnceAndItsRunsEndOrGoBackToTheQueue) {
  NodeRecord a{.name = "node-a", .labels = {{"zone", "a"}}, .capacity = 4};
  SBX_ASSERT_OK(store_->RegisterNode(a));
  RunRecord retried = Queued({}, /*retry=*/true);
  RunRecord plain = Queued({});
  RunRecord done = Queued({});
  for (int i = 0; i < 3; ++i) SBX_ASSERT_OK(store_->ClaimNextQueued("node-a"));
  SBX_ASSERT_OK(store_->Transition(done.id, {S::kRunning}, S::kSucceeded, {}));
  RunRecord elsewhere = Queued({});
  auto b = store_->ClaimNextQueued("node-b");
  SBX_ASSERT_OK(b);
  ASSERT_TRUE(b->has_value());
  EXPECT_EQ((*b)->id, elsewhere.id);

  // Not stale yet: nothing happens.
  auto early = store_->DeclareNodeLost("node-a", 0);
  SBX_ASSERT_OK(early);
  EXPECT_FALSE(early->has_value());

  // Eight daemons notice at once; one declares it.
  std::atomic<int> winners{0};
  LostNodeRuns won;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      auto store = OpenStore();
      if (!store) return;
      auto lost = store->DeclareNodeLost("node-a", INT64_MAX);
      EXPECT_TRUE(lost.ok()) << lost.error().ToString();
      if (lost.ok() && lost->has_value()) {
        ++winners;
        won = **lost;
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(winners.load(), 1);
  EXPECT_EQ(won.requeued, std::vector<std::string>{retried.id});
  EXPECT_EQ(won.failed, std::vector<std::string>{plain.id});

  auto r = store_->GetRun(retried.id);
  SBX_ASSERT_OK(r);
  EXPECT_EQ(r->state, S::kQueued);
  EXPECT_FALSE(r->node.has_value());
  EXPECT_EQ(r->attempt, 1);
  auto p = store_->GetRun(plain.id);
  SBX_ASSERT_OK(p);
  EXPECT_EQ(p->state, S::kFailed);
  ASSERT_TRUE(p->result);
  EXPECT_EQ(RenderEndReason(p->result->reason), "node_lost");
  // What had ended, and what runs on another node, is left alone.
  EXPECT_EQ(store_->GetRun(done.id)->state, S::kSucceeded);
  EXPECT_EQ(store_->GetRun(elsewhere.id)->state, S::kRunning);

  // Claimed again elsewhere: attempt 2. Node A's end for attempt 1 is refused, node C's taken.
  auto again = store_->ClaimNextQueued("node-c");
  SBX_ASSERT_OK(again);
  ASSERT_TRUE(again->has_value());
  EXPECT_EQ((*again)->id, retried.id);
  EXPECT_EQ((*again)->attempt, 2);
  TransitionWrite stale{.run_id = retried.id, .from = {S::kRunning}, .to = S::kSucceeded,
                        .if_attempt = 1};
  ExpectFailedWith(store_->Commit(std::vector<Write>{stale}), ErrorCode::kAborted);
  EXPECT_EQ(store_->GetRun(retried.id)->state, S::kRunning);
  TransitionWrite current = stale;
  current.if_attempt = 2;
  SBX_ASSERT_OK(store_->Commit(std::vector<Write>{current}));
  EXPECT_EQ(store_->GetRun(retried.id)->state, S::kSucceeded);

  // Declared once: a second declaration finds nothing to do.
  auto twice = store_->DeclareNodeLost("node-a", INT64_MAX);
  SBX_ASSERT_OK(twice);
  EXPECT_FALSE(twice->has_value());
}

TEST_P(NodeContractTest, ANodesStateFollowsRegistrationsBeatsAndOperators) {
  NodeRecord self{.name = "node-a",
                  .labels = {{"zone", "a"}, {"os", "linux"}},
                  .capacity = 3,
                  .version = "0.1.0",
                  .address = "http://10.0.0.1:8080"};
  auto registered = store_->RegisterNode(self);
  SBX_ASSERT_OK(registered);
  EXPECT_EQ(registered->state, NodeState::kReady);
  EXPECT_EQ(registered->labels, self.labels);
  EXPECT_EQ(registered->capacity, 3);
  EXPECT_EQ(registered->address, self.address);
  EXPECT_GT(registered->started_at_ms, 0);
  auto beat = store_->Heartbeat("node-a");
  SBX_ASSERT_OK(beat);
  EXPECT_EQ(*beat, NodeState::kReady);

  // An unknown node's beat registers it; the list counts what each runs.
  SBX_ASSERT_OK(store_->Heartbeat("node-b"));
  Queued({});
  SBX_ASSERT_OK(store_->ClaimNextQueued("node-a"));
  auto nodes = store_->ListNodes();
  SBX_ASSERT_OK(nodes);
  ASSERT_EQ(nodes->size(), 2u);
  EXPECT_EQ((*nodes)[0].name, "node-a");
  EXPECT_EQ((*nodes)[0].running, 1);
  EXPECT_EQ((*nodes)[1].running, 0);

  // Drained, it stays drained across a beat and a restart (registering again).
  auto drained = store_->SetNodeState("node-a", NodeState::kDraining);
  SBX_ASSERT_OK(drained);
  EXPECT_EQ(drained->state, NodeState::kDraining);
  EXPECT_EQ(*store_->Heartbeat("node-a"), NodeState::kDraining);
  EXPECT_EQ(store_->RegisterNode(self)->state, NodeState::kDraining);
  SBX_ASSERT_OK(store_->SetNodeState("node-a", NodeState::kReady));

  // Declared lost, its next beat says so; an operator cannot make it ready; registering does.
  auto lost = store_->DeclareNodeLost("node-a", INT64_MAX);
  SBX_ASSERT_OK(lost);
  ASSERT_TRUE(lost->has_value());
  EXPECT_EQ(*store_->Heartbeat("node-a"), NodeState::kLost);
  ExpectFailedWith(store_->SetNodeState("node-a", NodeState::kReady), ErrorCode::kFailedPrecondition);
  ExpectFailedWith(store_->SetNodeState("node-a", NodeState::kLost), ErrorCode::kInvalidArgument);
  ExpectFailedWith(store_->SetNodeState("node-z", NodeState::kDraining), ErrorCode::kNotFound);
  EXPECT_EQ(store_->RegisterNode(self)->state, NodeState::kReady);
  EXPECT_EQ(*store_->Heartbeat("node-a"), NodeState::kReady);

  NodeRecord bad = self;
  bad.labels = {{"", "x"}};
  ExpectFailedWith(store_->RegisterNode(bad), ErrorCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Backends, NodeContractTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres), BackendName);

}  // namespace
}  // namespace sbx::store
