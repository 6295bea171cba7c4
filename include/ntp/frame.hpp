// Protocol v1 framing: the magic/version prefix, then 4-byte big-endian length + body.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <tuple>

#include "ntp/asio.hpp"

namespace ntp {

inline constexpr std::uint8_t kProtocolVersion = 1;
inline constexpr std::array<char, 4> kMagic{'N', 'T', 'P', 'T'};
inline constexpr std::size_t kPrefixSize = kMagic.size() + 1;
inline constexpr std::size_t kMaxFrame = 64 * 1024;
inline constexpr auto kHandshakeTimeout = std::chrono::seconds(5);

// Errors of the ntp protocol itself, as error_codes so they flow like socket errors.
enum class ProtocolError {
  bad_magic = 1,      // the peer does not speak ntp
  bad_version,        // right magic, another protocol version
  frame_too_large,    // length above kMaxFrame
  bad_message,        // not a JSON object with a known "type"
  unexpected_message  // a valid message in the wrong place
};
const boost::system::error_category& protocol_category();
inline error_code make_error_code(ProtocolError e) {
  return {static_cast<int>(e), protocol_category()};
}

std::array<char, kPrefixSize> client_prefix();

// Checks the first bytes seen on the bind port as they arrive.
enum class PrefixState { incomplete, ok, bad_magic, bad_version };
PrefixState check_prefix(std::span<const char> seen);

std::array<unsigned char, 4> frame_header(std::size_t body_size);
// Header and body in one string (the caller has checked kMaxFrame).
std::string frame_bytes(std::string_view body);

// The byte I/O the frame functions use, for any Asio stream (a tcp::socket in tests).
// ntp::Stream (stream.hpp) has its own overloads, found by argument-dependent lookup.
template <class S>
awaitable<error_code> read_exact(S& s, asio::mutable_buffer b) {
  auto [ec, n] = co_await asio::async_read(s, b, nothrow);
  co_return ec;
}
template <class S>
awaitable<error_code> write_all(S& s, asio::const_buffer b) {
  auto [ec, n] = co_await asio::async_write(s, b, nothrow);
  co_return ec;
}
template <class S>
awaitable<std::tuple<error_code, std::size_t>> read_some(S& s, asio::mutable_buffer b) {
  co_return co_await s.async_read_some(b, nothrow);
}

// Reads the prefix as the peer sends it, never past it, so garbage is refused at
// its first wrong byte instead of after a full read. `version` gets the peer's.
template <class S>
awaitable<error_code> read_prefix(S& s, std::uint8_t& version) {
  std::array<char, kPrefixSize> seen{};
  std::size_t have = 0;
  while (have < kPrefixSize) {
    auto [ec, n] = co_await read_some(s, asio::buffer(seen.data() + have, kPrefixSize - have));
    if (ec) co_return ec;
    have += n;
    switch (check_prefix({seen.data(), have})) {
      case PrefixState::bad_magic:
        co_return make_error_code(ProtocolError::bad_magic);
      case PrefixState::bad_version:
        version = static_cast<std::uint8_t>(seen[kMagic.size()]);
        co_return make_error_code(ProtocolError::bad_version);
      case PrefixState::ok:
        version = kProtocolVersion;
        co_return error_code{};
      case PrefixState::incomplete:
        break;
    }
  }
  co_return error_code{};
}

// Reads exactly one frame into `body` (capacity reused between calls).
template <class Stream>
awaitable<error_code> read_frame(Stream& s, std::string& body) {
  std::array<unsigned char, 4> hdr{};
  if (auto ec = co_await read_exact(s, asio::buffer(hdr))) co_return ec;
  std::size_t len = (std::size_t{hdr[0]} << 24) | (std::size_t{hdr[1]} << 16) |
                    (std::size_t{hdr[2]} << 8) | std::size_t{hdr[3]};
  if (len > kMaxFrame) co_return make_error_code(ProtocolError::frame_too_large);
  body.resize(len);
  co_return co_await read_exact(s, asio::buffer(body));
}

template <class Stream>
awaitable<error_code> write_frame(Stream& s, std::string_view body) {
  if (body.size() > kMaxFrame) co_return make_error_code(ProtocolError::frame_too_large);
  // One buffer, so TLS sends one record and a plain socket one segment.
  const auto frame = frame_bytes(body);
  co_return co_await write_all(s, asio::buffer(frame));
}

}  // namespace ntp

template <>
struct boost::system::is_error_code_enum<ntp::ProtocolError> : std::true_type {};
