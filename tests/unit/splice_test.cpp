#include "ntp/splice.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <csignal>
#include <cstdlib>
#include <optional>
#include <string>

#include "../support/test_support.hpp"
#include "../support/tls_support.hpp"
#include "ntp/live_streams.hpp"

namespace ntp {
namespace {

using namespace test;

awaitable<SpliceResult> tracked_splice(LiveStreams& streams, Stream& a, Stream& b,
                                       SpliceMode mode) {
  LiveStreams::Entry entry(streams, a.socket(), b.socket(), "app");
  co_return co_await splice(a, b, {}, mode);
}

awaitable<error_code> send(Stream& s, std::string_view data) {
  co_return co_await s.write_all(asio::buffer(data));
}

awaitable<std::string> read_n(Stream& s, std::size_t n) {
  std::string out(n, '\0');
  auto ec = co_await s.read_exact(asio::buffer(out));
  if (ec) out.clear();
  co_return out;
}

// plain: buffered copy; zero_copy: splice(2) through a pipe; tls_zero_copy: zero
// copy asked for over TLS, which must fall back to the buffered copy.
enum class Path { plain, zero_copy, tls, tls_zero_copy };

bool is_tls(Path p) {
  return p == Path::tls || p == Path::tls_zero_copy;
}
SpliceMode mode_of(Path p) {
  return p == Path::zero_copy || p == Path::tls_zero_copy ? SpliceMode::zero_copy
                                                          : SpliceMode::buffered;
}

// user ⇄ a ══splice══ b ⇄ app: two real loopback pairs, spliced in the middle.
// Over TLS, user–a is a TLS connection (as a data connection is) and b–app plain
// (as the user's or the local app's socket is): each pump then reads one kind
// and writes the other.
class Splice : public ::testing::TestWithParam<Path> {
 protected:
  asio::io_context io;
  const SpliceMode mode = mode_of(GetParam());
  StreamPair left = stream_pair(io, is_tls(GetParam()));
  StreamPair right = stream_pair(io, false);
  Stream& user = left.client;
  Stream& a = left.server;
  Stream& b = right.client;
  Stream& app = right.server;
  LiveStreams streams{io.get_executor()};
  std::optional<SpliceResult> result;
  bool started = false;
  Lead lead;  // for `a`, ahead of b's bytes (the client's `connected`)

  void start(bool tracked = false) {
    started = true;
    auto done = [this](std::exception_ptr e, SpliceResult r) {
      EXPECT_FALSE(e) << "splice threw";
      result = r;
    };
    if (tracked)
      asio::co_spawn(io, tracked_splice(streams, a, b, mode), done);
    else
      asio::co_spawn(io, splice(a, b, {}, mode, lead), done);
  }

  void half_close(Stream& s) {
    ASSERT_TRUE(run(io, [&]() -> awaitable<void> { co_await s.shutdown_send(); }));
  }

  bool ended(milliseconds limit = 5s) {
    return wait_until(
        io, [&] { return result.has_value(); }, limit);
  }

  void TearDown() override {
    user.close();
    app.close();
    if (started) {
      EXPECT_TRUE(ended()) << "splice did not end once both peers closed";
    }
  }

  // Every byte by splice(2) on the zero-copy path, none on the others.
  void expect_path(std::uint64_t total) {
    if (GetParam() == Path::zero_copy)
      EXPECT_EQ(result->zero_copy, total) << "bytes took the buffered path";
    else
      EXPECT_EQ(result->zero_copy, 0u) << "bytes took the zero-copy path";
    EXPECT_EQ(result->with_frames, 0u) << "no byte came with a frame";
  }
};

INSTANTIATE_TEST_SUITE_P(Paths, Splice,
                         ::testing::Values(Path::plain, Path::zero_copy, Path::tls,
                                           Path::tls_zero_copy),
                         [](const auto& info) {
                           switch (info.param) {
                             case Path::plain:
                               return std::string("Plain");
                             case Path::zero_copy:
                               return std::string("ZeroCopy");
                             case Path::tls:
                               return std::string("Tls");
                             case Path::tls_zero_copy:
                               return std::string("TlsZeroCopyFallsBack");
                           }
                           return std::string();
                         });

TEST_P(Splice, BytesBothWaysWithCounts) {
  start();
  std::string at_app, at_user;
  std::pair<std::string, error_code> app_eof, user_eof;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    co_await send(user, "hello");
    at_app = co_await read_n(app, 5);
    co_await send(app, "world!!");
    at_user = co_await read_n(user, 7);
    co_await user.shutdown_send();
    app_eof = co_await read_to_eof(app);
    co_await app.shutdown_send();
    user_eof = co_await read_to_eof(user);
  })) << "bytes did not cross the splice";
  EXPECT_EQ(at_app, "hello");
  EXPECT_EQ(at_user, "world!!");
  EXPECT_EQ(app_eof.second, asio::error::eof);
  EXPECT_EQ(user_eof.second, asio::error::eof);
  ASSERT_TRUE(ended()) << "splice did not end after both directions closed";
  EXPECT_EQ(result->a_to_b, 5u);
  EXPECT_EQ(result->b_to_a, 7u);
  expect_path(12);
}

