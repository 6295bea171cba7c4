// Protocol v1 framing: the magic/version prefix, then 4-byte big-endian length + body.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

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

// Reads the prefix byte by byte as the peer sends it, so garbage is refused at its
// first wrong byte instead of after a full read. `version` gets the peer's version.
awaitable<error_code> read_prefix(tcp::socket& s, std::uint8_t& version);

std::array<unsigned char, 4> frame_header(std::size_t body_size);

// Reads exactly one frame into `body` (capacity reused between calls).
template <class Stream>
awaitable<error_code> read_frame(Stream& s, std::string& body) {
  std::array<unsigned char, 4> hdr{};
  auto [ec, n] = co_await asio::async_read(s, asio::buffer(hdr), nothrow);
  if (ec) co_return ec;
  std::size_t len = (std::size_t{hdr[0]} << 24) | (std::size_t{hdr[1]} << 16) |
                    (std::size_t{hdr[2]} << 8) | std::size_t{hdr[3]};
  if (len > kMaxFrame) co_return make_error_code(ProtocolError::frame_too_large);
  body.resize(len);
  auto [ec2, m] = co_await asio::async_read(s, asio::buffer(body), nothrow);
  co_return ec2;
}

template <class Stream>
awaitable<error_code> write_frame(Stream& s, std::string_view body) {
  if (body.size() > kMaxFrame) co_return make_error_code(ProtocolError::frame_too_large);
  auto hdr = frame_header(body.size());
  std::array<asio::const_buffer, 2> bufs{asio::buffer(hdr), asio::buffer(body)};
  auto [ec, n] = co_await asio::async_write(s, bufs, nothrow);
  co_return ec;
}

}  // namespace ntp

template <>
struct boost::system::is_error_code_enum<ntp::ProtocolError> : std::true_type {};
