// One contract, two backends: every behaviour of store::Store runs against SQLite (a temp file)
// and against a real PostgreSQL server that the suite starts (tests/support/pg_cluster.h). When
// the PostgreSQL binaries are missing, the PostgreSQL half fails with the reason; it never skips.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "supervisor/store/store.h"
#include "tests/support/raw_sql.h"
#include "tests/support/store_fixture.h"

namespace sbx::store {
namespace {

using S = RunState;
using nlohmann::json;

using testing::Backend;
using testing::BackendName;
using testing::PathTo;

class StoreContractTest : public testing::StoreBackendTest {
 protected:
  // Runs body(t, store) on `threads` threads, each with a connection of its own; joins them.
  void OnThreads(int threads, const std::function<void(int, Store&)>& body) {
    std::vector<std::thread> running;
    for (int t = 0; t < threads; ++t) {
      running.emplace_back([&, t] {
        auto store = OpenStore();
        if (store) body(t, *store);
      });
    }
    for (auto& th : running) th.join();
  }
  // The audit chain verifies and holds exactly `records` records.
  void ExpectIntactChainOf(int64_t records) {
    auto v = store_->VerifyAudit();
    SBX_ASSERT_OK(v);
    EXPECT_TRUE(v->ok) << v->problem;
    EXPECT_EQ(v->records_checked, records);
  }
};

TEST_P(StoreContractTest, MigrateIsIdempotent) {
  RunRecord run = Create();
  auto again = store_->Migrate();
  SBX_ASSERT_OK(again);
  EXPECT_EQ(again->from_version, again->to_version);
  EXPECT_GE(again->to_version, 2);
  auto count = testing::QueryRawScalar(url_, "SELECT COUNT(*) FROM schema_migrations");
  SBX_ASSERT_OK(count);
  EXPECT_EQ(*count, std::to_string(again->to_version));
  // A second daemon migrating the same database changes nothing either.
  auto other = OpenStore();
  ASSERT_NE(other, nullptr);
  auto third = other->Migrate();
  SBX_ASSERT_OK(third);
  EXPECT_EQ(third->from_version, again->to_version);
  SBX_ASSERT_OK(store_->GetRun(run.id));
}

TEST_P(StoreContractTest, MigrateFromEmptyReportsVersions) {
  auto s = Open(ExtraDatabase("second"));
  SBX_ASSERT_OK(s);
  auto m = (*s)->Migrate();
  SBX_ASSERT_OK(m);
  EXPECT_EQ(m->from_version, 0);
  EXPECT_GE(m->to_version, 2);
  auto latest = (*s)->LatestEventCursor();  // no event yet
  SBX_ASSERT_OK(latest);
  EXPECT_EQ(*latest, 0);
}

TEST_P(StoreContractTest, MigrateRefusesANewerSchema) {
  SBX_ASSERT_OK(testing::ExecRawSql(
      url_, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)"));
  auto m = store_->Migrate();
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(m.error().message.find("999"), std::string::npos) << m.error().message;
}

TEST_P(StoreContractTest, CreateAndGetRoundTripEveryField) {
  RunRecord in = NewRun("bob");
  in.argv.clear();
  in.steps = {{"build", {"make", "-j2"}}, {"test", {"make", "check"}}};
  in.limits = {
      .cpus = 1.5, .memory_bytes = 256 << 20, .pids = 64, .timeout_s = 30, .output_bytes = 1 << 20};
  in.network = "loopback";
  in.seccomp_profile = "default";
  in.env = {{"LANG", "C.UTF-8"}, {"EMPTY", ""}};
  in.stdin_data = std::string("line\0with nul\xff", 14);
  in.workspace = store::Workspace{"/work", "cow"};
  in.labels = {{"team", "infra"}, {"ticket", "ÄÖÜ-42"}};
  in.idempotency_key = "key-1";
  in.backend = "docker";
  in.image = "registry.example/tools:1.2";
  auto created = store_->CreateRun(in);
  SBX_ASSERT_OK(created);
  EXPECT_TRUE(created->created);
  const RunRecord& c = created->run;
  EXPECT_EQ(c.id.substr(0, 4), "run_");
  EXPECT_GT(c.created_at_ms, 0);

  auto got = store_->GetRun(c.id);
  SBX_ASSERT_OK(got);
  EXPECT_EQ(got->id, c.id);
  EXPECT_EQ(got->submitter, "bob");
  EXPECT_EQ(got->state, S::kPending);
  EXPECT_TRUE(got->argv.empty());
  EXPECT_EQ(got->steps, in.steps);
  EXPECT_EQ(got->limits, in.limits);
  EXPECT_EQ(got->network, "loopback");
  EXPECT_EQ(got->seccomp_profile, "default");
  EXPECT_EQ(got->env, in.env);
  EXPECT_EQ(got->stdin_data, in.stdin_data);
  ASSERT_TRUE(got->workspace);
  EXPECT_EQ(*got->workspace, (store::Workspace{"/work", "cow"}));
  EXPECT_EQ(got->labels, in.labels);
  EXPECT_EQ(got->idempotency_key, "key-1");
  EXPECT_EQ(got->backend, "docker");
  EXPECT_EQ(got->image, "registry.example/tools:1.2");
  EXPECT_TRUE(got->policy.is_null());
  EXPECT_FALSE(got->approval);
  EXPECT_FALSE(got->node);
  EXPECT_EQ(got->created_at_ms, c.created_at_ms);
  EXPECT_FALSE(got->queued_at_ms);
  EXPECT_FALSE(got->started_at_ms);
  EXPECT_FALSE(got->finished_at_ms);
  EXPECT_FALSE(got->result);

  RunRecord with_id = NewRun();
  with_id.id = "run_chosen_by_caller";
  auto chosen = store_->CreateRun(with_id);
  SBX_ASSERT_OK(chosen);
  EXPECT_EQ(chosen->run.id, "run_chosen_by_caller");
  EXPECT_EQ(chosen->run.argv, with_id.argv);

  auto missing = store_->GetRun("run_nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST_P(StoreContractTest, CreateRejectsBadInput) {
  auto expect_code = [&](RunRecord r, ErrorCode code) {
    auto c = store_->CreateRun(r);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.error().code, code) << c.error().ToString();
  };
  expect_code(NewRun(""), ErrorCode::kInvalidArgument);
  RunRecord queued = NewRun();
  queued.state = S::kQueued;
  expect_code(queued, ErrorCode::kInvalidArgument);
  RunRecord bad_id = NewRun();
  bad_id.id = "run'; DROP TABLE runs; --";
  expect_code(bad_id, ErrorCode::kInvalidArgument);
  RunRecord bad_utf8 = NewRun();
  bad_utf8.labels = {{"k", "\xc3\x28"}};
  expect_code(bad_utf8, ErrorCode::kInvalidArgument);
  RunRecord bad_text = NewRun();
  bad_text.workspace = store::Workspace{"\xff", "ro"};
  expect_code(bad_text, ErrorCode::kInvalidArgument);

  RunRecord dup = NewRun();
  dup.id = "run_dup";
  SBX_ASSERT_OK(store_->CreateRun(dup));
  expect_code(dup, ErrorCode::kAlreadyExists);
  auto counts = store_->CountByState();
  SBX_ASSERT_OK(counts);
  EXPECT_EQ(counts->at(S::kPending), 1);
}

TEST_P(StoreContractTest, IdempotencyKeyReturnsTheExistingRun) {
  RunRecord r = NewRun("alice");
  r.idempotency_key = "deploy-7";
  auto first = store_->CreateRun(r);
  SBX_ASSERT_OK(first);
  EXPECT_TRUE(first->created);

  r.argv = {"/bin/false"};  // a retry with a different body still gets the first run
  auto second = store_->CreateRun(r);
  SBX_ASSERT_OK(second);
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->run.id, first->run.id);
  EXPECT_EQ(second->run.argv, first->run.argv);

  // The key is per submitter.
  RunRecord other = NewRun("bob");
  other.idempotency_key = "deploy-7";
  auto third = store_->CreateRun(other);
  SBX_ASSERT_OK(third);
  EXPECT_TRUE(third->created);
  EXPECT_NE(third->run.id, first->run.id);

  // Without a key every request is a new run.
  auto a = store_->CreateRun(NewRun());
  auto b = store_->CreateRun(NewRun());
  SBX_ASSERT_OK(a);
  SBX_ASSERT_OK(b);
  EXPECT_NE(a->run.id, b->run.id);

  RunRecord empty_key = NewRun();
  empty_key.idempotency_key = "";
  EXPECT_FALSE(store_->CreateRun(empty_key).ok());
}

TEST_P(StoreContractTest, IdempotencyHoldsUnderConcurrentCreates) {
  constexpr int kThreads = 8;
  std::vector<std::string> ids(kThreads);
  std::atomic<int> created{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto store = OpenStore();
      if (!store) return;
      RunRecord r = NewRun("carol");
      r.idempotency_key = "same";
      auto c = store->CreateRun(r);
      EXPECT_TRUE(c.ok()) << c.error().ToString();
      if (!c.ok()) return;
      ids[t] = c->run.id;
      if (c->created) ++created;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(created.load(), 1);
  for (const auto& id : ids) EXPECT_EQ(id, ids[0]);
  auto counts = store_->CountByState();
  SBX_ASSERT_OK(counts);
  EXPECT_EQ(counts->at(S::kPending), 1);
}

TEST_P(StoreContractTest, ListRunsFiltersAndPaginatesNewestFirst) {
  std::vector<std::string> ids;  // in creation order
  for (int i = 0; i < 25; ++i) {
    RunRecord r = NewRun(i % 5 == 0 ? "bob" : "alice");
    r.labels = {{"parity", i % 2 ? "odd" : "even"}, {"tens", std::to_string(i / 10)}};
    ids.push_back(CreateIn(i % 3 == 0 ? S::kQueued : S::kPending, r).id);
  }

  // Pages of 10 walk every run exactly once, newest first.
  std::vector<std::string> seen;
  RunFilter f;
  f.limit = 10;
  int pages = 0;
  do {
    auto page = store_->ListRuns(f);
    SBX_ASSERT_OK(page);
    ++pages;
    EXPECT_LE(page->runs.size(), 10u);
    for (const auto& r : page->runs) seen.push_back(r.id);
    f.cursor = page->next_cursor;
  } while (!f.cursor.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  std::vector<std::string> newest_first(ids.rbegin(), ids.rend());
  EXPECT_EQ(seen, newest_first);

  auto ids_of = [&](RunFilter filter) {
    auto page = store_->ListRuns(filter);
    EXPECT_TRUE(page.ok()) << page.error().ToString();
    std::vector<std::string> out;
    if (page.ok()) {
      for (const auto& r : page->runs) out.push_back(r.id);
    }
    return out;
  };
  auto expected = [&](auto pred) {
    std::vector<std::string> out;
    for (int i = 24; i >= 0; --i) {
      if (pred(i)) out.push_back(ids[i]);
    }
    return out;
  };

  RunFilter queued;
  queued.states = {S::kQueued};
  EXPECT_EQ(ids_of(queued), expected([](int i) { return i % 3 == 0; }));

  RunFilter both_states;
  both_states.states = {S::kQueued, S::kPending};
  EXPECT_EQ(ids_of(both_states).size(), 25u);

  RunFilter odd;
  odd.labels = {{"parity", "odd"}};
  EXPECT_EQ(ids_of(odd), expected([](int i) { return i % 2 == 1; }));

  RunFilter odd_tens1;
  odd_tens1.labels = {{"parity", "odd"}, {"tens", "1"}};
  EXPECT_EQ(ids_of(odd_tens1), expected([](int i) { return i % 2 == 1 && i / 10 == 1; }));

  RunFilter odd_queued_bob;
  odd_queued_bob.labels = {{"parity", "odd"}};
  odd_queued_bob.states = {S::kQueued};
  odd_queued_bob.submitter = "bob";
  EXPECT_EQ(ids_of(odd_queued_bob),
            expected([](int i) { return i % 2 == 1 && i % 3 == 0 && i % 5 == 0; }));

  RunFilter no_match;
  no_match.labels = {{"parity", "prime"}};
  EXPECT_TRUE(ids_of(no_match).empty());

  // Filters and pages combine: the cursor continues the filtered list.
  RunFilter odd_paged;
  odd_paged.labels = {{"parity", "odd"}};
  odd_paged.limit = 6;  // 12 odd runs: two full pages, and the second knows it is the last
  auto p1 = store_->ListRuns(odd_paged);
  SBX_ASSERT_OK(p1);
  ASSERT_EQ(p1->runs.size(), 6u);
  ASSERT_FALSE(p1->next_cursor.empty());
  odd_paged.cursor = p1->next_cursor;
  auto p2 = store_->ListRuns(odd_paged);
  SBX_ASSERT_OK(p2);
  std::vector<std::string> both;
  for (const auto& r : p1->runs) both.push_back(r.id);
  for (const auto& r : p2->runs) both.push_back(r.id);
  EXPECT_EQ(both, expected([](int i) { return i % 2 == 1; }));
  EXPECT_TRUE(p2->next_cursor.empty());

  RunFilter bad;
  bad.cursor = "abc";
  auto b = store_->ListRuns(bad);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code, ErrorCode::kInvalidArgument);
  RunFilter zero;
  zero.limit = 0;
  EXPECT_FALSE(store_->ListRuns(zero).ok());
  RunFilter huge;
  huge.limit = 1001;
  EXPECT_FALSE(store_->ListRuns(huge).ok());
}

TEST_P(StoreContractTest, EveryLegalTransitionWorksAndIllegalOnesChangeNothing) {
  // The table, written out independently of IsLegalTransition().
  const std::set<std::pair<S, S>> legal = {
      {S::kPending, S::kPlanned},
      {S::kPlanned, S::kAwaitingReview},
      {S::kAwaitingReview, S::kQueued},
      {S::kAwaitingReview, S::kAwaitingReview},  // a vote while more are needed
      {S::kQueued, S::kRunning},
      {S::kRunning, S::kSucceeded},
      {S::kPending, S::kFailed},
      {S::kPlanned, S::kFailed},
      {S::kAwaitingReview, S::kFailed},
      {S::kQueued, S::kFailed},
      {S::kRunning, S::kFailed},
      {S::kPending, S::kCancelled},
      {S::kPlanned, S::kCancelled},
      {S::kAwaitingReview, S::kCancelled},
      {S::kQueued, S::kCancelled},
      {S::kRunning, S::kCancelled},
  };
  for (S from : AllRunStates()) {
    for (S to : AllRunStates()) {
      SCOPED_TRACE(std::string(RunStateName(from)) + " -> " + RunStateName(to));
      RunRecord run = CreateIn(from);
      ASSERT_EQ(run.state, from);
      auto t = store_->Transition(run.id, {from}, to, {});
      auto after = store_->GetRun(run.id);
      SBX_ASSERT_OK(after);
      if (legal.count({from, to})) {
        SBX_ASSERT_OK(t);
        EXPECT_EQ(t->state, to);
        EXPECT_EQ(after->state, to);
        EXPECT_EQ(after->queued_at_ms.has_value(),
                  run.queued_at_ms.has_value() || to == S::kQueued);
        if (to == S::kRunning) {
          EXPECT_TRUE(after->started_at_ms);
        }
        EXPECT_EQ(after->finished_at_ms.has_value(), IsTerminal(to));
      } else {
        ASSERT_FALSE(t.ok());
        EXPECT_EQ(t.error().code, ErrorCode::kInvalidArgument) << t.error().ToString();
        EXPECT_EQ(after->state, from);
        EXPECT_EQ(after->queued_at_ms, run.queued_at_ms);
        EXPECT_EQ(after->started_at_ms, run.started_at_ms);
        EXPECT_EQ(after->finished_at_ms, run.finished_at_ms);
      }
    }
  }
}

TEST_P(StoreContractTest, TransitionIsCompareAndSet) {
  RunRecord run = CreateIn(S::kAwaitingReview);
  // Approving a run that is not (any more) awaiting review: 409, nothing changes.
  RunRecord pending = Create();
  RunUpdate approve;
  approve.approval = Approval{"reviewer", 1234, "manual"};
  auto t = store_->Transition(pending.id, {S::kAwaitingReview}, S::kQueued, approve);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, ErrorCode::kFailedPrecondition);
  auto unchanged = store_->GetRun(pending.id);
  SBX_ASSERT_OK(unchanged);
  EXPECT_EQ(unchanged->state, S::kPending);
  EXPECT_FALSE(unchanged->approval);

  // Two approvals race: exactly one wins.
  SBX_ASSERT_OK(store_->Transition(run.id, {S::kAwaitingReview}, S::kQueued, approve));
  auto second = store_->Transition(run.id, {S::kAwaitingReview}, S::kQueued, approve);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::kFailedPrecondition);

