// Login and data-connection proofs: HMAC-SHA256 over fresh nonces and sequence
// numbers (docs/protocol.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace ntp {

inline constexpr std::size_t kNonceBytes = 32;
// A generated token (the server's, and `ntp-server --gen-token`): 192 random
// bits, 48 hex characters.
inline constexpr std::size_t kGeneratedTokenBytes = 24;

// Lowercase hex of `n` bytes.
std::string to_hex(const unsigned char* p, std::size_t n);

// Cryptographically random bytes, hex-encoded (OpenSSL RAND_bytes).
std::string random_hex(std::size_t bytes);

// Hex HMAC-SHA256 of the parts joined by '\n'.
std::string hmac_hex(std::string_view key, std::initializer_list<std::string_view> parts);

// Constant time in the length of the inputs, so a proof check leaks nothing.
bool proof_equal(std::string_view a, std::string_view b);

// The proofs of one login; every field is derived from the token, both nonces and
// the channel binding: the TLS session's tls-exporter value (RFC 9266), empty over
// plain TCP. A man in the middle who terminates TLS has a different session on
// each side, so neither side's proof verifies on the other.
struct LoginProofs {
  std::string client;    // the client shows it knows the token
  std::string server;    // the server shows it knows the token
  std::string data_key;  // keys this session's data connections
};
LoginProofs login_proofs(std::string_view token, std::string_view group,
                         std::string_view client_nonce, std::string_view server_nonce,
                         std::string_view binding);

struct DataProofs {
  std::string client;
  std::string server;
};
// A data connection proves itself in its first message, without waiting for a
// challenge: its `seq`, unique within the session and checked by the server
// (ReplayWindow), is what a challenge's nonce would be.
DataProofs data_proofs(std::string_view data_key, std::string_view session, std::uint64_t seq,
                       std::string_view binding);

}  // namespace ntp
