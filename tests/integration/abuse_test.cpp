// The server against peers that abuse what they are allowed to do (security,
// round two): a register frame asking for every port, a flood of users, logins
// racing each other, a data connection lost after `start`, a reconnecting app
// that would start its limits afresh. Each asserts on counts and events.
#include <gtest/gtest.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "app_group.hpp"
#include "harness.hpp"
#include "ntp/listener.hpp"
#include "ntp/logging.hpp"

namespace ntp {
namespace {

using namespace test;

class AbuseTest : public TunnelTest {
 protected:
  AbuseTest() { server_cfg.tls.reset(); }  // raw frames are easier to read in plain TCP

  // Logs `peer` in as `group` and registers `apps`; the results in `reg`.
  void login_and_register(RawPeer& peer, RawSession& session, const std::string& group,
                          const std::vector<msg::AppRequest>& apps, msg::Registered& reg) {
    error_code ec;
    ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
      ec = co_await peer.login(server_port, group, kToken, session);
      if (!ec) ec = co_await peer.register_apps(apps, reg);
    }));
    ASSERT_FALSE(ec) << ec.message() << " " << peer.peer_error;
    ASSERT_EQ(reg.apps.size(), apps.size());
  }

  // A data connection of `session` that takes one user: `start`, then `connected`.
  awaitable<error_code> serve_one(RawPeer& data, const RawSession& session, msg::Start& start) {
    if (auto ec = co_await data.data_login(server_port, session)) co_return ec;
    if (auto ec = co_await data.expect_start(start)) co_return ec;
    const Message connected = msg::Connected{};
    co_return co_await data.send(connected);
  }
};

// One register frame with remote_port 0 for more apps than max_apps, over a range
// whose every port is taken: each app within max_apps costs at most kPortProbes
// binds, those past it none, and another group's pings are answered meanwhile
// (the registration gives the loop up every kAppsPerTurn apps).
TEST_F(AbuseTest, RegisteringEveryPortOfAFullRangeCostsBoundedBinds) {
  constexpr std::uint16_t kFirst = 29100, kLast = 29199;  // below the ephemeral range
  std::vector<tcp::acceptor> taken;                       // the whole range, held by "someone else"
  for (std::uint32_t p = kFirst; p <= kLast; ++p) {
    error_code ec;
    auto a =
        open_listener(io.get_executor(),
                      {asio::ip::make_address("127.0.0.1"), static_cast<std::uint16_t>(p)}, ec);
    if (!ec) taken.push_back(std::move(a));  // a port held elsewhere is just as taken
  }
  server_cfg.allow_ports = {{kFirst, kLast}};
  start_server();
  RawPeer other(io);
  RawSession other_session;
  msg::Registered none;
  ASSERT_NO_FATAL_FAILURE(login_and_register(other, other_session, "office", {}, none));

  constexpr std::size_t kAsked = kDefaultMaxApps + 100;
  std::vector<msg::AppRequest> apps;
  for (std::size_t i = 0; i < kAsked; ++i) apps.push_back({fmt::format("a{}", i), 0});
  RawPeer greedy(io);
  RawSession session;
  msg::Registered reg;
  error_code ec;
  const auto binds_before = server->bind_attempts();
  bool registered = false;
  std::vector<steady_clock::duration> rtts;
  ASSERT_TRUE(run(
      io,
      [&]() -> awaitable<void> {
        ec = co_await greedy.login(server_port, "home", kToken, session);
        if (ec) co_return;
        tasks.spawn(io, [&]() -> awaitable<void> {
          ec = co_await greedy.register_apps(apps, reg);
          registered = true;
        });
        // The other group's round trips while the registration runs.
        while (!registered) {
          const auto sent = steady_clock::now();
          if (co_await other.send(Message{msg::Ping{}})) co_return;
          msg::Pong pong;
          if (co_await other.expect(pong)) co_return;
          rtts.push_back(steady_clock::now() - sent);
        }
      },
      10s));
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_EQ(reg.apps.size(), kAsked);
  for (std::size_t i = 0; i < kAsked; ++i) {
    const auto& r = reg.apps[i];
    EXPECT_EQ(r.remote_port, 0) << r.name;
    if (i < kDefaultMaxApps)
      EXPECT_EQ(r.error, "no free port in 29100-29199 (32 tried from a random place)") << r.name;
    else
      EXPECT_EQ(
          r.error,
          "the group may register at most 256 apps (max_apps; each port of a range is an app)")
          << r.name;
  }
  EXPECT_EQ(server->bind_attempts() - binds_before, kDefaultMaxApps * AppGroup::kPortProbes)
      << "binds per app asking for any port must be bounded, and none past max_apps";
  ASSERT_FALSE(rtts.empty());
  const auto worst = *std::max_element(rtts.begin(), rtts.end());
  std::cout << "[ figures ] " << kDefaultMaxApps * AppGroup::kPortProbes << " binds; the other "
            << "group's ping answered " << rtts.size() << " times meanwhile, worst round trip "
            << std::chrono::duration<double, std::milli>(worst).count() << " ms\n";
  EXPECT_GE(rtts.size(), 2u) << "the other group waited for the whole registration";
}

