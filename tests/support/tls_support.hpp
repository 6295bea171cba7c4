// TLS for tests: one generated key pair per test process, the contexts both
// daemons would build from it, and connected TLS stream pairs.
#pragma once

#include "ntp/config.hpp"
#include "ntp/stream.hpp"
#include "ntp/tls.hpp"
#include "test_support.hpp"

namespace ntp::test {

inline const SelfSigned& test_key_pair() {
  static const SelfSigned pair = generate_self_signed();
  return pair;
}

inline TlsContext test_server_tls() {
  return TlsContext::server(test_key_pair(), "");
}

// A client as apps.json configures it by default: no CA, no pin.
inline TlsContext test_client_tls() {
  return TlsContext::client(ClientTls{}, "127.0.0.1");
}

struct StreamPair {
  Stream client;
  Stream server;
};

// A loopback pair, both ends Streams; with `tls` the handshake is done.
inline StreamPair stream_pair(asio::io_context& io, bool tls) {
  auto [c, s] = tcp_pair(io);
  StreamPair p{Stream(std::move(c)), Stream(std::move(s))};
  if (!tls) return p;
  static const TlsContext server_ctx = test_server_tls();
  static const TlsContext client_ctx = test_client_tls();
  p.client.start_tls(client_ctx);
  p.server.start_tls(server_ctx);
  error_code cec, sec;
  const bool done = run(io, [&]() -> awaitable<void> {
    std::tie(cec, sec) = co_await (p.client.handshake() && p.server.handshake());
  });
  EXPECT_TRUE(done && !cec && !sec) << "TLS handshake: " << cec.message() << " / " << sec.message();
  return p;
}

}  // namespace ntp::test
