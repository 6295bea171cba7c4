// connect_any: the outcomes a data connection or a local app's connection can have.
#include <gtest/gtest.h>

#include <vector>

#include "../support/test_support.hpp"
#include "ntp/listener.hpp"

namespace ntp {
namespace {

using namespace test;

tcp::endpoint closed_port(asio::io_context& io) {
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint();  // closed again as `a` goes
}

error_code connect(asio::io_context& io, tcp::socket& s, std::vector<tcp::endpoint> eps,
                   steady_clock::duration timeout = 2s) {
  error_code out = asio::error::would_block;
  EXPECT_TRUE(run(io, [&]() -> awaitable<void> { out = co_await connect_any(s, eps, timeout); }))
      << "connect_any did not return";
  return out;
}

TEST(ConnectAny, ConnectsToAListener) {
  asio::io_context io;
  tcp::acceptor listener(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket s(io);
  EXPECT_FALSE(connect(io, s, {listener.local_endpoint()}));
  error_code ec;
  EXPECT_EQ(s.remote_endpoint(ec), listener.local_endpoint());
  EXPECT_TRUE(s.non_blocking());
}

TEST(ConnectAny, NamesARefusal) {
  asio::io_context io;
  tcp::socket s(io);
  EXPECT_EQ(connect(io, s, {closed_port(io)}), asio::error::connection_refused);
}

TEST(ConnectAny, TriesTheNextAddress) {
  asio::io_context io;
  tcp::acceptor listener(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket s(io);
  EXPECT_FALSE(connect(io, s, {closed_port(io), listener.local_endpoint()}));
  error_code ec;
  EXPECT_EQ(s.remote_endpoint(ec), listener.local_endpoint());
}

TEST(ConnectAny, NoAddressIsHostNotFound) {
  asio::io_context io;
  tcp::socket s(io);
  EXPECT_EQ(connect(io, s, {}), asio::error::host_not_found);
}

// A listener whose accept queue is full drops further handshakes: the connect
// neither succeeds nor fails, and the timeout ends it.
TEST(ConnectAny, TimesOutOnAPeerThatNeverAnswers) {
  asio::io_context io;
  tcp::acceptor listener(io);
  listener.open(tcp::v4());
  listener.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  listener.listen(0);  // a queue of one or two that nobody accepts from
  std::vector<tcp::socket> held;
  error_code last;
  steady_clock::duration took{};
  for (int i = 0; i < 8 && last != asio::error::timed_out; ++i) {
    held.emplace_back(io);
    const auto began = steady_clock::now();
    last = connect(io, held.back(), {listener.local_endpoint()}, 200ms);
    took = steady_clock::now() - began;
    if (last && last != asio::error::timed_out) ADD_FAILURE() << last.message();
  }
  EXPECT_EQ(last, asio::error::timed_out) << "the listener never stopped answering";
  EXPECT_GE(took, 200ms);
  EXPECT_GE(held.size(), 2u) << "not even the first connection was made";
}

}  // namespace
}  // namespace ntp
