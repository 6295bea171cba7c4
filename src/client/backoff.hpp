// Reconnect delays: exponential with jitter, first retry within about a second,
// capped at 10 s (DESIGN). No I/O, so it is testable on its own.
#pragma once

#include <algorithm>
#include <chrono>
#include <random>

namespace ntp {

class Backoff {
 public:
  using ms = std::chrono::milliseconds;
  explicit Backoff(ms first = ms(1000), ms cap = ms(10000), unsigned seed = std::random_device{}())
      : first_(first), cap_(cap), rng_(seed) {}

  // The next delay: a random point in [ceiling/2, ceiling], the ceiling doubling
  // each time; jitter keeps a fleet of clients from reconnecting in lockstep.
  ms next() {
    auto ceiling = std::min(cap_, ms(first_.count() << std::min(attempt_, 20)));
    ++attempt_;
    std::uniform_int_distribution<long> pick(ceiling.count() / 2, ceiling.count());
    return ms(pick(rng_));
  }
  void reset() { attempt_ = 0; }

 private:
  ms first_, cap_;
  int attempt_ = 0;
  std::mt19937 rng_;
};

}  // namespace ntp
