// In-process integration harness: a real CommonServer and a real Client on one
// io_context over loopback, local apps the client reaches, and a raw peer that
// speaks the wire protocol itself (for what the Client would never do).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "../support/test_support.hpp"
#include "../support/tls_support.hpp"
#include "app_server.hpp"
#include "client.hpp"
#include "common_server.hpp"
#include "local_app.hpp"
#include "ntp/auth.hpp"
#include "ntp/logging.hpp"
#include "ntp/message.hpp"
#include "ntp/socket_set.hpp"

namespace ntp::test {

// Logs are off unless NTP_TEST_LOG names a level (e.g. NTP_TEST_LOG=debug).
inline void test_logging() {
  const char* env = std::getenv("NTP_TEST_LOG");
  setup_logging(parse_log_level(env ? env : "off").value_or(spdlog::level::off));
}

// A port that was free a moment ago (bound to 0, read back, released).
inline std::uint16_t free_port(asio::io_context& io) {
  tcp::acceptor a(io, loopback(0));
  return a.local_endpoint().port();
}

// ------------------------------------------------------------------ local apps

enum class AppMode {
  echo,             // writes back what it reads; closes after the user's EOF
  reply_after_eof,  // reads to EOF, then answers "got N bytes" (needs half-close)
};

// A local app on 127.0.0.1:<ephemeral> that the client's apps point at.
class LocalService {
 public:
  LocalService(asio::io_context& io, Tasks& tasks, AppMode mode)
      : acceptor_(io, loopback(0)), mode_(mode) {
    tasks.spawn(io, accept_loop());
  }
  std::uint16_t port() const { return port_; }
  int accepted() const { return accepted_; }
  void close() {
    error_code ignored;
    acceptor_.close(ignored);
    open_.close_all();
  }

 private:
  awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, s] = co_await acceptor_.async_accept(nothrow);
      if (ec) co_return;
      ++accepted_;
      // Joined by the loop's own lifetime: close() ends both the acceptor and these.
      asio::co_spawn(acceptor_.get_executor(), serve(std::move(s), mode_, open_), asio::detached);
    }
  }

  static awaitable<void> serve(tcp::socket s, AppMode mode, SocketSet& open) {
    SocketSet::Entry entry(open, s);
    std::array<char, 16 * 1024> buf;
    std::size_t total = 0;
    for (;;) {
      auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), nothrow);
      if (ec) break;
      total += n;
      if (mode == AppMode::echo) {
        auto [wec, m] = co_await asio::async_write(s, asio::buffer(buf.data(), n), nothrow);
        if (wec) co_return;
      }
    }
    if (mode == AppMode::reply_after_eof) {
      const auto reply = fmt::format("got {} bytes", total);
      co_await asio::async_write(s, asio::buffer(reply), nothrow);
    }
    error_code ignored;
    s.shutdown(tcp::socket::shutdown_send, ignored);
  }

  tcp::acceptor acceptor_;
  std::uint16_t port_ = acceptor_.local_endpoint().port();
  AppMode mode_;
  SocketSet open_;
  int accepted_ = 0;
};

// ------------------------------------------------------------------ users

// A user of a remote port: connect, send `payload`, read as many bytes back.
// Returns what came back, or "error: ..." naming the step that failed.
inline awaitable<std::string> exchange(std::uint16_t port, std::string payload) {
  tcp::socket s(co_await asio::this_coro::executor);
  if (auto [ec] = co_await s.async_connect(loopback(port), nothrow); ec)
    co_return "error: connect: " + ec.message();
  if (auto [ec, n] = co_await asio::async_write(s, asio::buffer(payload), nothrow); ec)
    co_return "error: write: " + ec.message();
  std::string back(payload.size(), '\0');
  if (auto [ec, n] = co_await asio::async_read(s, asio::buffer(back), nothrow); ec)
    co_return "error: read after " + std::to_string(n) + " bytes: " + ec.message();
  co_return back;
}

// ------------------------------------------------------------------ raw peer

