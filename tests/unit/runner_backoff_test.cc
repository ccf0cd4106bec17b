#include "supervisor/runner/backoff.h"

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace sbx::supervisor::runner {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using State = CircuitBreaker::State;

constexpr milliseconds kBase{100};
constexpr milliseconds kMax{10'000};

milliseconds Ceiling(int n) {
  int64_t d = kBase.count();
  for (int i = 0; i < n && d < kMax.count(); ++i) d *= 2;
  return milliseconds(std::min(d, kMax.count()));
}

TEST(BackoffTest, DelaysAreWithinEqualJitterBounds) {
  for (uint64_t seed : {1u, 2u, 42u, 1234567u}) {
    Backoff b(kBase, kMax, seed);
    for (int n = 0; n < 20; ++n) {
      milliseconds d = Ceiling(n);
      milliseconds delay = b.Next();
      EXPECT_GE(delay, d / 2) << "seed " << seed << " attempt " << n;
      EXPECT_LE(delay, d) << "seed " << seed << " attempt " << n;
      EXPECT_EQ(b.attempts(), n + 1);
    }
  }
}

TEST(BackoffTest, DelaysGrowUntilTheCap) {
  Backoff b(kBase, kMax, 7);
  std::vector<milliseconds> delays;
  for (int n = 0; n < 12; ++n) delays.push_back(b.Next());
  // Equal jitter: the n+1-th delay is at least d(n+1)/2 = d(n), the most the n-th can be.
  for (size_t i = 1; i < 7; ++i) EXPECT_GE(delays[i], delays[i - 1]) << i;
  EXPECT_GE(delays[6], milliseconds(3'200));  // d(6) = 6.4 s
  EXPECT_LE(delays[0], kBase);
}

TEST(BackoffTest, CapsAtMaxWithoutOverflow) {
  Backoff b(kBase, kMax, 99);
  std::set<int64_t> distinct;
  for (int n = 0; n < 200; ++n) {
    milliseconds delay = b.Next();
    if (n >= 7) {  // 100 ms * 2^7 > 10 s
      EXPECT_GE(delay, kMax / 2) << n;
      EXPECT_LE(delay, kMax) << n;
      distinct.insert(delay.count());
    }
  }
  EXPECT_GT(distinct.size(), 10u);  // jittered, not a constant
}

TEST(BackoffTest, ResetStartsOverFromBase) {
  Backoff b(kBase, kMax, 3);
  for (int n = 0; n < 10; ++n) b.Next();
  EXPECT_EQ(b.attempts(), 10);
  b.Reset();
  EXPECT_EQ(b.attempts(), 0);
  milliseconds delay = b.Next();
  EXPECT_GE(delay, kBase / 2);
  EXPECT_LE(delay, kBase);
  EXPECT_EQ(b.attempts(), 1);
}

TEST(BackoffTest, SameSeedSameDelays) {
  Backoff a(kBase, kMax, 5), b(kBase, kMax, 5);
  for (int n = 0; n < 30; ++n) EXPECT_EQ(a.Next(), b.Next()) << n;
}

TEST(BackoffTest, MaxBelowBaseCapsEveryDelay) {
  Backoff b(milliseconds(1'000), milliseconds(300), 11);
  for (int n = 0; n < 5; ++n) {
    milliseconds delay = b.Next();
    EXPECT_GE(delay, milliseconds(150));
    EXPECT_LE(delay, milliseconds(300));
  }
}

class CircuitBreakerTest : public ::testing::Test {
 protected:
  static CircuitBreaker::Options Opts() {
    CircuitBreaker::Options o;
    o.failure_threshold = 3;
    o.open_for = milliseconds(1'000);
    o.max_open = milliseconds(3'000);
    return o;
  }
  // Opens the breaker from closed with `threshold` failures at t0_.
  void Open(CircuitBreaker& cb) {
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(cb.Allow(t0_));
      cb.RecordFailure(t0_);
    }
    ASSERT_EQ(cb.state(), State::kOpen);
  }

  const CircuitBreaker::Clock::time_point t0_ = CircuitBreaker::Clock::time_point{} + hours(1);
};

TEST_F(CircuitBreakerTest, OpensAtThresholdAndRefusesWhileOpen) {
  CircuitBreaker cb(Opts());
  EXPECT_EQ(cb.state(), State::kClosed);
  for (int i = 1; i <= 2; ++i) {
    EXPECT_TRUE(cb.Allow(t0_));
    cb.RecordFailure(t0_);
    EXPECT_EQ(cb.state(), State::kClosed);
    EXPECT_EQ(cb.consecutive_failures(), i);
  }
  EXPECT_TRUE(cb.Allow(t0_));
  cb.RecordFailure(t0_);
  EXPECT_EQ(cb.state(), State::kOpen);
  EXPECT_EQ(cb.open_until(), t0_ + milliseconds(1'000));
  EXPECT_FALSE(cb.Allow(t0_));
  EXPECT_FALSE(cb.Allow(t0_ + milliseconds(999)));
  EXPECT_EQ(cb.state(), State::kOpen);
}

TEST_F(CircuitBreakerTest, SuccessInClosedResetsTheCount) {
  CircuitBreaker cb(Opts());
  cb.RecordFailure(t0_);
  cb.RecordFailure(t0_);
  cb.RecordSuccess();
  EXPECT_EQ(cb.consecutive_failures(), 0);
  cb.RecordFailure(t0_);
  cb.RecordFailure(t0_);
  EXPECT_EQ(cb.state(), State::kClosed);
}

TEST_F(CircuitBreakerTest, HalfOpenAllowsExactlyOneTrial) {
  CircuitBreaker cb(Opts());
  Open(cb);
  const auto later = t0_ + milliseconds(1'000);
  EXPECT_TRUE(cb.Allow(later));
  EXPECT_EQ(cb.state(), State::kHalfOpen);
  EXPECT_FALSE(cb.Allow(later));
  EXPECT_FALSE(cb.Allow(later + hours(1)));
}

TEST_F(CircuitBreakerTest, TrialSuccessCloses) {
  CircuitBreaker cb(Opts());
  Open(cb);
  ASSERT_TRUE(cb.Allow(t0_ + milliseconds(1'000)));
  cb.RecordSuccess();
  EXPECT_EQ(cb.state(), State::kClosed);
  EXPECT_EQ(cb.consecutive_failures(), 0);
  EXPECT_TRUE(cb.Allow(t0_ + milliseconds(1'000)));
  EXPECT_TRUE(cb.Allow(t0_ + milliseconds(1'000)));
}

TEST_F(CircuitBreakerTest, TrialFailureReopensWithDoubledPeriodUpToMax) {
  CircuitBreaker cb(Opts());
  Open(cb);
  auto now = cb.open_until();
  // 1 s, then 2 s, then 3 s (4 s capped), then 3 s again.
  for (milliseconds want : {milliseconds(2'000), milliseconds(3'000), milliseconds(3'000)}) {
    ASSERT_TRUE(cb.Allow(now));
    ASSERT_EQ(cb.state(), State::kHalfOpen);
    cb.RecordFailure(now);
    EXPECT_EQ(cb.state(), State::kOpen);
    EXPECT_EQ(cb.open_until(), now + want);
    EXPECT_FALSE(cb.Allow(now + want - milliseconds(1)));
    now = cb.open_until();
  }
}

TEST_F(CircuitBreakerTest, SuccessResetsTheOpenPeriod) {
  CircuitBreaker cb(Opts());
  Open(cb);
  auto now = cb.open_until();
  ASSERT_TRUE(cb.Allow(now));
  cb.RecordFailure(now);  // reopened for 2 s
  now = cb.open_until();
  ASSERT_TRUE(cb.Allow(now));
  cb.RecordSuccess();
  for (int i = 0; i < 3; ++i) cb.RecordFailure(now);
  EXPECT_EQ(cb.state(), State::kOpen);
  EXPECT_EQ(cb.open_until(), now + milliseconds(1'000));
}

TEST(CircuitStateNameTest, Names) {
  EXPECT_EQ(std::string(CircuitStateName(State::kClosed)), "closed");
  EXPECT_EQ(std::string(CircuitStateName(State::kOpen)), "open");
  EXPECT_EQ(std::string(CircuitStateName(State::kHalfOpen)), "half_open");
}

}  // namespace
}  // namespace sbx::supervisor::runner
