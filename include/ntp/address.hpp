// Addresses ("host:port", "[v6]:port", "name:port") and remote-port ranges.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ntp/asio.hpp"

namespace ntp {

struct HostPort {
  std::string host;  // IPv4, IPv6 (without brackets) or a DNS name
  std::uint16_t port = 0;

  std::string str() const;  // brackets an IPv6 host again
  bool operator==(const HostPort&) const = default;
};

// nullopt when `text` is not host:port with a port in 0..65535.
std::optional<HostPort> parse_host_port(std::string_view text);

struct PortRange {
  std::uint16_t first = 0;
  std::uint16_t last = 0;
  bool contains(std::uint16_t p) const { return p >= first && p <= last; }
  bool operator==(const PortRange&) const = default;
};

// "6022" or "6000-6999", ports 1..65535, first <= last.
std::optional<PortRange> parse_port_range(std::string_view text);

// An empty list means "no restriction" to callers; this only answers membership.
bool ports_contain(const std::vector<PortRange>& ranges, std::uint16_t port);

std::string to_string(const tcp::endpoint& ep);

}  // namespace ntp