// The user finishes sending (shutdown of its write side) and still gets the reply.
TEST_P(Splice, HalfCloseKeepsTheOtherDirection) {
  start();
  std::pair<std::string, error_code> request, reply;
  bool running_after_half_close = false;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    co_await send(user, "request");
    co_await user.shutdown_send();
    request = co_await read_to_eof(app);  // the app sees the end of the request...
    running_after_half_close = !result.has_value();
    co_await send(app, "reply");  // ...and answers after it
    co_await app.shutdown_send();
    reply = co_await read_to_eof(user);
  })) << "half-closed stream did not complete";
  EXPECT_EQ(request.first, "request");
  EXPECT_EQ(request.second, asio::error::eof);
  EXPECT_TRUE(running_after_half_close) << "splice ended on the first EOF";
  EXPECT_EQ(reply.first, "reply");
  EXPECT_EQ(reply.second, asio::error::eof);
  ASSERT_TRUE(ended());
  EXPECT_EQ(result->a_to_b, 7u);
  EXPECT_EQ(result->b_to_a, 5u);
}

TEST_P(Splice, LargeTransferBothWaysAtOnce) {
  constexpr std::size_t kSize = 8 * 1024 * 1024;
  const std::string up = pattern(kSize, 1), down = pattern(kSize, 2);
  std::string at_app, at_user;
  start();
  auto send_all = [](Stream& s, const std::string& data) -> awaitable<void> {
    auto ec = co_await send(s, data);
    EXPECT_FALSE(ec) << ec.message();
    co_await s.shutdown_send();
  };
  auto receive = [](Stream& s, std::string& out) -> awaitable<void> {
    auto r = co_await read_to_eof(s);
    EXPECT_EQ(r.second, asio::error::eof);
    out = std::move(r.first);
  };
  ASSERT_TRUE(run(
      io,
      [&]() -> awaitable<void> {
        co_await (send_all(user, up) && send_all(app, down) && receive(app, at_app) &&
                  receive(user, at_user));
      },
      20s))
      << "16 MiB did not cross the splice";
  EXPECT_EQ(at_app.size(), kSize);
  EXPECT_EQ(at_user.size(), kSize);
  EXPECT_TRUE(at_app == up) << "upstream bytes corrupted";
  EXPECT_TRUE(at_user == down) << "downstream bytes corrupted";
  ASSERT_TRUE(ended());
  EXPECT_EQ(result->a_to_b, kSize);
  EXPECT_EQ(result->b_to_a, kSize);
  expect_path(2 * kSize);
}

// Bytes a stream read ahead of the splice (a user's first bytes behind the start
// frame) cross first, in order, on every path.
TEST_P(Splice, BytesReadAheadCrossFirst) {
  std::string head, at_app;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    co_await send(user, "0123456789");
    head = co_await read_n(a, 4);  // a keeps what it read past these 4 bytes
  }));
  ASSERT_EQ(head, "0123");
  start();
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    at_app = co_await read_n(app, 6);
    co_await send(user, "abc");
    at_app += co_await read_n(app, 3);
    co_await user.shutdown_send();
    co_await app.shutdown_send();
  }));
  EXPECT_EQ(at_app, "456789abc");
  ASSERT_TRUE(ended());
  EXPECT_EQ(result->a_to_b, 9u);
  // The six read ahead are copied with their frame (over TLS OpenSSL holds
  // them, and every byte is copied anyway); the later three take the path.
  EXPECT_EQ(result->with_frames, is_tls(GetParam()) ? 0u : 6u);
  if (GetParam() == Path::zero_copy) {
    EXPECT_EQ(result->zero_copy, 3u);
  }
}

