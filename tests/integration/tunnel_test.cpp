// A real server and a real client in one io_context, users on loopback.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "harness.hpp"

namespace ntp {
namespace {

using namespace test;

TEST_F(TunnelTest, LogsInAndRegisters) {
  start_server();
  start_client(client_config({app_at("echo", echo)}));
  ASSERT_TRUE(wait_until(io, [&] { return logged_in(1); })) << "no login and registration";
  EXPECT_NE(client->remote_ports().at("echo"), 0);
  EXPECT_NE(client->remote_ports().at("echo"), server_port);
  // The pool of idle data connections fills without any user.
  EXPECT_TRUE(wait_until(io, [&] { return client->pool_size() == Client::kPoolSize; }))
      << "pool has " << client->pool_size() << " connections";
}

TEST_F(TunnelTest, WrongTokenNeverLogsIn) {
  start_server();
  start_client(client_config({app_at("echo", echo)}, "wrong-token-7a6b5c4d3e2f"));
  ASSERT_TRUE(wait_until(io, [&] { return server->throttle().size() == 1; }))
      << "the wrong proof was never checked";
  EXPECT_FALSE(client->logged_in());
  EXPECT_EQ(server->group_count(), 0u);
  EXPECT_TRUE(client->remote_ports().empty());
}

// One app asks for a port someone else holds: it alone is refused.
TEST_F(TunnelTest, TakenPortRefusedOtherAppsWork) {
  tcp::acceptor holder(io, loopback(0));  // "another program" on the port
  const auto held = holder.local_endpoint().port();
  start_server();
  start_client(client_config({app_at("held", echo, held), app_at("free", echo)}));
  ASSERT_TRUE(wait_until(io, [&] { return logged_in(1); })) << "no login and registration";
  EXPECT_EQ(client->remote_ports().count("held"), 0u);
  ASSERT_EQ(client->remote_ports().count("free"), 1u);
  std::string back;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    back = co_await exchange(client->remote_ports().at("free"), "still works");
  }));
  EXPECT_EQ(back, "still works");
}

TEST_F(TunnelTest, PortOutsideAllowPortsRefused) {
  const auto allowed = free_port(io);
  const std::uint16_t outside = allowed == 65535 ? allowed - 1 : allowed + 1;
  server_cfg.allow_ports = {{allowed, allowed}};
  start_server();
  start_client(client_config({app_at("outside", echo, outside), app_at("inside", echo)}));
  ASSERT_TRUE(wait_until(io, [&] { return logged_in(1); })) << "no login and registration";
  EXPECT_EQ(client->remote_ports().count("outside"), 0u);
  ASSERT_EQ(client->remote_ports().count("inside"), 1u);
  EXPECT_EQ(client->remote_ports().at("inside"), allowed) << "port 0 must pick from allow_ports";
}

TEST_F(TunnelTest, EchoThroughTheTunnel) {
  start_server();
  start_client(client_config({app_at("echo", echo)}));
  ASSERT_TRUE(wait_until(io, [&] { return logged_in(1); })) << "no login and registration";
  const auto port = client->remote_ports().at("echo");
  std::string back, big_back;
  const std::string big = pattern(1 << 20, 3);
  ASSERT_TRUE(run(
      io,
      [&]() -> awaitable<void> {
        back = co_await exchange(port, "hello through the tunnel");
        big_back = co_await exchange(port, big);
      },
      10s))
      << "echo did not come back";
  EXPECT_EQ(back, "hello through the tunnel");
  EXPECT_EQ(big_back.size(), big.size());
  EXPECT_TRUE(big_back == big) << "1 MiB echo corrupted";
  EXPECT_EQ(echo.accepted(), 2);
}

// The user finishes its request with a half-close and still reads the answer.
TEST_F(TunnelTest, HalfCloseThroughTheTunnel) {
  start_server();
  start_client(client_config({app_at("reply", replier)}));
  ASSERT_TRUE(wait_until(io, [&] { return logged_in(1); })) << "no login and registration";
  const auto port = client->remote_ports().at("reply");
  std::pair<std::string, error_code> answer;
  error_code connect_ec, write_ec;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    tcp::socket s(io);
    std::tie(connect_ec) = co_await s.async_connect(loopback(port), nothrow);
    if (connect_ec) co_return;
    const std::string request(1000, 'r');
    std::tie(write_ec, std::ignore) = co_await asio::async_write(s, asio::buffer(request), nothrow);
    s.shutdown(tcp::socket::shutdown_send);
    answer = co_await read_to_eof(s);
  })) << "no answer after the half-close";
  EXPECT_FALSE(connect_ec) << connect_ec.message();
  EXPECT_FALSE(write_ec) << write_ec.message();
  EXPECT_EQ(answer.first, "got 1000 bytes");
  EXPECT_EQ(answer.second, asio::error::eof);
}

