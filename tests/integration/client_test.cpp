// The real Client against a scripted fake server: what a real server would
// never do (a wrong proof, silence) and the client's side of the data protocol.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "harness.hpp"

namespace ntp {
namespace {

using namespace test;

// Speaks the server's side of docs/protocol.md, with knobs for misbehaving.
class FakeServer {
 public:
  FakeServer(asio::io_context& io, Tasks& tasks, std::string token)
      : acceptor_(io, loopback(0)), token_(std::move(token)) {
    tasks.spawn(io, accept_loop(tasks));
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  void close() {
    error_code ignored;
    acceptor_.close(ignored);
    open_.close_all();
    for (auto& d : data) d->close(ignored);
  }

  // Knobs.
  bool bad_welcome_proof = false;
  bool answer_pings = true;
  bool probe_after_register = false;  // send a ping of our own after "registered"

  // What was seen.
  int logins = 0, good_login_proofs = 0, registers = 0, pings = 0, pongs = 0;
  int controls_closed = 0;
  steady_clock::time_point registered_at, control_closed_at;
  std::vector<std::shared_ptr<tcp::socket>> data;  // proven data connections, idle

 private:
  awaitable<void> accept_loop(Tasks& tasks) {
    for (;;) {
      auto [ec, s] = co_await acceptor_.async_accept(nothrow);
      if (ec) co_return;
      tasks.spawn(acceptor_.get_executor(), handle(std::make_shared<tcp::socket>(std::move(s))));
    }
  }

  awaitable<void> handle(std::shared_ptr<tcp::socket> s) {
    SocketSet::Entry entry(open_, *s);
    std::array<char, kPrefixSize> prefix{};
    if (auto [ec, n] = co_await asio::async_read(*s, asio::buffer(prefix), nothrow); ec) co_return;
    EXPECT_EQ(prefix, client_prefix());
    const auto nonce = random_hex(kNonceBytes);
    const Message challenge = msg::Challenge{nonce};
    if (co_await write_message(*s, challenge)) co_return;
    std::string buf;
    Message m;
    if (co_await read_message(*s, buf, m)) co_return;
    if (auto* login = std::get_if<msg::Login>(&m)) {
      ++logins;
      auto proofs = login_proofs(token_, login->group, login->nonce, nonce, "");
      if (proof_equal(proofs.client, login->proof)) ++good_login_proofs;
      data_key_ = proofs.data_key;
      const Message welcome =
          msg::Welcome{kSession, bad_welcome_proof ? std::string(64, '0') : proofs.server, 30};
      if (co_await write_message(*s, welcome)) co_return;
      co_await control_loop(*s);
    } else if (auto* data_login = std::get_if<msg::DataLogin>(&m)) {
      auto proofs = data_proofs(data_key_, data_login->session, data_login->seq, "");
      EXPECT_EQ(data_login->session, kSession);
      EXPECT_TRUE(proof_equal(proofs.client, data_login->proof)) << "client's data proof is wrong";
      const Message ok = msg::DataOk{proofs.server};
      if (co_await write_message(*s, ok)) co_return;
      entry.release();
      data.push_back(s);  // the test drives it from here
    }
  }

  awaitable<void> control_loop(tcp::socket& s) {
    std::string buf;
    for (Message m;;) {
      if (co_await read_message(s, buf, m)) break;
      if (auto* reg = std::get_if<msg::Register>(&m)) {
        ++registers;
        msg::Registered out;
        for (std::size_t i = 0; i < reg->apps.size(); ++i)
          out.apps.push_back({reg->apps[i].name, static_cast<std::uint16_t>(40000 + i), {}});
        const Message reply = out;
        registered_at = steady_clock::now();  // no later than the client reads it
        if (co_await write_message(s, reply)) break;
        if (probe_after_register) {
          const Message ping = msg::Ping{};
          if (co_await write_message(s, ping)) break;
        }
      } else if (std::holds_alternative<msg::Ping>(m)) {
        ++pings;
        const Message pong = msg::Pong{};
        if (answer_pings && co_await write_message(s, pong)) break;
      } else if (std::holds_alternative<msg::Pong>(m)) {
        ++pongs;
      }
    }
    ++controls_closed;
    control_closed_at = steady_clock::now();
  }

  static constexpr const char* kSession = "00112233445566778899aabbccddeeff";
  tcp::acceptor acceptor_;
  std::string token_;
  std::string data_key_;
  SocketSet open_;
};

// The fake server speaks plain TCP (the TLS layer is tested in tls_test.cpp).
class ClientTest : public TunnelTest {
 protected:
  ClientTest() { server_cfg.tls.reset(); }