  auto missing = store_->Transition("run_nope", {S::kPending}, S::kPlanned, {});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  auto no_from = store_->Transition(run.id, {}, S::kRunning, {});
  ASSERT_FALSE(no_from.ok());
  EXPECT_EQ(no_from.error().code, ErrorCode::kInvalidArgument);
}

TEST_P(StoreContractTest, TransitionSetsFieldsAndTimestamps) {
  RunRecord run = Create();
  RunUpdate plan;
  plan.policy = json{{"decision", "review"}, {"rule", "network-needs-review"}};
  plan.limits = Limits{.cpus = 2, .memory_bytes = 1 << 30};
  auto planned = store_->Transition(run.id, {S::kPending}, S::kPlanned, plan);
  SBX_ASSERT_OK(planned);
  EXPECT_EQ(planned->policy, *plan.policy);
  EXPECT_EQ(planned->limits, *plan.limits);
  SBX_ASSERT_OK(store_->Transition(run.id, {S::kPlanned}, S::kAwaitingReview, {}));
  RunUpdate approve;
  approve.approval = Approval{"reviewer", 1700000000000, "manual"};
  auto queued = store_->Transition(run.id, {S::kAwaitingReview}, S::kQueued, approve);
  SBX_ASSERT_OK(queued);
  EXPECT_EQ(queued->approval, approve.approval);
  ASSERT_TRUE(queued->queued_at_ms);
  EXPECT_GE(*queued->queued_at_ms, run.created_at_ms);

  auto claimed = store_->ClaimNextQueued("node-a");
  SBX_ASSERT_OK(claimed);
  ASSERT_TRUE(claimed->has_value());
  EXPECT_EQ((*claimed)->node, "node-a");
  ASSERT_TRUE((*claimed)->started_at_ms);

  RunUpdate finish;
  // Field by field, not `RunResult{.reason = …, …}`: that temporary draws a bogus
  // -Wmaybe-uninitialized on its reason's detail from GCC 12 at -O3.
  RunResult& result = finish.result.emplace();
  result.reason = {store::EndCode::kExited};
  result.backend = "docker";
  result.exit_code = 0;
  result.wall_ms = 120;
  result.cpu_ms = 80;
  result.memory_peak_bytes = 4096;
  finish.result->steps.push_back(
      {.name = "only", .reason = {store::EndCode::kSignaled}, .signal = 9, .wall_ms = 120});
  auto done = store_->Transition(run.id, {S::kRunning}, S::kSucceeded, finish);
  SBX_ASSERT_OK(done);
  EXPECT_EQ(done->result, finish.result);
  ASSERT_TRUE(done->finished_at_ms);
  EXPECT_GE(*done->finished_at_ms, *(*claimed)->started_at_ms);
  auto got = store_->GetRun(run.id);
  SBX_ASSERT_OK(got);
  EXPECT_EQ(got->result, finish.result);
  EXPECT_EQ(got->policy, *plan.policy);
  EXPECT_EQ(got->node, "node-a");
}

TEST_P(StoreContractTest, CancelWorksFromEveryNonTerminalStateOnly) {
  for (S from : NonTerminalRunStates()) {
    SCOPED_TRACE(RunStateName(from));
    RunRecord run = CreateIn(from);
    auto c = store_->Cancel(run.id);
    SBX_ASSERT_OK(c);
    EXPECT_EQ(c->state, S::kCancelled);
    ASSERT_TRUE(c->result);
    EXPECT_EQ(store::RenderEndReason(c->result->reason), "cancelled");
    EXPECT_TRUE(c->finished_at_ms);
    auto again = store_->Cancel(run.id);
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.error().code, ErrorCode::kFailedPrecondition);
  }
  for (S terminal : {S::kSucceeded, S::kFailed}) {
    SCOPED_TRACE(RunStateName(terminal));
    RunRecord run = CreateIn(terminal);
    auto c = store_->Cancel(run.id);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.error().code, ErrorCode::kFailedPrecondition);
    auto after = store_->GetRun(run.id);
    SBX_ASSERT_OK(after);
    EXPECT_EQ(after->state, terminal);
  }
  auto missing = store_->Cancel("run_nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST_P(StoreContractTest, ClaimTakesTheOldestQueuedRun) {
  auto none = store_->ClaimNextQueued("node-a");
  SBX_ASSERT_OK(none);
  EXPECT_FALSE(none->has_value());
  Create();  // PENDING runs are never claimed
  RunRecord first = CreateIn(S::kQueued);
  RunRecord second = CreateIn(S::kQueued);
  auto c1 = store_->ClaimNextQueued("node-a");
  SBX_ASSERT_OK(c1);
  ASSERT_TRUE(c1->has_value());
  EXPECT_EQ((*c1)->id, first.id);
  EXPECT_EQ((*c1)->state, S::kRunning);
  auto c2 = store_->ClaimNextQueued("node-b");
  SBX_ASSERT_OK(c2);
  ASSERT_TRUE(c2->has_value());
  EXPECT_EQ((*c2)->id, second.id);
  EXPECT_EQ((*c2)->node, "node-b");
  auto c3 = store_->ClaimNextQueued("node-a");
  SBX_ASSERT_OK(c3);
  EXPECT_FALSE(c3->has_value());
}

