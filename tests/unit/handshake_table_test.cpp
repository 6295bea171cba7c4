#include "handshake_table.hpp"

#include <gtest/gtest.h>

#include <list>
#include <memory>

namespace ntp {
namespace {

using namespace std::chrono_literals;

// Open sockets to register, so a close shows.
struct Sockets {
  asio::io_context io;
  std::list<tcp::socket> all;
  tcp::socket& next() {
    all.emplace_back(io);
    all.back().open(tcp::v4());
    return all.back();
  }
};

TEST(HandshakeTable, FreshConnectionsOfASourceAreNeverClosedForItsCap) {
  Sockets s;
  HandshakeTable table(256, 4);
  std::list<std::unique_ptr<HandshakeTable::Entry>> entries;
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(table.make_room("192.0.2.1").empty()) << "connection " << i;
    entries.push_back(std::make_unique<HandshakeTable::Entry>(table, "192.0.2.1", s.next()));
  }
  EXPECT_EQ(table.of("192.0.2.1"), 10u) << "a burst (a client's data connections) is not cut";
  for (auto& sock : s.all) EXPECT_TRUE(sock.is_open());
}

TEST(HandshakeTable, AStalledSourceMakesRoomWithItsOwnOldest) {
  Sockets s;
  HandshakeTable table(256, 4);
  std::list<std::unique_ptr<HandshakeTable::Entry>> entries;
  for (int i = 0; i < 4; ++i)
    entries.push_back(std::make_unique<HandshakeTable::Entry>(table, "192.0.2.1", s.next()));
  auto& oldest = s.all.front();
  const auto later = steady_clock::now() + HandshakeTable::kStalled;
  auto closed = table.make_room("192.0.2.1", later);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].source, "192.0.2.1");
  EXPECT_EQ(closed[0].cap, "max_handshakes_per_source (4) reached");
  EXPECT_FALSE(oldest.is_open());
  EXPECT_EQ(table.of("192.0.2.1"), 3u) << "the closed one counts no more, at once";
  // Another source is not touched by this one's cap.
  EXPECT_TRUE(table.make_room("192.0.2.2", later).empty());
  entries.clear();
  EXPECT_EQ(table.size(), 0u) << "an entry closed to make room leaves once, not twice";
}

TEST(HandshakeTable, AtTheTotalCapTheSourceHoldingTheMostMakesRoom) {
  Sockets s;
  HandshakeTable table(4, 16);
  std::list<std::unique_ptr<HandshakeTable::Entry>> entries;
  auto& victim_of_age = s.next();  // the oldest of all, but of a small source
  entries.push_back(std::make_unique<HandshakeTable::Entry>(table, "198.51.100.7", victim_of_age));
  for (int i = 0; i < 3; ++i)
    entries.push_back(std::make_unique<HandshakeTable::Entry>(table, "203.0.113.5", s.next()));
  auto closed = table.make_room("198.51.100.7");
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].source, "203.0.113.5");
  EXPECT_EQ(closed[0].cap, "max_handshakes (4) reached, and it holds the most");
  EXPECT_TRUE(victim_of_age.is_open()) << "a flood from one address evicted another's handshake";
  EXPECT_EQ(table.size(), 3u);
}

TEST(HandshakeTable, CloseAllClosesEveryConnection) {
  Sockets s;
  HandshakeTable table(256, 16);
  HandshakeTable::Entry a(table, "192.0.2.1", s.next()), b(table, "192.0.2.2", s.next());
  table.close_all();
  for (auto& sock : s.all) EXPECT_FALSE(sock.is_open());
}

}  // namespace
}  // namespace ntp
