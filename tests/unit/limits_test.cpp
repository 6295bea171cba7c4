#include "ntp/limits.hpp"

#include <gtest/gtest.h>

namespace ntp {
namespace {

using namespace std::chrono_literals;

TEST(Rate, Units) {
  EXPECT_EQ(parse_rate("10MiB/s"), 10u * 1024 * 1024);
  EXPECT_EQ(parse_rate("10 MiB/s"), 10u * 1024 * 1024);
  EXPECT_EQ(parse_rate("1.5MB/s"), 1500000u);
  EXPECT_EQ(parse_rate("800KiB/s"), 800u * 1024);
  EXPECT_EQ(parse_rate("100Mbit/s"), 12500000u);
  EXPECT_EQ(parse_rate("1GiB/s"), 1024u * 1024 * 1024);
  EXPECT_EQ(parse_rate("512B/s"), 512u);
  for (auto bad : {"", "10", "MiB/s", "10MiB", "10 mib/s", "-1MiB/s", "0MiB/s", "0.1B/s",
                   "10MiB/s ", "1e3MiB/s", "10  MiB/s", "99999999999999999999GiB/s"})
    EXPECT_FALSE(parse_rate(bad)) << bad;
  EXPECT_EQ(format_rate(10u * 1024 * 1024), "10 MiB/s");
  EXPECT_EQ(format_rate(800u * 1024), "800 KiB/s");
  EXPECT_EQ(format_rate(1500), "1500 B/s");
}

TEST(Cidr, ParseAndContain) {
  auto net = parse_cidr("192.0.2.0/24");
  ASSERT_TRUE(net);
  EXPECT_EQ(net->str(), "192.0.2.0/24");
  EXPECT_TRUE(net->contains(asio::ip::make_address("192.0.2.77")));
  EXPECT_FALSE(net->contains(asio::ip::make_address("192.0.3.1")));
  EXPECT_TRUE(net->contains(asio::ip::make_address("::ffff:192.0.2.9")));  // v4-mapped
  EXPECT_FALSE(net->contains(asio::ip::make_address("2001:db8::1")));
  auto one = parse_cidr("127.0.0.2");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->str(), "127.0.0.2/32");
  EXPECT_TRUE(one->contains(asio::ip::make_address("127.0.0.2")));
  EXPECT_FALSE(one->contains(asio::ip::make_address("127.0.0.1")));
  auto odd = parse_cidr("10.0.0.0/9");
  ASSERT_TRUE(odd);
  EXPECT_TRUE(odd->contains(asio::ip::make_address("10.127.255.255")));
  EXPECT_FALSE(odd->contains(asio::ip::make_address("10.128.0.0")));
  auto v6 = parse_cidr("2001:db8::/32");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(asio::ip::make_address("2001:db8:ffff::1")));
  EXPECT_FALSE(v6->contains(asio::ip::make_address("2001:db9::1")));
  auto all = parse_cidr("0.0.0.0/0");
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->contains(asio::ip::make_address("203.0.113.1")));
  for (auto bad : {"", "/8", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/x", "2001:db8::/129",
                   "example.com/8", "10.0.0.0/8/8"})
    EXPECT_FALSE(parse_cidr(bad)) << bad;
}

TEST(TokenBucket, BurstThenTheRate) {
  TokenBucket b(1024 * 1024);  // 1 MiB/s: a burst of 104857.6 bytes (a tenth of a second)
  const auto t0 = steady_clock::now();
  EXPECT_EQ(b.take(100000, t0), steady_clock::duration::zero());
  // 1 MiB more at once: the balance goes negative and the wait is what pays it back.
  const auto wait = b.take(1024 * 1024, t0);
  EXPECT_GT(wait, 990ms);
  EXPECT_LT(wait, 1010ms);
  // After that wait the balance is zero again: another tenth of a second's worth waits 0.1 s.
  const auto again = b.take(104858, t0 + wait);
  EXPECT_GT(again, 95ms);
  EXPECT_LT(again, 105ms);
}

TEST(TokenBucket, RefillsUpToTheBurstOnly) {
  TokenBucket b(1000);  // a small rate: the burst is the 64 KiB floor
  const auto t0 = steady_clock::now();
  EXPECT_EQ(b.take(64 * 1024, t0), steady_clock::duration::zero());
  // An hour idle refills no more than the burst.
  const auto later = t0 + 1h;
  EXPECT_EQ(b.take(64 * 1024, later), steady_clock::duration::zero());
  EXPECT_GT(b.take(1000, later), 900ms);
}

TEST(Quota, MaxConnsAndTickets) {
  auto q = std::make_shared<Quota>(2, std::nullopt);
  EXPECT_FALSE(q->up());
  auto a = Quota::enter(q);
  auto b = Quota::enter(q);
  EXPECT_TRUE(a && b);
  EXPECT_EQ(q->conns(), 2u);
  EXPECT_FALSE(Quota::enter(q));
  { auto gone = std::move(a); }  // a ticket given back
  EXPECT_EQ(q->conns(), 1u);
  auto c = Quota::enter(q);
  EXPECT_TRUE(c);
  auto unlimited = std::make_shared<Quota>(std::nullopt, 1024);
  EXPECT_TRUE(unlimited->up() && unlimited->down());
  std::vector<Quota::Ticket> many;
  for (int i = 0; i < 1000; ++i) many.push_back(Quota::enter(unlimited));
  EXPECT_EQ(unlimited->conns(), 1000u);
  many.clear();
  EXPECT_EQ(unlimited->conns(), 0u);
}

// New limits (a reconnecting client's app asks again) apply to new users; the
// users inside still count, and a bucket a stream holds stays alive.
TEST(Quota, NewLimitsKeepTheUsersInside) {
  auto q = std::make_shared<Quota>(2, 1024 * 1024);
  auto a = Quota::enter(q), b = Quota::enter(q);
  TokenBucket* held = q->up();
  q->set_limits(1, 2 * 1024 * 1024);
  EXPECT_EQ(q->conns(), 2u);
  EXPECT_FALSE(Quota::enter(q)) << "2 inside, 1 allowed now";
  EXPECT_EQ(q->up(), held) << "the bucket a stream took was replaced";
  EXPECT_EQ(held->rate(), 2u * 1024 * 1024);
  q->set_limits(std::nullopt, std::nullopt);
  EXPECT_EQ(q->up(), nullptr) << "new users are not paced";
  EXPECT_TRUE(Quota::enter(q));
  EXPECT_EQ(held->rate(), 2u * 1024 * 1024) << "a held bucket lives on";
}

}  // namespace
}  // namespace ntp