TEST_P(StoreContractTest, ConcurrentClaimsTakeEveryRunExactlyOnce) {
  constexpr int kRuns = 50;
  constexpr int kThreads = 8;
  std::set<std::string> queued;
  for (int i = 0; i < kRuns; ++i) queued.insert(CreateIn(S::kQueued).id);
  ASSERT_EQ(queued.size(), static_cast<size_t>(kRuns));

  std::vector<std::vector<std::string>> claimed(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto store = OpenStore();  // its own connection, as another daemon would have
      if (!store) return;
      const std::string node = "node-" + std::to_string(t);
      for (;;) {
        auto c = store->ClaimNextQueued(node);
        EXPECT_TRUE(c.ok()) << c.error().ToString();
        if (!c.ok() || !c->has_value()) break;
        EXPECT_EQ((*c)->node, node);
        claimed[t].push_back((*c)->id);
      }
    });
  }
  for (auto& th : threads) th.join();

  std::map<std::string, int> times;
  for (const auto& list : claimed) {
    for (const auto& id : list) ++times[id];
  }
  EXPECT_EQ(times.size(), static_cast<size_t>(kRuns));
  for (const auto& [id, n] : times) {
    EXPECT_EQ(n, 1) << id << " was claimed " << n << " times";
    EXPECT_EQ(queued.count(id), 1u) << id;
  }
  auto counts = store_->CountByState();
  SBX_ASSERT_OK(counts);
  EXPECT_EQ(counts->at(S::kQueued), 0);
  EXPECT_EQ(counts->at(S::kRunning), kRuns);
}

