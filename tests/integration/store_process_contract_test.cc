// The store contract for the processes of long-lived sandboxes and for crash recovery
// (store.h, sandbox_records.h), run like store_contract_test.cc against SQLite and a real
// PostgreSQL server that the suite starts. "Another daemon" is another Store on the same
// database.
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

class ProcessContractTest : public testing::SandboxStoreTest {};

TEST_P(ProcessContractTest, ProcessesRoundTripWithIdsInOrder) {
  SandboxRecord s = CreateSandboxIn(S::kRunning);
  ProcessRecord in = NewProcess(s.id, "build");
  in.submitter = "bob";
  in.argv = {"/bin/sh", "-c", "printf 'ä\\0'"};
  in.env = {{"A", "1"}, {"EMPTY", ""}};
  in.cwd = "/workspace/src";
  in.stdin_data = std::string("line\0with nul\xff\xfe\0", 17);
  in.stdin_open = true;
  in.timeout_s = 30;
  in.pty = PtyRequest{132, 43};
  in.policy = json{{"decision", "allow"}};
  auto first = store_->CreateProcess(in);
  SBX_ASSERT_OK(first);
  EXPECT_EQ(first->id, 1);
  EXPECT_EQ(first->sandbox_id, s.id);
  EXPECT_EQ(first->state, P::kAwaitingReview);
  EXPECT_GT(first->created_at_ms, 0);
  EXPECT_EQ(first->request(), in.request());

  auto got = store_->GetProcess(s.id, "1");
  SBX_ASSERT_OK(got);
  EXPECT_EQ(got->request(), in.request());
  EXPECT_EQ(got->stdin_data.size(), 17u);
  EXPECT_EQ(got->stdin_data, in.stdin_data);
  EXPECT_EQ(got->submitter, "bob");
  EXPECT_EQ(got->policy, in.policy);
  EXPECT_EQ(got->created_at_ms, first->created_at_ms);
  EXPECT_FALSE(got->started_at_ms);
  EXPECT_FALSE(got->finished_at_ms);
  EXPECT_FALSE(got->result);
  EXPECT_FALSE(got->approval);
  auto stored_bytes = testing::QueryRawScalar(
      url_, IsPostgres() ? "SELECT octet_length(stdin) FROM sandbox_processes"
                         : "SELECT length(stdin) FROM sandbox_processes");
  SBX_ASSERT_OK(stored_bytes);
  EXPECT_EQ(*stored_bytes, "17");

  EXPECT_EQ(AddProcess(s.id).id, 2);
  EXPECT_EQ(AddProcess(s.id).id, 3);
  // Each sandbox counts its own.
  SandboxRecord other = CreateSandbox();
  EXPECT_EQ(AddProcess(other.id).id, 1);
  EXPECT_EQ(AddProcess(s.id).id, 4);
  // A sandbox not yet running takes processes too (they wait for review and for it).
  EXPECT_EQ(AddProcess(CreateSandboxIn(S::kAwaitingReview).id).id, 1);
  EXPECT_EQ(AddProcess(CreateSandboxIn(S::kPaused).id).id, 1);
}

