#include "ntp/address.hpp"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

namespace ntp {
namespace {

std::optional<std::uint16_t> parse_port(std::string_view s) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  unsigned v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

bool valid_dns_or_ipv4(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  return std::all_of(h.begin(), h.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
  });
}

}  // namespace

std::string HostPort::str() const {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

std::optional<HostPort> parse_host_port(std::string_view text) {
  std::string_view host, port;
  if (text.starts_with('[')) {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::nullopt;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    error_code ec;
    asio::ip::make_address_v6(std::string(host), ec);
    if (ec) return std::nullopt;
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (!valid_dns_or_ipv4(host)) return std::nullopt;  // also rejects bare IPv6
  }
  auto p = parse_port(port);
  if (!p) return std::nullopt;
  return HostPort{std::string(host), *p};
}

std::optional<PortRange> parse_port_range(std::string_view text) {
  auto dash = text.find('-');
  auto first = parse_port(text.substr(0, dash));
  auto last = dash == std::string_view::npos ? first : parse_port(text.substr(dash + 1));
  if (!first || !last || *first == 0 || *first > *last) return std::nullopt;
  return PortRange{*first, *last};
}

bool ports_contain(const std::vector<PortRange>& ranges, std::uint16_t port) {
  return std::any_of(ranges.begin(), ranges.end(),
                     [port](const PortRange& r) { return r.contains(port); });
}

std::string to_string(const tcp::endpoint& ep) {
  auto a = ep.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    a = asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  if (a.is_v6()) return fmt::format("[{}]:{}", a.to_string(), ep.port());
  return fmt::format("{}:{}", a.to_string(), ep.port());
}

}  // namespace ntp
