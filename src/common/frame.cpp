#include "ntp/frame.hpp"

#include <algorithm>

namespace ntp {
namespace {

class ProtocolCategory : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "ntp"; }
  std::string message(int ev) const override {
    switch (static_cast<ProtocolError>(ev)) {
      case ProtocolError::bad_magic:
        return "not an ntp client (bad magic)";
      case ProtocolError::bad_version:
        return "unsupported protocol version";
      case ProtocolError::frame_too_large:
        return "frame larger than 64 KiB";
      case ProtocolError::bad_message:
        return "malformed message";
      case ProtocolError::unexpected_message:
        return "unexpected message";
    }
    return "unknown protocol error";
  }
};

}  // namespace

const boost::system::error_category& protocol_category() {
  static const ProtocolCategory category;
  return category;
}

std::array<char, kPrefixSize> client_prefix() {
  std::array<char, kPrefixSize> p{};
  std::copy(kMagic.begin(), kMagic.end(), p.begin());
  p[kMagic.size()] = static_cast<char>(kProtocolVersion);
  return p;
}

PrefixState check_prefix(std::span<const char> seen) {
  auto n = std::min(seen.size(), kMagic.size());
  if (!std::equal(seen.begin(), seen.begin() + static_cast<std::ptrdiff_t>(n), kMagic.begin()))
    return PrefixState::bad_magic;
  if (seen.size() < kPrefixSize) return PrefixState::incomplete;
  return static_cast<std::uint8_t>(seen[kMagic.size()]) == kProtocolVersion
             ? PrefixState::ok
             : PrefixState::bad_version;
}

std::array<unsigned char, 4> frame_header(std::size_t n) {
  return {static_cast<unsigned char>(n >> 24), static_cast<unsigned char>(n >> 16),
          static_cast<unsigned char>(n >> 8), static_cast<unsigned char>(n)};
}

std::string frame_bytes(std::string_view body) {
  const auto hdr = frame_header(body.size());
  std::string frame;
  frame.reserve(hdr.size() + body.size());
  frame.append(hdr.begin(), hdr.end());
  frame.append(body);
  return frame;
}

}  // namespace ntp
