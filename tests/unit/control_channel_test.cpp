#include "ntp/control_channel.hpp"

#include <gtest/gtest.h>

#include "../support/test_support.hpp"
#include "../support/tls_support.hpp"

namespace ntp {
namespace {

using namespace test;

// need_data asked for while none is written yet goes out as one frame with the
// sum: a burst of users costs one queued entry, never one each.
TEST(ControlChannel, NeedDataNotYetWrittenMerges) {
  asio::io_context io;
  auto pair = stream_pair(io, false);
  ControlChannel channel(std::move(pair.server));
  for (int i = 0; i < 1000; ++i) channel.need_data(1);
  channel.send(msg::Ping{});  // behind the merged request
  Tasks tasks;
  tasks.spawn(io, [&]() -> awaitable<void> { co_await channel.write_loop(); });
  std::vector<Message> got;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    std::string buf;
    for (int i = 0; i < 2; ++i) {
      Message m;
      if (co_await read_message(pair.client, buf, m)) co_return;
      got.push_back(m);
    }
  }));
  ASSERT_EQ(got.size(), 2u);
  ASSERT_TRUE(std::holds_alternative<msg::NeedData>(got[0]));
  EXPECT_EQ(std::get<msg::NeedData>(got[0]).count, 1000u);
  EXPECT_TRUE(std::holds_alternative<msg::Ping>(got[1]));
  // Once written, the next request is a frame of its own.
  channel.need_data(2);
  Message next;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    std::string buf;
    co_await read_message(pair.client, buf, next);
  }));
  ASSERT_TRUE(std::holds_alternative<msg::NeedData>(next));
  EXPECT_EQ(std::get<msg::NeedData>(next).count, 2u);
  channel.close();
  EXPECT_TRUE(wait_until(io, [&] { return tasks.running() == 0; }));
}

// A need_data never asks for more than a frame may carry; the rest follows.
TEST(ControlChannel, AMergedNeedDataStaysWithinTheMessageLimit) {
  asio::io_context io;
  auto pair = stream_pair(io, false);
  ControlChannel channel(std::move(pair.server));
  channel.need_data(kMaxNeedData);
  channel.need_data(kMaxNeedData);
  channel.need_data(5);
  Tasks tasks;
  tasks.spawn(io, [&]() -> awaitable<void> { co_await channel.write_loop(); });
  std::vector<std::uint32_t> counts;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    std::string buf;
    for (int i = 0; i < 3; ++i) {
      Message m;
      if (co_await read_message(pair.client, buf, m)) co_return;  // a bad count fails to decode
      counts.push_back(std::get<msg::NeedData>(m).count);
    }
  }));
  EXPECT_EQ(counts, (std::vector<std::uint32_t>{kMaxNeedData, kMaxNeedData, 5}));
  channel.close();
  EXPECT_TRUE(wait_until(io, [&] { return tasks.running() == 0; }));
}

// A peer that never reads is closed once kMaxQueued messages wait, but requests
// for data connections never count towards that.
TEST(ControlChannel, NeedDataNeverFillsTheQueue) {
  asio::io_context io;
  auto pair = stream_pair(io, false);
  ControlChannel channel(std::move(pair.server));
  for (std::size_t i = 0; i < 10 * ControlChannel::kMaxQueued; ++i) channel.need_data(1);
  for (std::size_t i = 0; i + 2 < ControlChannel::kMaxQueued; ++i) channel.send(msg::Pong{});
  EXPECT_TRUE(channel.stream().socket().is_open()) << "users arriving closed the session";
  channel.send(msg::Pong{});
  channel.send(msg::Pong{});
  EXPECT_FALSE(channel.stream().socket().is_open()) << "a peer that never reads was kept";
}

}  // namespace
}  // namespace ntp