TEST_P(StoreContractTest, CountByStateCountsEveryState) {
  CreateIn(S::kPending);
  CreateIn(S::kPending);
  CreateIn(S::kQueued);
  CreateIn(S::kSucceeded);
  auto counts = store_->CountByState();
  SBX_ASSERT_OK(counts);
  EXPECT_EQ(counts->size(), AllRunStates().size());
  EXPECT_EQ(counts->at(S::kPending), 2);
  EXPECT_EQ(counts->at(S::kQueued), 1);
  EXPECT_EQ(counts->at(S::kSucceeded), 1);
  EXPECT_EQ(counts->at(S::kRunning), 0);
}

TEST_P(StoreContractTest, CountInStateCountsOneState) {
  CreateIn(S::kQueued);
  CreateIn(S::kQueued);
  CreateIn(S::kPending);
  auto queued = store_->CountInState(S::kQueued);
  SBX_ASSERT_OK(queued);
  EXPECT_EQ(*queued, 2);
  auto running = store_->CountInState(S::kRunning);
  SBX_ASSERT_OK(running);
  EXPECT_EQ(*running, 0);
}

// Counts what a failed commit must have left alone.
struct Footprint {
  RunState state;
  size_t events;
  int64_t audits;
  bool operator==(const Footprint&) const = default;
};

