#include "ntp/address.hpp"

#include <gtest/gtest.h>

namespace ntp {
namespace {

TEST(Address, ParsesHostPortForms) {
  EXPECT_EQ(parse_host_port("127.0.0.1:22"), (HostPort{"127.0.0.1", 22}));
  EXPECT_EQ(parse_host_port("tunnel.example.com:7000"), (HostPort{"tunnel.example.com", 7000}));
  EXPECT_EQ(parse_host_port("[::1]:6022"), (HostPort{"::1", 6022}));
  EXPECT_EQ(parse_host_port("0.0.0.0:0"), (HostPort{"0.0.0.0", 0}));
}

TEST(Address, RejectsMalformed) {
  for (const char* bad : {"22", ":22", "host:", "host:65536", "host:-1", "host:22x", "::1:22",
                          "[::1]22", "[nothex]:22", "ho st:22", "[::1]:"})
    EXPECT_FALSE(parse_host_port(bad)) << bad;
}

TEST(Address, PrintsIpv6WithBrackets) {
  EXPECT_EQ((HostPort{"::1", 7000}).str(), "[::1]:7000");
  EXPECT_EQ((HostPort{"10.0.0.1", 7000}).str(), "10.0.0.1:7000");
  EXPECT_EQ(to_string(tcp::endpoint(asio::ip::make_address("::ffff:127.0.0.1"), 5)), "127.0.0.1:5");
}

TEST(PortRange, ParsesSinglePortsAndRanges) {
  EXPECT_EQ(parse_port_range("6022"), (PortRange{6022, 6022}));
  EXPECT_EQ(parse_port_range("6000-6999"), (PortRange{6000, 6999}));
  for (const char* bad : {"", "0", "7000-6000", "6000-", "-6000", "a-b", "65536", "1-70000"})
    EXPECT_FALSE(parse_port_range(bad)) << bad;
}

TEST(PortRange, Membership) {
  std::vector<PortRange> r{{6000, 6099}, {7000, 7000}};
  EXPECT_TRUE(ports_contain(r, 6000));
  EXPECT_TRUE(ports_contain(r, 6099));
  EXPECT_TRUE(ports_contain(r, 7000));
  EXPECT_FALSE(ports_contain(r, 6100));
  EXPECT_FALSE(ports_contain({}, 6000));
}

}  // namespace
}  // namespace ntp
