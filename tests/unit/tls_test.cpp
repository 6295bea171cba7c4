#include "ntp/tls.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "../support/tls_support.hpp"
#include "ntp/stream.hpp"

namespace ntp {
namespace {

using namespace test;

TEST(Fingerprint, TheOneFormPrintedAndAccepted) {
  const auto fp = test_server_tls().own_fingerprint();
  ASSERT_EQ(fp.size(), 7u + 64u) << fp;
  EXPECT_EQ(fp.substr(0, 7), "SHA256:");
  EXPECT_TRUE(std::all_of(fp.begin() + 7, fp.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  })) << fp;
  EXPECT_TRUE(valid_fingerprint(fp));
  EXPECT_FALSE(valid_fingerprint(fp.substr(7)));
  EXPECT_FALSE(valid_fingerprint(fp + "0"));
  EXPECT_FALSE(valid_fingerprint("SHA1:" + fp.substr(7)));
  std::string upper = fp;
  for (std::size_t i = 7; i < upper.size(); ++i)
    upper[i] = static_cast<char>(std::toupper(upper[i]));
  EXPECT_TRUE(valid_fingerprint(upper));
  EXPECT_TRUE(fingerprints_equal(fp, upper));
  std::string other = fp;
  other.back() = other.back() == '0' ? '1' : '0';
  EXPECT_FALSE(fingerprints_equal(fp, other));
}

TEST(SelfSigned, EachCallMakesANewKeyPair) {
  auto a = generate_self_signed(), b = generate_self_signed();
  EXPECT_NE(a.key_pem, b.key_pem);
  EXPECT_NE(TlsContext::server(a, "").own_fingerprint(),
            TlsContext::server(b, "").own_fingerprint());
  EXPECT_NE(a.key_pem.find("PRIVATE KEY"), std::string::npos);
  EXPECT_NE(a.cert_pem.find("BEGIN CERTIFICATE"), std::string::npos);
}

TEST(TlsContext, MissingFilesAreNamed) {
  try {
    TlsContext::server("/nonexistent/cert.pem", "/nonexistent/key.pem", "");
    FAIL() << "no error";
  } catch (const TlsError& e) {
    EXPECT_STREQ(e.what(), "tls.cert /nonexistent/cert.pem: cannot be read");
  }
}

// Both ends of one TLS connection derive the same tls-exporter value; another
// connection (as a man in the middle would have) derives another.
TEST(Stream, ChannelBindingIsPerSession) {
  asio::io_context io;
  auto one = stream_pair(io, true);
  auto two = stream_pair(io, true);
  const auto b1 = one.client.channel_binding();
  ASSERT_TRUE(b1);
  EXPECT_EQ(b1->size(), 64u);
  EXPECT_EQ(b1, one.server.channel_binding());
  EXPECT_NE(b1, two.client.channel_binding());
  auto plain = stream_pair(io, false);
  EXPECT_EQ(plain.client.channel_binding(), "");
}

// A TLS session that gives no exporter value (its handshake never finished)
// gives no binding at all, not an empty one that both sides could agree on.
TEST(Stream, NoChannelBindingBeforeTheHandshake) {
  asio::io_context io;
  auto pair = stream_pair(io, false);
  auto ctx = TlsContext::client(ClientTls{}, "");
  pair.client.start_tls(ctx);
  EXPECT_EQ(pair.client.channel_binding(), std::nullopt);
}

TEST(Stream, PeerFingerprintIsTheServersCertificate) {
  asio::io_context io;
  auto p = stream_pair(io, true);
  EXPECT_EQ(p.client.peer_fingerprint(), test_server_tls().own_fingerprint());
  EXPECT_EQ(p.server.peer_fingerprint(), "");  // no client certificate
}

TEST(Stream, DescribesItsPath) {
  asio::io_context io;
  auto tls = stream_pair(io, true);
  const auto d = tls.client.describe();
  EXPECT_EQ(d.rfind("TLSv1.3 ", 0), 0u) << d;
  // This machine's kernel has no kTLS (no "tls" ULP): the buffered path is used.
  if (ktls_available() == false) {
    EXPECT_FALSE(tls.client.ktls());
    EXPECT_NE(d.find("buffered copy (no kTLS)"), std::string::npos) << d;
  }
  auto plain = stream_pair(io, false);
  EXPECT_EQ(plain.client.describe(), "plain TCP");
}

// Never hand OpenSSL a closed descriptor number (it could be reused by then).
TEST(Stream, ReadsOnAClosedTlsStreamFailWithoutTouchingTheDescriptor) {
  asio::io_context io;
  auto p = stream_pair(io, true);
  p.client.close();
  error_code ec;
  std::array<char, 16> buf{};
  p.client.read_now(asio::buffer(buf), ec);
  EXPECT_EQ(ec, asio::error::bad_descriptor);
  error_code wec;
  ASSERT_TRUE(
      run(io, [&]() -> awaitable<void> { wec = co_await p.client.write_all(asio::buffer(buf)); }));
  EXPECT_EQ(wec, asio::error::bad_descriptor);
}

}  // namespace
}  // namespace ntp
