#include "supervisor/runner/backoff.h"

#include <algorithm>
#include <limits>

namespace sbx::supervisor::runner {

using std::chrono::milliseconds;

Backoff::Backoff(milliseconds base, milliseconds max, uint64_t seed)
    : base_(std::max(base, milliseconds(0))), max_(std::max(max, milliseconds(0))), rng_(seed) {}

milliseconds Backoff::Next() {
  // base * 2^n without overflow: doubling stops as soon as it reaches max.
  int64_t d = std::min(base_.count(), max_.count());
  for (int i = 0; i < attempts_ && d > 0 && d < max_.count(); ++i) {
    d = d > max_.count() / 2 ? max_.count() : d * 2;
  }
  if (attempts_ < std::numeric_limits<int>::max()) ++attempts_;
  std::uniform_int_distribution<int64_t> jitter(d / 2, d);
  return milliseconds(jitter(rng_));
}

void Backoff::Reset() { attempts_ = 0; }

CircuitBreaker::CircuitBreaker(Options options) : options_(options) {
  options_.failure_threshold = std::max(options_.failure_threshold, 1);
  options_.open_for = std::max(options_.open_for, milliseconds(0));
  options_.max_open = std::max(options_.max_open, options_.open_for);
  period_ = options_.open_for;
}

bool CircuitBreaker::Allow(Clock::time_point now) {
  switch (state_) {
    case State::kClosed:
      return true;
    case State::kOpen:
      if (now < open_until_) return false;
      state_ = State::kHalfOpen;
      trial_started_ = true;
      return true;
    case State::kHalfOpen:
      if (trial_started_) return false;
      trial_started_ = true;
      return true;
  }
  return false;
}

void CircuitBreaker::RecordSuccess() {
  state_ = State::kClosed;
  consecutive_failures_ = 0;
  period_ = options_.open_for;
  trial_started_ = false;
}

void CircuitBreaker::RecordFailure(Clock::time_point now) {
  if (consecutive_failures_ < std::numeric_limits<int>::max()) ++consecutive_failures_;
  switch (state_) {
    case State::kClosed:
      if (consecutive_failures_ >= options_.failure_threshold) OpenFor(now, options_.open_for);
      break;
    case State::kHalfOpen:
      OpenFor(now, period_ > options_.max_open / 2 ? options_.max_open : period_ * 2);
      break;
    case State::kOpen:
      // An attempt that started before the breaker opened; it is already open.
      break;
  }
}

void CircuitBreaker::OpenFor(Clock::time_point now, milliseconds period) {
  state_ = State::kOpen;
  period_ = period;
  open_until_ = now + period;
  trial_started_ = false;
}

const char* CircuitStateName(CircuitBreaker::State state) {
  switch (state) {
    case CircuitBreaker::State::kClosed: return "closed";
    case CircuitBreaker::State::kOpen: return "open";
    case CircuitBreaker::State::kHalfOpen: return "half_open";
  }
  return "closed";
}

}  // namespace sbx::supervisor::runner