TEST_P(StoreContractTest, CommitWritesEverythingInOrderInOneTransaction) {
  RunRecord run = CreateIn(S::kPlanned);
  SBX_ASSERT_OK(store_->AppendAudit("alice", "before", std::nullopt, json{{"n", 0}}));
  RunUpdate approval;
  approval.approval = Approval{"policy", 42, "rule"};
  std::vector<Write> writes = {
      TransitionWrite{run.id, {S::kPlanned}, S::kAwaitingReview, {}},
      EventWrite{run.id, EventType::kRunStatus, json{{"state", "AWAITING_REVIEW"}}},
      AuditWrite{"alice", "run.awaiting_review", run.id, json{{"to", "AWAITING_REVIEW"}}},
      TransitionWrite{run.id, {S::kAwaitingReview}, S::kQueued, approval},
      EventWrite{run.id, EventType::kRunStatus, json{{"state", "QUEUED"}}},
      AuditWrite{"policy", "run.approved", run.id, json{{"to", "QUEUED"}}},
  };
  auto done = store_->Commit(writes);
  SBX_ASSERT_OK(done);
  ASSERT_EQ(done->runs.size(), 2u);
  EXPECT_EQ(done->runs[0].state, S::kAwaitingReview);
  EXPECT_EQ(done->runs[1].state, S::kQueued);
  ASSERT_TRUE(done->runs[1].approval);
  EXPECT_EQ(done->runs[1].approval->approved_by, "policy");
  EXPECT_GT(done->runs[1].queued_at_ms, 0);
  ASSERT_EQ(done->events.size(), 2u);
  EXPECT_EQ(done->events[1].seq, done->events[0].seq + 1);
  EXPECT_GT(done->events[1].cursor, done->events[0].cursor);
  EXPECT_EQ(done->events[1].data, (json{{"state", "QUEUED"}}));
  ASSERT_EQ(done->audits.size(), 2u);
  EXPECT_EQ(done->audits[0].prev_hash, store_->ListAudit({.limit = 1})->front().hash);
  EXPECT_EQ(done->audits[1].prev_hash, done->audits[0].hash);
  EXPECT_EQ(done->audits[1].id, done->audits[0].id + 1);

  // What the store holds is what Commit returned.
  auto stored = store_->GetRun(run.id);
  SBX_ASSERT_OK(stored);
  EXPECT_EQ(stored->state, S::kQueued);
  auto events = store_->ListEvents(run.id, 0, 100);
  SBX_ASSERT_OK(events);
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].data, (json{{"state", "AWAITING_REVIEW"}}));
  EXPECT_EQ((*events)[1].cursor, done->events[1].cursor);
  auto audit = store_->ListAudit({.run_id = run.id});
  SBX_ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 2u);
  EXPECT_EQ((*audit)[1].hash, done->audits[1].hash);
  auto v = store_->VerifyAudit();
  SBX_ASSERT_OK(v);
  EXPECT_TRUE(v->ok) << v->problem;
  EXPECT_EQ(v->records_checked, 3);
}