TEST_P(ProcessContractTest, CreateProcessRefusesBadInputAndEndedSandboxes) {
  SandboxRecord s = CreateSandboxIn(S::kRunning);
  auto expect_code = [&](const ProcessRecord& p, ErrorCode code) {
    auto c = store_->CreateProcess(p);
    ASSERT_FALSE(c.ok());
    ExpectCode(c.error(), code);
  };
  ProcessRecord no_submitter = NewProcess(s.id);
  no_submitter.submitter = "";
  expect_code(no_submitter, ErrorCode::kInvalidArgument);
  for (P state : {P::kRunning, P::kFinished, P::kRejected, P::kCancelled}) {
    ProcessRecord p = NewProcess(s.id);
    p.state = state;
    expect_code(p, ErrorCode::kInvalidArgument);
  }
  ProcessRecord with_id = NewProcess(s.id);
  with_id.id = 7;
  expect_code(with_id, ErrorCode::kInvalidArgument);
  expect_code(NewProcess(s.id, "42"), ErrorCode::kInvalidArgument);  // reads as an id
  std::vector<std::function<void(ProcessRecord&)>> not_utf8 = {
      [](ProcessRecord& p) {
        p.argv = {"/bin/echo", "\xff"};
      },
      [](ProcessRecord& p) {
        p.env = {{"K", "\xc3\x28"}};
      },
      [](ProcessRecord& p) { p.cwd = "/\x80"; },
      [](ProcessRecord& p) { p.tag = "t\xff"; },
      [](ProcessRecord& p) { p.submitter = "\xfe"; },
  };
  for (size_t i = 0; i < not_utf8.size(); ++i) {
    SCOPED_TRACE(i);
    ProcessRecord p = NewProcess(s.id);
    not_utf8[i](p);
    expect_code(p, ErrorCode::kInvalidArgument);
  }
  expect_code(NewProcess("sbx_nope"), ErrorCode::kNotFound);

  // Refused input used up no id.
  EXPECT_EQ(AddProcess(s.id).id, 1);

  for (S end : {S::kStopped, S::kFailed}) {
    SCOPED_TRACE(SandboxStateName(end));
    SandboxRecord ended = CreateSandboxIn(S::kRunning);
    EXPECT_EQ(AddProcess(ended.id).id, 1);
    SBX_ASSERT_OK(store_->UpdateSandbox(ended.id, {S::kRunning}, end, {}));
    expect_code(NewProcess(ended.id), ErrorCode::kFailedPrecondition);
    auto list = store_->ListProcesses(ended.id, {});
    SBX_ASSERT_OK(list);
    EXPECT_EQ(list->size(), 1u);
  }
}