struct RawSession {
  std::string id, data_key;
  int heartbeat_timeout_s = 0;
};

// One connection to the bind port, driven by hand: plain, or TLS with `tls`.
class RawPeer {
 public:
  explicit RawPeer(asio::io_context& io, const TlsContext* tls = nullptr)
      : stream(tcp::socket(io)), socket(stream.socket()), tls_(tls) {}

  awaitable<error_code> connect(std::uint16_t port, bool send_prefix = true) {
    if (!source.empty()) {  // another host, as the server's per-source backoff sees it
      error_code bec;
      socket.open(tcp::v4(), bec);
      if (!bec) socket.bind({asio::ip::make_address(source), 0}, bec);
      if (bec) co_return bec;
    }
    auto [ec] = co_await socket.async_connect(loopback(port), nothrow);
    if (ec) co_return ec;
    if (tls_) {
      stream.start_tls(*tls_);
      if (auto hec = co_await stream.handshake()) co_return hec;
    }
    if (!send_prefix) co_return error_code{};
    const auto prefix = client_prefix();
    co_return co_await stream.write_all(asio::buffer(prefix));
  }
  awaitable<error_code> send(const Message& m) { co_return co_await write_message(stream, m); }
  awaitable<error_code> read(Message& m) { co_return co_await read_message(stream, buf, m); }
  template <class T>
  awaitable<error_code> expect(T& out) {
    peer_error.clear();
    co_return co_await expect_message(stream, buf, out, &peer_error);
  }

  // Logs in as `group` with `token`; on refusal the server's message is in peer_error.
  awaitable<error_code> login(std::uint16_t port, const std::string& group,
                              const std::string& token, RawSession& out) {
    if (auto ec = co_await connect(port)) co_return ec;
    msg::Challenge challenge;
    if (auto ec = co_await expect(challenge)) co_return ec;
    const auto nonce = random_hex(kNonceBytes);
    auto proofs = login_proofs(token, group, nonce, challenge.nonce,
                               binding ? *binding : stream.channel_binding().value());
    const Message login = msg::Login{group, nonce, proofs.client};
    if (auto ec = co_await send(login)) co_return ec;
    msg::Welcome welcome;
    if (auto ec = co_await expect(welcome)) co_return ec;
    // Mutual: the server must prove it knows the token too.
    if (!proof_equal(welcome.proof, proofs.server)) co_return asio::error::access_denied;
    out = {welcome.session, proofs.data_key, welcome.heartbeat_timeout_s};
    co_return error_code{};
  }

  awaitable<error_code> register_apps(const std::vector<msg::AppRequest>& apps,
                                      msg::Registered& out) {
    const Message req = msg::Register{apps};
    if (auto ec = co_await send(req)) co_return ec;
    co_return co_await expect(out);
  }

  // A data connection for `session`, as ntp-client makes one: the prefix and the
  // data message in one write; with `good_proof` false it proves with a wrong key.
  // The server answers when a user comes (expect_start) or with an error frame
  // when it refuses (expect_start then fails with peer_error set). `seq` defaults
  // to a number no other RawPeer has used.
  awaitable<error_code> data_login(std::uint16_t port, const RawSession& session,
                                   bool good_proof = true,
                                   std::optional<std::uint64_t> seq = std::nullopt) {
    if (auto ec = co_await connect(port, /*send_prefix=*/false)) co_return ec;
    static std::uint64_t next_seq = 0;
    const auto n = seq ? *seq : next_seq++;
    data_proofs_ =
        data_proofs(good_proof ? session.data_key : std::string("not the key"), session.id, n,
                    binding ? *binding : stream.channel_binding().value());
    const Message login = msg::DataLogin{session.id, n, data_proofs_.client};
    const auto prefix = client_prefix();
    std::string bytes(prefix.begin(), prefix.end());
    bytes += frame_bytes(encode(login));
    co_return co_await stream.write_all(asio::buffer(bytes));
  }

