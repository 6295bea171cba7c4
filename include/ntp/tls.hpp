// TLS 1.3 for control and data connections (OpenSSL 3): the contexts both daemons
// use, the server's self-signed certificate, fingerprints and kTLS detection.
//
// Streams use OpenSSL over the socket itself (a socket BIO, non-blocking, driven by
// Asio readiness waits; see stream.hpp) rather than asio::ssl::stream: that is what
// lets the kernel take over the record layer (kTLS) where it can, and it keeps an
// idle TLS connection small (asio::ssl::stream holds two 17 KiB buffers each).
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ntp {

struct ServerTls;
struct ClientTls;

class TlsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What OpenSSL's error queue says (the oldest error's reason), and clears it.
std::string openssl_error_text();

// "SHA256:" + 64 lowercase hex digits of the DER certificate: the one form ntp
// prints and accepts.
std::string fingerprint(X509* cert);
// The accepted form: "SHA256:" then 64 hex digits (either case).
bool valid_fingerprint(std::string_view s);
bool fingerprints_equal(std::string_view a, std::string_view b);  // ignores hex case

// A fresh P-256 key and a self-signed certificate for it (CN=ntp-server), as PEM.
struct SelfSigned {
  std::string key_pem, cert_pem;
};
SelfSigned generate_self_signed();

// Whether the kernel offers kTLS (the "tls" upper-layer protocol is loaded);
// nullopt when /proc/sys cannot be read (e.g. systemd's ProcSubset=pid). Only a
// hint: each connection asks the kernel itself (Stream::ktls()).
std::optional<bool> ktls_available();

class TlsContext {
 public:
  // Loads the certificate chain and key (PEM); with `client_ca`, clients must
  // present a certificate signed by it. Throws TlsError naming the file.
  static TlsContext server(const std::string& cert_file, const std::string& key_file,
                           const std::string& client_ca_file);
  // The same from a key pair in memory (a generated one).
  static TlsContext server(const SelfSigned& pair, const std::string& client_ca_file);
  // `server_host` is checked against the certificate when `cfg.ca` is set.
  static TlsContext client(const ClientTls& cfg, std::string server_host);

  SSL_CTX* native() const { return ctx_.get(); }
  bool is_server() const { return server_; }
  // Client: name to send as SNI and, with a CA, to verify; empty for IP literals.
  const std::string& server_host() const { return host_; }
  bool verify_host() const { return verify_host_; }
  // The context's own certificate (server: what clients can pin).
  std::string own_fingerprint() const;

 private:
  struct Free {
    void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
  };
  explicit TlsContext(bool server);
  void require_client_certificates(const std::string& client_ca_file);

  std::unique_ptr<SSL_CTX, Free> ctx_;
  bool server_ = false;
  std::string host_;
  bool verify_host_ = false;
};

}  // namespace ntp
