#include "ntp/proxy_protocol.hpp"

#include <gtest/gtest.h>

namespace ntp {
namespace {

asio::ip::address ip(const char* text) {
  return asio::ip::make_address(text);
}

std::string bytes(std::initializer_list<int> b) {
  std::string out;
  for (int c : b) out += static_cast<char>(c);
  return out;
}

const std::string kSignature =
    bytes({0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a});

TEST(ProxyProtocol, V1Text) {
  EXPECT_EQ(proxy_header(ProxyProtocol::v1, Transport::stream, ip("198.51.100.9"), 40112,
                         ip("203.0.113.1"), 6022),
            "PROXY TCP4 198.51.100.9 203.0.113.1 40112 6022\r\n");
  EXPECT_EQ(proxy_header(ProxyProtocol::v1, Transport::stream, ip("2001:db8::9"), 40112,
                         ip("2001:db8::1"), 6022),
            "PROXY TCP6 2001:db8::9 2001:db8::1 40112 6022\r\n");
  // A dual-stack listener sees IPv4 users as IPv4-mapped: written as IPv4.
  EXPECT_EQ(proxy_header(ProxyProtocol::v1, Transport::stream, ip("::ffff:198.51.100.9"), 1,
                         ip("::ffff:203.0.113.1"), 2),
            "PROXY TCP4 198.51.100.9 203.0.113.1 1 2\r\n");
  // Families that differ are both written as IPv6.
  EXPECT_EQ(proxy_header(ProxyProtocol::v1, Transport::stream, ip("198.51.100.9"), 1,
                         ip("2001:db8::1"), 2),
            "PROXY TCP6 ::ffff:198.51.100.9 2001:db8::1 1 2\r\n");
  EXPECT_EQ(proxy_header(ProxyProtocol::v1, Transport::stream, std::nullopt, 0, std::nullopt, 0),
            "PROXY UNKNOWN\r\n");
}

TEST(ProxyProtocol, V2BinaryIpv4Tcp) {
  EXPECT_EQ(proxy_header(ProxyProtocol::v2, Transport::stream, ip("198.51.100.9"), 40112,
                         ip("203.0.113.1"), 6022),
            kSignature + bytes({0x21, 0x11, 0x00, 0x0c,  // v2 PROXY, TCP over IPv4, 12 bytes
                                198, 51, 100, 9, 203, 0, 113, 1,  // source, destination
                                0x9c, 0xb0, 0x17, 0x86}));        // 40112, 6022
}

TEST(ProxyProtocol, V2BinaryIpv6Udp) {
  const auto h = proxy_header(ProxyProtocol::v2, Transport::datagram, ip("2001:db8::9"), 53,
                              ip("2001:db8::1"), 6053);
  ASSERT_EQ(h.size(), 16u + 36u);
  EXPECT_EQ(h.substr(0, 12), kSignature);
  EXPECT_EQ(h.substr(12, 4), bytes({0x21, 0x22, 0x00, 0x24}));  // UDP over IPv6, 36 bytes
  EXPECT_EQ(h.substr(16, 16), bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9}));
  EXPECT_EQ(h.substr(32, 16), bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}));
  EXPECT_EQ(h.substr(48), bytes({0x00, 0x35, 0x17, 0xa5}));
}

TEST(ProxyProtocol, V2WithoutAddressesIsLocal) {
  EXPECT_EQ(proxy_header(ProxyProtocol::v2, Transport::stream, std::nullopt, 0, std::nullopt, 0),
            kSignature + bytes({0x20, 0x00, 0x00, 0x00}));
}

TEST(ProxyProtocol, NoneIsNothing) {
  EXPECT_EQ(
      proxy_header(ProxyProtocol::none, Transport::stream, ip("192.0.2.1"), 1, ip("192.0.2.2"), 2),
      "");
}

TEST(ProxyProtocol, AddressesAsStartCarriesThem) {
  auto v4 = parse_address_port("198.51.100.9:40112");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->first, ip("198.51.100.9"));
  EXPECT_EQ(v4->second, 40112);
  auto v6 = parse_address_port("[2001:db8::1]:6022");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->first, ip("2001:db8::1"));
  EXPECT_FALSE(parse_address_port("example.com:80")) << "a name is not an address";
  EXPECT_FALSE(parse_address_port(""));
}

}  // namespace
}  // namespace ntp
