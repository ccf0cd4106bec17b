// The parts of the sandbox records that need no database: state names, the sandbox and process
// transition tables, sandbox ids.
#include <gtest/gtest.h>

#include <set>
#include <utility>

#include "supervisor/store/sandbox_records.h"

namespace sbx::store {
namespace {

using S = SandboxState;
using P = ProcessState;

TEST(SandboxStateTest, NamesRoundTrip) {
  const std::vector<std::pair<S, const char*>> names = {
      {S::kPending, "PENDING"},   {S::kAwaitingReview, "AWAITING_REVIEW"},
      {S::kStarting, "STARTING"}, {S::kRunning, "RUNNING"},
      {S::kPaused, "PAUSED"},     {S::kStopped, "STOPPED"},
      {S::kFailed, "FAILED"}};
  ASSERT_EQ(AllSandboxStates().size(), names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(AllSandboxStates()[i], names[i].first);
    EXPECT_STREQ(SandboxStateName(names[i].first), names[i].second);
    auto parsed = ParseSandboxState(names[i].second);
    ASSERT_TRUE(parsed.ok()) << names[i].second;
    EXPECT_EQ(*parsed, names[i].first);
  }
  for (const char* bad : {"running", "", "QUEUED", "RUNNING ", "SUCCEEDED"}) {
    auto parsed = ParseSandboxState(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(SandboxStateTest, TransitionTable) {
  // Written out independently of the implementation, from the diagram in sandbox_records.h.
  std::set<std::pair<S, S>> legal = {
      {S::kPending, S::kAwaitingReview}, {S::kAwaitingReview, S::kStarting},
      {S::kStarting, S::kRunning},       {S::kRunning, S::kPaused},
      {S::kPaused, S::kRunning},
  };
  for (S s : {S::kPending, S::kAwaitingReview, S::kStarting, S::kRunning, S::kPaused}) {
    legal.insert({s, S::kStopped});
    legal.insert({s, S::kFailed});
  }
  for (S from : AllSandboxStates()) {
    for (S to : AllSandboxStates()) {
      EXPECT_EQ(IsLegalSandboxTransition(from, to), legal.count({from, to}) == 1)
          << SandboxStateName(from) << " -> " << SandboxStateName(to);
    }
  }
  EXPECT_EQ(NonTerminalSandboxStates(), (std::vector<S>{S::kPending, S::kAwaitingReview,
                                                        S::kStarting, S::kRunning, S::kPaused}));
  for (S s : AllSandboxStates()) {
    EXPECT_EQ(IsTerminal(s), s == S::kStopped || s == S::kFailed) << SandboxStateName(s);
  }
}

TEST(ProcessStateTest, NamesRoundTrip) {
  const std::vector<std::pair<P, const char*>> names = {{P::kAwaitingReview, "AWAITING_REVIEW"},
                                                        {P::kRunning, "RUNNING"},
                                                        {P::kFinished, "FINISHED"},
                                                        {P::kRejected, "REJECTED"},
                                                        {P::kCancelled, "CANCELLED"}};
  for (const auto& [state, name] : names) {
    EXPECT_STREQ(ProcessStateName(state), name);
    auto parsed = ParseProcessState(name);
    ASSERT_TRUE(parsed.ok()) << name;
    EXPECT_EQ(*parsed, state);
  }
  for (const char* bad : {"finished", "", "PENDING", "STOPPED"}) {
    auto parsed = ParseProcessState(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(ProcessStateTest, TransitionTable) {
  const std::vector<P> all = {P::kAwaitingReview, P::kRunning, P::kFinished, P::kRejected,
                              P::kCancelled};
  const std::set<std::pair<P, P>> legal = {
      {P::kAwaitingReview, P::kRunning},
      {P::kAwaitingReview, P::kRejected},
      {P::kAwaitingReview, P::kCancelled},
      {P::kRunning, P::kFinished},
  };
  for (P from : all) {
    for (P to : all) {
      EXPECT_EQ(IsLegalProcessTransition(from, to), legal.count({from, to}) == 1)
          << ProcessStateName(from) << " -> " << ProcessStateName(to);
    }
  }
  for (P s : all) {
    EXPECT_EQ(IsTerminal(s), s == P::kFinished || s == P::kRejected || s == P::kCancelled)
        << ProcessStateName(s);
  }
}

TEST(SandboxIdTest, FormatAndUniqueness) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewSandboxId();
    ASSERT_EQ(id.size(), 24u) << id;
    EXPECT_EQ(id.substr(0, 4), "sbx_");
    for (char c : id.substr(4)) {
      EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7')) << id;
    }
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
}

}  // namespace
}  // namespace sbx::store