// The lead waits for the app's first bytes and goes with them, while the
// user's bytes reach the app meanwhile.
TEST_P(Splice, ALeadWaitsForTheFirstBytesBack) {
  lead = {"LEAD", 5s};
  start();
  std::string at_app, at_user;
  std::size_t early = 0;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    co_await send(user, "ping");
    at_app = co_await read_n(app, 4);
    early = user.socket().available();  // a lead sent at once would be here by now
    co_await send(app, "pong");
    at_user = co_await read_n(user, 8);
    co_await user.shutdown_send();
    co_await app.shutdown_send();
  })) << "bytes did not cross a splice with a lead";
  EXPECT_EQ(at_app, "ping") << "the user's bytes waited for the lead";
  EXPECT_EQ(early, 0u) << "the lead went before the app's first bytes";
  EXPECT_EQ(at_user, "LEADpong");
  ASSERT_TRUE(ended());
  EXPECT_EQ(result->a_to_b, 4u);
  EXPECT_EQ(result->b_to_a, 4u);  // the lead is not the app's
  EXPECT_EQ(result->with_frames, 4u) << "the app's first bytes went with the lead";
  if (GetParam() == Path::zero_copy) {
    EXPECT_EQ(result->zero_copy, 4u);
  }
}

// An app that says nothing: the lead goes alone once its hold is over.
TEST_P(Splice, ALeadGoesAloneAfterItsHold) {
  lead = {"LEAD", 100ms};
  const auto began = steady_clock::now();
  start();
  std::string first, later;
  steady_clock::duration waited{};
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    first = co_await read_n(user, 4);
    waited = steady_clock::now() - began;
    co_await send(app, "late");
    later = co_await read_n(user, 4);
    co_await user.shutdown_send();
    co_await app.shutdown_send();
  })) << "the lead never came";
  EXPECT_EQ(first, "LEAD");
  EXPECT_GE(waited, 100ms) << "the lead did not wait for the app";
  EXPECT_EQ(later, "late");
  ASSERT_TRUE(ended());
}

// An app that ends without a word: the lead, then the end, without the hold.
TEST_P(Splice, ALeadGoesBeforeTheAppsEnd) {
  lead = {"LEAD", 5s};
  start();
  std::pair<std::string, error_code> at_user;
  ASSERT_TRUE(run(
      io,
      [&]() -> awaitable<void> {
        co_await app.shutdown_send();
        at_user = co_await read_to_eof(user);
        co_await user.shutdown_send();
      },
      2s))
      << "the lead waited out its hold after the app's end";
  EXPECT_EQ(at_user.first, "LEAD");
  EXPECT_EQ(at_user.second, asio::error::eof);
  ASSERT_TRUE(ended());
}

// A reset on one side ends both directions; the other peer sees its stream end.
TEST_P(Splice, ResetOnOneSideEndsBoth) {
  start();
  std::string echoed;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    co_await send(user, "x");
    echoed = co_await read_n(app, 1);
  }));
  ASSERT_EQ(echoed, "x");
  user.socket().set_option(asio::socket_base::linger(true, 0));
  user.close();  // RST (and over TLS no close_notify: not an orderly end)
  ASSERT_TRUE(ended(2s)) << "splice kept running after a reset";
  std::pair<std::string, error_code> rest;
  ASSERT_TRUE(run(
      io, [&]() -> awaitable<void> { rest = co_await read_to_eof(app); }, 2s))
      << "the app side was not closed after the user's reset";
  EXPECT_TRUE(rest.second) << "the app side should see its stream end";
  EXPECT_EQ(result->a_to_b, 1u);
}

TEST_P(Splice, ResetOnTheAppSideEndsBoth) {
  start();
  app.socket().set_option(asio::socket_base::linger(true, 0));
  app.close();
  ASSERT_TRUE(ended(2s)) << "splice kept running after a reset";
  std::pair<std::string, error_code> rest;
  ASSERT_TRUE(run(
      io, [&]() -> awaitable<void> { rest = co_await read_to_eof(user); }, 2s));
  EXPECT_TRUE(rest.second);
}

TEST_P(Splice, LiveStreamsTracksTheSplice) {
  start(/*tracked=*/true);
  ASSERT_TRUE(wait_until(
      io, [&] { return streams.size() == 1; }, 1s));
  half_close(user);
  half_close(app);
  ASSERT_TRUE(ended());
  EXPECT_EQ(streams.size(), 0u);
}

