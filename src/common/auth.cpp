#include "ntp/auth.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <array>
#include <stdexcept>
#include <string>
#include <vector>

#include "ntp/tls.hpp"

namespace ntp {

std::string to_hex(const unsigned char* p, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(n * 2, '\0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 0xf];
  }
  return out;
}

std::string random_hex(std::size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  // Without entropy nothing about the protocol is safe: refusing is the only answer.
  if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1)
    throw std::runtime_error("RAND_bytes failed: no entropy");
  return to_hex(buf.data(), buf.size());
}

namespace {

// HMAC-SHA256, fetched once per thread and re-keyed per use: OpenSSL 3's one-shot
// HMAC() looks the algorithms up on every call, which cost more than the hashing
// (each data connection takes two proofs on either side).
class HmacSha256 {
 public:
  HmacSha256() {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (mac) ctx_ = EVP_MAC_CTX_new(mac);  // holds its own reference to `mac`
    EVP_MAC_free(mac);
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                 OSSL_PARAM_END};
    if (ctx_ && EVP_MAC_CTX_set_params(ctx_, params) != 1) {
      EVP_MAC_CTX_free(ctx_);
      ctx_ = nullptr;
    }
  }
  HmacSha256(const HmacSha256&) = delete;
  HmacSha256& operator=(const HmacSha256&) = delete;
  ~HmacSha256() { EVP_MAC_CTX_free(ctx_); }

  std::array<unsigned char, 32> operator()(std::string_view key,
                                           std::initializer_list<std::string_view> parts) {
    // A null key pointer would make OpenSSL keep the previous key.
    static const unsigned char kNoKey[1] = {0};
    const auto* k = key.empty() ? kNoKey : reinterpret_cast<const unsigned char*>(key.data());
    bool ok = ctx_ && EVP_MAC_init(ctx_, k, key.size(), nullptr) == 1;
    bool first = true;
    for (auto p : parts) {
      if (!first) ok = ok && EVP_MAC_update(ctx_, reinterpret_cast<const unsigned char*>("\n"), 1);
      first = false;
      ok = ok && EVP_MAC_update(ctx_, reinterpret_cast<const unsigned char*>(p.data()), p.size());
    }
    std::array<unsigned char, 32> md{};
    std::size_t len = 0;
    ok = ok && EVP_MAC_final(ctx_, md.data(), &len, md.size()) == 1 && len == md.size();
    // Without HMAC no proof can be made or checked: refusing is the only answer.
    if (!ok) throw std::runtime_error("HMAC-SHA256 failed: " + openssl_error_text());
    return md;
  }

 private:
  EVP_MAC_CTX* ctx_ = nullptr;
};

}  // namespace

std::string hmac_hex(std::string_view key, std::initializer_list<std::string_view> parts) {
  thread_local HmacSha256 hmac;
  const auto md = hmac(key, parts);
  return to_hex(md.data(), md.size());
}

bool proof_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

LoginProofs login_proofs(std::string_view token, std::string_view group,
                         std::string_view client_nonce, std::string_view server_nonce,
                         std::string_view binding) {
  return {hmac_hex(token, {"ntp1 client", group, client_nonce, server_nonce, binding}),
          hmac_hex(token, {"ntp1 server", group, client_nonce, server_nonce, binding}),
          hmac_hex(token, {"ntp1 data key", group, client_nonce, server_nonce, binding})};
}

DataProofs data_proofs(std::string_view data_key, std::string_view session, std::uint64_t seq,
                       std::string_view binding) {
  const auto n = std::to_string(seq);
  return {hmac_hex(data_key, {"ntp1 data", session, n, binding}),
          hmac_hex(data_key, {"ntp1 data ok", session, n, binding})};
}

}  // namespace ntp
