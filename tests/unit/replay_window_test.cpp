#include "replay_window.hpp"

#include <gtest/gtest.h>

namespace ntp {
namespace {

TEST(ReplayWindow, EachNumberOnce) {
  ReplayWindow w;
  EXPECT_TRUE(w.accept(0));
  EXPECT_TRUE(w.accept(1));
  EXPECT_FALSE(w.accept(0));
  EXPECT_FALSE(w.accept(1));
  EXPECT_TRUE(w.accept(2));
  EXPECT_FALSE(w.accept(2));
}

// Data connections dialed together may arrive in any order.
TEST(ReplayWindow, OutOfOrderWithinTheWindow) {
  ReplayWindow w;
  EXPECT_TRUE(w.accept(10));
  EXPECT_TRUE(w.accept(7));
  EXPECT_TRUE(w.accept(9));
  EXPECT_FALSE(w.accept(7));
  EXPECT_TRUE(w.accept(8));
  EXPECT_TRUE(w.accept(10 - ReplayWindow::kSize + 1));  // the oldest still told apart
  EXPECT_FALSE(w.accept(10 - ReplayWindow::kSize + 1));
}

TEST(ReplayWindow, TooFarBehindIsRefused) {
  ReplayWindow w;
  EXPECT_TRUE(w.accept(5000));
  EXPECT_FALSE(w.accept(5000 - ReplayWindow::kSize));
  EXPECT_FALSE(w.accept(0));
}

// Moving forward forgets numbers that leave the window, and only those: a slot
// reused for a new number does not read as seen.
TEST(ReplayWindow, SlotsAreReusedAsTheWindowMoves) {
  ReplayWindow w;
  for (std::uint64_t n = 0; n < 3 * ReplayWindow::kSize; ++n) ASSERT_TRUE(w.accept(n)) << n;
  for (std::uint64_t n = 2 * ReplayWindow::kSize + 1; n < 3 * ReplayWindow::kSize; ++n)
    ASSERT_FALSE(w.accept(n)) << n;
  // A jump leaves the numbers it skipped open, once each.
  const auto top = 3 * ReplayWindow::kSize + 100;
  EXPECT_TRUE(w.accept(top));
  EXPECT_TRUE(w.accept(top - 50));
  EXPECT_FALSE(w.accept(top - 50));
  EXPECT_FALSE(w.accept(top - 200));  // accepted in the loop above
}

TEST(ReplayWindow, AJumpPastTheWholeWindowClearsIt) {
  ReplayWindow w;
  EXPECT_TRUE(w.accept(1));
  EXPECT_TRUE(w.accept(1 + 5 * ReplayWindow::kSize));
  EXPECT_TRUE(w.accept(1 + 5 * ReplayWindow::kSize - 1));
  EXPECT_FALSE(w.accept(1));
}

TEST(ReplayWindow, TheLargestNumbers) {
  ReplayWindow w;
  EXPECT_TRUE(w.accept(UINT64_MAX));
  EXPECT_FALSE(w.accept(UINT64_MAX));
  EXPECT_TRUE(w.accept(UINT64_MAX - 1));
}

}  // namespace
}  // namespace ntp