TEST_F(TunnelTest, PoolRefillsAfterUsers) {
  start_server();
  start_client(client_config({app_at("echo", echo)}));
  ASSERT_TRUE(wait_until(io, [&] { return logged_in(1); })) << "no login and registration";
  ASSERT_TRUE(wait_until(io, [&] { return client->pool_size() == Client::kPoolSize; }))
      << "pool never filled: " << client->pool_size();
  const auto port = client->remote_ports().at("echo");
  std::vector<std::string> back;
  ASSERT_TRUE(run(
      io,
      [&]() -> awaitable<void> {
        for (int i = 0; i < 2 * static_cast<int>(Client::kPoolSize); ++i)
          back.push_back(co_await exchange(port, "user " + std::to_string(i)));
      },
      10s));
  for (int i = 0; i < static_cast<int>(back.size()); ++i)
    EXPECT_EQ(back[i], "user " + std::to_string(i));
  EXPECT_TRUE(wait_until(io, [&] { return client->pool_size() == Client::kPoolSize; }))
      << "pool did not refill: " << client->pool_size();
}

// Every user gets a data connection of its own, and its own bytes back.
TEST_F(TunnelTest, ManyConcurrentUsers) {
  constexpr int kUsers = 50;
  start_server();
  start_client(client_config({app_at("echo", echo)}));
  ASSERT_TRUE(wait_until(io, [&] { return logged_in(1); })) << "no login and registration";
  const auto port = client->remote_ports().at("echo");
  // Shared with the users, so an early failure cannot leave them pointing at the stack.
  auto results = std::make_shared<std::vector<std::string>>(kUsers);
  auto finished = std::make_shared<int>(0);
  for (int i = 0; i < kUsers; ++i)
    tasks.spawn(io, [results, finished, port, i]() -> awaitable<void> {
      (*results)[i] = co_await exchange(port, pattern(16 * 1024, 100 + i));
      ++*finished;
    });
  ASSERT_TRUE(wait_until(
      io, [&] { return *finished == kUsers; }, 15s))
      << *finished << " of " << kUsers << " users finished";
  for (int i = 0; i < kUsers; ++i)
    EXPECT_TRUE((*results)[i] == pattern(16 * 1024, 100 + i))
        << "user " << i << " got the wrong bytes: " << (*results)[i].substr(0, 60);
  EXPECT_EQ(echo.accepted(), kUsers);
  // Whatever the burst left behind, the pool is not empty for the next user.
  EXPECT_TRUE(wait_until(io, [&] { return client->pool_size() >= Client::kPoolSize; }))
      << "pool has " << client->pool_size() << " connections after the burst";
}

// After a burst, data connections dialed for waiting users (need_data) are
// trimmed by the server: the pool settles back to its size.
TEST_F(TunnelTest, PoolSettlesBackToItsSizeAfterABurst) {
  constexpr int kUsers = 50;
  start_server();
  start_client(client_config({app_at("echo", echo)}));
  ASSERT_TRUE(wait_until(io, [&] { return logged_in(1); })) << "no login and registration";
  const auto port = client->remote_ports().at("echo");
  auto finished = std::make_shared<int>(0);
  for (int i = 0; i < kUsers; ++i)
    tasks.spawn(io, [finished, port, i]() -> awaitable<void> {
      co_await exchange(port, "user " + std::to_string(i));
      ++*finished;
    });
  ASSERT_TRUE(wait_until(
      io, [&] { return *finished == kUsers; }, 15s));
  EXPECT_TRUE(wait_until(io, [&] { return client->pool_size() == Client::kPoolSize; }))
      << "pool has " << client->pool_size() << " connections after the burst";
}

// The local app is down: the user is closed promptly instead of hanging.
TEST_F(TunnelTest, UnreachableLocalAppClosesTheUser) {
  const auto dead = free_port(io);
  LocalApp app;
  app.name = "dead";
  app.local = {"127.0.0.1", dead};
  start_server();
  start_client(client_config({app}));
  ASSERT_TRUE(wait_until(io, [&] { return logged_in(1); })) << "no login and registration";
  const auto port = client->remote_ports().at("dead");
  std::pair<std::string, error_code> end;
  // Closed at the refusal, not when the client's connect timeout runs out.
  ASSERT_TRUE(run(
      io,
      [&]() -> awaitable<void> {
        tcp::socket s(io);
        co_await s.async_connect(loopback(port), nothrow);
        end = co_await read_to_eof(s);
      },
      half_of(kLocalConnectTimeout)))
      << "user left hanging";
  EXPECT_EQ(end.first, "");
  EXPECT_TRUE(end.second);
}