  void start_fake() {
    fake = std::make_unique<FakeServer>(io, tasks, kToken);
    server_port = fake->port();
  }
  void TearDown() override {
    if (client) client->stop();
    if (fake) fake->close();
    TunnelTest::TearDown();
  }
  std::unique_ptr<FakeServer> fake;
};

TEST_F(ClientTest, LogsInWithTheRightProofAndRegistersItsApps) {
  start_fake();
  start_client(client_config({app_at("echo", echo), app_at("reply", replier)}));
  ASSERT_TRUE(wait_until(io, [&] { return client->remote_ports().size() == 2; }))
      << "no registration";
  EXPECT_EQ(fake->good_login_proofs, 1);
  EXPECT_EQ(fake->registers, 1);
  EXPECT_EQ(client->remote_ports().at("echo"), 40000);
  EXPECT_EQ(client->remote_ports().at("reply"), 40001);
  EXPECT_TRUE(wait_until(io, [&] { return fake->data.size() == Client::kPoolSize; }))
      << "pool connections proven: " << fake->data.size();
}

// Mutual authentication: a server that cannot prove the token is dropped
// before the client tells it anything about its apps.
TEST_F(ClientTest, RejectsAServerThatCannotProveTheToken) {
  start_fake();
  fake->bad_welcome_proof = true;
  start_client(client_config({app_at("echo", echo)}));
  ASSERT_TRUE(wait_until(
      io, [&] { return fake->controls_closed >= 1; }, 3s))
      << "the client stayed connected to an impostor";
  EXPECT_EQ(fake->registers, 0) << "apps were revealed to an impostor";
  EXPECT_FALSE(client->logged_in());
  EXPECT_TRUE(fake->data.empty());
}

TEST_F(ClientTest, AnswersTheServersProbe) {
  start_fake();
  fake->probe_after_register = true;
  start_client(client_config({app_at("echo", echo)}));
  ASSERT_TRUE(wait_until(
      io, [&] { return fake->pongs == 1; }, 2s))
      << "probe not answered";
}

// The client gives up on a server it has not heard from for three intervals.
TEST_F(ClientTest, DropsASilentServerAfterThreeIntervals) {
  start_fake();
  fake->answer_pings = false;
  auto cfg = client_config({app_at("echo", echo)});
  cfg.heartbeat_interval_s = 1;
  start_client(cfg);
  ASSERT_TRUE(wait_until(io, [&] { return fake->registers == 1; })) << "no registration";
  // Its check runs once an interval, so the drop comes within four.
  ASSERT_TRUE(wait_until(
      io, [&] { return fake->controls_closed >= 1; }, 6s))
      << "the client kept a silent server";
  const auto after = fake->control_closed_at - fake->registered_at;
  EXPECT_GE(after, 3s) << "dropped before three intervals";
  EXPECT_GE(fake->pings, 2) << "heartbeats were not sent every interval";
}

TEST_F(ClientTest, DataConnectionProtocol) {
  const auto dead = free_port(io);
  LocalApp down;
  down.name = "down";
  down.local = {"127.0.0.1", dead};
  start_fake();
  start_client(client_config({app_at("echo", echo), down}));
  ASSERT_TRUE(wait_until(io, [&] { return fake->data.size() >= 3; })) << "no data connections";
  auto unknown = fake->data[0], unreachable = fake->data[1], good = fake->data[2];
  std::string unknown_error, unreachable_error, echoed;
  bool connected = false;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    std::string buf, peer_error;
    msg::Connected ok;
    const Message start1 = msg::Start{"nope", 1, {}, {}};
    co_await write_message(*unknown, start1);
    co_await expect_message(*unknown, buf, ok, &unknown_error);

    const Message start2 = msg::Start{"down", 2, {}, {}};
    co_await write_message(*unreachable, start2);
    co_await expect_message(*unreachable, buf, ok, &unreachable_error);

    const Message start3 = msg::Start{"echo", 3, {}, {}};
    co_await write_message(*good, start3);
    connected = !co_await expect_message(*good, buf, ok, &peer_error);
    const std::string bytes = "raw bytes after connected";
    co_await asio::async_write(*good, asio::buffer(bytes), nothrow);
    echoed.resize(bytes.size());
    co_await asio::async_read(*good, asio::buffer(echoed), nothrow);
  })) << "the client did not answer its data connections";
  EXPECT_EQ(unknown_error, "no app named \"nope\" on this client");
  EXPECT_EQ(unreachable_error, fmt::format("connect 127.0.0.1:{}: Connection refused", dead));
  EXPECT_TRUE(connected);
  EXPECT_EQ(echoed, "raw bytes after connected");
  // Each data connection that got a start is replaced, so the pool stays full.
  EXPECT_TRUE(wait_until(io, [&] { return client->pool_size() == Client::kPoolSize; }))
      << "pool not refilled: " << client->pool_size();
}

// An app that waits for the user to finish before it says anything: `connected`
// does not wait for it (only a moment), and the user's bytes reach it meanwhile.
TEST_F(ClientTest, ConnectedComesForAnAppThatSpeaksLast) {
  start_fake();
  start_client(client_config({app_at("replier", replier)}));
  ASSERT_TRUE(wait_until(io, [&] { return !fake->data.empty(); })) << "no data connection";
  auto data = fake->data[0];
  bool connected = false;
  std::pair<std::string, error_code> reply;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    std::string buf, peer_error;
    msg::Connected ok;
    const Message start = msg::Start{"replier", 1, {}, {}};
    const std::string request = frame_bytes(encode(start)) + "abc";
    co_await asio::async_write(*data, asio::buffer(request), nothrow);
    connected = !co_await expect_message(*data, buf, ok, &peer_error);
    error_code ignored;
    data->shutdown(tcp::socket::shutdown_send, ignored);
    reply = co_await read_to_eof(*data);
  })) << "no answer on the data connection";
  EXPECT_TRUE(connected);
  EXPECT_EQ(reply.first, "got 3 bytes");
  EXPECT_EQ(reply.second, asio::error::eof);
}

}  // namespace
}  // namespace ntp
