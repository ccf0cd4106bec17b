// The store contract for outbound runners (store.h, "Runners"), against SQLite and a real
// PostgreSQL server: a token is found only while it is the runner's current, unrevoked one; an
// outbox entry is committed once, in order, however often it is sent and however many
// connections race to commit it, and never for a revoked runner; nothing of a refused commit is
// written.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "supervisor/store/store.h"
#include "tests/support/sandbox_store_fixture.h"

namespace sbx::store {
namespace {

using testing::Backend;
using testing::BackendName;
using testing::ExpectFailedWith;
using S = RunState;

const std::string kDigestA(64, 'a');
const std::string kDigestB(64, 'b');

class RunnerContractTest : public testing::StoreBackendTest {};

TEST_P(RunnerContractTest, ATokenIsFoundOnlyWhileItIsTheRunnersCurrentOne) {
  auto put = store_->PutRunner("edge-1", kDigestA, "ada");
  SBX_ASSERT_OK(put);
  EXPECT_EQ(put->name, "edge-1");
  EXPECT_EQ(put->created_by, "ada");
  EXPECT_FALSE(put->revoked_at_ms);
  auto found = store_->FindRunnerByToken(kDigestA);
  SBX_ASSERT_OK(found);
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->name, "edge-1");

  // A new token replaces the old one.
  SBX_ASSERT_OK(store_->PutRunner("edge-1", kDigestB, "ada"));
  auto old = store_->FindRunnerByToken(kDigestA);
  SBX_ASSERT_OK(old);
  EXPECT_FALSE(old->has_value());

  auto revoked = store_->RevokeRunner("edge-1", "bob");
  SBX_ASSERT_OK(revoked);
  EXPECT_TRUE(revoked->revoked_at_ms);
  EXPECT_EQ(revoked->revoked_by, "bob");
  auto gone = store_->FindRunnerByToken(kDigestB);
  SBX_ASSERT_OK(gone);
  EXPECT_FALSE(gone->has_value());
  // Revoking again changes nothing; issuing again makes it active.
  auto again = store_->RevokeRunner("edge-1", "carol");
  SBX_ASSERT_OK(again);
  EXPECT_EQ(again->revoked_by, "bob");
  SBX_ASSERT_OK(store_->PutRunner("edge-1", kDigestA, "ada"));
  auto back = store_->FindRunnerByToken(kDigestA);
  SBX_ASSERT_OK(back);
  EXPECT_TRUE(back->has_value());

  ExpectFailedWith(store_->RevokeRunner("nobody", "ada"), ErrorCode::kNotFound);
  ExpectFailedWith(store_->GetRunner("nobody"), ErrorCode::kNotFound);
  ExpectFailedWith(store_->PutRunner("../x", kDigestA, "ada"), ErrorCode::kInvalidArgument);
  ExpectFailedWith(store_->PutRunner("x", "not-hex", "ada"), ErrorCode::kInvalidArgument);
  // Two runners never share a token.
  EXPECT_FALSE(store_->PutRunner("edge-2", kDigestA, "ada").ok());
  auto list = store_->ListRunners();
  SBX_ASSERT_OK(list);
  ASSERT_EQ(list->size(), 1u);
}

TEST_P(RunnerContractTest, AnOutboxEntryIsCommittedOnceAndInOrder) {
  SBX_ASSERT_OK(store_->PutRunner("edge-1", kDigestA, "ada"));
  RunRecord run = CreateIn(S::kQueued);
  auto entry = [&](int64_t seq) {
    return std::vector<Write>{
        EventWrite{run.id, EventType::kStepStarted, {{"step", "main"}, {"n", seq}}},
        RunnerAckWrite{"edge-1", seq}};
  };
  SBX_ASSERT_OK(store_->Commit(entry(1)));
  // Sent twice: refused, and its event is not written twice.
  ExpectFailedWith(store_->Commit(entry(1)), ErrorCode::kAborted);
  // Out of order: refused.
  ExpectFailedWith(store_->Commit(entry(3)), ErrorCode::kAborted);
  auto events = store_->ListEvents(run.id, 0, 100);
  SBX_ASSERT_OK(events);
  int started = 0;
  for (const auto& e : *events) started += e.type == EventType::kStepStarted;
  EXPECT_EQ(started, 1);

  // Eight connections race to commit entry 2: one does.
  std::atomic<int> committed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      auto s = OpenStore();
      if (!s) return;
      auto done = s->Commit(entry(2));
      if (done.ok()) {
        ++committed;
      } else {
        EXPECT_EQ(done.error().code, ErrorCode::kAborted) << done.error().ToString();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(committed, 1);
  auto r = store_->GetRunner("edge-1");
  SBX_ASSERT_OK(r);
  EXPECT_EQ(r->applied_seq, 2);

  // A revoked runner commits nothing.
  SBX_ASSERT_OK(store_->RevokeRunner("edge-1", "ada"));
  ExpectFailedWith(store_->Commit(entry(3)), ErrorCode::kAborted);
  ExpectFailedWith(store_->Commit(std::vector<Write>{RunnerAckWrite{"nobody", 1}}),
                   ErrorCode::kNotFound);
}

INSTANTIATE_TEST_SUITE_P(Backends, RunnerContractTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres), BackendName);

}  // namespace
}  // namespace sbx::store