// stop() closes listeners and sessions; a stream already spliced goes on.
TEST_F(TunnelTest, ServerStopKeepsSplicedStreams) {
  start_server();
  start_client(client_config({app_at("echo", echo)}));
  ASSERT_TRUE(wait_until(io, [&] { return logged_in(1); })) << "no login and registration";
  const auto port = client->remote_ports().at("echo");
  auto user = std::make_shared<tcp::socket>(io);
  std::string first, second;
  auto echo_once = [&](std::string text, std::string& out) {
    return run(io, [&, text]() -> awaitable<void> {
      co_await asio::async_write(*user, asio::buffer(text),
                                 nothrow);  // a failure shows in the read
      std::string back(text.size(), '\0');
      auto [rec, m] = co_await asio::async_read(*user, asio::buffer(back), nothrow);
      out = rec ? "error: " + rec.message() : back;
    });
  };
  user->connect(loopback(port));
  ASSERT_TRUE(echo_once("before", first));
  ASSERT_EQ(first, "before");
  ASSERT_TRUE(wait_until(io, [&] { return server->streams().size() == 1; }));

  server->stop();
  EXPECT_TRUE(wait_until(io, [&] { return server->group_count() == 0; })) << "session not closed";
  // Both the bind port and the app's port are closed at once.
  for (auto p : {server_port, port}) {
    tcp::socket probe(io);
    error_code ec;
    probe.connect(loopback(p), ec);
    EXPECT_EQ(ec, asio::error::connection_refused) << "port " << p << " still accepts";
  }
  ASSERT_TRUE(echo_once("after stop", second));
  EXPECT_EQ(second, "after stop") << "the spliced stream did not survive stop()";
  EXPECT_EQ(server->streams().size(), 1u);
  user->close();
  EXPECT_TRUE(wait_until(io, [&] { return server->streams().size() == 0; }))
      << "stream not released after the user closed";
}

// stop() also closes connections still in their handshake.
TEST_F(TunnelTest, ServerStopClosesUnauthenticatedConnections) {
  start_server();
  RawPeer idle(io);
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> { co_await idle.connect(server_port, false); }));
  ASSERT_TRUE(wait_until(io, [&] { return server->handshakes() == 1; }))
      << "the connection was not accepted";
  server->stop();
  error_code ec;
  ASSERT_TRUE(run(
      io, [&]() -> awaitable<void> { ec = co_await idle.wait_closed(); }, 1s))
      << "a connection in its handshake outlived stop()";
  EXPECT_TRUE(ec);
}

TEST_F(TunnelTest, ClientStopKeepsSplicedStreams) {
  start_server();
  start_client(client_config({app_at("echo", echo)}));
  ASSERT_TRUE(wait_until(io, [&] { return logged_in(1); })) << "no login and registration";
  const auto port = client->remote_ports().at("echo");
  tcp::socket user(io);
  user.connect(loopback(port));
  std::string back;
  auto echo_once = [&](std::string text) {
    back.clear();
    return run(io, [&, text]() -> awaitable<void> {
      co_await asio::async_write(user, asio::buffer(text), nothrow);
      std::string b(text.size(), '\0');
      auto [ec, n] = co_await asio::async_read(user, asio::buffer(b), nothrow);
      back = ec ? "error: " + ec.message() : b;
    });
  };
  ASSERT_TRUE(echo_once("one"));
  ASSERT_EQ(back, "one");
  client->stop();
  EXPECT_TRUE(wait_until(io, [&] { return server->group_count() == 0; }))
      << "the server kept the session of a stopped client";
  EXPECT_EQ(client->pool_size(), 0u);
  ASSERT_TRUE(echo_once("two"));
  EXPECT_EQ(back, "two");
  EXPECT_EQ(client->streams().size(), 1u);
}

// The server comes back on the same port: the client logs in again with its apps.
TEST_F(TunnelTest, ClientReconnectsAfterServerRestart) {
  start_server();
  start_client(client_config({app_at("echo", echo)}));
  ASSERT_TRUE(wait_until(io, [&] { return logged_in(1); })) << "no login and registration";
  server->stop();
  ASSERT_TRUE(wait_until(io, [&] { return !client->logged_in(); })) << "client missed the stop";
  old_server = std::move(server);
  server_cfg.bind.port = server_port;
  start_server();
  // Backoff: the first retry comes within about a second.
  ASSERT_TRUE(wait_until(
      io, [&] { return logged_in(1); }, 5s))
      << "client did not come back";
  std::string back;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    back = co_await exchange(client->remote_ports().at("echo"), "again");
  }));
  EXPECT_EQ(back, "again");
}

}  // namespace
}  // namespace ntp
