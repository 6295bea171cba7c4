#include "login_throttle.hpp"

#include <gtest/gtest.h>

namespace ntp {
namespace {

using namespace std::chrono_literals;
using Clock = LoginThrottle::Clock;

TEST(LoginThrottle, BackoffDoublesFromOneSecondUpToAMinute) {
  LoginThrottle t;
  const auto t0 = Clock::time_point{} + 1h;
  EXPECT_FALSE(t.wait("198.51.100.7", t0));
  std::vector<Clock::duration> delays;
  for (int i = 0; i < 9; ++i) delays.push_back(t.failed("198.51.100.7", t0));
  EXPECT_EQ(delays, (std::vector<Clock::duration>{1s, 2s, 4s, 8s, 16s, 32s, 60s, 60s, 60s}));
  EXPECT_EQ(t.wait("198.51.100.7", t0), Clock::duration(60s));
  EXPECT_EQ(t.wait("198.51.100.7", t0 + 45s), Clock::duration(15s));
  EXPECT_FALSE(t.wait("198.51.100.7", t0 + 60s));
}

// A brute force that waits out every delay still gets only a handful of
// guesses in its first minute, then about one a minute.
TEST(LoginThrottle, AHandfulOfGuessesAMinute) {
  LoginThrottle t;
  auto now = Clock::time_point{} + 1h;
  const auto start = now;
  int guesses = 0;
  while (now < start + 10min) {
    if (auto w = t.wait("203.0.113.5", now)) {
      now += *w;
      continue;
    }
    ++guesses;
    t.failed("203.0.113.5", now);
    if (now < start + 1min) {
      EXPECT_LE(guesses, 7);
    }
  }
  EXPECT_LE(guesses, 7 + 10);
}

TEST(LoginThrottle, OtherSourcesAreNeverSlowed) {
  LoginThrottle t;
  const auto now = Clock::time_point{} + 1h;
  for (int i = 0; i < 5; ++i) t.failed("203.0.113.5", now);
  EXPECT_TRUE(t.wait("203.0.113.5", now));
  EXPECT_FALSE(t.wait("203.0.113.6", now));
  EXPECT_FALSE(t.wait("127.0.0.1", now));
}

TEST(LoginThrottle, SuccessStartsAfresh) {
  LoginThrottle t;
  const auto now = Clock::time_point{} + 1h;
  t.failed("192.0.2.1", now);
  t.failed("192.0.2.1", now);
  t.succeeded("192.0.2.1");
  EXPECT_FALSE(t.wait("192.0.2.1", now));
  EXPECT_EQ(t.failed("192.0.2.1", now), Clock::duration(1s));
}

TEST(LoginThrottle, OldFailuresAreForgotten) {
  LoginThrottle t;
  auto now = Clock::time_point{} + 1h;
  for (int i = 0; i < 5; ++i) t.failed("192.0.2.1", now);
  now += LoginThrottle::kMemory + 1s;
  EXPECT_EQ(t.failed("192.0.2.1", now), Clock::duration(1s));
}

TEST(LoginThrottle, MemoryIsBounded) {
  LoginThrottle t;
  const auto now = Clock::time_point{} + 1h;
  for (std::size_t i = 0; i < LoginThrottle::kMaxSources + 100; ++i)
    t.failed("10." + std::to_string(i >> 16 & 255) + "." + std::to_string(i >> 8 & 255) + "." +
                 std::to_string(i & 255),
             now);
  EXPECT_LE(t.size(), LoginThrottle::kMaxSources);
}

TEST(LoginThrottle, SourcesAreAddressesAndIpv6Slash64s) {
  auto src = [](const char* a) { return LoginThrottle::source_of(asio::ip::make_address(a)); };
  EXPECT_EQ(src("198.51.100.7"), "198.51.100.7");
  EXPECT_EQ(src("::ffff:198.51.100.7"), "198.51.100.7");
  EXPECT_EQ(src("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
  EXPECT_EQ(src("2001:db8:1:2::1"), src("2001:db8:1:2:ffff::9"));
  EXPECT_NE(src("2001:db8:1:2::1"), src("2001:db8:1:3::1"));
}

}  // namespace
}  // namespace ntp
