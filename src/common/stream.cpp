#include "ntp/stream.hpp"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "ntp/auth.hpp"

namespace ntp {
namespace {

class TlsCategory : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "tls"; }
  std::string message(int ev) const override {
    const char* reason = ERR_reason_error_string(static_cast<unsigned long>(ev));
    return reason ? reason : "TLS error " + std::to_string(ev);
  }
};

bool is_ip_literal(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

const boost::system::error_category& tls_category() {
  static const TlsCategory category;
  return category;
}

Stream::Stream(tcp::socket s) : socket_(std::move(s)) {
  error_code ignored;  // a closed socket stays closed; its reads fail
  // Asio remembers the mode: a socket it already made non-blocking costs no ioctl.
  if (!socket_.non_blocking()) socket_.non_blocking(true, ignored);
}

Stream::Stream(tcp::socket s, const TlsContext& ctx) : Stream(std::move(s)) {
  start_tls(ctx);
}

void Stream::start_tls(const TlsContext& ctx) {
  error_code ignored;  // a client's socket is opened after construction: set it now
  if (!socket_.non_blocking()) socket_.non_blocking(true, ignored);
  ssl_.reset(SSL_new(ctx.native()));
  if (!ssl_) throw TlsError("cannot create a TLS connection: " + openssl_error_text());
  SSL_set_fd(ssl_.get(), socket_.native_handle());
  if (ctx.is_server()) {
    SSL_set_accept_state(ssl_.get());
    return;
  }
  SSL_set_connect_state(ssl_.get());
  const auto& host = ctx.server_host();
  if (host.empty()) return;
  const bool ip = is_ip_literal(host);
  if (!ip) SSL_set_tlsext_host_name(ssl_.get(), host.c_str());
  if (ctx.verify_host()) {
    if (ip)
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_.get()), host.c_str());
    else
      SSL_set1_host(ssl_.get(), host.c_str());
  }
}

error_code Stream::failure(int ssl_result) {
  const int e = SSL_get_error(ssl_.get(), ssl_result);
  if (e == SSL_ERROR_ZERO_RETURN) {
    ERR_clear_error();
    return asio::error::eof;
  }
  if (e == SSL_ERROR_SYSCALL) {
    const int err = errno;
    ERR_clear_error();
    // No TLS close_notify before the TCP connection ended: not a clean end.
    return err ? error_code(err, asio::error::get_system_category())
               : error_code(asio::error::connection_reset);
  }
  const unsigned long packed = ERR_peek_error();
  failure_ = openssl_error_text();
  if (const long v = SSL_get_verify_result(ssl_.get()); v != X509_V_OK)
    failure_ += std::string(": ") + X509_verify_cert_error_string(v);
  // OpenSSL 3 packs library and reason in 31 bits; keep them as the error value.
  return {static_cast<int>(packed & 0x7fffffffUL), tls_category()};
}

awaitable<error_code> Stream::wait_for(int ssl_error) {
  auto what = ssl_error == SSL_ERROR_WANT_WRITE ? tcp::socket::wait_write : tcp::socket::wait_read;
  auto [ec] = co_await socket_.async_wait(what, nothrow);
  co_return ec;
}

awaitable<error_code> Stream::handshake() {
  if (!ssl_) co_return error_code{};
  for (;;) {
    if (!socket_.is_open()) co_return asio::error::bad_descriptor;
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl_.get());
    if (r == 1) co_return error_code{};
    const int e = SSL_get_error(ssl_.get(), r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) co_return failure(r);
    if (auto ec = co_await wait_for(e)) co_return ec;
  }
}

std::size_t Stream::take_ahead(asio::mutable_buffer b) {
  const std::size_t n = std::min(b.size(), ahead_end_ - ahead_pos_);
  if (n == 0) return 0;
  std::memcpy(b.data(), ahead_.get() + ahead_pos_, n);
  ahead_pos_ += n;
  return n;
}

awaitable<error_code> Stream::fill_ahead() {
  if (!ahead_) ahead_ = std::make_unique_for_overwrite<char[]>(kReadAhead);
  auto [ec, n] = co_await socket_.async_read_some(asio::buffer(ahead_.get(), kReadAhead), nothrow);
  // On an error, touch nothing: a stream closed while a read waits may be gone.
  if (ec) co_return ec;
  ahead_pos_ = 0;
  ahead_end_ = n;
  co_return ec;
}

std::size_t Stream::read_now(asio::mutable_buffer b, error_code& ec) {
  if (!ssl_) {
    if (!has_buffered()) {
      ahead_.reset();
      return socket_.read_some(b, ec);
    }
    ec = {};
    return take_ahead(b);
  }
  want_write_ = false;
  read_blocked_ = false;
  // Never hand OpenSSL a descriptor number that was closed: it may be reused.
  if (!socket_.is_open()) {
    ec = asio::error::bad_descriptor;
    return 0;
  }
  ERR_clear_error();
  std::size_t n = 0;
  const int r = SSL_read_ex(ssl_.get(), b.data(), b.size(), &n);
  if (r == 1) {
    ec = {};
    return n;
  }
  const int e = SSL_get_error(ssl_.get(), r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    want_write_ = e == SSL_ERROR_WANT_WRITE;
    read_blocked_ = e == SSL_ERROR_WANT_READ;
    ec = asio::error::would_block;
    return 0;
  }
  ec = failure(r);
  return 0;
}