// A data connection that dies after `start` was written (the client may have
// passed the user's bytes to the app) is not retried on another one: the user is
// closed and the bytes reach the app at most once.
TEST_F(AbuseTest, AUsersBytesAreNeverSentTwice) {
  start_server();
  RawPeer control(io), first(io), second(io);
  RawSession session;
  msg::Registered reg;
  ASSERT_NO_FATAL_FAILURE(login_and_register(control, session, "home", {{"app", 0}}, reg));
  const auto port = reg.apps[0].remote_port;
  error_code ec;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    ec = co_await first.data_login(server_port, session);
    if (!ec) ec = co_await second.data_login(server_port, session);
  }));
  ASSERT_FALSE(ec) << ec.message();

  tcp::socket user(io);
  const std::string request = "POST /pay-once";
  msg::Start start;
  std::string at_app(request.size(), '\0');
  std::pair<std::string, error_code> user_end;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    co_await user.async_connect(loopback(port), nothrow);
    co_await asio::async_write(user, asio::buffer(request), nothrow);
    ec = co_await first.expect_start(start);
    // The client reaches its app and passes the bytes on...
    if (!ec) ec = co_await first.stream.read_exact(asio::buffer(at_app));
    // ...and its data connection dies before `connected` goes out.
    first.socket.close();
    user_end = co_await read_to_eof(user);
  })) << "the user was left open";
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(at_app, request);
  EXPECT_TRUE(user_end.second) << "the user was not closed";
  // The server decided before it closed the user: a retry would be there by now.
  EXPECT_EQ(second.socket.available(), 0u) << "the same `start` went out on another connection";
}

