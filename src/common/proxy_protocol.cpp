#include "ntp/proxy_protocol.hpp"

#include <fmt/format.h>

#include <array>

#include "ntp/address.hpp"

namespace ntp {
namespace {

constexpr std::array<unsigned char, 12> kSignature = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                                      0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

asio::ip::address unmapped(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  return a;
}

asio::ip::address_v6 as_v6(const asio::ip::address& a) {
  return a.is_v6() ? a.to_v6() : asio::ip::make_address_v6(asio::ip::v4_mapped, a.to_v4());
}

void put16(std::string& out, std::uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v & 0xff);
}

template <class Bytes>
void put(std::string& out, const Bytes& b) {
  out.append(reinterpret_cast<const char*>(b.data()), b.size());
}

}  // namespace

std::string proxy_header(ProxyProtocol version, Transport transport,
                         const std::optional<asio::ip::address>& user_address,
                         std::uint16_t user_port,
                         const std::optional<asio::ip::address>& remote_address,
                         std::uint16_t remote_port) {
  if (version == ProxyProtocol::none) return {};
  const bool known = user_address && remote_address;
  auto src = known ? unmapped(*user_address) : asio::ip::address{};
  auto dst = known ? unmapped(*remote_address) : asio::ip::address{};
  const bool v4 = known && src.is_v4() && dst.is_v4();
  if (version == ProxyProtocol::v1) {
    if (!known || transport != Transport::stream) return "PROXY UNKNOWN\r\n";
    if (v4)
      return fmt::format("PROXY TCP4 {} {} {} {}\r\n", src.to_string(), dst.to_string(), user_port,
                         remote_port);
    return fmt::format("PROXY TCP6 {} {} {} {}\r\n", as_v6(src).to_string(), as_v6(dst).to_string(),
                       user_port, remote_port);
  }
  std::string out;
  put(out, kSignature);
  if (!known) {
    out += static_cast<char>(0x20);  // version 2, LOCAL: no address follows
    out += static_cast<char>(0x00);
    put16(out, 0);
    return out;
  }
  out += static_cast<char>(0x21);  // version 2, PROXY
  const unsigned char proto = transport == Transport::stream ? 0x1 : 0x2;
  out += static_cast<char>((v4 ? 0x10 : 0x20) | proto);
  put16(out, v4 ? 12 : 36);
  if (v4) {
    put(out, src.to_v4().to_bytes());
    put(out, dst.to_v4().to_bytes());
  } else {
    put(out, as_v6(src).to_bytes());
    put(out, as_v6(dst).to_bytes());
  }
  put16(out, user_port);
  put16(out, remote_port);
  return out;
}

std::optional<std::pair<asio::ip::address, std::uint16_t>> parse_address_port(
    const std::string& text) {
  auto hp = parse_host_port(text);
  if (!hp) return std::nullopt;
  error_code ec;
  auto a = asio::ip::make_address(hp->host, ec);
  if (ec) return std::nullopt;
  return std::pair{a, hp->port};
}

}  // namespace ntp
