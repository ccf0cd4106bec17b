// How a run ended: the typed reason renders to the string the API and the store have always
// shown, and every stored string reads back to a value that renders the same.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "supervisor/store/end_reason.h"

namespace sbx::store {
namespace {

TEST(EndReasonTest, RendersTheWireStrings) {
  EXPECT_EQ(RenderEndReason({}), "");
  EXPECT_EQ(RenderEndReason({EndCode::kExited}), "exited");
  EXPECT_EQ(RenderEndReason({EndCode::kTimedOut}), "timed_out");
  EXPECT_EQ(RenderEndReason({EndCode::kSetupFailed, "mkdir /x: No space left on device"}),
            "setup_failed: mkdir /x: No space left on device");
  EXPECT_EQ(RenderEndReason({EndCode::kSetupFailed}), "setup_failed");
  EXPECT_EQ(RenderEndReason({EndCode::kRejected}), "rejected");
  EXPECT_EQ(RenderEndReason({EndCode::kRejected, "not today"}), "rejected: not today");
  EXPECT_EQ(RenderEndReason({EndCode::kPolicyDenied, "rm -rf /"}), "policy_denied: rm -rf /");
  EXPECT_EQ(RenderEndReason({EndCode::kSupervisorShutdown}), "supervisor_shutdown");
}

TEST(EndReasonTest, ParsesWhatOlderDaemonsStored) {
  EXPECT_EQ(ParseEndReason("supervisor_restart"), (EndReason{EndCode::kSupervisorRestart}));
  EXPECT_EQ(ParseEndReason("setup_failed: seccomp profile: x: not found"),
            (EndReason{EndCode::kSetupFailed, "seccomp profile: x: not found"}));
  EXPECT_EQ(ParseEndReason("oom_killed"), (EndReason{EndCode::kOomKilled}));
  EXPECT_EQ(ParseEndReason("exited_early").code, EndCode::kOther);
  EXPECT_EQ(ParseEndReason("").code, EndCode::kNone);
}

TEST(EndReasonTest, SandboxEndReasonsHaveTheirNames) {
  const std::vector<std::pair<EndCode, const char*>> names = {{EndCode::kKilled, "killed"},
                                                              {EndCode::kExpired, "expired"},
                                                              {EndCode::kIdle, "idle"},
                                                              {EndCode::kDeleted, "deleted"},
                                                              {EndCode::kReviewExpired, "review_expired"}};
  for (const auto& [code, name] : names) {
    EXPECT_STREQ(EndCodeName(code), name);
    EXPECT_EQ(RenderEndReason({code}), name);
    EXPECT_EQ(ParseEndReason(name), (EndReason{code}));
    const std::string with_detail = std::string(name) + ": by alice";
    EXPECT_EQ(RenderEndReason({code, "by alice"}), with_detail);
    EXPECT_EQ(ParseEndReason(with_detail), (EndReason{code, "by alice"}));
  }
  // "killed" is not read out of "oom_killed", nor "idle" out of a longer word.
  EXPECT_EQ(ParseEndReason("oom_killed"), (EndReason{EndCode::kOomKilled}));
  EXPECT_EQ(ParseEndReason("idle_timeout").code, EndCode::kOther);
  EXPECT_EQ(ParseEndReason("deletedx").code, EndCode::kOther);
}

TEST(EndReasonTest, EveryStringRoundTrips) {
  for (const char* s : {"", "exited", "signaled", "cancelled", "rejected", "rejected: no",
                        "setup_failed: ", "setup_failed:x", "setup_failed", "policy_denied: a: b",
                        "timeout", "something else: entirely", ": x", "exited: 3", "killed",
                        "expired: 3600 s", "idle", "deleted: ", "deleted"}) {
    EXPECT_EQ(RenderEndReason(ParseEndReason(s)), s) << s;
  }
}

}  // namespace
}  // namespace sbx::store