// 3,000 users at once on one app of a client that reads its control connection
// slowly: past max_waiting_users they are closed at once, the session stays up
// (users arriving never fill its control queue), need_data asks for no more
// than wait, and the group's other app is served.
TEST_F(AbuseTest, AFloodOfUsersNeverEndsTheSession) {
  raise_open_files_limit();
  start_server();
  RawPeer control(io);
  // A small receive window: the server's writes back up behind a slow reader.
  control.socket.open(tcp::v4());
  control.socket.set_option(asio::socket_base::receive_buffer_size(4096));
  RawSession session;
  msg::Registered reg;
  ASSERT_NO_FATAL_FAILURE(
      login_and_register(control, session, "home", {{"flood", 0}, {"other", 0}}, reg));
  const auto flood_port = reg.apps[0].remote_port;
  const auto other_port = reg.apps[1].remote_port;

  constexpr std::size_t kUsers = 3000;
  std::vector<std::unique_ptr<tcp::socket>> users;
  ASSERT_TRUE(run(
      io,
      [&]() -> awaitable<void> {
        for (std::size_t i = 0; i < kUsers; ++i) {
          users.push_back(std::make_unique<tcp::socket>(io));
          co_await users.back()->async_connect(loopback(flood_port), nothrow);
        }
      },
      10s));
  // Those past max_waiting_users are closed at once; count them as they end.
  std::size_t closed = 0;
  for (auto& u : users)
    tasks.spawn(io, [&, s = u.get()]() -> awaitable<void> {
      co_await read_to_eof(*s);
      ++closed;
    });
  const auto waiting = server_cfg.max_waiting_users;
  EXPECT_TRUE(wait_until(
      io, [&] { return closed == kUsers - waiting; }, 10s))
      << closed << " users closed; expected all but max_waiting_users (" << waiting << ")";
  EXPECT_EQ(server->group_count(), 1u) << "the flood ended the session";

  // The slow client reads at last: what it was asked for is one data connection
  // per waiting user, in few frames.
  std::uint64_t asked = 0;
  int frames = 0;
  ASSERT_TRUE(run(io,
                  [&]() -> awaitable<void> {
                    while (asked < waiting) {
                      Message m;
                      if (co_await control.read(m)) co_return;
                      if (auto* need = std::get_if<msg::NeedData>(&m)) {
                        asked += need->count;
                        ++frames;
                      }
                    }
                  }))
      << "need_data asked for " << asked;
  EXPECT_EQ(asked, waiting);
  EXPECT_LE(frames, static_cast<int>(waiting));

  // Each waiting user takes a data connection; the client cannot serve them.
  std::vector<std::unique_ptr<RawPeer>> data;
  ASSERT_TRUE(run(
      io,
      [&]() -> awaitable<void> {
        for (std::size_t i = 0; i < waiting; ++i) {
          data.push_back(std::make_unique<RawPeer>(io));
          msg::Start start;
          if (co_await data.back()->data_login(server_port, session)) co_return;
          if (co_await data.back()->expect_start(start)) co_return;
          co_await write_error(data.back()->stream, "connect 127.0.0.1:9: Connection refused");
        }
      },
      20s));
  EXPECT_TRUE(wait_until(
      io, [&] { return closed == kUsers; }, 10s));
  // And the other app serves its user.
  RawPeer other_data(io);
  msg::Start start;
  tcp::socket user(io);
  std::string echoed(2, '\0');
  error_code ec;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    co_await user.async_connect(loopback(other_port), nothrow);
    co_await asio::async_write(user, asio::buffer(std::string("hi")), nothrow);
    ec = co_await serve_one(other_data, session, start);
    std::string got(2, '\0');
    if (!ec) ec = co_await other_data.stream.read_exact(asio::buffer(got));
    if (!ec) ec = co_await other_data.stream.write_all(asio::buffer(got));
    if (!ec) co_await asio::async_read(user, asio::buffer(echoed), nothrow);
  }));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(start.app, "other");
  EXPECT_EQ(echoed, "hi");
  EXPECT_EQ(server->group_count(), 1u);
}

// Two logins for a group whose session answers its probe, at once: one waits for
// the probe and is refused as already logged in, the other is refused at once as
// a login in progress; the old session is probed once, and stays.
TEST_F(AbuseTest, TwoLoginsForOneGroupAreJudgedOneAtATime) {
  start_server();
  RawPeer old(io), one(io), two(io);
  RawSession s0, s1, s2;
  msg::Registered none;
  ASSERT_NO_FATAL_FAILURE(login_and_register(old, s0, "home", {}, none));
  int pings = 0;
  tasks.spawn(io, [&]() -> awaitable<void> {
    for (;;) {
      msg::Ping ping;
      if (co_await old.expect(ping)) co_return;
      ++pings;
      if (co_await old.send(Message{msg::Pong{}})) co_return;
    }
  });
  error_code e1, e2;
  bool done1 = false, done2 = false;
  tasks.spawn(io, [&]() -> awaitable<void> {
    e1 = co_await one.login(server_port, "home", kToken, s1);
    done1 = true;
  });
  tasks.spawn(io, [&]() -> awaitable<void> {
    e2 = co_await two.login(server_port, "home", kToken, s2);
    done2 = true;
  });
  ASSERT_TRUE(wait_until(
      io, [&] { return done1 && done2; }, 2 * kProbeLimit));
  std::vector<std::string> answers{one.peer_error, two.peer_error};
  std::sort(answers.begin(), answers.end());
  EXPECT_EQ(answers,
            (std::vector<std::string>{"another login for group 'home' is in progress; retrying",
                                      "group 'home' is already logged in"}));
  EXPECT_EQ(pings, 1) << "the old session was probed by both";
  EXPECT_EQ(server->group_count(), 1u);
  old.socket.close();
}