  // On a data connection: the server's data_ok (its proof checked), then `start`.
  awaitable<error_code> expect_start(msg::Start& out) {
    msg::DataOk ok;
    if (auto ec = co_await expect(ok)) co_return ec;
    if (!proof_equal(ok.proof, data_proofs_.server)) co_return asio::error::access_denied;
    co_return co_await expect(out);
  }

  // Reads until the server closes; the error that ended it (eof expected).
  awaitable<error_code> wait_closed() {
    auto [bytes, ec] = co_await read_to_eof(stream);
    co_return ec;
  }

  Stream stream;
  tcp::socket& socket;  // the stream's; raw bytes go here
  std::string buf;
  std::string peer_error;  // the server's error message, when it sent one
  // Proves with this channel binding instead of the stream's (a man in the middle
  // relaying a proof made for another TLS session).
  std::optional<std::string> binding;
  // Connects from this loopback address (e.g. "127.0.0.2") instead of 127.0.0.1.
  std::string source;

 private:
  const TlsContext* tls_;
  DataProofs data_proofs_;  // of the last data_login
};

// ------------------------------------------------------------------ fixture

class TunnelTest : public ::testing::Test {
 protected:
  static constexpr const char* kToken = "integration-secret";

  TunnelTest() {
    test_logging();
    server_cfg.bind = {"127.0.0.1", 0};
    server_cfg.proxy_bind_addr = "127.0.0.1";
  }

  // TLS as in production unless the test sets server_cfg.tls = std::nullopt.
  void start_server() {
    std::optional<TlsContext> tls;
    if (server_cfg.tls) tls = TlsContext::server(test_key_pair(), server_cfg.tls->client_ca);
    server = std::make_unique<CommonServer>(io.get_executor(), server_cfg, kToken, std::move(tls));
    server->listen();
    server_port = server->local_endpoint().port();
    tasks.spawn(io, server->run());
  }

  ClientConfig client_config(std::vector<LocalApp> apps, std::string token = kToken) const {
    ClientConfig cfg;
    cfg.server = HostPort{"127.0.0.1", server_port};
    cfg.group = "home";
    cfg.token = std::move(token);
    cfg.apps = std::move(apps);
    if (!server_cfg.tls) cfg.tls.reset();  // the client speaks what the server does
    return cfg;
  }

  void start_client(ClientConfig cfg) {
    client = std::make_unique<Client>(io.get_executor(), std::move(cfg));
    tasks.spawn(io, client->run());
  }

  LocalApp app_at(const std::string& name, const LocalService& service,
                  std::uint16_t remote_port = 0) const {
    LocalApp a;
    a.name = name;
    a.local = {"127.0.0.1", service.port()};
    a.remote_port = remote_port;
    return a;
  }

  // Logged in, with `apps` registered and the server holding the group.
  bool logged_in(std::size_t apps) const {
    return client && client->logged_in() && client->remote_ports().size() == apps && server &&
           server->group_count() == 1;
  }

  void TearDown() override {
    // Everything the test started is stopped; then the loop must run dry: a
    // coroutine still running after this would be one that stop() cannot reach.
    if (client) client->stop();
    for (auto* s : {server.get(), old_server.get()})
      if (s) s->stop();
    if (client) client->streams().close_all();
    for (auto* s : {server.get(), old_server.get()})
      if (s) s->streams().close_all();
    echo.close();
    replier.close();
    EXPECT_TRUE(wait_until(io, [&] { return tasks.running() == 0; }))
        << tasks.running() << " coroutine(s) still running after stop()";
    EXPECT_TRUE(drain(io)) << "work left on the io_context after everything was stopped";
  }

  asio::io_context io;
  Tasks tasks;
  LocalService echo{io, tasks, AppMode::echo};
  LocalService replier{io, tasks, AppMode::reply_after_eof};
  ServerConfig server_cfg;
  std::uint16_t server_port = 0;
  std::unique_ptr<CommonServer> old_server;  // a server replaced by a restart
  std::unique_ptr<CommonServer> server;
  std::unique_ptr<Client> client;
};

}  // namespace ntp::test