TEST_P(StoreContractTest, AFailedCommitChangesNothing) {
  RunRecord run = CreateIn(S::kPlanned);
  RunRecord other = Create();
  SBX_ASSERT_OK(store_->AppendEvent(run.id, EventType::kRunStatus, json{{"state", "PLANNED"}}));
  auto footprint = [&] {
    auto r = store_->GetRun(run.id);
    auto e = store_->ListEvents(run.id, 0, 100);
    auto v = store_->VerifyAudit();
    EXPECT_TRUE(r.ok() && e.ok() && v.ok());
    return Footprint{r->state, e->size(), v->records_checked};
  };
  const Footprint before = footprint();

  // The last write fails (the run is not QUEUED): the transition, event and audit record before
  // it are rolled back with it.
  std::vector<Write> late_failure = {
      TransitionWrite{run.id, {S::kPlanned}, S::kAwaitingReview, {}},
      EventWrite{run.id, EventType::kRunStatus, json{{"state", "AWAITING_REVIEW"}}},
      AuditWrite{"alice", "run.awaiting_review", run.id, json{}},
      TransitionWrite{run.id, {S::kQueued}, S::kRunning, {}},
  };
  auto failed = store_->Commit(late_failure);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, ErrorCode::kFailedPrecondition) << failed.error().ToString();
  EXPECT_EQ(footprint(), before);

  // An event for a run that does not exist, after good writes.
  std::vector<Write> missing = {
      AuditWrite{"alice", "x", std::nullopt, json{}},
      EventWrite{"run_nope", EventType::kRunStatus, json{}},
  };
  auto not_found = store_->Commit(missing);
  ASSERT_FALSE(not_found.ok());
  EXPECT_EQ(not_found.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(footprint(), before);

  // Bad input inside the batch: an illegal transition, an audit record without an actor, an
  // event whose data is not UTF-8.
  std::vector<std::vector<Write>> refused = {
      {EventWrite{run.id, EventType::kRunStatus, json{}},
       TransitionWrite{run.id, {S::kPlanned}, S::kSucceeded, {}}},
      {EventWrite{run.id, EventType::kRunStatus, json{}}, AuditWrite{"", "x", run.id, json{}}},
      {AuditWrite{"alice", "x", run.id, json{}},
       EventWrite{run.id, EventType::kStepLog, json{{"data", std::string("\xff\xfe")}}}},
      // One commit changes one run.
      {EventWrite{run.id, EventType::kRunStatus, json{}},
       EventWrite{other.id, EventType::kRunStatus, json{}}},
  };
  for (const auto& writes : refused) {
    auto r = store_->Commit(writes);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << r.error().ToString();
    EXPECT_EQ(footprint(), before);
  }
  auto other_events = store_->ListEvents(other.id, 0, 10);
  SBX_ASSERT_OK(other_events);
  EXPECT_TRUE(other_events->empty());

  // Nothing at all is a commit of nothing.
  auto empty = store_->Commit({});
  SBX_ASSERT_OK(empty);
  EXPECT_TRUE(empty->runs.empty() && empty->events.empty() && empty->audits.empty());
}

// Several daemons' commits, each mixing events and audit records (whose locks PostgreSQL takes
// in one order), interleave without a deadlock: every seq gapless, one audit chain.
TEST_P(StoreContractTest, ConcurrentMixedCommitsNeitherDeadlockNorBreakTheChain) {
  constexpr int kThreads = 6;
  constexpr int kPerThread = 15;
  std::vector<RunRecord> runs;
  for (int t = 0; t < kThreads; ++t) runs.push_back(Create());
  OnThreads(kThreads, [&](int t, Store& store) {
    for (int i = 0; i < kPerThread; ++i) {
      // Some threads share a run (its row lock), the others have their own.
      const std::string& id = runs[t % 3 == 0 ? 0 : t].id;
      // Half write an event first, half an audit record first.
      std::vector<Write> writes = {
          EventWrite{id, EventType::kStepLog, json{{"t", t}, {"i", i}}},
          EventWrite{id, EventType::kStepLog, json{{"t", t}, {"i", i}, {"second", true}}},
      };
      writes.insert(t % 2 == 0 ? writes.begin() + 1 : writes.begin(),
                    AuditWrite{"daemon-" + std::to_string(t), "tick", id, json{{"i", i}}});
      auto r = store.Commit(writes);
      EXPECT_TRUE(r.ok()) << r.error().ToString();
    }
  });
  ExpectIntactChainOf(kThreads * kPerThread);
  size_t total = 0;
  for (const RunRecord& run : runs) {
    auto events = store_->ListEvents(run.id, 0, 1000);
    SBX_ASSERT_OK(events);
    for (size_t i = 0; i < events->size(); ++i) {
      EXPECT_EQ((*events)[i].seq, static_cast<int64_t>(i + 1));
      // A commit's two events are adjacent: nothing of another commit comes between them.
      if ((*events)[i].data.contains("second")) {
        ASSERT_GT(i, 0u);
        EXPECT_EQ((*events)[i - 1].data.at("t"), (*events)[i].data.at("t"));
        EXPECT_EQ((*events)[i - 1].data.at("i"), (*events)[i].data.at("i"));
      }
    }
    total += events->size();
  }
  EXPECT_EQ(total, static_cast<size_t>(2 * kThreads * kPerThread));
}

TEST_P(StoreContractTest, EventSeqIsGaplessUnderConcurrentAppends) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 25;
  RunRecord run = Create();
  RunRecord other = Create();
  std::vector<std::vector<int64_t>> seqs(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto store = OpenStore();
      if (!store) return;
      for (int i = 0; i < kPerThread; ++i) {
        auto e = store->AppendEvent(run.id, EventType::kStepLog,
                                    json{{"thread", t}, {"i", i}, {"text", "line"}});
        EXPECT_TRUE(e.ok()) << e.error().ToString();
        if (e.ok()) seqs[t].push_back(e->seq);
      }
    });
  }
  for (auto& th : threads) th.join();

  std::set<int64_t> all;
  for (const auto& list : seqs) {
    for (size_t i = 1; i < list.size(); ++i) EXPECT_LT(list[i - 1], list[i]);
    all.insert(list.begin(), list.end());
  }
  const int64_t total = kThreads * kPerThread;
  ASSERT_EQ(all.size(), static_cast<size_t>(total));
  EXPECT_EQ(*all.begin(), 1);
  EXPECT_EQ(*all.rbegin(), total);

  auto events = store_->ListEvents(run.id, 0, 1000);
  SBX_ASSERT_OK(events);
  ASSERT_EQ(events->size(), static_cast<size_t>(total));
  for (int64_t i = 0; i < total; ++i) EXPECT_EQ((*events)[i].seq, i + 1);
  // Each thread's events appear in the order it appended them.
  std::map<int, int> next_i;
  for (const auto& e : *events) {
    int t = e.data.at("thread").get<int>();
    EXPECT_EQ(e.data.at("i").get<int>(), next_i[t]++);
  }

  // Another run's seq starts at 1.
  auto e1 = store_->AppendEvent(other.id, EventType::kRunStatus, json{{"state", "PLANNED"}});
  SBX_ASSERT_OK(e1);
  EXPECT_EQ(e1->seq, 1);

  // The cursor over every run: each event once, strictly increasing, the other run's last.
  std::vector<EventRecord> all_events;
  int64_t cursor = 0;
  for (;;) {
    auto page = store_->ListAllEvents(cursor, 64);
    SBX_ASSERT_OK(page);
    if (page->empty()) break;
    for (const auto& e : *page) {
      EXPECT_GT(e.cursor, cursor);
      cursor = e.cursor;
      all_events.push_back(e);
    }
  }
  ASSERT_EQ(all_events.size(), static_cast<size_t>(total + 1));
  EXPECT_EQ(all_events.back().run_id, other.id);
  EXPECT_EQ(all_events.back().cursor, e1->cursor);
  auto none = store_->ListAllEvents(e1->cursor, 10);
  SBX_ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
  auto latest = store_->LatestEventCursor();
  SBX_ASSERT_OK(latest);
  EXPECT_EQ(*latest, e1->cursor);
}

