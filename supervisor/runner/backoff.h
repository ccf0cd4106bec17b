// Reconnection pacing for an outbound runner: exponential backoff with jitter between attempts,
// and a circuit breaker that stops attempts for a while against a peer that keeps failing.
// Neither is thread-safe: each belongs to the one loop that dials the peer.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace sbx::supervisor::runner {

// Exponential backoff with "equal jitter": the n-th delay (n = 0, 1, …, counted since
// construction or the last Reset) is uniformly random in [d/2, d] where
// d = min(max, base * 2^n). Half of every delay is certain (the peer gets a rest), the other
// half spreads out runners that lost the same peer at the same time. Negative durations count
// as 0; a max below base caps every delay at max. The same seed gives the same delays.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds base, std::chrono::milliseconds max, uint64_t seed);

  // The delay before the next attempt; counts the attempt.
  std::chrono::milliseconds Next();
  // Starts over from base (after a success).
  void Reset();
  // Delays handed out since construction or the last Reset.
  int attempts() const { return attempts_; }

 private:
  std::chrono::milliseconds base_;
  std::chrono::milliseconds max_;
  std::mt19937_64 rng_;
  int attempts_ = 0;
};

// A circuit breaker for a peer that keeps failing. Closed: attempts are allowed; after
// `failure_threshold` consecutive failures it opens: no attempt until open_until(). Then it is
// half open: one trial attempt is allowed; its success closes the breaker, its failure opens it
// again for twice the previous period (at most max_open). Time is passed in, so tests need no
// clock.
class CircuitBreaker {
 public:
  using Clock = std::chrono::steady_clock;
  enum class State { kClosed, kOpen, kHalfOpen };
  struct Options {
    int failure_threshold = 5;  // below 1 counts as 1
    std::chrono::milliseconds open_for{30'000};
    std::chrono::milliseconds max_open{300'000};  // below open_for counts as open_for
  };

  explicit CircuitBreaker(Options options);

  // Whether an attempt may start at `now`. Moves open -> half_open once `now` reaches
  // open_until() and allows that one trial; in half_open nothing more is allowed until the
  // trial's outcome is recorded.
  bool Allow(Clock::time_point now);
  // The attempt succeeded: closed, failures forgotten, the open period back to open_for.
  void RecordSuccess();
  // The attempt failed at `now`: counts it; opens the breaker at the threshold (for open_for) or
  // after a failed trial (for twice the last period, at most max_open).
  void RecordFailure(Clock::time_point now);

  State state() const { return state_; }
  Clock::time_point open_until() const { return open_until_; }  // meaningful while open
  int consecutive_failures() const { return consecutive_failures_; }

 private:
  void OpenFor(Clock::time_point now, std::chrono::milliseconds period);

  Options options_;
  State state_ = State::kClosed;
  int consecutive_failures_ = 0;
  std::chrono::milliseconds period_;  // of the current or last opening
  Clock::time_point open_until_{};
  bool trial_started_ = false;  // in half_open: the one allowed attempt has started
};

// "closed", "open", "half_open".
const char* CircuitStateName(CircuitBreaker::State state);

}  // namespace sbx::supervisor::runner
