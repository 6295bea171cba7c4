// The splice: a bidirectional byte pump between two streams, with half-close.
#pragma once

#include <cstdint>

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
awaitable<SpliceResult> splice(Stream& a, Stream& b);

}  // namespace ntp