TEST_P(Splice, CloseAllEndsSplices) {
  start(/*tracked=*/true);
  std::string got;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    co_await send(user, "ping");
    got = co_await read_n(app, 4);
  }));
  EXPECT_EQ(got, "ping");
  streams.close_all();
  ASSERT_TRUE(ended(2s)) << "close_all did not end the splice";
  EXPECT_EQ(streams.size(), 0u);
  std::pair<std::string, error_code> user_end, app_end;
  ASSERT_TRUE(run(
      io,
      [&]() -> awaitable<void> {
        user_end = co_await read_to_eof(user);
        app_end = co_await read_to_eof(app);
      },
      2s))
      << "peers of a closed stream were left open";
  EXPECT_TRUE(user_end.second);
  EXPECT_TRUE(app_end.second);
}

TEST_P(Splice, WaitEmptyEndsWhenTheLastStreamEnds) {
  start(/*tracked=*/true);
  ASSERT_TRUE(wait_until(
      io, [&] { return streams.size() == 1; }, 1s));
  // Shared: if an assertion ends the test early, TearDown still runs this to its end.
  auto waited = std::make_shared<bool>(false);
  asio::co_spawn(
      io,
      [this, waited]() -> awaitable<void> {
        co_await streams.wait_empty(5s);
        *waited = true;
      },
      asio::detached);
  run_for(io, 50ms);
  EXPECT_FALSE(*waited) << "wait_empty returned while a stream was live";
  half_close(user);
  half_close(app);
  // Long before its 5 s limit: the last stream's end is what wakes it.
  ASSERT_TRUE(wait_until(
      io, [&] { return *waited; }, half_of(5s)))
      << "wait_empty missed the last stream ending";
}

TEST(LiveStreams, WaitEmptyReturnsAtOnceWhenEmpty) {
  asio::io_context io;
  LiveStreams streams(io.get_executor());
  ASSERT_TRUE(run(
      io, [&]() -> awaitable<void> { co_await streams.wait_empty(5s); }, half_of(5s)))
      << "wait_empty waited with nothing to wait for";
}

TEST(LiveStreams, WaitEmptyGivesUpAfterTheGracePeriod) {
  asio::io_context io;
  LiveStreams streams(io.get_executor());
  tcp::socket a(io), b(io);
  LiveStreams::Entry entry(streams, a, b, "app");
  EXPECT_EQ(streams.size(), 1u);
  const auto began = steady_clock::now();
  ASSERT_TRUE(run(
      io, [&]() -> awaitable<void> { co_await streams.wait_empty(200ms); }, 2s));
  EXPECT_GE(steady_clock::now() - began, 200ms) << "gave up before the grace period";
  EXPECT_EQ(streams.size(), 1u);
}

TEST(LiveStreams, EntriesComeAndGo) {
  asio::io_context io;
  LiveStreams streams(io.get_executor());
  tcp::socket a(io), b(io), c(io), d(io);
  {
    LiveStreams::Entry one(streams, a, b, "one");
    {
      LiveStreams::Entry two(streams, c, d, "two");
      EXPECT_EQ(streams.size(), 2u);
    }
    EXPECT_EQ(streams.size(), 1u);
  }
  EXPECT_EQ(streams.size(), 0u);
}

// A reload's revocation: the streams of one owner close, the others' do not.
TEST(LiveStreams, CloseOwnedByClosesOnlyThatOwnersStreams) {
  asio::io_context io;
  LiveStreams streams(io.get_executor());
  tcp::socket a(io), b(io), c(io), d(io), e(io), f(io);
  for (auto* s : {&a, &b, &c, &d, &e, &f}) s->open(tcp::v4());
  LiveStreams::Entry one(streams, a, b, "home");
  LiveStreams::Entry two(streams, c, d, "office");
  LiveStreams::Entry three(streams, e, f, "home");
  EXPECT_EQ(streams.close_owned_if([](const std::string& o) { return o == "home"; }), 2u);
  EXPECT_FALSE(a.is_open());
  EXPECT_FALSE(b.is_open());
  EXPECT_FALSE(e.is_open());
  EXPECT_FALSE(f.is_open());
  EXPECT_TRUE(c.is_open());
  EXPECT_TRUE(d.is_open());
  EXPECT_EQ(streams.close_owned_if([](const std::string&) { return false; }), 0u);
}

