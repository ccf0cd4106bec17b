// The store contract for long-lived sandboxes (store.h, sandbox_records.h), run like
// store_contract_test.cc against SQLite (a temp file) and a real PostgreSQL server that the suite
// starts. "Another daemon" is another Store on the same database. Their processes:
// store_process_contract_test.cc.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "supervisor/store/store.h"
#include "tests/support/raw_sql.h"
#include "tests/support/sandbox_store_fixture.h"

namespace sbx::store {
namespace {

using nlohmann::json;
using testing::Backend;
using testing::BackendName;
using testing::ExpectCode;

class SandboxContractTest : public testing::SandboxStoreTest {};

TEST_P(SandboxContractTest, MigrationCreatesTheSandboxTables) {
  auto again = store_->Migrate();
  SBX_ASSERT_OK(again);
  EXPECT_GE(again->to_version, 5);
  for (const char* table : {"sandboxes", "sandbox_labels", "sandbox_processes"}) {
    auto count = testing::QueryRawScalar(url_, std::string("SELECT COUNT(*) FROM ") + table);
    SBX_ASSERT_OK(count);
    EXPECT_EQ(*count, "0") << table;
  }
  // The CHECK on state holds against writers that bypass the store.
  EXPECT_FALSE(testing::ExecRawSql(url_,
                                   "INSERT INTO sandboxes (id, submitter, state, created_at, doc) "
                                   "VALUES ('sbx_raw', 'x', 'EXPLODED', 0, '{}')")
                   .ok());
}

TEST_P(SandboxContractTest, CreateAndGetRoundTripEveryField) {
  SandboxRecord in = NewSandbox("bob");
  in.cpus = 1.5;
  in.memory_bytes = int64_t{3} << 30;
  in.pids = 128;
  in.timeout_s = 3600;
  in.output_bytes = 1 << 20;
  in.idle_timeout_s = 600;
  in.network = "loopback";
  in.seccomp_profile = "default";
  in.env = {{"LANG", "C.UTF-8"}, {"EMPTY", ""}, {"GREETING", "grüß dich"}};
  in.workspace_path = "/srv/work";
  in.workspace_mode = "cow";
  in.labels = {{"team", "infra"}, {"ticket", "ÄÖÜ-42"}};
  in.idempotency_key = "key-1";
  in.backend = "docker";
  in.image = "registry.example/tools:1.2";
  in.from_snapshot = "snap_1";
  in.policy = json{{"decision", "allow"}, {"rule", "r1"}};
  in.approval = SandboxApproval{"policy", 1700000000000, "r1"};
  in.node = "node-a";
  in.backend_used = "docker";
  in.info = json{{"layers", json::array({"user", "pid"})}, {"pid", 4242}};
  auto created = store_->CreateSandbox(in);
  SBX_ASSERT_OK(created);
  EXPECT_TRUE(created->created);
  const SandboxRecord& c = created->sandbox;
  EXPECT_EQ(c.id.substr(0, 4), "sbx_");
  EXPECT_EQ(c.id.size(), 24u);
  EXPECT_GT(c.created_at_ms, 0);
  EXPECT_EQ(c.last_activity_ms, c.created_at_ms);

  auto got = store_->GetSandbox(c.id);
  SBX_ASSERT_OK(got);
  EXPECT_EQ(got->request(), in.request());
  EXPECT_EQ(got->id, c.id);
  EXPECT_EQ(got->submitter, "bob");
  EXPECT_EQ(got->state, S::kPending);
  EXPECT_EQ(got->policy, in.policy);
  EXPECT_EQ(got->approval, in.approval);
  EXPECT_EQ(got->node, "node-a");
  EXPECT_EQ(got->created_at_ms, c.created_at_ms);
  EXPECT_EQ(got->last_activity_ms, c.created_at_ms);
  EXPECT_FALSE(got->started_at_ms);
  EXPECT_FALSE(got->ended_at_ms);
  EXPECT_EQ(got->reason, EndReason{});
  EXPECT_EQ(got->backend_used, "docker");
  EXPECT_EQ(got->info, in.info);

  // Unset optionals stay unset, and a bare record reads back bare.
  SandboxRecord bare = CreateSandbox();
  auto bare_got = store_->GetSandbox(bare.id);
  SBX_ASSERT_OK(bare_got);
  EXPECT_EQ(bare_got->request(), NewSandbox().request());
  EXPECT_TRUE(bare_got->policy.is_null());
  EXPECT_TRUE(bare_got->info.is_null());
  EXPECT_FALSE(bare_got->approval);
  EXPECT_FALSE(bare_got->node);
  EXPECT_FALSE(bare_got->idempotency_key);

  SandboxRecord chosen = NewSandbox();
  chosen.id = "sbx_chosen_by_caller";
  chosen.created_at_ms = 1234;
  chosen.last_activity_ms = 5678;
  SandboxRecord stored = CreateSandbox(chosen);
  EXPECT_EQ(stored.id, "sbx_chosen_by_caller");
  EXPECT_EQ(stored.created_at_ms, 1234);
  EXPECT_EQ(stored.last_activity_ms, 5678);

  auto missing = store_->GetSandbox("sbx_nope");
  ASSERT_FALSE(missing.ok());
  ExpectCode(missing.error(), ErrorCode::kNotFound);
}

TEST_P(SandboxContractTest, CreateRejectsBadInputAndStoresNothing) {
  auto expect_code = [&](SandboxRecord s, ErrorCode code) {
    auto c = store_->CreateSandbox(s);
    ASSERT_FALSE(c.ok());
    ExpectCode(c.error(), code);
  };
  expect_code(NewSandbox(""), ErrorCode::kInvalidArgument);
  for (S state : AllSandboxStates()) {
    if (state == S::kPending) continue;
    SandboxRecord s = NewSandbox();
    s.state = state;
    expect_code(s, ErrorCode::kInvalidArgument);
  }
  SandboxRecord bad_id = NewSandbox();
  bad_id.id = "sbx'; DROP TABLE sandboxes; --";
  expect_code(bad_id, ErrorCode::kInvalidArgument);
  SandboxRecord empty_key = NewSandbox();
  empty_key.idempotency_key = "";
  expect_code(empty_key, ErrorCode::kInvalidArgument);

  // Every string that is not UTF-8, wherever it sits: a column or the document.
  std::vector<std::function<void(SandboxRecord&)>> not_utf8 = {
      [](SandboxRecord& s) { s.submitter = "\xff"; },
      [](SandboxRecord& s) {
        s.labels = {{"k", "\xc3\x28"}};
      },
      [](SandboxRecord& s) {
        s.labels = {{"\xc3\x28", "v"}};
      },
      [](SandboxRecord& s) {
        s.env = {{"K", "\xe2\x82"}};
      },
      [](SandboxRecord& s) { s.node = "node-\xff"; },
      [](SandboxRecord& s) { s.idempotency_key = "key-\xfe"; },
      [](SandboxRecord& s) { s.workspace_path = "/srv/\xff"; },
      [](SandboxRecord& s) { s.image = "\x80"; },
      [](SandboxRecord& s) {
        s.info = json{{"pid", "\xff"}};
      },
  };
  for (size_t i = 0; i < not_utf8.size(); ++i) {
    SCOPED_TRACE(i);
    SandboxRecord s = NewSandbox();
    not_utf8[i](s);
    expect_code(s, ErrorCode::kInvalidArgument);
  }

  SandboxRecord dup = NewSandbox();
  dup.id = "sbx_dup";
  CreateSandbox(dup);
  expect_code(dup, ErrorCode::kAlreadyExists);
  auto all = store_->ListSandboxes({});
  SBX_ASSERT_OK(all);
  ASSERT_EQ(all->sandboxes.size(), 1u);
  EXPECT_EQ(all->sandboxes[0].id, "sbx_dup");
  auto labels = testing::QueryRawScalar(url_, "SELECT COUNT(*) FROM sandbox_labels");
  SBX_ASSERT_OK(labels);
  EXPECT_EQ(*labels, "0");
}

TEST_P(SandboxContractTest, IdempotencyKeyReturnsTheSameSandbox) {
  SandboxRecord s = NewSandbox("alice");
  s.idempotency_key = "deploy-7";
  s.labels = {{"try", "1"}};
  auto first = store_->CreateSandbox(s);
  SBX_ASSERT_OK(first);
  EXPECT_TRUE(first->created);

  s.labels = {{"try", "2"}};  // a retry with another body still gets the first sandbox
  s.image = "other";
  auto second = store_->CreateSandbox(s);
  SBX_ASSERT_OK(second);
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->sandbox.id, first->sandbox.id);
  EXPECT_EQ(second->sandbox.labels, first->sandbox.labels);
  EXPECT_EQ(second->sandbox.image, "");

