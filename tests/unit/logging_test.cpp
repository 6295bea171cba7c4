#include "ntp/logging.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace ntp {
namespace {

using namespace std::chrono_literals;

TEST(LogLevel, ParsesEveryName) {
  EXPECT_EQ(parse_log_level("trace"), spdlog::level::trace);
  EXPECT_EQ(parse_log_level("debug"), spdlog::level::debug);
  EXPECT_EQ(parse_log_level("info"), spdlog::level::info);
  EXPECT_EQ(parse_log_level("warn"), spdlog::level::warn);
  EXPECT_EQ(parse_log_level("error"), spdlog::level::err);
  EXPECT_EQ(parse_log_level("critical"), spdlog::level::critical);
  EXPECT_EQ(parse_log_level("off"), spdlog::level::off);
}

TEST(LogLevel, RejectsOtherNames) {
  for (const char* bad :
       {"", "INFO", "Info", "warning", "err", "fatal", "verbose", " info", "info "})
    EXPECT_EQ(parse_log_level(bad), std::nullopt) << '"' << bad << '"';
}

TEST(Logging, SetupSetsTheLevel) {
  setup_logging(spdlog::level::warn);
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::warn);
  setup_logging(spdlog::level::off);  // keep the rest of the run quiet
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::off);
}

// Waits (bounded) until `period` has passed since `since`.
void wait_past(std::chrono::steady_clock::time_point since, std::chrono::milliseconds period) {
  const auto limit = std::chrono::steady_clock::now() + 2s;
  while (std::chrono::steady_clock::now() < since + period) {
    ASSERT_LT(std::chrono::steady_clock::now(), limit) << "the clock did not advance";
    std::this_thread::sleep_for(5ms);
  }
}

TEST(RateLimit, BurstThenSuppressThenReport) {
  RateLimit limit(3, 50ms);
  std::uint64_t suppressed = 99;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(limit.allow(suppressed)) << "line " << i << " of the burst";
    EXPECT_EQ(suppressed, 0u);
  }
  int refused = 0;
  for (int i = 0; i < 7; ++i) refused += limit.allow(suppressed) ? 0 : 1;
  if (std::chrono::steady_clock::now() >= start + 50ms)
    GTEST_SKIP() << "the machine stalled for a whole period during the burst";
  EXPECT_EQ(refused, 7);
  wait_past(start, 60ms);
  suppressed = 0;
  EXPECT_TRUE(limit.allow(suppressed)) << "a new period lets a line through";
  EXPECT_EQ(suppressed, static_cast<std::uint64_t>(refused)) << "the dropped lines are reported";
  EXPECT_TRUE(limit.allow(suppressed));
  EXPECT_EQ(suppressed, 0u) << "the count is reported once";
}

TEST(RateLimit, QuietPeriodsReportNothing) {
  RateLimit limit(1, 20ms);
  std::uint64_t suppressed = 0;
  for (int round = 0; round < 3; ++round) {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(limit.allow(suppressed));
    EXPECT_EQ(suppressed, 0u);
    wait_past(start, 25ms);
  }
}

TEST(RateLimit, CountsAcrossSeveralPeriodsOfSilence) {
  RateLimit limit(1, 20ms);
  std::uint64_t suppressed = 0;
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(limit.allow(suppressed));
  EXPECT_FALSE(limit.allow(suppressed));
  EXPECT_FALSE(limit.allow(suppressed));
  wait_past(start, 70ms);  // several periods pass with nothing logged
  EXPECT_TRUE(limit.allow(suppressed));
  EXPECT_EQ(suppressed, 2u);
}

}  // namespace
}  // namespace ntp
