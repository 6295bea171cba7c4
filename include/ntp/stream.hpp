// Stream: one connection between the daemons (control or data), plain TCP or TLS
// 1.3 over it. Frames and the splice go through it; user and local-app sockets are
// plain Streams.
//
// TLS runs OpenSSL directly on the non-blocking socket and waits for readiness with
// Asio (tls.hpp says why). One coroutine may read while another writes, as with a
// socket; closing the socket (socket().close(), e.g. by a SocketSet) ends both.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <optional>
#include <string>
#include <tuple>

#include "ntp/asio.hpp"
#include "ntp/tls.hpp"

namespace ntp {

// TLS failures as error_codes; message() is OpenSSL's reason.
const boost::system::error_category& tls_category();

class Stream {
 public:
  explicit Stream(tcp::socket s);  // plain
  // TLS with `ctx` (server or client side, as the context is); handshake() next.
  Stream(tcp::socket s, const TlsContext& ctx);
  Stream(Stream&&) noexcept = default;
  Stream& operator=(Stream&&) noexcept = default;
  ~Stream() = default;

  tcp::socket& socket() { return socket_; }
  const tcp::socket& socket() const { return socket_; }
  bool tls() const { return ssl_ != nullptr; }

  // Turns a plain stream into TLS before any byte is read (the server decides
  // after peeking at the first byte).
  void start_tls(const TlsContext& ctx);
  awaitable<error_code> handshake();  // plain: nothing to do
  // Why the last TLS operation failed, in words ("certificate verify failed: ...").
  const std::string& tls_failure() const { return failure_; }

  // Non-blocking: copies bytes that are already there, or fails with would_block;
  // then wait_readable(). eof after the peer's close_notify (TLS) or FIN (plain).
  std::size_t read_now(asio::mutable_buffer b, error_code& ec);
  awaitable<error_code> wait_readable();
  // Bytes this stream has read from its socket but not handed out yet.
  bool has_buffered() const { return ahead_pos_ < ahead_end_; }
  // The same, counting bytes OpenSSL has decrypted and not handed out.
  bool has_pending() const { return has_buffered() || (ssl_ && SSL_pending(ssl_.get()) > 0); }
  awaitable<std::tuple<error_code, std::size_t>> read_some(asio::mutable_buffer b);
  awaitable<error_code> read_exact(asio::mutable_buffer b);
  awaitable<error_code> write_all(asio::const_buffer b);
  // The same; `written` gets how many bytes went into the socket (for TLS, record
  // bytes) before an error: 0 means none can have reached the peer.
  awaitable<error_code> write_all(asio::const_buffer b, std::size_t& written);
  // An idle connection the peer has said nothing on: nothing readable, no end,
  // no error. One that fails this is not worth writing to.
  bool quiet();
  // Half-close: no more bytes from us (TLS close_notify, then the TCP FIN); the
  // peer may go on sending.
  awaitable<void> shutdown_send();
  // Ends the connection at once, abortively: a TLS peer sees no close_notify, so it
  // cannot take the end for a complete stream.
  void close();
  // Ends it at once as an orderly end: close_notify first (sent without waiting).
  void close_orderly();

  // RFC 9266 tls-exporter (32 bytes, hex); empty for a plain stream. Both ends of
  // one TLS session get the same value; a man in the middle has two sessions.
  // nullopt when a TLS session cannot give one (no finished handshake): the
  // login must fail then, never go on with an empty binding.
  std::optional<std::string> channel_binding() const;
  std::string peer_fingerprint() const;  // "SHA256:..."; empty without a certificate
  bool ktls() const;                     // the kernel carries the records both ways
  std::string describe() const;          // "plain TCP", "TLS 1.3 (...), buffered copy"

 private:
  struct Free {
    void operator()(SSL* s) const { SSL_free(s); }
  };
  error_code failure(int ssl_result);
  awaitable<error_code> wait_for(int ssl_error);

  // Plain streams read frames through a small read-ahead, so a frame costs one
  // recv, not two. Bytes read past the frames (a user's first bytes behind
  // `start`) go to whoever reads next. read_now frees it once drained, so a
  // spliced stream holds none of it. TLS needs none: OpenSSL reads ahead itself.
  static constexpr std::size_t kReadAhead = 512;
  std::size_t take_ahead(asio::mutable_buffer b);
  awaitable<error_code> fill_ahead();

  tcp::socket socket_;
  std::unique_ptr<SSL, Free> ssl_;
  std::unique_ptr<char[]> ahead_;
  std::size_t ahead_pos_ = 0, ahead_end_ = 0;
  std::string failure_;
  bool want_write_ = false;    // the last read needs the socket writable first
  bool read_blocked_ = false;  // the last read stopped for want of more bytes
};

// The frame functions in frame.hpp and message.hpp read and write through these.
inline awaitable<error_code> read_exact(Stream& s, asio::mutable_buffer b) {
  return s.read_exact(b);
}
inline awaitable<error_code> write_all(Stream& s, asio::const_buffer b) {
  return s.write_all(b);
}
inline awaitable<std::tuple<error_code, std::size_t>> read_some(Stream& s, asio::mutable_buffer b) {
  return s.read_some(b);
}

}  // namespace ntp