  // Also once the first has moved on, and also with the key and another chosen id.
  SBX_ASSERT_OK(store_->UpdateSandbox(first->sandbox.id, {S::kPending}, S::kAwaitingReview, {}));
  s.id = "sbx_other_id";
  auto third = store_->CreateSandbox(s);
  SBX_ASSERT_OK(third);
  EXPECT_FALSE(third->created);
  EXPECT_EQ(third->sandbox.id, first->sandbox.id);
  EXPECT_EQ(third->sandbox.state, S::kAwaitingReview);
  auto other_id = store_->GetSandbox("sbx_other_id");
  ASSERT_FALSE(other_id.ok());
  ExpectCode(other_id.error(), ErrorCode::kNotFound);

  // The key is per submitter.
  SandboxRecord bob = NewSandbox("bob");
  bob.idempotency_key = "deploy-7";
  SandboxRecord bobs = CreateSandbox(bob);
  EXPECT_NE(bobs.id, first->sandbox.id);

  // The label filter sees the first request's labels only.
  SandboxFilter try2;
  try2.labels = {{"try", "2"}};
  EXPECT_TRUE(SandboxIds(try2).empty());
}

TEST_P(SandboxContractTest, IdempotencyHoldsWhenDaemonsRace) {
  constexpr int kThreads = 8;
  std::vector<std::string> ids(kThreads);
  std::atomic<int> created{0};
  Race(kThreads, [&](int t, Store& store) {
    SandboxRecord s = NewSandbox("carol");
    s.idempotency_key = "same";
    s.labels = {{"thread", std::to_string(t)}};
    auto c = store.CreateSandbox(s);
    ASSERT_TRUE(c.ok()) << c.error().ToString();
    ids[t] = c->sandbox.id;
    if (c->created) ++created;
  });
  EXPECT_EQ(created.load(), 1);
  for (const auto& id : ids) EXPECT_EQ(id, ids[0]);
  auto all = store_->ListSandboxes({});
  SBX_ASSERT_OK(all);
  EXPECT_EQ(all->sandboxes.size(), 1u);
  auto labels = testing::QueryRawScalar(url_, "SELECT COUNT(*) FROM sandbox_labels");
  SBX_ASSERT_OK(labels);
  EXPECT_EQ(*labels, "1");
}

TEST_P(SandboxContractTest, ListFiltersAndPagesNewestFirst) {
  std::vector<std::string> ids;  // in creation order
  for (int i = 0; i < 25; ++i) {
    SandboxRecord s = NewSandbox(i % 5 == 0 ? "bob" : "alice");
    s.labels = {{"parity", i % 2 ? "odd" : "even"}, {"tens", std::to_string(i / 10)}};
    if (i % 4 == 0) s.node = "node-a";
    ids.push_back(CreateSandboxIn(i % 3 == 0 ? S::kRunning : S::kPending, s).id);
  }
  auto expected = [&](auto pred) {
    std::vector<std::string> out;
    for (int i = 24; i >= 0; --i) {
      if (pred(i)) out.push_back(ids[i]);
    }
    return out;
  };

  // Pages of 10 walk every sandbox once, newest first, also while new ones arrive in between
  // (they are newer than the cursor, so they belong to no later page).
  std::vector<std::string> seen;
  SandboxFilter f;
  f.limit = 10;
  int pages = 0;
  do {
    auto page = store_->ListSandboxes(f);
    SBX_ASSERT_OK(page);
    ++pages;
    EXPECT_LE(page->sandboxes.size(), 10u);
    for (const auto& s : page->sandboxes) seen.push_back(s.id);
    f.cursor = page->next_cursor;
    CreateSandbox();
  } while (!f.cursor.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, expected([](int) { return true; }));
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), seen.size());

  // An exact multiple of the limit: the last full page says it is the last.
  SandboxFilter bobs;
  bobs.submitter = "bob";
  bobs.limit = 5;
  auto bob_page = store_->ListSandboxes(bobs);
  SBX_ASSERT_OK(bob_page);
  EXPECT_EQ(bob_page->sandboxes.size(), 5u);
  EXPECT_TRUE(bob_page->next_cursor.empty());

  SandboxFilter running;
  running.states = {S::kRunning};
  EXPECT_EQ(SandboxIds(running), expected([](int i) { return i % 3 == 0; }));

  SandboxFilter odd;
  odd.labels = {{"parity", "odd"}};
  EXPECT_EQ(SandboxIds(odd), expected([](int i) { return i % 2 == 1; }));

  // Every label must match, not any.
  SandboxFilter odd_tens1;
  odd_tens1.labels = {{"parity", "odd"}, {"tens", "1"}};
  EXPECT_EQ(SandboxIds(odd_tens1), expected([](int i) { return i % 2 == 1 && i / 10 == 1; }));
  SandboxFilter contradicting;
  contradicting.labels = {{"parity", "odd"}, {"tens", "odd"}};
  EXPECT_TRUE(SandboxIds(contradicting).empty());

  SandboxFilter on_a;
  on_a.node = "node-a";
  EXPECT_EQ(SandboxIds(on_a), expected([](int i) { return i % 4 == 0; }));

  SandboxFilter all_of_them;
  all_of_them.labels = {{"parity", "even"}};
  all_of_them.states = {S::kRunning, S::kPaused};
  all_of_them.submitter = "bob";
  all_of_them.node = "node-a";
  EXPECT_EQ(SandboxIds(all_of_them),
            expected([](int i) { return i % 2 == 0 && i % 3 == 0 && i % 5 == 0 && i % 4 == 0; }));

  // Filters and pages combine: the cursor continues the filtered list.
  SandboxFilter odd_paged;
  odd_paged.labels = {{"parity", "odd"}};
  odd_paged.limit = 5;
  std::vector<std::string> odd_seen;
  for (int i = 0; i < 5; ++i) {
    auto page = store_->ListSandboxes(odd_paged);
    SBX_ASSERT_OK(page);
    for (const auto& s : page->sandboxes) odd_seen.push_back(s.id);
    odd_paged.cursor = page->next_cursor;
    if (odd_paged.cursor.empty()) break;
  }
  EXPECT_EQ(odd_seen, expected([](int i) { return i % 2 == 1; }));

  for (const char* cursor : {"abc", "-5", "0", "12x", "99999999999999999999"}) {
    SandboxFilter bad;
    bad.cursor = cursor;
    auto b = store_->ListSandboxes(bad);
    ASSERT_FALSE(b.ok()) << cursor;
    ExpectCode(b.error(), ErrorCode::kInvalidArgument);
  }
  for (int limit : {0, -1, 1001}) {
    SandboxFilter bad;
    bad.limit = limit;
    auto b = store_->ListSandboxes(bad);
    ASSERT_FALSE(b.ok()) << limit;
    ExpectCode(b.error(), ErrorCode::kInvalidArgument);
  }
  SandboxFilter max;
  max.limit = 1000;
  SBX_ASSERT_OK(store_->ListSandboxes(max));
}

