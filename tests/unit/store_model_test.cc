// The parts of the store that need no database: state names and the transition table, run ids,
// the audit record's canonical form.
#include <gtest/gtest.h>

#include <set>
#include <utility>

#include "base/sha256.h"
#include "supervisor/store/store.h"

namespace sbx::store {
namespace {

using S = RunState;

TEST(RunStateTest, NamesRoundTrip) {
  EXPECT_STREQ(RunStateName(S::kAwaitingReview), "AWAITING_REVIEW");
  for (RunState s : AllRunStates()) {
    auto parsed = ParseRunState(RunStateName(s));
    ASSERT_TRUE(parsed.ok()) << RunStateName(s);
    EXPECT_EQ(*parsed, s);
  }
  auto bad = ParseRunState("running");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
}

TEST(RunStateTest, TransitionTable) {
  // Written out independently of the implementation.
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
  for (RunState from : AllRunStates()) {
    for (RunState to : AllRunStates()) {
      EXPECT_EQ(IsLegalTransition(from, to), legal.count({from, to}) == 1)
          << RunStateName(from) << " -> " << RunStateName(to);
    }
  }
  EXPECT_EQ(NonTerminalRunStates().size(), 5u);
  for (RunState s : NonTerminalRunStates()) EXPECT_FALSE(IsTerminal(s));
}

TEST(EventTypeTest, NamesRoundTrip) {
  for (const char* name : {"run.status", "step.started", "step.log", "step.finished",
                           "artifact.created", "run.completed"}) {
    auto t = ParseEventType(name);
    ASSERT_TRUE(t.ok()) << name;
    EXPECT_STREQ(EventTypeName(*t), name);
  }
  EXPECT_FALSE(ParseEventType("run.exploded").ok());
}

TEST(RunIdTest, FormatAndUniqueness) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewRunId();
    ASSERT_EQ(id.size(), 24u) << id;
    EXPECT_EQ(id.substr(0, 4), "run_");
    for (char c : id.substr(4)) {
      EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7')) << id;
    }
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
}

TEST(AuditHashTest, CanonicalFormIsSortedCompactJson) {
  AuditRecord rec;
  rec.id = 7;
  rec.ts_ms = 1700000000123;
  rec.actor = "alice";
  rec.action = "run.approve";
  rec.run_id = "run_x";
  rec.details = {{"z", 1}, {"a", {{"b", true}}}};
  rec.prev_hash = std::string(64, '0');
  auto canonical = AuditCanonical(rec);
  ASSERT_TRUE(canonical.ok());
  EXPECT_EQ(*canonical,
            R"({"action":"run.approve","actor":"alice","details":{"a":{"b":true},"z":1},)"
            R"("id":7,"run_id":"run_x","ts":1700000000123})");
  auto hash = AuditHash(rec);
  ASSERT_TRUE(hash.ok());
  EXPECT_EQ(*hash, Sha256Hex(rec.prev_hash + "\n" + *canonical));

  rec.run_id.reset();
  auto without_run = AuditCanonical(rec);
  ASSERT_TRUE(without_run.ok());
  EXPECT_NE(without_run->find(R"("run_id":null)"), std::string::npos);

  // Every field is covered: changing any one changes the hash.
  AuditRecord other = rec;
  other.actor = "mallory";
  EXPECT_NE(*AuditHash(other), *AuditHash(rec));
  other = rec;
  other.prev_hash = std::string(64, '1');
  EXPECT_NE(*AuditHash(other), *AuditHash(rec));
}

TEST(AuditHashTest, InvalidUtf8IsAnErrorNotAnException) {
  AuditRecord rec;
  rec.actor = "\xff\xfe";
  auto canonical = AuditCanonical(rec);
  ASSERT_FALSE(canonical.ok());
  EXPECT_EQ(canonical.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace sbx::store
