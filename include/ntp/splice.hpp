// The splice: a bidirectional byte pump between two streams, with half-close.
#pragma once

#include <cstdint>
#include <string>

#include <vector>

#include "ntp/limits.hpp"
#include "ntp/stream.hpp"

namespace ntp {

struct SpliceResult {
  std::uint64_t a_to_b = 0;
  std::uint64_t b_to_a = 0;
  std::uint64_t zero_copy = 0;  // of both, the bytes moved by splice(2)
  // Of both, the bytes copied because they came with a frame: read into a
  // stream's read-ahead behind one, or sent in one write with the lead. On the
  // zero-copy path these and zero_copy add up to every byte; anything else was
  // copied for want of a pipe.
  std::uint64_t with_frames = 0;
};

// Runs until both directions have ended. EOF on one side half-closes the other
// (shutdown of its write side; close_notify first over TLS); a hard error on either
// side closes both.
// Memory: no buffer or pipe is held while a direction is idle (it waits for
// readability first and borrows one only to move bytes that are already there).
// Bandwidth limits: the buckets each direction's bytes pass through (a group's
// and an app's). They must outlive the splice.
struct Pace {
  std::vector<TokenBucket*> a_to_b, b_to_a;
};

// How bytes cross between two plain TCP streams. zero_copy moves them with
// splice(2) through a pipe (the kernel hands socket pages over; no copy into this
// process); buffered reads them into a buffer and writes them out. TLS streams
// and paced directions are always buffered, as is a direction whose pipe could
// not be had (out of descriptors). README's Performance section says which wins.
enum class SpliceMode { buffered, zero_copy };

// Bytes for `a` that must go before any of b's (the client's `connected`). They
// wait up to `hold` for b's first bytes and go in the same write, so a's peer
// wakes once for both; alone once `hold` is over or b has ended.
struct Lead {
  std::string bytes;
  steady_clock::duration hold{};
};

awaitable<SpliceResult> splice(Stream& a, Stream& b, Pace pace, SpliceMode mode, Lead lead);

// Defaults in a plain function, not on the coroutine: GCC 12 copies a coroutine's
// defaulted class-type argument bitwise (a short std::string's pointer then
// points into the caller's temporary, and freeing it aborts).
inline awaitable<SpliceResult> splice(Stream& a, Stream& b, Pace pace = {},
                                      SpliceMode mode = SpliceMode::buffered) {
  return splice(a, b, std::move(pace), mode, Lead{});
}

// Pipes this thread's splices hold now (each is two descriptors); 0 once every
// splice has ended, however it ended.
std::size_t pipes_lent();

// For the "stream closed" log line:
// "after 1.2 s, 10 bytes in, 20 bytes out (25 zero-copy, 5 with frames)".
std::string describe(const SpliceResult& r, steady_clock::duration lasted);

}  // namespace ntp
