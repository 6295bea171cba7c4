#include "backoff.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace ntp {
namespace {

using ms = std::chrono::milliseconds;

// The window each successive delay must fall in: [ceiling/2, ceiling], the
// ceiling doubling from 1 s up to the 10 s cap.
constexpr long kCeilings[] = {1000, 2000, 4000, 8000, 10000, 10000, 10000, 10000};

TEST(Backoff, FirstDelayWithinAboutASecond) {
  for (unsigned seed = 0; seed < 200; ++seed) {
    Backoff b(ms(1000), ms(10000), seed);
    auto d = b.next();
    EXPECT_GE(d, ms(500)) << "seed " << seed;
    EXPECT_LE(d, ms(1000)) << "seed " << seed;
  }
}

TEST(Backoff, GrowsThenCapsAtTenSeconds) {
  for (unsigned seed = 0; seed < 50; ++seed) {
    Backoff b(ms(1000), ms(10000), seed);
    for (long ceiling : kCeilings) {
      auto d = b.next();
      EXPECT_GE(d.count(), ceiling / 2) << "seed " << seed << " ceiling " << ceiling;
      EXPECT_LE(d.count(), ceiling) << "seed " << seed << " ceiling " << ceiling;
    }
    for (int i = 0; i < 100; ++i) {  // long outages never overflow or exceed the cap
      auto d = b.next();
      EXPECT_GE(d, ms(5000));
      EXPECT_LE(d, ms(10000));
    }
  }
}

TEST(Backoff, ResetStartsOver) {
  Backoff b(ms(1000), ms(10000), 7);
  for (int i = 0; i < 6; ++i) b.next();
  b.reset();
  auto d = b.next();
  EXPECT_GE(d, ms(500));
  EXPECT_LE(d, ms(1000));
  d = b.next();
  EXPECT_GE(d, ms(1000));
  EXPECT_LE(d, ms(2000));
}

TEST(Backoff, SameSeedSameDelays) {
  Backoff a(ms(1000), ms(10000), 42), b(ms(1000), ms(10000), 42), c(ms(1000), ms(10000), 43);
  std::vector<ms> da, db, dc;
  for (int i = 0; i < 10; ++i) {
    da.push_back(a.next());
    db.push_back(b.next());
    dc.push_back(c.next());
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc) << "jitter: different clients should not reconnect in lockstep";
}

TEST(Backoff, DefaultsMatchDesign) {
  Backoff b;  // the client's: first retry within about a second, capped at 10 s
  auto first = b.next();
  EXPECT_GE(first, ms(500));
  EXPECT_LE(first, ms(1000));
  for (int i = 0; i < 20; ++i) EXPECT_LE(b.next(), ms(10000));
}

}  // namespace
}  // namespace ntp
