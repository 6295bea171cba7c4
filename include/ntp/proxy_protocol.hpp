// The PROXY protocol header (HAProxy's specification, versions 1 and 2) that
// tells a local app the user's real address: the client writes it before the
// user's first byte (tcp), or before each datagram (udp, version 2 only).
#pragma once

#include <string>

#include "ntp/asio.hpp"
#include "ntp/config.hpp"

namespace ntp {

enum class Transport { stream, datagram };

// The header for a user at `user` who reached the remote port at `remote`.
// v1 is text ("PROXY TCP4 198.51.100.9 203.0.113.1 40112 6022\r\n"), v2 binary;
// IPv4-mapped IPv6 addresses are written as IPv4, and a mix of families as
// IPv6. Without both addresses (nullopt) the header says so (v1 "UNKNOWN", v2
// LOCAL), which the app reads as "no address given".
std::string proxy_header(ProxyProtocol version, Transport transport,
                         const std::optional<asio::ip::address>& user_address,
                         std::uint16_t user_port,
                         const std::optional<asio::ip::address>& remote_address,
                         std::uint16_t remote_port);

// "198.51.100.9:40112" or "[2001:db8::1]:40112" (as `start` carries them) into
// an address and port; nullopt for anything else.
std::optional<std::pair<asio::ip::address, std::uint16_t>> parse_address_port(
    const std::string& text);

}  // namespace ntp