TEST_P(ProcessContractTest, ProcessIdsStayUniqueWhenDaemonsCreateAtOnce) {
  constexpr int kThreads = 4;
  constexpr int kEach = 25;
  SandboxRecord s = CreateSandboxIn(S::kRunning);
  SandboxRecord other = CreateSandboxIn(S::kRunning);
  std::vector<std::vector<int64_t>> ids(kThreads);
  Race(kThreads, [&](int t, Store& store) {
    for (int i = 0; i < kEach; ++i) {
      // Odd threads also write to another sandbox in between: its counter is its own.
      if (t % 2) {
        auto o = store.CreateProcess(NewProcess(other.id));
        EXPECT_TRUE(o.ok()) << o.error().ToString();
      }
      auto c = store.CreateProcess(NewProcess(s.id, "t" + std::to_string(t)));
      ASSERT_TRUE(c.ok()) << c.error().ToString();
      ids[t].push_back(c->id);
    }
  });
  std::set<int64_t> all;
  for (const auto& list : ids) {
    ASSERT_EQ(list.size(), static_cast<size_t>(kEach));
    for (size_t i = 1; i < list.size(); ++i) EXPECT_LT(list[i - 1], list[i]);
    all.insert(list.begin(), list.end());
  }
  ASSERT_EQ(all.size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(*all.begin(), 1);
  EXPECT_EQ(*all.rbegin(), kThreads * kEach);  // no gaps either

  ProcessFilter f;
  f.limit = 1000;
  std::vector<int64_t> listed = ProcessIds(s.id, f);
  EXPECT_EQ(listed, std::vector<int64_t>(all.begin(), all.end()));
  std::vector<int64_t> others = ProcessIds(other.id, f);
  ASSERT_EQ(others.size(), static_cast<size_t>(kThreads / 2 * kEach));
  EXPECT_EQ(others.back(), kThreads / 2 * kEach);
}

TEST_P(ProcessContractTest, ProcessesRaceTheSandboxsEnd) {
  // One daemon stops the sandbox while another keeps creating processes: each create either
  // lands before the stop, and is listed, or fails with 409; none after the stop succeeds.
  SandboxRecord s = CreateSandboxIn(S::kRunning);
  std::atomic<int> created{0};
  std::atomic<bool> stopped{false};
  Race(2, [&](int t, Store& store) {
    if (t == 0) {
      SBX_ASSERT_OK(store.UpdateSandbox(s.id, {S::kRunning}, S::kStopped, {}));
      stopped = true;
      return;
    }
    for (int i = 0; i < 200; ++i) {
      const bool was_stopped = stopped.load();
      auto c = store.CreateProcess(NewProcess(s.id));
      if (c.ok()) {
        EXPECT_FALSE(was_stopped) << "process " << c->id << " created after the stop";
        ++created;
      } else {
        ExpectCode(c.error(), ErrorCode::kFailedPrecondition);
        break;
      }
    }
  });
  auto after = store_->CreateProcess(NewProcess(s.id));
  ASSERT_FALSE(after.ok());
  ExpectCode(after.error(), ErrorCode::kFailedPrecondition);
  ProcessFilter f;
  f.limit = 1000;
  EXPECT_EQ(ProcessIds(s.id, f).size(), static_cast<size_t>(created.load()));
}

TEST_P(ProcessContractTest, LookupByTagTakesTheNewest) {
  SandboxRecord s = CreateSandboxIn(S::kRunning);
  SandboxRecord other = CreateSandboxIn(S::kRunning);
  AddProcess(s.id, "build");                  // 1
  AddProcess(s.id, "test");                   // 2
  AddProcess(s.id, "build");                  // 3
  AddProcess(s.id);                           // 4
  AddProcess(other.id, "build");              // other's 1
  AddProcess(other.id, "build");              // other's 2
  AddProcess(other.id, "build");              // other's 3
  AddProcess(other.id, "build");              // other's 4
  AddProcessIn(s.id, P::kFinished, "build");  // 5, finished: still the newest with the tag

  auto build = store_->GetProcess(s.id, "build");
  SBX_ASSERT_OK(build);
  EXPECT_EQ(build->id, 5);
  EXPECT_EQ(build->sandbox_id, s.id);
  EXPECT_EQ(build->state, P::kFinished);
  auto test = store_->GetProcess(s.id, "test");
  SBX_ASSERT_OK(test);
  EXPECT_EQ(test->id, 2);
  auto by_id = store_->GetProcess(s.id, "3");
  SBX_ASSERT_OK(by_id);
  EXPECT_EQ(by_id->tag, "build");
  auto padded = store_->GetProcess(s.id, "0003");
  SBX_ASSERT_OK(padded);
  EXPECT_EQ(padded->id, 3);

  for (const char* missing : {"deploy", "0", "6", "99999999999999999999", "", "Build", "-1"}) {
    auto m = store_->GetProcess(s.id, missing);
    ASSERT_FALSE(m.ok()) << missing;
    ExpectCode(m.error(), ErrorCode::kNotFound);
  }
  auto no_sandbox = store_->GetProcess("sbx_nope", "1");
  ASSERT_FALSE(no_sandbox.ok());
  ExpectCode(no_sandbox.error(), ErrorCode::kNotFound);
  EXPECT_NE(no_sandbox.error().message.find("sbx_nope"), std::string::npos);
}

TEST_P(ProcessContractTest, ListProcessesFiltersOldestFirst) {
  SandboxRecord s = CreateSandboxIn(S::kRunning);
  SandboxRecord empty = CreateSandboxIn(S::kRunning);
  for (int i = 1; i <= 12; ++i) {
    const std::string tag = i % 3 == 0 ? "" : (i % 3 == 1 ? "a" : "b");
    ProcessRecord p = i % 4 == 0 ? AddProcessIn(s.id, P::kRunning, tag) : AddProcess(s.id, tag);
    ASSERT_EQ(p.id, i);
  }
  ProcessFilter f;
  EXPECT_EQ(ProcessIds(s.id, f), (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
  f.after_id = 4;
  f.limit = 3;
  EXPECT_EQ(ProcessIds(s.id, f), (std::vector<int64_t>{5, 6, 7}));
  f.after_id = 7;
  EXPECT_EQ(ProcessIds(s.id, f), (std::vector<int64_t>{8, 9, 10}));
  f.after_id = 12;
  EXPECT_TRUE(ProcessIds(s.id, f).empty());

  ProcessFilter tagged;
  tagged.tag = "a";
  EXPECT_EQ(ProcessIds(s.id, tagged), (std::vector<int64_t>{1, 4, 7, 10}));
  tagged.tag = "";
  EXPECT_EQ(ProcessIds(s.id, tagged), (std::vector<int64_t>{3, 6, 9, 12}));
  ProcessFilter running;
  running.states = {P::kRunning};
  EXPECT_EQ(ProcessIds(s.id, running), (std::vector<int64_t>{4, 8, 12}));
  running.tag = "a";
  EXPECT_EQ(ProcessIds(s.id, running), (std::vector<int64_t>{4}));
  ProcessFilter either;
  either.states = {P::kRunning, P::kFinished};
  either.after_id = 5;
  EXPECT_EQ(ProcessIds(s.id, either), (std::vector<int64_t>{8, 12}));

  auto none = store_->ListProcesses(empty.id, {});
  SBX_ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
  auto missing = store_->ListProcesses("sbx_nope", {});
  ASSERT_FALSE(missing.ok());
  ExpectCode(missing.error(), ErrorCode::kNotFound);
  for (int limit : {0, -3, 1001}) {
    ProcessFilter bad;
    bad.limit = limit;
    auto b = store_->ListProcesses(s.id, bad);
    ASSERT_FALSE(b.ok()) << limit;
    ExpectCode(b.error(), ErrorCode::kInvalidArgument);
  }
}

TEST_P(ProcessContractTest, EveryProcessTransitionIsLegalOrRefused) {
  const std::vector<P> all = {P::kAwaitingReview, P::kRunning, P::kFinished, P::kRejected,
                              P::kCancelled};
  const std::set<std::pair<P, P>> legal = {{P::kAwaitingReview, P::kRunning},
                                           {P::kAwaitingReview, P::kRejected},
                                           {P::kAwaitingReview, P::kCancelled},
                                           {P::kRunning, P::kFinished}};
  SandboxRecord s = CreateSandboxIn(S::kRunning);
  for (P from : all) {
    for (P to : all) {
      SCOPED_TRACE(std::string(ProcessStateName(from)) + " -> " + ProcessStateName(to));
      ProcessRecord p = AddProcessIn(s.id, from);
      ASSERT_EQ(p.state, from);
      auto u = store_->UpdateProcess(s.id, p.id, {from}, to, {});
      auto after = store_->GetProcess(s.id, std::to_string(p.id));
      SBX_ASSERT_OK(after);
      if (legal.count({from, to})) {
        SBX_ASSERT_OK(u);
        EXPECT_EQ(after->state, to);
        EXPECT_EQ(after->started_at_ms.has_value(),
                  p.started_at_ms.has_value() || to == P::kRunning);
        EXPECT_EQ(after->finished_at_ms.has_value(), IsTerminal(to));
      } else {
        // Staying (from == to) is refused for processes too.
        ASSERT_FALSE(u.ok());
        ExpectCode(u.error(), ErrorCode::kInvalidArgument);
        EXPECT_EQ(after->state, from);
        EXPECT_EQ(after->started_at_ms, p.started_at_ms);
        EXPECT_EQ(after->finished_at_ms, p.finished_at_ms);
      }
    }
  }
}

TEST_P(ProcessContractTest, ProcessUpdatesAreCompareAndSet) {
  SandboxRecord s = CreateSandboxIn(S::kRunning);
  ProcessRecord p = AddProcess(s.id);

  auto not_running = store_->UpdateProcess(s.id, p.id, {P::kRunning}, P::kFinished, {});
  ASSERT_FALSE(not_running.ok());
  ExpectCode(not_running.error(), ErrorCode::kFailedPrecondition);

  ProcessUpdate approve;
  approve.approval = SandboxApproval{"reviewer", 1700000000000, "manual"};
  auto running = store_->UpdateProcess(s.id, p.id, {P::kAwaitingReview}, P::kRunning, approve);
  SBX_ASSERT_OK(running);
  EXPECT_EQ(running->approval, approve.approval);
  ASSERT_TRUE(running->started_at_ms);
  EXPECT_GE(*running->started_at_ms, p.created_at_ms);
  EXPECT_FALSE(running->finished_at_ms);

  ProcessUpdate finish;
  ProcessResult& result = finish.result.emplace();
  result.reason = {EndCode::kSignaled};
  result.signal = 9;
  result.wall_ms = 1200;
  result.cpu_ms = 800;
  result.stdout_bytes = 1 << 20;
  result.stderr_bytes = 3;
  result.output_truncated = true;
  auto finished = store_->UpdateProcess(s.id, p.id, {P::kRunning}, P::kFinished, finish);
  SBX_ASSERT_OK(finished);
  EXPECT_EQ(finished->result, finish.result);
  ASSERT_TRUE(finished->finished_at_ms);
  EXPECT_GE(*finished->finished_at_ms, *running->started_at_ms);
  EXPECT_EQ(finished->approval, approve.approval);  // kept
  auto got = store_->GetProcess(s.id, std::to_string(p.id));
  SBX_ASSERT_OK(got);
  EXPECT_EQ(got->result, finish.result);
  EXPECT_EQ(got->started_at_ms, running->started_at_ms);

  auto again = store_->UpdateProcess(s.id, p.id, {P::kRunning}, P::kFinished, {});
  ASSERT_FALSE(again.ok());
  ExpectCode(again.error(), ErrorCode::kFailedPrecondition);

  auto missing = store_->UpdateProcess(s.id, 99, {P::kAwaitingReview}, P::kRunning, {});
  ASSERT_FALSE(missing.ok());
  ExpectCode(missing.error(), ErrorCode::kNotFound);
  auto no_sandbox = store_->UpdateProcess("sbx_nope", 1, {P::kAwaitingReview}, P::kRunning, {});
  ASSERT_FALSE(no_sandbox.ok());
  ExpectCode(no_sandbox.error(), ErrorCode::kNotFound);
  auto no_from = store_->UpdateProcess(s.id, p.id, {}, P::kRunning, {});
  ASSERT_FALSE(no_from.ok());
  ExpectCode(no_from.error(), ErrorCode::kInvalidArgument);

  // A result that is not UTF-8 is refused and changes nothing.
  ProcessRecord q = AddProcessIn(s.id, P::kRunning);
  ProcessUpdate bad;
  bad.result.emplace().reason = {EndCode::kSetupFailed, "mkdir \xff"};
  auto refused = store_->UpdateProcess(s.id, q.id, {P::kRunning}, P::kFinished, bad);
  ASSERT_FALSE(refused.ok());
  ExpectCode(refused.error(), ErrorCode::kInvalidArgument);
  auto q_after = store_->GetProcess(s.id, std::to_string(q.id));
  SBX_ASSERT_OK(q_after);
  EXPECT_EQ(q_after->state, P::kRunning);
  EXPECT_FALSE(q_after->result);
}

TEST_P(ProcessContractTest, ApproveAndRejectRaceHasOneWinner) {
  constexpr int kRounds = 5;
  constexpr int kThreads = 4;
  SandboxRecord s = CreateSandboxIn(S::kRunning);
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(round);
    ProcessRecord p = AddProcess(s.id);
    std::atomic<int> won{0};
    std::atomic<int> winner{-1};
    Race(kThreads, [&](int t, Store& store) {
      ProcessUpdate u;
      u.approval = SandboxApproval{"reviewer-" + std::to_string(t), t, "manual"};
      auto r = store.UpdateProcess(s.id, p.id, {P::kAwaitingReview},
                                   t % 2 ? P::kRejected : P::kRunning, u);
      if (r.ok()) {
        ++won;
        winner = t;
      } else {
        EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition) << r.error().ToString();
      }
    });
    EXPECT_EQ(won.load(), 1);
    auto after = store_->GetProcess(s.id, std::to_string(p.id));
    SBX_ASSERT_OK(after);
    ASSERT_GE(winner.load(), 0);
    EXPECT_EQ(after->state, winner % 2 ? P::kRejected : P::kRunning);
    ASSERT_TRUE(after->approval);
    EXPECT_EQ(after->approval->approved_by, "reviewer-" + std::to_string(winner.load()));
  }
}

TEST_P(ProcessContractTest, RecoverStaleSandboxesTouchesOnlyItsNodesLiveSandboxes) {
  auto on = [&](S state, const std::string& node) {
    SandboxRecord s = NewSandbox();
    s.node = node;
    return CreateSandboxIn(state, s);
  };
  SandboxRecord starting = on(S::kStarting, "node-a");
  SandboxRecord running = on(S::kRunning, "node-a");
  SandboxRecord paused = on(S::kPaused, "node-a");
  SandboxRecord pending = on(S::kPending, "node-a");
  SandboxRecord reviewing = on(S::kAwaitingReview, "node-a");
  SandboxRecord stopped = on(S::kStopped, "node-a");
  SandboxRecord failed = on(S::kFailed, "node-a");
  SandboxRecord elsewhere = on(S::kRunning, "node-b");
  SandboxRecord nowhere = CreateSandboxIn(S::kRunning);

  // Processes in every state in the running sandbox on node-a, and some in the others.
  ProcessRecord p_review = AddProcess(running.id);
  ProcessRecord p_running = AddProcessIn(running.id, P::kRunning);
  ProcessRecord p_finished = AddProcessIn(running.id, P::kFinished);
  ProcessRecord p_rejected = AddProcessIn(running.id, P::kRejected);
  ProcessRecord p_paused = AddProcessIn(paused.id, P::kRunning);
  ProcessRecord p_pending = AddProcess(pending.id);
  ProcessRecord b_running = AddProcessIn(elsewhere.id, P::kRunning);
  ProcessRecord b_review = AddProcess(elsewhere.id);

  auto recovered = store_->RecoverStaleSandboxes("node-a");
  SBX_ASSERT_OK(recovered);
  EXPECT_EQ(std::set<std::string>(recovered->begin(), recovered->end()),
            (std::set<std::string>{starting.id, running.id, paused.id}));
  EXPECT_EQ(recovered->size(), 3u);
  for (const SandboxRecord& s : {starting, running, paused}) {
    auto got = store_->GetSandbox(s.id);
    SBX_ASSERT_OK(got);
    EXPECT_EQ(got->state, S::kFailed) << s.id;
    EXPECT_EQ(got->reason, (EndReason{EndCode::kSupervisorRestart}));
    EXPECT_TRUE(got->ended_at_ms);
    EXPECT_EQ(got->node, "node-a");
  }
  auto state_of = [&](const std::string& id) {
    auto got = store_->GetSandbox(id);
    EXPECT_TRUE(got.ok());
    return got.ok() ? got->state : S::kPending;
  };
  EXPECT_EQ(state_of(pending.id), S::kPending);
  EXPECT_EQ(state_of(reviewing.id), S::kAwaitingReview);
  EXPECT_EQ(state_of(stopped.id), S::kStopped);
  EXPECT_EQ(state_of(failed.id), S::kFailed);
  auto failed_got = store_->GetSandbox(failed.id);
  SBX_ASSERT_OK(failed_got);
  EXPECT_EQ(failed_got->reason, EndReason{});
  EXPECT_EQ(failed_got->ended_at_ms, failed.ended_at_ms);
  EXPECT_EQ(state_of(elsewhere.id), S::kRunning);
  EXPECT_EQ(state_of(nowhere.id), S::kRunning);

  auto process = [&](const ProcessRecord& p) {
    auto got = store_->GetProcess(p.sandbox_id, std::to_string(p.id));
    EXPECT_TRUE(got.ok()) << got.error().ToString();
    return got.ok() ? *got : ProcessRecord{};
  };
  const EndReason restart{EndCode::kSupervisorRestart};
  for (const ProcessRecord& p : {p_running, p_paused}) {
    ProcessRecord got = process(p);
    EXPECT_EQ(got.state, P::kFinished);
    ASSERT_TRUE(got.result);
    EXPECT_EQ(got.result->reason, restart);
    EXPECT_TRUE(got.finished_at_ms);
    EXPECT_EQ(got.started_at_ms, p.started_at_ms);
  }
  ProcessRecord cancelled = process(p_review);
  EXPECT_EQ(cancelled.state, P::kCancelled);
  EXPECT_TRUE(cancelled.finished_at_ms);
  ProcessRecord finished = process(p_finished);
  EXPECT_EQ(finished.state, P::kFinished);
  EXPECT_EQ(finished.result, p_finished.result);
  EXPECT_EQ(finished.finished_at_ms, p_finished.finished_at_ms);
  EXPECT_EQ(process(p_rejected).state, P::kRejected);
  EXPECT_EQ(process(p_pending).state, P::kAwaitingReview);
  EXPECT_EQ(process(b_running).state, P::kRunning);
  EXPECT_EQ(process(b_review).state, P::kAwaitingReview);

  // A recovered sandbox is ended: it takes no more processes. Recovering again finds nothing.
  auto late = store_->CreateProcess(NewProcess(running.id));
  ASSERT_FALSE(late.ok());
  ExpectCode(late.error(), ErrorCode::kFailedPrecondition);
  auto again = store_->RecoverStaleSandboxes("node-a");
  SBX_ASSERT_OK(again);
  EXPECT_TRUE(again->empty());
  auto unknown = store_->RecoverStaleSandboxes("node-z");
  SBX_ASSERT_OK(unknown);
  EXPECT_TRUE(unknown->empty());
  auto no_node = store_->RecoverStaleSandboxes("");
  ASSERT_FALSE(no_node.ok());
  ExpectCode(no_node.error(), ErrorCode::kInvalidArgument);
}

TEST_P(ProcessContractTest, RecoveryRacingAnUpdateLeavesOneOutcome) {
  // Daemon A recovers node-a while daemon B (the sandbox's own, still alive) stops it: either
  // the stop wins (and recovery skips it) or recovery does (and the stop finds it FAILED).
  constexpr int kRounds = 5;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(round);
    SandboxRecord s = NewSandbox();
    s.node = "node-a";
    s = CreateSandboxIn(S::kRunning, s);
    ProcessRecord p = AddProcessIn(s.id, P::kRunning);
    std::vector<std::string> recovered;
    bool stop_ok = false;
    Race(2, [&](int t, Store& store) {
      if (t == 0) {
        auto r = store.RecoverStaleSandboxes("node-a");
        ASSERT_TRUE(r.ok()) << r.error().ToString();
        recovered = *r;
      } else {
        SandboxUpdate u;
        u.reason = EndReason{EndCode::kDeleted, ""};
        auto r = store.UpdateSandbox(s.id, {S::kRunning}, S::kStopped, u);
        stop_ok = r.ok();
        if (!r.ok()) ExpectCode(r.error(), ErrorCode::kFailedPrecondition);
      }
    });
    EXPECT_NE(stop_ok, recovered.size() == 1) << "both or neither won";
    auto got = store_->GetSandbox(s.id);
    SBX_ASSERT_OK(got);
    EXPECT_EQ(got->state, stop_ok ? S::kStopped : S::kFailed);
    auto proc = store_->GetProcess(s.id, std::to_string(p.id));
    SBX_ASSERT_OK(proc);
    EXPECT_EQ(proc->state, stop_ok ? P::kRunning : P::kFinished);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, ProcessContractTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres), BackendName);

}  // namespace
}  // namespace sbx::store