TEST_P(SandboxContractTest, EveryTransitionIsLegalOrRefusedWithNothingChanged) {
  // The table, written out independently of IsLegalSandboxTransition().
  std::set<std::pair<S, S>> legal = {{S::kPending, S::kAwaitingReview},
                                     {S::kAwaitingReview, S::kStarting},
                                     {S::kStarting, S::kRunning},
                                     {S::kRunning, S::kPaused},
                                     {S::kPaused, S::kRunning}};
  for (S s : NonTerminalSandboxStates()) {
    legal.insert({s, S::kStopped});
    legal.insert({s, S::kFailed});
  }
  for (S from : AllSandboxStates()) {
    for (S to : AllSandboxStates()) {
      SCOPED_TRACE(std::string(SandboxStateName(from)) + " -> " + SandboxStateName(to));
      SandboxRecord s = CreateSandboxIn(from);
      ASSERT_EQ(s.state, from);
      SandboxUpdate update;
      update.backend_used = "native";
      auto u = store_->UpdateSandbox(s.id, {from}, to, update);
      auto after = store_->GetSandbox(s.id);
      SBX_ASSERT_OK(after);
      if (from == to || legal.count({from, to})) {
        SBX_ASSERT_OK(u);
        EXPECT_EQ(u->state, to);
        EXPECT_EQ(after->state, to);
        EXPECT_EQ(after->backend_used, "native");
        EXPECT_EQ(after->started_at_ms.has_value(),
                  s.started_at_ms.has_value() || to == S::kRunning);
        EXPECT_EQ(after->ended_at_ms.has_value(), IsTerminal(to));
        if (from == to) {
          EXPECT_EQ(after->ended_at_ms, s.ended_at_ms);
        }
      } else {
        ASSERT_FALSE(u.ok());
        ExpectCode(u.error(), ErrorCode::kInvalidArgument);
        EXPECT_EQ(after->state, from);
        EXPECT_EQ(after->backend_used, "");
        EXPECT_EQ(after->started_at_ms, s.started_at_ms);
        EXPECT_EQ(after->ended_at_ms, s.ended_at_ms);
      }
    }
  }
  // One illegal pair among legal ones refuses the whole call.
  SandboxRecord s = CreateSandboxIn(S::kRunning);
  auto mixed = store_->UpdateSandbox(s.id, {S::kRunning, S::kPending}, S::kPaused, {});
  ASSERT_FALSE(mixed.ok());
  ExpectCode(mixed.error(), ErrorCode::kInvalidArgument);
  auto none = store_->UpdateSandbox(s.id, {}, S::kPaused, {});
  ASSERT_FALSE(none.ok());
  ExpectCode(none.error(), ErrorCode::kInvalidArgument);
}