awaitable<error_code> Stream::wait_readable() {
  if (has_buffered()) co_return error_code{};
  // Bytes OpenSSL holds are worth a read only if the last read did not stop for
  // want of more: after WANT_READ they are a partial record, and returning at
  // once would spin without ever letting the loop run.
  if (ssl_ && !want_write_ && !read_blocked_ && SSL_has_pending(ssl_.get())) co_return error_code{};
  co_return co_await wait_for(want_write_ ? SSL_ERROR_WANT_WRITE : SSL_ERROR_WANT_READ);
}

awaitable<std::tuple<error_code, std::size_t>> Stream::read_some(asio::mutable_buffer b) {
  if (!ssl_) {
    if (!has_buffered()) {
      if (b.size() >= kReadAhead) co_return co_await socket_.async_read_some(b, nothrow);
      if (auto ec = co_await fill_ahead()) co_return std::tuple{ec, std::size_t{0}};
    }
    co_return std::tuple{error_code{}, take_ahead(b)};
  }
  for (;;) {
    error_code ec;
    const std::size_t n = read_now(b, ec);
    if (ec != asio::error::would_block) co_return std::tuple{ec, n};
    if (auto wec = co_await wait_readable()) co_return std::tuple{wec, std::size_t{0}};
  }
}

awaitable<error_code> Stream::read_exact(asio::mutable_buffer b) {
  if (!ssl_) {
    b += take_ahead(b);
    if (b.size() >= kReadAhead) {
      auto [ec, n] = co_await asio::async_read(socket_, b, nothrow);
      co_return ec;
    }
    while (b.size() > 0) {
      if (auto ec = co_await fill_ahead()) co_return ec;
      b += take_ahead(b);
    }
    co_return error_code{};
  }
  while (b.size() > 0) {
    auto [ec, n] = co_await read_some(b);
    if (ec) co_return ec;
    b += n;
  }
  co_return error_code{};
}

awaitable<error_code> Stream::write_all(asio::const_buffer b) {
  std::size_t ignored = 0;
  co_return co_await write_all(b, ignored);
}

awaitable<error_code> Stream::write_all(asio::const_buffer b, std::size_t& written) {
  written = 0;
  if (!ssl_) {
    auto [ec, n] = co_await asio::async_write(socket_, b, nothrow);
    written = n;
    co_return ec;
  }
  const auto sent_before = BIO_number_written(SSL_get_wbio(ssl_.get()));
  while (b.size() > 0) {
    if (!socket_.is_open()) co_return asio::error::bad_descriptor;
    ERR_clear_error();
    std::size_t n = 0;
    const int r = SSL_write_ex(ssl_.get(), b.data(), b.size(), &n);
    // What reached the socket, in record bytes: OpenSSL may have sent some records
    // of a write it then reports as failed.
    written = BIO_number_written(SSL_get_wbio(ssl_.get())) - sent_before;
    if (r == 1) {
      b += n;
      continue;
    }
    const int e = SSL_get_error(ssl_.get(), r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) co_return failure(r);
    if (auto ec = co_await wait_for(e)) co_return ec;
  }
  co_return error_code{};
}

bool Stream::quiet() {
  if (!socket_.is_open() || has_pending()) return false;
  pollfd p{socket_.native_handle(), POLLIN | POLLRDHUP, 0};
  return ::poll(&p, 1, 0) == 0;
}

awaitable<void> Stream::shutdown_send() {
  error_code ignored;  // the peer may be gone already: nothing left to tell it
  if (ssl_) {
    for (;;) {
      if (!socket_.is_open()) co_return;
      ERR_clear_error();
      const int r = SSL_shutdown(ssl_.get());
      if (r >= 0) break;  // close_notify sent (0: the peer's is still to come)
      const int e = SSL_get_error(ssl_.get(), r);
      ERR_clear_error();
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) co_return;
      if (co_await wait_for(e)) co_return;
    }
  }
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
}

void Stream::close() {
  error_code ignored;  // closing twice is harmless
  socket_.close(ignored);
}

void Stream::close_orderly() {
  if (ssl_ && socket_.is_open() && SSL_is_init_finished(ssl_.get())) {
    ERR_clear_error();
    SSL_shutdown(ssl_.get());  // non-blocking: sent if the socket has room
    ERR_clear_error();
  }
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  close();
}

std::optional<std::string> Stream::channel_binding() const {
  if (!ssl_) return std::string();
  static constexpr char kLabel[] = "EXPORTER-Channel-Binding";
  std::array<unsigned char, 32> out{};
  if (!SSL_is_init_finished(ssl_.get()) ||
      SSL_export_keying_material(ssl_.get(), out.data(), out.size(), kLabel, sizeof kLabel - 1,
                                 nullptr, 0, 0) != 1) {
    ERR_clear_error();
    return std::nullopt;
  }
  return to_hex(out.data(), out.size());
}

std::string Stream::peer_fingerprint() const {
  if (!ssl_) return {};
  X509* cert = SSL_get0_peer_certificate(ssl_.get());
  return cert ? fingerprint(cert) : std::string{};
}

bool Stream::ktls() const {
  if (!ssl_) return false;
  return BIO_get_ktls_send(SSL_get_wbio(ssl_.get())) && BIO_get_ktls_recv(SSL_get_rbio(ssl_.get()));
}

std::string Stream::describe() const {
  if (!ssl_) return "plain TCP";
  return std::string(SSL_get_version(ssl_.get())) + " " + SSL_get_cipher_name(ssl_.get()) +
         (ktls() ? ", kTLS" : ", buffered copy (no kTLS)");
}

}  // namespace ntp
