#include "login_throttle.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace ntp {
namespace {

using namespace std::chrono_literals;
using Clock = LoginThrottle::Clock;

TEST(LoginThrottle, BackoffDoublesFromOneSecondUpToAMinute) {
  LoginThrottle t;
  const auto t0 = Clock::time_point{} + 1h;
  EXPECT_FALSE(t.wait("198.51.100.7", "home", t0));
  std::vector<Clock::duration> delays;
  for (int i = 0; i < 9; ++i) delays.push_back(t.failed("198.51.100.7", "home", t0));
  EXPECT_EQ(delays, (std::vector<Clock::duration>{1s, 2s, 4s, 8s, 16s, 32s, 60s, 60s, 60s}));
  EXPECT_EQ(t.wait("198.51.100.7", "home", t0), Clock::duration(60s));
  EXPECT_EQ(t.wait("198.51.100.7", "home", t0 + 45s), Clock::duration(15s));
  EXPECT_FALSE(t.wait("198.51.100.7", "home", t0 + 60s));
}

// A brute force that waits out every delay still gets only a handful of
// guesses in its first minute, then about one a minute.
TEST(LoginThrottle, AHandfulOfGuessesAMinute) {
  LoginThrottle t;
  auto now = Clock::time_point{} + 1h;
  const auto start = now;
  int guesses = 0;
  while (now < start + 10min) {
    if (auto w = t.wait("203.0.113.5", "home", now)) {
      now += *w;
      continue;
    }
    ++guesses;
    t.failed("203.0.113.5", "home", now);
    if (now < start + 1min) {
      EXPECT_LE(guesses, 7);
    }
  }
  EXPECT_LE(guesses, 7 + 10);
}

TEST(LoginThrottle, OtherSourcesAreNeverSlowed) {
  LoginThrottle t;
  const auto now = Clock::time_point{} + 1h;
  for (int i = 0; i < 5; ++i) t.failed("203.0.113.5", "home", now);
  EXPECT_TRUE(t.wait("203.0.113.5", "home", now));
  EXPECT_FALSE(t.wait("203.0.113.6", "home", now));
  EXPECT_FALSE(t.wait("127.0.0.1", "home", now));
}

TEST(LoginThrottle, SuccessStartsAfresh) {
  LoginThrottle t;
  const auto now = Clock::time_point{} + 1h;
  t.failed("192.0.2.1", "home", now);
  t.failed("192.0.2.1", "home", now);
  t.succeeded("192.0.2.1", "home");
  EXPECT_FALSE(t.wait("192.0.2.1", "home", now));
  EXPECT_EQ(t.failed("192.0.2.1", "home", now), Clock::duration(1s));
}

TEST(LoginThrottle, OldFailuresAreForgotten) {
  LoginThrottle t;
  auto now = Clock::time_point{} + 1h;
  for (int i = 0; i < 5; ++i) t.failed("192.0.2.1", "home", now);
  now += LoginThrottle::kMemory + 1s;
  EXPECT_EQ(t.failed("192.0.2.1", "home", now), Clock::duration(1s));
}

TEST(LoginThrottle, MemoryIsBounded) {
  LoginThrottle t;
  const auto now = Clock::time_point{} + 1h;
  for (std::size_t i = 0; i < LoginThrottle::kMaxKeys + 100; ++i)
    t.failed("10." + std::to_string(i >> 16 & 255) + "." + std::to_string(i >> 8 & 255) + "." +
                 std::to_string(i & 255),
             "home", now);
  EXPECT_LE(t.size(), LoginThrottle::kMaxKeys);
}

// A misconfigured client's failures never slow another group from its address
// (two clients behind one NAT, or on one host).
TEST(LoginThrottle, OtherGroupsFromTheSameSourceAreNeverSlowed) {
  LoginThrottle t;
  const auto now = Clock::time_point{} + 1h;
  for (int i = 0; i < 7; ++i) t.failed("192.0.2.1", "office", now);
  EXPECT_EQ(t.wait("192.0.2.1", "office", now), Clock::duration(60s));
  EXPECT_FALSE(t.wait("192.0.2.1", "home", now));
}

// Only an accepted login clears a record: a valid proof that was then refused
// (the group is logged in already) must not wipe a brute force's backoff.
TEST(LoginThrottle, ARefusedLoginClearsNothing) {
  LoginThrottle t;
  const auto now = Clock::time_point{} + 1h;
  t.failed("192.0.2.1", "office", now);
  t.succeeded("192.0.2.1", "home");  // another group's accepted login
  EXPECT_EQ(t.wait("192.0.2.1", "office", now), Clock::duration(1s));
}

// Rotating group names (in open mode they share one token) buys no more than
// kSourceBudget guesses a window from one source; other sources are unaffected.
TEST(LoginThrottle, RotatingGroupNamesHitsTheSourceBudget) {
  LoginThrottle t;
  const auto now = Clock::time_point{} + 1h;
  std::size_t checked = 0;
  for (int i = 0; i < 100; ++i) {
    const auto group = fmt::format("g{}", i);
    if (t.wait("203.0.113.5", group, now)) continue;
    ++checked;
    t.failed("203.0.113.5", group, now);
  }
  EXPECT_EQ(checked, LoginThrottle::kSourceBudget);
  EXPECT_EQ(t.wait("203.0.113.5", "fresh", now), Clock::duration(LoginThrottle::kBudgetWindow));
  EXPECT_FALSE(t.wait("203.0.113.5", "fresh", now + LoginThrottle::kBudgetWindow));
  EXPECT_FALSE(t.wait("203.0.113.6", "fresh", now));
}

// The budget slides: failures older than the window no longer count.
TEST(LoginThrottle, TheBudgetSlides) {
  LoginThrottle t;
  const auto t0 = Clock::time_point{} + 1h;
  for (std::size_t i = 0; i < LoginThrottle::kSourceBudget; ++i)
    t.failed("203.0.113.5", fmt::format("g{}", i), t0 + i * 1s);
  const auto full = t0 + (LoginThrottle::kSourceBudget - 1) * 1s;
  EXPECT_EQ(t.wait("203.0.113.5", "fresh", full),
            Clock::duration(LoginThrottle::kBudgetWindow) - (full - t0));
  // Once the first failure leaves the window, one more guess is allowed.
  EXPECT_FALSE(t.wait("203.0.113.5", "fresh", t0 + LoginThrottle::kBudgetWindow));
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