TEST_P(SandboxContractTest, UpdateIsCompareAndSetAndKeepsUnsetFields) {
  SandboxRecord s = CreateSandboxIn(S::kAwaitingReview);
  SandboxUpdate approve;
  approve.approval = SandboxApproval{"reviewer", 1700000000000, "manual"};
  approve.policy = json{{"decision", "review"}};

  // In another state than expected: 409, and the update's fields are not applied either.
  auto wrong = store_->UpdateSandbox(s.id, {S::kPending}, S::kAwaitingReview, approve);
  ASSERT_FALSE(wrong.ok());
  ExpectCode(wrong.error(), ErrorCode::kFailedPrecondition);
  auto unchanged = store_->GetSandbox(s.id);
  SBX_ASSERT_OK(unchanged);
  EXPECT_EQ(unchanged->state, S::kAwaitingReview);
  EXPECT_FALSE(unchanged->approval);
  EXPECT_TRUE(unchanged->policy.is_null());

  auto starting = store_->UpdateSandbox(s.id, {S::kAwaitingReview}, S::kStarting, approve);
  SBX_ASSERT_OK(starting);
  EXPECT_EQ(starting->approval, approve.approval);
  EXPECT_EQ(starting->policy, approve.policy);
  EXPECT_FALSE(starting->started_at_ms);

  SandboxUpdate started;
  started.node = "node-a";
  started.backend_used = "native";
  started.info = json{{"init_pid", 77}};
  auto running = store_->UpdateSandbox(s.id, {S::kStarting}, S::kRunning, started);
  SBX_ASSERT_OK(running);
  ASSERT_TRUE(running->started_at_ms);
  EXPECT_GE(*running->started_at_ms, s.created_at_ms);
  EXPECT_EQ(running->node, "node-a");
  EXPECT_EQ(running->approval, approve.approval);  // unset in this update: kept

  // A touch: the state stays, only last_activity changes.
  SandboxUpdate touch;
  touch.last_activity_ms = 9'000'000'000'000;
  auto touched = store_->UpdateSandbox(s.id, {S::kRunning, S::kPaused}, S::kRunning, touch);
  SBX_ASSERT_OK(touched);
  EXPECT_EQ(touched->state, S::kRunning);
  EXPECT_EQ(touched->last_activity_ms, 9'000'000'000'000);
  EXPECT_EQ(touched->started_at_ms, running->started_at_ms);
  EXPECT_EQ(touched->info, started.info);
  EXPECT_EQ(touched->backend_used, "native");

  // Pausing and resuming keeps the first start.
  SBX_ASSERT_OK(store_->UpdateSandbox(s.id, {S::kRunning}, S::kPaused, {}));
  auto resumed = store_->UpdateSandbox(s.id, {S::kPaused}, S::kRunning, {});
  SBX_ASSERT_OK(resumed);
  EXPECT_EQ(resumed->started_at_ms, running->started_at_ms);

  // A touch expecting the wrong state changes nothing.
  SandboxUpdate late;
  late.last_activity_ms = 1;
  auto stale = store_->UpdateSandbox(s.id, {S::kPaused}, S::kPaused, late);
  ASSERT_FALSE(stale.ok());
  ExpectCode(stale.error(), ErrorCode::kFailedPrecondition);

  SandboxUpdate deleted;
  deleted.reason = EndReason{EndCode::kDeleted, ""};
  auto stopped = store_->UpdateSandbox(s.id, NonTerminalSandboxStates(), S::kStopped, deleted);
  SBX_ASSERT_OK(stopped);
  EXPECT_EQ(stopped->reason, deleted.reason);
  ASSERT_TRUE(stopped->ended_at_ms);
  EXPECT_GE(*stopped->ended_at_ms, *running->started_at_ms);
  EXPECT_EQ(stopped->last_activity_ms, 9'000'000'000'000);
  auto got = store_->GetSandbox(s.id);
  SBX_ASSERT_OK(got);
  EXPECT_EQ(got->reason, deleted.reason);
  EXPECT_EQ(got->ended_at_ms, stopped->ended_at_ms);

  // Ended is ended: only an update that stays in STOPPED is taken, and keeps ended_at.
  auto again = store_->UpdateSandbox(s.id, NonTerminalSandboxStates(), S::kFailed, {});
  ASSERT_FALSE(again.ok());
  ExpectCode(again.error(), ErrorCode::kFailedPrecondition);
  SandboxUpdate info;
  info.info = json{{"final", true}};
  auto after_end = store_->UpdateSandbox(s.id, {S::kStopped}, S::kStopped, info);
  SBX_ASSERT_OK(after_end);
  EXPECT_EQ(after_end->ended_at_ms, stopped->ended_at_ms);
  EXPECT_EQ(after_end->info, info.info);

  auto missing = store_->UpdateSandbox("sbx_nope", {S::kPending}, S::kAwaitingReview, {});
  ASSERT_FALSE(missing.ok());
  ExpectCode(missing.error(), ErrorCode::kNotFound);

  // An update whose strings are not UTF-8 is refused whole.
  SandboxRecord r = CreateSandboxIn(S::kRunning);
  SandboxUpdate bad;
  bad.info = json{{"pid", "\xff"}};
  bad.last_activity_ms = 5;
  auto refused = store_->UpdateSandbox(r.id, {S::kRunning}, S::kPaused, bad);
  ASSERT_FALSE(refused.ok());
  ExpectCode(refused.error(), ErrorCode::kInvalidArgument);
  SandboxUpdate bad_node;
  bad_node.node = "\xc3\x28";
  auto refused_node = store_->UpdateSandbox(r.id, {S::kRunning}, S::kPaused, bad_node);
  ASSERT_FALSE(refused_node.ok());
  ExpectCode(refused_node.error(), ErrorCode::kInvalidArgument);
  auto r_after = store_->GetSandbox(r.id);
  SBX_ASSERT_OK(r_after);
  EXPECT_EQ(r_after->state, S::kRunning);
  EXPECT_EQ(r_after->last_activity_ms, r.last_activity_ms);
  EXPECT_TRUE(r_after->info.is_null());
}