// max_groups holds for logins of new groups racing each other: those past their
// proof count until they are in, so no two get in where one may.
TEST_F(AbuseTest, MaxGroupsHoldsForRacingLogins) {
  server_cfg.max_groups = 1;
  start_server();
  constexpr int kLogins = 8;
  std::vector<std::unique_ptr<RawPeer>> peers;
  std::vector<RawSession> sessions(kLogins);
  int finished = 0;
  for (int i = 0; i < kLogins; ++i) {
    peers.push_back(std::make_unique<RawPeer>(io));
    tasks.spawn(io, [&, i]() -> awaitable<void> {
      co_await peers[i]->login(server_port, fmt::format("g{}", i), kToken, sessions[i]);
      ++finished;
    });
  }
  ASSERT_TRUE(wait_until(io, [&] { return finished == kLogins; }));
  int in = 0, full = 0;
  for (auto& p : peers) {
    if (p->peer_error.empty()) ++in;
    if (p->peer_error == "the server is full: max_groups (1) groups are logged in") ++full;
  }
  EXPECT_EQ(in, 1);
  EXPECT_EQ(full, kLogins - 1);
  EXPECT_EQ(server->group_count(), 1u);
}

// An app's max_conns counts the streams of the group's earlier session: a client
// that reconnects does not get a fresh allowance while its old users stream on.
TEST_F(AbuseTest, AnAppsMaxConnsSurvivesAReconnect) {
  start_server();
  RawPeer first_control(io), first_data(io);
  RawSession first_session;
  msg::Registered reg;
  ASSERT_NO_FATAL_FAILURE(
      login_and_register(first_control, first_session, "home", {{"app", 0, 1}}, reg));
  const auto port = reg.apps[0].remote_port;
  tcp::socket streaming(io);
  msg::Start start;
  error_code ec;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    co_await streaming.async_connect(loopback(port), nothrow);
    ec = co_await serve_one(first_data, first_session, start);
  }));
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(wait_until(io, [&] { return server->streams().size() == 1; }));

  // The session ends (the stream goes on), and the client logs in again.
  first_control.socket.close();
  ASSERT_TRUE(wait_until(io, [&] { return server->group_count() == 0; }));
  RawPeer second_control(io), second_data(io);
  RawSession second_session;
  msg::Registered again;
  ASSERT_NO_FATAL_FAILURE(
      login_and_register(second_control, second_session, "home", {{"app", port, 1}}, again));
  ASSERT_EQ(again.apps[0].error, "");
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    ec = co_await second_data.data_login(server_port, second_session);
  }));
  ASSERT_FALSE(ec) << ec.message();
  tcp::socket late(io);
  std::pair<std::string, error_code> end;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    co_await late.async_connect(loopback(port), nothrow);
    end = co_await read_to_eof(late);
  })) << "a second user was served past the app's max_conns (1)";
  EXPECT_TRUE(end.second);
  EXPECT_EQ(second_data.socket.available(), 0u) << "the user past max_conns got a `start`";
  EXPECT_EQ(server->streams().size(), 1u);
}

// A session whose run() throws (here: a proxy_bind_addr the config check would
// have refused, so make_address throws while it registers) still leaves the
// server's maps and closes: the group can log in again, not "already logged in"
// for ever.
TEST_F(AbuseTest, ASessionThatThrowsStillEnds) {
  server_cfg.proxy_bind_addr = "not an address";
  start_server();
  RawPeer first(io);
  RawSession session;
  msg::Registered reg;
  error_code ec;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    ec = co_await first.login(server_port, "home", kToken, session);
    const std::vector<msg::AppRequest> apps{{"app", 0}};
    if (!ec) ec = co_await first.register_apps(apps, reg);
  })) << "the session that threw was left open";
  EXPECT_EQ(ec, asio::error::eof) << "the session that threw was not closed";
  EXPECT_TRUE(wait_until(io, [&] { return server->group_count() == 0; }))
      << "the group stayed listed after its session threw";
  RawPeer again(io);
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    ec = co_await again.login(server_port, "home", kToken, session);
  }));
  EXPECT_FALSE(ec) << ec.message() << " " << again.peer_error;
}

}  // namespace
}  // namespace ntp