TEST_P(StoreContractTest, ReplayAfterSeq) {
  RunRecord run = Create();
  const EventType types[] = {EventType::kRunStatus,       EventType::kStepStarted,
                             EventType::kStepLog,         EventType::kStepFinished,
                             EventType::kArtifactCreated, EventType::kRunCompleted};
  for (int i = 0; i < 6; ++i) {
    auto e = store_->AppendEvent(run.id, types[i], json{{"n", i}});
    SBX_ASSERT_OK(e);
    EXPECT_EQ(e->seq, i + 1);
    EXPECT_EQ(e->run_id, run.id);
    EXPECT_GT(e->ts_ms, 0);
  }
  auto after3 = store_->ListEvents(run.id, 3, 100);
  SBX_ASSERT_OK(after3);
  ASSERT_EQ(after3->size(), 3u);
  EXPECT_EQ((*after3)[0].seq, 4);
  EXPECT_EQ((*after3)[0].type, EventType::kStepFinished);
  EXPECT_EQ((*after3)[0].data, json({{"n", 3}}));
  EXPECT_EQ((*after3)[2].type, EventType::kRunCompleted);

  auto limited = store_->ListEvents(run.id, 0, 2);
  SBX_ASSERT_OK(limited);
  ASSERT_EQ(limited->size(), 2u);
  EXPECT_EQ((*limited)[1].seq, 2);

  auto caught_up = store_->ListEvents(run.id, 6, 100);
  SBX_ASSERT_OK(caught_up);
  EXPECT_TRUE(caught_up->empty());

  auto missing = store_->ListEvents("run_nope", 0, 10);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  auto append_missing = store_->AppendEvent("run_nope", EventType::kStepLog, json::object());
  ASSERT_FALSE(append_missing.ok());
  EXPECT_EQ(append_missing.error().code, ErrorCode::kNotFound);
  EXPECT_FALSE(store_->ListEvents(run.id, 0, 0).ok());
}

TEST_P(StoreContractTest, AuditChainLinksAndVerifies) {
  auto empty = store_->VerifyAudit();
  SBX_ASSERT_OK(empty);
  EXPECT_TRUE(empty->ok);
  EXPECT_EQ(empty->records_checked, 0);

  RunRecord run = Create();
  for (int i = 0; i < 6; ++i) {
    std::optional<std::string_view> run_id;
    if (i % 2 == 0) run_id = run.id;
    auto a = store_->AppendAudit(i % 2 ? "admin" : "alice", i % 2 ? "key.create" : "run.submit",
                                 run_id, json{{"i", i}, {"pi", 3.14159}, {"nested", {1, 2}}});
    SBX_ASSERT_OK(a);
    EXPECT_EQ(a->id, i + 1);
  }
  auto all = store_->ListAudit({});
  SBX_ASSERT_OK(all);
  ASSERT_EQ(all->size(), 6u);
  EXPECT_EQ((*all)[0].prev_hash, std::string(64, '0'));
  for (size_t i = 0; i < all->size(); ++i) {
    const AuditRecord& r = (*all)[i];
    if (i > 0) {
      EXPECT_EQ(r.prev_hash, (*all)[i - 1].hash);
    }
    auto h = AuditHash(r);
    SBX_ASSERT_OK(h);
    EXPECT_EQ(*h, r.hash);
    EXPECT_EQ(r.details.at("i"), static_cast<int>(i));
  }
  EXPECT_EQ((*all)[1].run_id, std::nullopt);
  EXPECT_EQ((*all)[0].run_id, run.id);

  AuditFilter by_run;
  by_run.run_id = run.id;
  auto for_run = store_->ListAudit(by_run);
  SBX_ASSERT_OK(for_run);
  ASSERT_EQ(for_run->size(), 3u);
  for (const auto& r : *for_run) EXPECT_EQ(r.action, "run.submit");
  AuditFilter page;
  page.after_id = 2;
  page.limit = 3;
  auto paged = store_->ListAudit(page);
  SBX_ASSERT_OK(paged);
  ASSERT_EQ(paged->size(), 3u);
  EXPECT_EQ((*paged)[0].id, 3);

  auto v = store_->VerifyAudit();
  SBX_ASSERT_OK(v);
  EXPECT_TRUE(v->ok) << v->problem;
  EXPECT_EQ(v->records_checked, 6);
}

TEST_P(StoreContractTest, ConcurrentAuditAppendsFormOneChain) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 10;
  OnThreads(kThreads, [&](int t, Store& store) {
    for (int i = 0; i < kPerThread; ++i) {
      auto a =
          store.AppendAudit("daemon-" + std::to_string(t), "tick", std::nullopt, json{{"i", i}});
      EXPECT_TRUE(a.ok()) << a.error().ToString();
    }
  });
  ExpectIntactChainOf(kThreads * kPerThread);
}

class AuditTamperTest : public StoreContractTest {
 protected:
  void AppendFive() {
    for (int i = 1; i <= 5; ++i) {
      SBX_ASSERT_OK(store_->AppendAudit("alice", "run.approve", std::nullopt, json{{"n", i}}));
    }
  }
  // What an attacker with DDL rights would do first: the store's triggers refuse plain edits.
  void DropAppendOnlyTriggers() {
    if (IsPostgres()) {
      SBX_ASSERT_OK(testing::ExecRawSql(url_, "ALTER TABLE audit DISABLE TRIGGER USER"));
    } else {
      SBX_ASSERT_OK(
          testing::ExecRawSql(url_, "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;"));
    }
  }
};