// Relays bytes from one socket to another; once `slow` is set, one byte a
// millisecond, so TLS records arrive in pieces.
awaitable<void> trickle(tcp::socket& from, tcp::socket& to, const bool& slow) {
  std::array<char, 4096> buf{};
  for (;;) {
    auto [ec, n] = co_await from.async_read_some(asio::buffer(buf), nothrow);
    if (ec) break;
    for (std::size_t i = 0; i < n;) {
      const std::size_t k = slow ? 1 : n - i;
      if (auto [wec, w] = co_await asio::async_write(to, asio::buffer(buf.data() + i, k), nothrow);
          wec)
        co_return;
      i += k;
      if (slow) co_await sleep_for(1ms);
    }
  }
  error_code ignored;
  to.shutdown(tcp::socket::shutdown_send, ignored);
}

// A TLS record that arrives in pieces: the splice must wait for the rest on the
// socket, not spin on the partial record OpenSSL holds (a spin never yields, so
// here, in one thread, nothing would move again: the alarm ends the test).
// A splice destroyed while a pump waits to write its pipe's bytes on (its
// io_context goes away, as at a daemon's exit) still gives the pipe back.
TEST(SpliceZeroCopy, APipeIsNeverLeaked) {
  const auto before = pipes_lent();
  {
    asio::io_context io;
    auto left = stream_pair(io, false);
    auto right = stream_pair(io, false);
    // The app (right.server) never reads, so the user's bytes back up.
    asio::co_spawn(io, splice(left.server, right.client, {}, SpliceMode::zero_copy, Lead{}),
                   asio::detached);
    const std::string big(16 << 20, 'x');
    asio::co_spawn(
        io, [&]() -> awaitable<void> { co_await left.client.write_all(asio::buffer(big)); },
        asio::detached);
    ASSERT_TRUE(wait_until(io, [&] { return pipes_lent() > before; })) << "no pipe was taken";
    // Blocked for good: every buffer on the way to the app is full.
    ASSERT_TRUE(wait_until(io, [&] {
      const auto lent = pipes_lent();
      run_for(io, 20ms);
      return lent == pipes_lent() && right.server.socket().available() > 0;
    }));
  }
  EXPECT_EQ(pipes_lent(), before) << "a pipe (two descriptors) leaked";
}

TEST(SpliceTls, ARecordArrivingInPiecesIsWaitedFor) {
  std::signal(SIGALRM, [](int) {
    static constexpr char kWhy[] = "the splice spun on a partial TLS record (20 s alarm)\n";
    [[maybe_unused]] auto n = ::write(2, kWhy, sizeof kWhy - 1);
    std::_Exit(1);
  });
  ::alarm(20);
  asio::io_context io;
  auto [client_sock, relay_in] = tcp_pair(io);
  auto [relay_out, server_sock] = tcp_pair(io);
  Stream client(std::move(client_sock)), server(std::move(server_sock));
  static const TlsContext client_ctx = test_client_tls(), server_ctx = test_server_tls();
  client.start_tls(client_ctx);
  server.start_tls(server_ctx);
  bool slow = false;
  asio::co_spawn(io, trickle(relay_in, relay_out, slow), asio::detached);
  asio::co_spawn(io, trickle(relay_out, relay_in, slow), asio::detached);
  error_code cec, sec;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    std::tie(cec, sec) = co_await (client.handshake() && server.handshake());
  }));
  ASSERT_FALSE(cec || sec) << cec.message() << " / " << sec.message();

  auto right = stream_pair(io, false);
  std::optional<SpliceResult> result;
  asio::co_spawn(io, splice(server, right.client),
                 [&](std::exception_ptr, SpliceResult r) { result = r; });
  slow = true;
  const std::string message(300, 'x');
  std::string at_app(message.size(), '\0');
  ASSERT_TRUE(run(
      io,
      [&]() -> awaitable<void> {
        co_await client.write_all(asio::buffer(message));
        co_await right.server.read_exact(asio::buffer(at_app));
      },
      15s))
      << "the bytes did not cross";
  EXPECT_EQ(at_app, message);
  client.close();
  right.server.close();
  EXPECT_TRUE(wait_until(
      io, [&] { return result.has_value(); }, 5s));
  ::alarm(0);
}

}  // namespace
}  // namespace ntp
