#include "ntp/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <stdexcept>
#include <string>
#include <vector>

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

std::string hmac_hex(std::string_view key, std::initializer_list<std::string_view> parts) {
  std::string msg;
  for (auto p : parts) {
    if (!msg.empty()) msg += '\n';
    msg += p;
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), md.data(), &len);
  OPENSSL_cleanse(msg.data(), msg.size());
  return to_hex(md.data(), len);
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
