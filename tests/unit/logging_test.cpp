#include "ntp/logging.hpp"

#include <gtest/gtest.h>

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

TEST(LogSafe, PeerTextCannotForgeALineOrDriveATerminal) {
  EXPECT_EQ(log_safe("connect 127.0.0.1:22: Connection refused"),
            "connect 127.0.0.1:22: Connection refused");
  EXPECT_EQ(log_safe("ok\ninfo  group=home: logged in"), "ok\\x0ainfo  group=home: logged in");
  EXPECT_EQ(log_safe("\x1b[31mred\r\t"), "\\x1b[31mred\\x0d\\x09");
  EXPECT_EQ(log_safe("back\\slash"), "back\\x5cslash") << "so an escape cannot be faked";
  EXPECT_EQ(log_safe("\xc3\xa9\x7f"), "\\xc3\\xa9\\x7f");
  EXPECT_EQ(log_safe(std::string_view("nul\0byte", 8)), "nul\\x00byte");
}

TEST(LogSafe, LongTextIsCut) {
  const std::string long_text(1000, 'a');
  EXPECT_EQ(log_safe(long_text), std::string(kLoggedPeerText, 'a') + "... (800 more bytes)");
  EXPECT_EQ(log_safe(long_text, 10), std::string(10, 'a') + "... (990 more bytes)");
}

// The clock is the test's: each step is exactly where the test puts it.
const auto t0 = std::chrono::steady_clock::time_point{} + 1h;

TEST(RateLimit, BurstThenSuppressThenReport) {
  RateLimit limit(3, 50ms);
  std::uint64_t suppressed = 99;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(limit.allow(suppressed, t0 + i * 1ms)) << "line " << i << " of the burst";
    EXPECT_EQ(suppressed, 0u);
  }
  for (int i = 0; i < 7; ++i)
    EXPECT_FALSE(limit.allow(suppressed, t0 + 49ms)) << "line " << i << " past the burst";
  suppressed = 0;
  EXPECT_TRUE(limit.allow(suppressed, t0 + 50ms)) << "a new period lets a line through";
  EXPECT_EQ(suppressed, 7u) << "the dropped lines are reported";
  EXPECT_TRUE(limit.allow(suppressed, t0 + 51ms));
  EXPECT_EQ(suppressed, 0u) << "the count is reported once";
}

TEST(RateLimit, QuietPeriodsReportNothing) {
  RateLimit limit(1, 20ms);
  std::uint64_t suppressed = 0;
  for (int round = 0; round < 3; ++round) {
    EXPECT_TRUE(limit.allow(suppressed, t0 + round * 25ms));
    EXPECT_EQ(suppressed, 0u);
  }
}

TEST(RateLimit, CountsAcrossSeveralPeriodsOfSilence) {
  RateLimit limit(1, 20ms);
  std::uint64_t suppressed = 0;
  EXPECT_TRUE(limit.allow(suppressed, t0));
  EXPECT_FALSE(limit.allow(suppressed, t0 + 1ms));
  EXPECT_FALSE(limit.allow(suppressed, t0 + 2ms));
  // Several periods pass with nothing logged.
  EXPECT_TRUE(limit.allow(suppressed, t0 + 70ms));
  EXPECT_EQ(suppressed, 2u);
}

// The one-argument form reads the real clock.
TEST(RateLimit, TheRealClockOpensTheFirstWindow) {
  RateLimit limit(1, 1h);
  std::uint64_t suppressed = 0;
  EXPECT_TRUE(limit.allow(suppressed));
  EXPECT_FALSE(limit.allow(suppressed));
}

}  // namespace
}  // namespace ntp
