// The login and data handshakes inside TLS: the same protocol as wire_test.cpp,
// with the proofs bound to the TLS session.
#include <gtest/gtest.h>
#include <openssl/err.h>

#include "harness.hpp"

namespace ntp {
namespace {

using namespace test;

class TlsTest : public TunnelTest {
 protected:
  TlsContext client_tls = test_client_tls();
};

TEST_F(TlsTest, LoginAndDataConnectionInsideTls) {
  start_server();
  RawPeer control(io, &client_tls), data(io, &client_tls);
  RawSession session;
  msg::Registered reg;
  msg::Start start;
  tcp::socket user(io);
  error_code login_ec, data_ec;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    login_ec = co_await control.login(server_port, "home", kToken, session);
    const std::vector<msg::AppRequest> apps{{"app", 0}};
    if (!login_ec) login_ec = co_await control.register_apps(apps, reg);
    if (login_ec || reg.apps.size() != 1) co_return;
    data_ec = co_await data.data_login(server_port, session);
    if (data_ec) co_return;
    // Admitted: a user gets this connection, with the server's proof (bound to
    // this TLS session) ahead of `start`.
    co_await user.async_connect(loopback(reg.apps[0].remote_port), nothrow);
    data_ec = co_await data.expect_start(start);
  }));
  ASSERT_FALSE(login_ec) << login_ec.message() << " " << control.peer_error;
  EXPECT_FALSE(data_ec) << data_ec.message() << " " << data.peer_error;
  EXPECT_EQ(start.app, "app");
  EXPECT_TRUE(control.stream.tls());
  EXPECT_TRUE(data.stream.tls());
  EXPECT_EQ(server->group_count(), 1u);
}

// A proof made for another TLS session (what a man in the middle who terminates
// TLS can relay) does not verify, even with the right token and nonces.
TEST_F(TlsTest, ProofForAnotherTlsSessionIsRefused) {
  start_server();
  int host = 2;
  for (const std::string& other : std::vector<std::string>{"", std::string(64, '0')}) {
    RawPeer peer(io, &client_tls);
    peer.binding = other;
    peer.source = "127.0.0." + std::to_string(host++);  // not slowed by the last failure
    RawSession session;
    error_code ec;
    ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
      ec = co_await peer.login(server_port, "home", kToken, session);
    }));
    EXPECT_EQ(ec, ProtocolError::unexpected_message) << ec.message();
    EXPECT_EQ(peer.peer_error, "authentication failed for group 'home'");
  }
  EXPECT_EQ(server->group_count(), 0u);
}

TEST_F(TlsTest, PlainPeerToATlsServerIsToldTlsIsRequired) {
  start_server();
  RawPeer peer(io);
  msg::Challenge challenge;
  error_code ec;
  // Told at once, not left to the handshake timeout.
  ASSERT_TRUE(run(
      io,
      [&]() -> awaitable<void> {
        ec = co_await peer.connect(server_port);
        if (!ec) ec = co_await peer.expect(challenge);
      },
      half_of(kHandshakeTimeout)));
  EXPECT_EQ(ec, ProtocolError::unexpected_message);
  EXPECT_EQ(peer.peer_error,
            "this server requires TLS: remove \"tls\": false from the client's "
            "apps.json");
}

TEST_F(TlsTest, TlsPeerToAPlainServerFailsItsHandshakeAtOnce) {
  server_cfg.tls.reset();
  start_server();
  RawPeer peer(io, &client_tls);
  error_code ec;
  ASSERT_TRUE(run(
      io, [&]() -> awaitable<void> { ec = co_await peer.connect(server_port); },
      half_of(kHandshakeTimeout)))
      << "the TLS handshake was left to the handshake timeout";
  ASSERT_EQ(ec.category(), tls_category()) << ec.message();
  EXPECT_EQ(ERR_GET_REASON(static_cast<unsigned long>(ec.value())), SSL_R_WRONG_VERSION_NUMBER)
      << ec.message();
}

// The whole tunnel with the production defaults (TLS on both sides), a large
// transfer both ways and a half-close across it.
TEST_F(TlsTest, TunnelCarriesBytesAndHalfCloseOverTls) {
  start_server();
  start_client(client_config({app_at("echo", echo), app_at("reply", replier)}));
  ASSERT_TRUE(wait_until(io, [&] { return logged_in(2); }));
  const auto payload = pattern(2 * 1024 * 1024, 7);
  std::string back;
  ASSERT_TRUE(run(
      io,
      [&]() -> awaitable<void> {
        back = co_await exchange(client->remote_ports().at("echo"), payload);
      },
      20s));
  EXPECT_TRUE(back == payload) << "bytes corrupted through the TLS tunnel";
  std::pair<std::string, error_code> reply;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    tcp::socket s(io);
    co_await s.async_connect(loopback(client->remote_ports().at("reply")), nothrow);
    co_await asio::async_write(s, asio::buffer(std::string(1000, 'x')), nothrow);
    s.shutdown(tcp::socket::shutdown_send);
    reply = co_await read_to_eof(s);
  }));
  EXPECT_EQ(reply.first, "got 1000 bytes");
  EXPECT_EQ(reply.second, asio::error::eof);
}

}  // namespace
}  // namespace ntp
