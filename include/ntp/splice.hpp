// The splice: a bidirectional byte pump between two streams, with half-close.
#pragma once

#include <cstdint>

#include <vector>

#include "ntp/limits.hpp"
#include "ntp/stream.hpp"

namespace ntp {

struct SpliceResult {
  std::uint64_t a_to_b = 0;
  std::uint64_t b_to_a = 0;
};

// Runs until both directions have ended. EOF on one side half-closes the other
// (shutdown of its write side; close_notify first over TLS); a hard error on either
// side closes both.
// Memory: no buffer is held while a direction is idle (it waits for readability
// first and borrows a buffer only to move bytes that are already there).
// Bandwidth limits: the buckets each direction's bytes pass through (a group's
// and an app's). They must outlive the splice.
struct Pace {
  std::vector<TokenBucket*> a_to_b, b_to_a;
};

awaitable<SpliceResult> splice(Stream& a, Stream& b, Pace pace = {});

}  // namespace ntp