TEST_P(AuditTamperTest, PlainUpdatesAndDeletesAreRefused) {
  AppendFive();
  EXPECT_FALSE(testing::ExecRawSql(url_, "UPDATE audit SET actor = 'mallory' WHERE id = 2").ok());
  EXPECT_FALSE(testing::ExecRawSql(url_, "DELETE FROM audit WHERE id = 2").ok());
  auto v = store_->VerifyAudit();
  SBX_ASSERT_OK(v);
  EXPECT_TRUE(v->ok) << v->problem;
}

TEST_P(AuditTamperTest, EditedRecordIsDetected) {
  AppendFive();
  DropAppendOnlyTriggers();
  SBX_ASSERT_OK(testing::ExecRawSql(url_, "UPDATE audit SET details = '{\"n\":99}' WHERE id = 3"));
  auto v = store_->VerifyAudit();
  SBX_ASSERT_OK(v);
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_broken_id, 3);
  EXPECT_EQ(v->records_checked, 2);
  EXPECT_FALSE(v->problem.empty());
}

TEST_P(AuditTamperTest, EditedRecordWithRecomputedHashBreaksTheNextLink) {
  AppendFive();
  auto list = store_->ListAudit({});
  SBX_ASSERT_OK(list);
  AuditRecord forged = (*list)[1];  // id 2
  forged.actor = "mallory";
  auto hash = AuditHash(forged);
  SBX_ASSERT_OK(hash);
  DropAppendOnlyTriggers();
  SBX_ASSERT_OK(testing::ExecRawSql(
      url_, "UPDATE audit SET actor = 'mallory', hash = '" + *hash + "' WHERE id = 2"));
  auto v = store_->VerifyAudit();
  SBX_ASSERT_OK(v);
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_broken_id, 3) << v->problem;
}

TEST_P(AuditTamperTest, DeletedRecordIsDetected) {
  AppendFive();
  DropAppendOnlyTriggers();
  SBX_ASSERT_OK(testing::ExecRawSql(url_, "DELETE FROM audit WHERE id = 2"));
  auto v = store_->VerifyAudit();
  SBX_ASSERT_OK(v);
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_broken_id, 3);
  EXPECT_NE(v->problem.find("missing"), std::string::npos) << v->problem;
}

TEST_P(AuditTamperTest, DetailsThatAreNotJsonAreDetected) {
  AppendFive();
  DropAppendOnlyTriggers();
  SBX_ASSERT_OK(testing::ExecRawSql(url_, "UPDATE audit SET details = 'not json' WHERE id = 4"));
  auto v = store_->VerifyAudit();
  SBX_ASSERT_OK(v);
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->first_broken_id, 4);
}

TEST_P(StoreContractTest, HeartbeatsAndRecoverStale) {
  SBX_ASSERT_OK(store_->Heartbeat("node-a"));
  SBX_ASSERT_OK(store_->Heartbeat("node-b"));
  auto n1 = store_->ListNodes();
  SBX_ASSERT_OK(n1);
  ASSERT_EQ(n1->size(), 2u);
  EXPECT_EQ((*n1)[0].name, "node-a");
  SBX_ASSERT_OK(store_->Heartbeat("node-a"));
  auto n2 = store_->ListNodes();
  SBX_ASSERT_OK(n2);
  ASSERT_EQ(n2->size(), 2u);
  EXPECT_GE((*n2)[0].last_heartbeat_ms, (*n1)[0].last_heartbeat_ms);

  std::vector<std::string> on_a, on_b;
  for (int i = 0; i < 4; ++i) {
    CreateIn(S::kQueued);
    auto c = store_->ClaimNextQueued(i % 2 ? "node-b" : "node-a");
    SBX_ASSERT_OK(c);
    ASSERT_TRUE(c->has_value());
    (i % 2 ? on_b : on_a).push_back((*c)->id);
  }
  // A run node-a already finished is left alone, and so is one still queued.
  RunRecord done = CreateIn(S::kQueued);
  SBX_ASSERT_OK(store_->ClaimNextQueued("node-a"));
  SBX_ASSERT_OK(store_->Transition(done.id, {S::kRunning}, S::kSucceeded, {}));
  RunRecord still_queued = CreateIn(S::kQueued);

  auto recovered = store_->RecoverStale("node-a");
  SBX_ASSERT_OK(recovered);
  std::set<std::string> got(recovered->begin(), recovered->end());
  EXPECT_EQ(got, std::set<std::string>(on_a.begin(), on_a.end()));
  for (const auto& id : on_a) {
    auto r = store_->GetRun(id);
    SBX_ASSERT_OK(r);
    EXPECT_EQ(r->state, S::kFailed);
    ASSERT_TRUE(r->result);
    EXPECT_EQ(store::RenderEndReason(r->result->reason), "supervisor_restart");
    EXPECT_TRUE(r->finished_at_ms);
  }
  for (const auto& id : on_b) {
    auto r = store_->GetRun(id);
    SBX_ASSERT_OK(r);
    EXPECT_EQ(r->state, S::kRunning);
  }
  auto q = store_->GetRun(still_queued.id);
  SBX_ASSERT_OK(q);
  EXPECT_EQ(q->state, S::kQueued);
  auto d = store_->GetRun(done.id);
  SBX_ASSERT_OK(d);
  EXPECT_EQ(d->state, S::kSucceeded);

  auto again = store_->RecoverStale("node-a");
  SBX_ASSERT_OK(again);
  EXPECT_TRUE(again->empty());
  EXPECT_FALSE(store_->RecoverStale("").ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreContractTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres), BackendName);
INSTANTIATE_TEST_SUITE_P(Backends, AuditTamperTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres), BackendName);

}  // namespace
}  // namespace sbx::store
