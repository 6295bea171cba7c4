#include "ntp/tls.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>
#include <sstream>

#include "ntp/auth.hpp"
#include "ntp/config.hpp"

namespace ntp {
namespace {

template <class T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using CertPtr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;

[[noreturn]] void fail(const std::string& what) {
  throw TlsError(what + ": " + openssl_error_text());
}

std::string bio_text(BIO* b) {
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

// OpenSSL's own messages for unreadable files are "system lib"; say which file.
void require_readable(const std::string& file, const std::string& what) {
  std::ifstream in(file);
  if (!in) throw TlsError(what + " " + file + ": cannot be read");
}

// TLS 1.3 only: the login proofs are bound to it with the tls-exporter (RFC 9266).
void common_setup(SSL_CTX* ctx) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  // AES-128-GCM first: as safe here and the fastest with AES-NI.
  SSL_CTX_set_ciphersuites(
      ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
  // Partial writes: one record at a time, so a writer can wait for the socket.
  // Released buffers: an idle connection holds no record buffers.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  // Asks for kTLS; OpenSSL falls back to its own record layer when the kernel has none.
  SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  // Read what the socket has in one go, not a record header and body apart.
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);  // several records a read
}

}  // namespace

std::string openssl_error_text() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown TLS error";
  const char* reason = ERR_reason_error_string(e);
  return reason ? reason : "TLS error " + std::to_string(e);
}

std::string fingerprint(X509* cert) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned n = 0;
  if (!cert || X509_digest(cert, EVP_sha256(), md.data(), &n) != 1) return {};
  return "SHA256:" + to_hex(md.data(), n);
}

bool valid_fingerprint(std::string_view s) {
  constexpr std::string_view prefix = "SHA256:";
  if (s.size() != prefix.size() + 64 || s.substr(0, prefix.size()) != prefix) return false;
  return std::all_of(s.begin() + prefix.size(), s.end(),
                     [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

bool fingerprints_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

SelfSigned generate_self_signed() {
  KeyPtr key(EVP_EC_gen("P-256"));
  if (!key) fail("cannot generate a key");
  CertPtr cert(X509_new());
  if (!cert) fail("cannot create a certificate");
  std::array<unsigned char, 16> serial{};
  if (RAND_bytes(serial.data(), serial.size()) != 1) fail("no entropy for a serial number");
  serial[0] &= 0x7f;  // a positive INTEGER
  BIGNUM* bn = BN_bin2bn(serial.data(), serial.size(), nullptr);
  bool ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get())) != nullptr;
  BN_free(bn);
  ok = ok && X509_set_version(cert.get(), X509_VERSION_3) == 1;
  // An hour of slack for clocks that lag; ten years, as nothing renews it.
  ok = ok && X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr;
  ok = ok && X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 365 * 24 * 3600) != nullptr;
  X509_NAME* name = X509_get_subject_name(cert.get());
  ok = ok && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                        reinterpret_cast<const unsigned char*>("ntp-server"), -1,
                                        -1, 0) == 1;
  ok = ok && X509_set_issuer_name(cert.get(), name) == 1;
  ok = ok && X509_set_pubkey(cert.get(), key.get()) == 1;
  ok = ok && X509_sign(cert.get(), key.get(), EVP_sha256()) > 0;
  if (!ok) fail("cannot build the self-signed certificate");

  BioPtr kb(BIO_new(BIO_s_mem())), cb(BIO_new(BIO_s_mem()));
  if (!kb || !cb ||
      PEM_write_bio_PrivateKey(kb.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1 ||
      PEM_write_bio_X509(cb.get(), cert.get()) != 1)
    fail("cannot encode the certificate");
  return {bio_text(kb.get()), bio_text(cb.get())};
}

std::optional<bool> ktls_available() {
  std::ifstream in("/proc/sys/net/ipv4/tcp_available_ulp");
  if (!in) return std::nullopt;
  std::string ulp;
  while (in >> ulp)
    if (ulp == "tls") return true;
  return false;
}

TlsContext::TlsContext(bool server)
    : ctx_(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method())), server_(server) {
  if (!ctx_) fail("cannot create a TLS context");
  common_setup(ctx_.get());
}

TlsContext TlsContext::server(const std::string& cert_file, const std::string& key_file,
                              const std::string& client_ca_file) {
  TlsContext t(true);
  SSL_CTX* ctx = t.native();
  SSL_CTX_set_num_tickets(ctx, 0);  // no resumption: every connection proves itself afresh
  require_readable(cert_file, "tls.cert");
  require_readable(key_file, "tls.key");
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1)
    fail("tls.cert " + cert_file);
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    fail("tls.key " + key_file);
  if (SSL_CTX_check_private_key(ctx) != 1)
    fail("tls.key " + key_file + " does not match tls.cert " + cert_file);
  t.require_client_certificates(client_ca_file);
  return t;
}

TlsContext TlsContext::server(const SelfSigned& pair, const std::string& client_ca_file) {
  TlsContext t(true);
  SSL_CTX* ctx = t.native();
  SSL_CTX_set_num_tickets(ctx, 0);
  BioPtr kb(BIO_new_mem_buf(pair.key_pem.data(), static_cast<int>(pair.key_pem.size())));
  BioPtr cb(BIO_new_mem_buf(pair.cert_pem.data(), static_cast<int>(pair.cert_pem.size())));
  KeyPtr key(kb ? PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr) : nullptr);
  CertPtr cert(cb ? PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key || !cert || SSL_CTX_use_certificate(ctx, cert.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1)
    fail("cannot use the key pair");
  t.require_client_certificates(client_ca_file);
  return t;
}

void TlsContext::require_client_certificates(const std::string& client_ca_file) {
  if (client_ca_file.empty()) return;
  require_readable(client_ca_file, "tls.client_ca");
  if (SSL_CTX_load_verify_locations(ctx_.get(), client_ca_file.c_str(), nullptr) != 1)
    fail("tls.client_ca " + client_ca_file);
  SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
}

TlsContext TlsContext::client(const ClientTls& cfg, std::string server_host) {
  TlsContext t(false);
  SSL_CTX* ctx = t.native();
  // Without a CA the certificate itself is not checked: the login proofs, bound to
  // this TLS session, are what authenticate the server (and a pin, if set).
  if (!cfg.ca.empty()) {
    require_readable(cfg.ca, "tls.ca");
    if (SSL_CTX_load_verify_locations(ctx, cfg.ca.c_str(), nullptr) != 1) fail("tls.ca " + cfg.ca);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    t.verify_host_ = true;
  }
  if (!cfg.cert.empty()) {
    require_readable(cfg.cert, "tls.cert");
    require_readable(cfg.key, "tls.key");
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg.cert.c_str()) != 1)
      fail("tls.cert " + cfg.cert);
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg.key.c_str(), SSL_FILETYPE_PEM) != 1)
      fail("tls.key " + cfg.key);
    if (SSL_CTX_check_private_key(ctx) != 1)
      fail("tls.key " + cfg.key + " does not match tls.cert " + cfg.cert);
  }
  t.host_ = std::move(server_host);
  return t;
}

std::string TlsContext::own_fingerprint() const {
  return fingerprint(SSL_CTX_get0_certificate(ctx_.get()));
}

}  // namespace ntp