TEST_P(SandboxContractTest, RacingDaemonsHaveExactlyOneWinner) {
  constexpr int kRounds = 5;
  constexpr int kThreads = 4;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(round);
    SandboxRecord s = CreateSandboxIn(S::kRunning);
    std::atomic<int> won{0}, lost{0};
    std::vector<std::string> details(kThreads);
    std::atomic<int> winner{-1};
    // Half of them delete it, half pause it: whoever is first decides, every other one finds
    // it moved and changes nothing.
    Race(kThreads, [&](int t, Store& store) {
      SandboxUpdate u;
      u.reason = EndReason{EndCode::kDeleted, "by thread " + std::to_string(t)};
      u.info = json{{"thread", t}};
      auto r = t % 2 ? store.UpdateSandbox(s.id, {S::kRunning}, S::kStopped, u)
                     : store.UpdateSandbox(s.id, {S::kRunning}, S::kPaused, u);
      if (r.ok()) {
        ++won;
        winner = t;
      } else {
        EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition) << r.error().ToString();
        ++lost;
      }
    });
    EXPECT_EQ(won.load(), 1);
    EXPECT_EQ(lost.load(), kThreads - 1);
    auto after = store_->GetSandbox(s.id);
    SBX_ASSERT_OK(after);
    ASSERT_GE(winner.load(), 0);
    EXPECT_EQ(after->state, winner % 2 ? S::kStopped : S::kPaused);
    EXPECT_EQ(after->info, (json{{"thread", winner.load()}}));
    EXPECT_EQ(after->reason.detail, "by thread " + std::to_string(winner.load()));
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, SandboxContractTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres), BackendName);

}  // namespace
}  // namespace sbx::store
