#include "ntp/config.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ntp/auth.hpp"

namespace ntp {
namespace {

using Problems = std::vector<std::string>;

Problems server_problems(std::string_view text) {
  try {
    parse_server_config(text, "server.json");
  } catch (const ConfigError& e) {
    return e.problems();
  }
  return {};
}

Problems client_problems(std::string_view text,
                         const std::optional<std::string>& env = std::nullopt) {
  try {
    parse_client_config(text, "apps.json", env);
  } catch (const ConfigError& e) {
    return e.problems();
  }
  return {};
}

// An apps.json that is valid but for `apps`.
std::string with_apps(const std::string& apps) {
  return R"({"group":"home","token":"t-0123456789abcdef","apps":)" + apps + "}";
}

// `"text"`; appended piecewise (GCC 12 at -O3 misreports "lit" + std::string as an overflow).
std::string in_quotes(std::string_view text) {
  std::string out = "\"";
  out += text;
  out += '"';
  return out;
}

const std::string kApp = R"({"name":"ssh","local":"127.0.0.1:22","remote_port":6022})";

// A directory of its own under the system temp dir, removed afterwards.
class TempDir {
 public:
  TempDir() : path_(std::filesystem::temp_directory_path() / ("ntp-test-" + random_hex(8))) {
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::filesystem::path write(const std::string& name, const std::string& content) const {
    auto p = path_ / name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// ---------------------------------------------------------------- names

TEST(ValidName, Rules) {
  EXPECT_TRUE(valid_name("home"));
  EXPECT_TRUE(valid_name("A-Z_a.z-0.9"));
  EXPECT_TRUE(valid_name(std::string(64, 'x')));
  EXPECT_FALSE(valid_name(std::string(65, 'x')));
  EXPECT_FALSE(valid_name(""));
  for (const char* bad : {"my app", "a/b", "a:b", "ü", "a\n", "a\"b", "a@b"})
    EXPECT_FALSE(valid_name(bad)) << bad;
}

// ---------------------------------------------------------------- server.json

TEST(ServerConfig, DefaultsWhenKeysAreAbsent) {
  auto cfg = parse_server_config("{}", "server.json");
  EXPECT_EQ(cfg.bind, (HostPort{"0.0.0.0", 7000}));
  EXPECT_FALSE(cfg.token);
  EXPECT_EQ(cfg.proxy_bind_addr, "0.0.0.0");
  EXPECT_TRUE(cfg.allow_ports.empty());
  EXPECT_FALSE(cfg.groups);
  EXPECT_EQ(cfg.heartbeat_timeout_s, 30);
  EXPECT_EQ(cfg.max_handshakes, 256u);
  EXPECT_EQ(cfg.max_handshakes_per_source, 16u);
  EXPECT_EQ(cfg.max_waiting_users, 256u);
  EXPECT_EQ(cfg.limits_for("anyone").max_apps, kDefaultMaxApps) << "max_apps is never unlimited";
  EXPECT_EQ(cfg.log_level, spdlog::level::info);
}

TEST(ServerConfig, TheDesignExampleParses) {
  auto cfg = parse_server_config(R"({
    "bind": "0.0.0.0:7000",
    "token": "change-me-to-a-long-random-token",
    "proxy_bind_addr": "0.0.0.0",
    "allow_ports": ["6000-6999"],
    "groups": {
      "home":   { "token": "home-9f2c4e7a1b6d8035",   "allow_ports": ["6000-6099"], "max_apps": 10 },
      "office": { "token": "office-5e1a9d3c7b2f4068" }
    },
    "heartbeat_timeout_s": 30,
    "log_level": "info"
  })",
                                 "server.json");
  EXPECT_EQ(cfg.token, "change-me-to-a-long-random-token");
  EXPECT_EQ(cfg.allow_ports, (std::vector<PortRange>{{6000, 6999}}));
  ASSERT_TRUE(cfg.groups);
  ASSERT_EQ(cfg.groups->size(), 2u);
  auto& home = cfg.groups->at("home");
  EXPECT_EQ(home.token, "home-9f2c4e7a1b6d8035");
  EXPECT_EQ(home.allow_ports, (std::vector<PortRange>{{6000, 6099}}));
  EXPECT_EQ(home.max_apps, 10u);
  auto& office = cfg.groups->at("office");
  EXPECT_EQ(office.token, "office-5e1a9d3c7b2f4068");
  EXPECT_TRUE(office.allow_ports.empty());
  EXPECT_FALSE(office.max_apps);
}

TEST(ServerConfig, Values) {
  auto cfg = parse_server_config(
      R"({"bind":"[::1]:7100","proxy_bind_addr":"::","heartbeat_timeout_s":5,"log_level":"debug",
          "allow_ports":["6022","7000-7010"],"groups":{}})",
      "server.json");
  EXPECT_EQ(cfg.bind, (HostPort{"::1", 7100}));
  EXPECT_EQ(cfg.proxy_bind_addr, "::");
  EXPECT_EQ(cfg.heartbeat_timeout_s, 5);
  EXPECT_EQ(cfg.log_level, spdlog::level::debug);
  EXPECT_EQ(cfg.allow_ports, (std::vector<PortRange>{{6022, 6022}, {7000, 7010}}));
  ASSERT_TRUE(cfg.groups);  // present but empty: ready-groups mode with no group
  EXPECT_TRUE(cfg.groups->empty());
}

TEST(ServerConfig, InvalidJson) {
  auto p = server_problems(R"({"bind": })");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_TRUE(p[0].starts_with("server.json: invalid JSON: parse error at line 1, column 10"))
      << p[0];
  p = server_problems("{\n  \"bind\": \"0.0.0.0:7000\",\n}\n");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_TRUE(p[0].starts_with("server.json: invalid JSON: parse error at line 3")) << p[0];
  p = server_problems("");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_TRUE(p[0].starts_with("server.json: invalid JSON: parse error")) << p[0];
}

TEST(ServerConfig, TopLevelMustBeAnObject) {
  EXPECT_EQ(server_problems("[1,2]"),
            Problems{"server.json: (top level): expected a JSON object, got [1,2]"});
  EXPECT_EQ(server_problems("\"x\""),
            Problems{"server.json: (top level): expected a JSON object, got \"x\""});
}

TEST(ServerConfig, UnknownTopLevelKey) {
  EXPECT_EQ(
      server_problems(R"({"bnid":"0.0.0.0:7000"})"),
      Problems{
          "server.json: bnid: expected one of the keys allow_ports, bind, group_defaults, groups, "
          "heartbeat_timeout_s, log_level, max_groups, max_handshakes, max_handshakes_per_source, "
          "max_waiting_users, proxy_bind_addr, tls, "
          "token, zero_copy, got "
          "an unknown key"});
}

TEST(ServerConfig, Bind) {
  EXPECT_EQ(server_problems(R"({"bind":"0.0.0.0"})"),
            Problems{R"(server.json: bind: expected "host:port", got "0.0.0.0")"});
  EXPECT_EQ(server_problems(R"({"bind":"0.0.0.0:70000"})"),
            Problems{R"(server.json: bind: expected "host:port", got "0.0.0.0:70000")"});
  EXPECT_EQ(server_problems(R"({"bind":7000})"),
            Problems{"server.json: bind: expected a string, got 7000"});
}

TEST(ServerConfig, Token) {
  EXPECT_EQ(server_problems(R"({"token":""})"),
            Problems{R"(server.json: token: expected a non-empty string, got "")"});
  EXPECT_EQ(server_problems(R"({"token":123})"),
            Problems{"server.json: token: expected a string, got 123"});
}

TEST(ServerConfig, ProxyBindAddr) {
  EXPECT_EQ(server_problems(R"({"proxy_bind_addr":"localhost"})"),
            Problems{"server.json: proxy_bind_addr: expected an IP address such as \"0.0.0.0\" or "
                     "\"::\", got \"localhost\""});
  EXPECT_EQ(server_problems(R"({"proxy_bind_addr":null})"),
            Problems{"server.json: proxy_bind_addr: expected a string, got null"});
}

TEST(ServerConfig, AllowPorts) {
  EXPECT_EQ(server_problems(R"({"allow_ports":"6000-6999"})"),
            Problems{"server.json: allow_ports: expected an array of strings like \"6022\" or "
                     "\"6000-6999\", got \"6000-6999\""});
  const std::string want = "expected a port \"6022\" or a range \"6000-6999\" within 1-65535, got ";
  EXPECT_EQ(server_problems(R"({"allow_ports":["0","7000-6000",6022,"70000","6000-6999"]})"),
            (Problems{"server.json: allow_ports[0]: " + want + "\"0\"",
                      "server.json: allow_ports[1]: " + want + "\"7000-6000\"",
                      "server.json: allow_ports[2]: " + want + "6022",
                      "server.json: allow_ports[3]: " + want + "\"70000\""}));
}

TEST(ServerConfig, PerSourceHandshakesAndWaitingUsers) {
  EXPECT_EQ(server_problems(R"({"max_handshakes_per_source":0})"),
            Problems{"server.json: max_handshakes_per_source: expected an integer from 1 to 10000, "
                     "got 0"});
  EXPECT_EQ(server_problems(R"({"max_waiting_users":"5"})"),
            Problems{"server.json: max_waiting_users: expected an integer from 1 to 100000, "
                     "got \"5\""});
  auto cfg = parse_server_config(R"({"max_handshakes_per_source":4,"max_waiting_users":9})", "s");
  EXPECT_EQ(cfg.max_handshakes_per_source, 4u);
  EXPECT_EQ(cfg.max_waiting_users, 9u);
}

// A group's own max_apps, else group_defaults', else the default: never unlimited.
TEST(ServerConfig, MaxAppsDefaultsTo256) {
  auto cfg = parse_server_config(
      R"({"group_defaults":{"max_conns":5},"groups":{"a":{"token":"a-0123456789abcdef"},
          "b":{"token":"b-0123456789abcdef","max_apps":3}}})",
      "s");
  EXPECT_EQ(cfg.limits_for("a").max_apps, 256u);
  EXPECT_EQ(cfg.limits_for("b").max_apps, 3u);
  EXPECT_EQ(
      parse_server_config(R"({"group_defaults":{"max_apps":7}})", "s").limits_for("x").max_apps,
      7u);
}

// The token floor: a group's token shorter than 16 characters is an error that
// names its path and length, never the token.
TEST(ServerConfig, AGroupTokenShorterThan16IsAnError) {
  EXPECT_EQ(server_problems(R"({"groups":{"home":{"token":"hunter2"}}})"),
            Problems{"server.json: groups.home.token: expected at least 16 characters "
                     "(ntp-server --gen-token makes one), got 7"});
  EXPECT_EQ(parse_server_config(R"({"groups":{"home":{"token":"0123456789abcdef"}}})", "s")
                .groups->at("home")
                .token,
            "0123456789abcdef");
  // The server-wide token is only checked where it is used (main: --token and
  // NTP_TOKEN win over it; with groups it is ignored), not by the parser.
  EXPECT_EQ(parse_server_config(R"({"token":"short"})", "s").token, "short");
}

TEST(ServerConfig, MaxHandshakes) {
  const std::string want = "server.json: max_handshakes: expected an integer from 1 to 10000, got ";
  EXPECT_EQ(server_problems(R"({"max_handshakes":0})"), Problems{want + "0"});
  EXPECT_EQ(server_problems(R"({"max_handshakes":10001})"), Problems{want + "10001"});
  EXPECT_EQ(server_problems(R"({"max_handshakes":"64"})"), Problems{want + "\"64\""});
  EXPECT_EQ(parse_server_config(R"({"max_handshakes":64})", "s").max_handshakes, 64u);
}

// zero_copy: splice(2) between plain streams, on unless set to false.
TEST(ServerConfig, ZeroCopy) {
  EXPECT_TRUE(parse_server_config("{}", "s").zero_copy);
  EXPECT_FALSE(parse_server_config(R"({"zero_copy": false})", "s").zero_copy);
  EXPECT_TRUE(parse_server_config(R"({"zero_copy": true})", "s").zero_copy);
  EXPECT_EQ(server_problems(R"({"zero_copy": "no"})"),
            Problems{R"(server.json: zero_copy: expected true or false, got "no")"});
  EXPECT_EQ(server_problems(R"({"zero_copy": 0})"),
            Problems{"server.json: zero_copy: expected true or false, got 0"});
}

TEST(ServerConfig, HeartbeatTimeout) {
  const std::string want =
      "server.json: heartbeat_timeout_s: expected an integer from 1 to 3600, got ";
  EXPECT_EQ(server_problems(R"({"heartbeat_timeout_s":0})"), Problems{want + "0"});
  EXPECT_EQ(server_problems(R"({"heartbeat_timeout_s":3601})"), Problems{want + "3601"});
  EXPECT_EQ(server_problems(R"({"heartbeat_timeout_s":-5})"), Problems{want + "-5"});
  EXPECT_EQ(server_problems(R"({"heartbeat_timeout_s":1.5})"), Problems{want + "1.5"});
  EXPECT_EQ(server_problems(R"({"heartbeat_timeout_s":"30"})"), Problems{want + "\"30\""});
  EXPECT_EQ(server_problems(R"({"heartbeat_timeout_s":18446744073709551615})"),
            Problems{want + "18446744073709551615"});
  EXPECT_EQ(parse_server_config(R"({"heartbeat_timeout_s":1})", "s").heartbeat_timeout_s, 1);
  EXPECT_EQ(parse_server_config(R"({"heartbeat_timeout_s":3600})", "s").heartbeat_timeout_s, 3600);
}

TEST(ServerConfig, LogLevel) {
  EXPECT_EQ(server_problems(R"({"log_level":"verbose"})"),
            Problems{"server.json: log_level: expected one of trace, debug, info, warn, error, "
                     "critical, off, got \"verbose\""});
  EXPECT_EQ(server_problems(R"({"log_level":2})"),
            Problems{"server.json: log_level: expected a string, got 2"});
  EXPECT_EQ(parse_server_config(R"({"log_level":"off"})", "s").log_level, spdlog::level::off);
}

TEST(ServerConfig, GroupsMustBeAnObject) {
  EXPECT_EQ(server_problems(R"({"groups":[]})"),
            Problems{"server.json: groups: expected an object of group name to settings, got []"});
}

TEST(ServerConfig, GroupEntries) {
  EXPECT_EQ(server_problems(R"({"groups":{"home":"secret"}})"),
            Problems{R"(server.json: groups.home: expected an object with "token", got "secret")"});
  EXPECT_EQ(server_problems(R"({"groups":{"home":{}}})"),
            Problems{"server.json: groups.home.token: expected a token (required for each group), "
                     "got nothing"});
  EXPECT_EQ(server_problems(R"({"groups":{"home":{"token":""}}})"),
            Problems{R"(server.json: groups.home.token: expected a non-empty string, got "")"});
  EXPECT_EQ(server_problems(R"({"groups":{"home":{"token":"t-0123456789abcdef","tokne":"x"}}})"),
            Problems{"server.json: groups.home.tokne: expected one of the keys allow_ports, "
                     "bandwidth, max_apps, max_conns, token, got an unknown key"});
  EXPECT_EQ(server_problems(R"({"groups":{"home":{"token":"t-0123456789abcdef","max_apps":0}}})"),
            Problems{"server.json: groups.home.max_apps: expected an integer from 1 to 65535, "
                     "got 0"});
  EXPECT_EQ(
      server_problems(R"({"groups":{"home":{"token":"t-0123456789abcdef","allow_ports":"6000"}}})"),
      Problems{"server.json: groups.home.allow_ports: expected an array of strings like "
               "\"6022\" or \"6000-6999\", got \"6000\""});
}

TEST(ServerConfig, GroupNames) {
  const std::string want =
      ": expected a group name of 1 to 64 characters from A-Z a-z 0-9 _ . -, got ";
  EXPECT_EQ(server_problems(R"({"groups":{"my home":{"token":"t-0123456789abcdef"}}})"),
            Problems{"server.json: groups.my home" + want + "\"my home\""});
  const std::string long_name(65, 'g');
  EXPECT_EQ(
      server_problems(R"({"groups":{")" + long_name + R"(":{"token":"t-0123456789abcdef"}}})"),
      Problems{"server.json: groups." + long_name + want + "\"" + long_name + "\""});
  EXPECT_EQ(server_problems(R"({"groups":{"":{"token":"t-0123456789abcdef"}}})"),
            Problems{"server.json: groups." + want + "\"\""});
}

TEST(ServerConfig, GroupAllowPortsWithinTheServerWideList) {
  EXPECT_EQ(server_problems(R"({"allow_ports":["6000-6999"],
                                "groups":{"home":{"token":"t-0123456789abcdef","allow_ports":["6000-6099","7000","6900-7100"]}}})"),
            (Problems{"server.json: groups.home.allow_ports[1]: expected ports within the "
                      "server-wide allow_ports, got \"7000\"",
                      "server.json: groups.home.allow_ports[2]: expected ports within the "
                      "server-wide allow_ports, got \"6900-7100\""}));
  // Covered by several server-wide entries together is fine.
  EXPECT_EQ(server_problems(R"({"allow_ports":["6000-6009","6010-6019"],
                                "groups":{"home":{"token":"t-0123456789abcdef","allow_ports":["6005-6015"]}}})"),
            Problems{});
  // Without a server-wide list there is nothing to lie within.
  EXPECT_EQ(server_problems(
                R"({"groups":{"home":{"token":"t-0123456789abcdef","allow_ports":["7000"]}}})"),
            Problems{});
}

// The index in the message is the entry's index in the file, also when an
// earlier entry of the same list was malformed.
TEST(ServerConfig, GroupAllowPortsIndexAfterAMalformedEntry) {
  EXPECT_EQ(server_problems(R"({"allow_ports":["6000-6999"],
                                "groups":{"home":{"token":"t-0123456789abcdef","allow_ports":["bad","7000"]}}})"),
            (Problems{"server.json: groups.home.allow_ports[0]: expected a port \"6022\" or a "
                      "range \"6000-6999\" within 1-65535, got \"bad\"",
                      "server.json: groups.home.allow_ports[1]: expected ports within the "
                      "server-wide allow_ports, got \"7000\""}));
}

TEST(ServerConfig, SeveralErrorsReportedTogether) {
  auto p = server_problems(
      R"({"bind":"x","heartbeat_timeout_s":0,"extra":1,"groups":{"home":{"token":""}}})");
  EXPECT_EQ(
      p,
      (Problems{
          "server.json: extra: expected one of the keys allow_ports, bind, group_defaults, groups, "
          "heartbeat_timeout_s, log_level, max_groups, max_handshakes, max_handshakes_per_source, "
          "max_waiting_users, proxy_bind_addr, tls, "
          "token, zero_copy, got "
          "an unknown key",
          R"(server.json: bind: expected "host:port", got "x")",
          "server.json: heartbeat_timeout_s: expected an integer from 1 to 3600, got 0",
          R"(server.json: groups.home.token: expected a non-empty string, got "")"}));
  try {
    parse_server_config(R"({"bind":"x","heartbeat_timeout_s":0})", "server.json");
    ADD_FAILURE() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "server.json: bind: expected \"host:port\", got \"x\"\n"
              "server.json: heartbeat_timeout_s: expected an integer from 1 to 3600, got 0");
  }
}

TEST(ServerConfig, LongValuesAreShortenedInMessages) {
  const std::string long_bind(100, 'b');
  EXPECT_EQ(
      server_problems(R"({"bind":")" + long_bind + "\"}"),
      Problems{"server.json: bind: expected \"host:port\", got \"" + std::string(76, 'b') + "..."});
}

// ---------------------------------------------------------------- apps.json

TEST(ClientConfig, TheDesignExampleParses) {
  auto cfg = parse_client_config(R"({
    "server": "tunnel.example.com:7000",
    "group": "home",
    "token": "home-9f2c4e7a1b6d8035",
    "heartbeat_interval_s": 10,
    "apps": [
      { "name": "ssh", "local": "127.0.0.1:22",   "remote_port": 6022 },
      { "name": "web", "local": "127.0.0.1:8080", "remote_port": 6080, "type": "tcp" }
    ]
  })",
                                 "apps.json", std::nullopt);
  EXPECT_EQ(cfg.server, (HostPort{"tunnel.example.com", 7000}));
  EXPECT_EQ(cfg.group, "home");
  EXPECT_EQ(cfg.token, "home-9f2c4e7a1b6d8035");
  EXPECT_EQ(cfg.heartbeat_interval_s, 10);
  ASSERT_EQ(cfg.apps.size(), 2u);
  EXPECT_EQ(cfg.apps[0].name, "ssh");
  EXPECT_EQ(cfg.apps[0].local, (HostPort{"127.0.0.1", 22}));
  EXPECT_EQ(cfg.apps[0].remote_port, 6022);
  EXPECT_EQ(cfg.apps[0].type, "tcp");
  EXPECT_EQ(cfg.apps[1].name, "web");
  EXPECT_EQ(cfg.apps[1].remote_port, 6080);
}

TEST(ClientConfig, DefaultsWhenKeysAreAbsent) {
  auto cfg = parse_client_config(with_apps("[" + kApp + "]"), "apps.json", std::nullopt);
  EXPECT_FALSE(cfg.server);  // may come from --server
  EXPECT_EQ(cfg.heartbeat_interval_s, 10);
  EXPECT_EQ(cfg.log_level, spdlog::level::info);
  ASSERT_EQ(cfg.apps.size(), 1u);
  EXPECT_EQ(cfg.apps[0].type, "tcp");
}

TEST(ClientConfig, RemotePortZeroMayRepeat) {
  auto cfg = parse_client_config(with_apps(R"([{"name":"a","local":"127.0.0.1:1","remote_port":0},
                    {"name":"b","local":"[::1]:2","remote_port":0}])"),
                                 "apps.json", std::nullopt);
  ASSERT_EQ(cfg.apps.size(), 2u);
  EXPECT_EQ(cfg.apps[1].local, (HostPort{"::1", 2}));
  EXPECT_EQ(cfg.apps[1].remote_port, 0);
}

TEST(ClientConfig, InvalidJson) {
  auto p = client_problems(R"({"group":"home",)");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_TRUE(p[0].starts_with("apps.json: invalid JSON: parse error at line 1")) << p[0];
  EXPECT_EQ(client_problems("null"),
            Problems{"apps.json: (top level): expected a JSON object, got null"});
}

TEST(ClientConfig, UnknownKeysAtEachLevel) {
  EXPECT_EQ(
      client_problems(R"({"group":"home","token":"t-0123456789abcdef","apps":[)" + kApp +
                      R"(],"sever":"x"})"),
      Problems{"apps.json: sever: expected one of the keys apps, group, "
               "heartbeat_interval_s, log_level, server, tls, token, token_file, zero_copy, got an "
               "unknown key"});
  EXPECT_EQ(
      client_problems(
          with_apps(R"([{"name":"ssh","local":"127.0.0.1:22","remote_port":6022,"remote":1}])")),
      Problems{
          "apps.json: apps[0].remote: expected one of the keys allow_cidrs, bandwidth, "
          "local, max_conns, max_flows, name, proxy_protocol, remote_port, type, udp_idle_s, got "
          "an unknown key"});
}

TEST(ClientConfig, Server) {
  EXPECT_EQ(
      client_problems(R"({"server":"tunnel","group":"home","token":"t-0123456789abcdef","apps":[)" +
                      kApp + "]}"),
      Problems{R"(apps.json: server: expected "host:port", got "tunnel")"});
  EXPECT_EQ(
      client_problems(R"({"server":["h",1],"group":"home","token":"t-0123456789abcdef","apps":[)" +
                      kApp + "]}"),
      Problems{R"(apps.json: server: expected a string, got ["h",1])"});
}

TEST(ClientConfig, Group) {
  EXPECT_EQ(client_problems(R"({"token":"t-0123456789abcdef","apps":[)" + kApp + "]}"),
            Problems{"apps.json: group: expected a group name, got nothing"});
  EXPECT_EQ(
      client_problems(R"({"group":"my home","token":"t-0123456789abcdef","apps":[)" + kApp + "]}"),
      Problems{"apps.json: group: expected a name of 1 to 64 characters from A-Z a-z 0-9 _ "
               ". -, got \"my home\""});
  EXPECT_EQ(client_problems(R"({"group":7,"token":"t-0123456789abcdef","apps":[)" + kApp + "]}"),
            Problems{"apps.json: group: expected a string, got 7"});
}

TEST(ClientConfig, ZeroCopy) {
  const auto base = R"({"group":"home","token":"t-0123456789abcdef","apps":[)" + kApp + "]";
  EXPECT_TRUE(parse_client_config(base + "}", "a", std::nullopt).zero_copy);
  EXPECT_FALSE(parse_client_config(base + R"(,"zero_copy":false})", "a", std::nullopt).zero_copy);
  EXPECT_EQ(client_problems(base + R"(,"zero_copy":null})"),
            Problems{"apps.json: zero_copy: expected true or false, got null"});
}

TEST(ClientConfig, HeartbeatIntervalAndLogLevel) {
  auto base = [](const std::string& extra) {
    return R"({"group":"home","token":"t-0123456789abcdef","apps":[)" + kApp + "]," + extra + "}";
  };
  EXPECT_EQ(client_problems(base(R"("heartbeat_interval_s":0)")),
            Problems{"apps.json: heartbeat_interval_s: expected an integer from 1 to 3600, got 0"});
  EXPECT_EQ(client_problems(base(R"("heartbeat_interval_s":"10")")),
            Problems{"apps.json: heartbeat_interval_s: expected an integer from 1 to 3600, got "
                     "\"10\""});
  EXPECT_EQ(client_problems(base(R"("log_level":"loud")")),
            Problems{"apps.json: log_level: expected one of trace, debug, info, warn, error, "
                     "critical, off, got \"loud\""});
  auto cfg = parse_client_config(base(R"("heartbeat_interval_s":3,"log_level":"warn")"), "a",
                                 std::nullopt);
  EXPECT_EQ(cfg.heartbeat_interval_s, 3);
  EXPECT_EQ(cfg.log_level, spdlog::level::warn);
}

TEST(ClientConfig, Apps) {
  EXPECT_EQ(client_problems(R"({"group":"home","token":"t-0123456789abcdef"})"),
            Problems{"apps.json: apps: expected a non-empty array of apps, got nothing"});
  EXPECT_EQ(client_problems(with_apps("[]")),
            Problems{"apps.json: apps: expected a non-empty array of apps, got []"});
  EXPECT_EQ(client_problems(with_apps(R"({"ssh":1})")),
            Problems{R"(apps.json: apps: expected a non-empty array of apps, got {"ssh":1})"});
  EXPECT_EQ(client_problems(with_apps("[" + kApp + ",5]")),
            Problems{"apps.json: apps[1]: expected an object with name, local and remote_port, "
                     "got 5"});
}

TEST(ClientConfig, AppMissingKeys) {
  EXPECT_EQ(client_problems(with_apps("[{}]")),
            (Problems{"apps.json: apps[0].name: expected an app name, got nothing",
                      R"(apps.json: apps[0].local: expected "host:port", got nothing)",
                      "apps.json: apps[0].remote_port: expected a port from 0 to 65535 (0: the "
                      "server chooses), got nothing"}));
}

TEST(ClientConfig, AppLocal) {
  // The example of DESIGN.md, word for word.
  EXPECT_EQ(
      client_problems(
          with_apps("[" + kApp + R"(,{"name":"web","local":"22","remote_port":6080}])")),
      Problems{
          R"(apps.json: apps[1].local: expected "host:port", "host:first-last" or "unix:/path", got "22")"});
  EXPECT_EQ(client_problems(with_apps(R"([{"name":"a","local":"127.0.0.1:0","remote_port":1}])")),
            Problems{"apps.json: apps[0].local: expected \"host:port\" with a port from 1 to "
                     "65535, got \"127.0.0.1:0\""});
  EXPECT_EQ(client_problems(with_apps(R"([{"name":"a","local":22,"remote_port":1}])")),
            Problems{"apps.json: apps[0].local: expected \"host:port\", got 22"});
}

TEST(ClientConfig, AppRemotePort) {
  const std::string want =
      "apps.json: apps[0].remote_port: expected an integer from 0 to 65535, got ";
  auto app = [](const std::string& port) {
    return with_apps(R"([{"name":"a","local":"127.0.0.1:1","remote_port":)" + port + "}]");
  };
  EXPECT_EQ(client_problems(app("70000")), Problems{want + "70000"});
  EXPECT_EQ(client_problems(app("65536")), Problems{want + "65536"});
  EXPECT_EQ(client_problems(app("-1")), Problems{want + "-1"});
  EXPECT_EQ(client_problems(app("\"6022\"")),
            Problems{"apps.json: apps[0].remote_port: expected a port from 0 to 65535, or a "
                     "range \"first-last\" of ports from 1 to 65535 with first <= last, got "
                     "\"6022\""});
  EXPECT_EQ(client_problems(app("6022.5")), Problems{want + "6022.5"});
  EXPECT_EQ(client_problems(app("65535")), Problems{});
}

TEST(ClientConfig, DuplicateAppNames) {
  EXPECT_EQ(client_problems(
                with_apps("[" + kApp + R"(,{"name":"web","local":"127.0.0.1:80","remote_port":6080},
                              {"name":"ssh","local":"127.0.0.1:23","remote_port":6023}])")),
            Problems{"apps.json: apps[2].name: expected a name unique within the group (apps[0] "
                     "has it too), got \"ssh\""});
}

TEST(ClientConfig, DuplicateRemotePorts) {
  EXPECT_EQ(client_problems(
                with_apps("[" + kApp + R"(,{"name":"web","local":"127.0.0.1:80","remote_port":6080},
                              {"name":"ssh2","local":"127.0.0.1:23","remote_port":6022}])")),
            Problems{"apps.json: apps[2].remote_port: expected a port no other tcp app uses "
                     "(apps[0] has it too), got 6022"});
}

TEST(ClientConfig, AppType) {
  EXPECT_EQ(client_problems(
                with_apps(R"([{"name":"a","local":"127.0.0.1:1","remote_port":1,"type":"http"}])")),
            Problems{R"(apps.json: apps[0].type: expected "tcp" or "udp", got "http")"});
  EXPECT_EQ(client_problems(
                with_apps(R"([{"name":"a","local":"127.0.0.1:1","remote_port":1,"type":1}])")),
            Problems{"apps.json: apps[0].type: expected a string, got 1"});
  auto cfg = parse_client_config(
      with_apps(R"([{"name":"a","local":"127.0.0.1:1","remote_port":1,"type":"tcp"},
                    {"name":"b","local":"127.0.0.1:53","remote_port":1,"type":"udp"}])"),
      "apps.json", std::nullopt);
  ASSERT_EQ(cfg.apps.size(), 2u) << "a tcp and a udp app may share a port number";
  EXPECT_EQ(cfg.apps[0].type, "tcp");
  EXPECT_EQ(cfg.apps[1].type, "udp");
  EXPECT_EQ(cfg.apps[1].udp_idle_s, 60u);
  EXPECT_EQ(cfg.apps[1].max_flows, 1024u);
}

TEST(ClientConfig, UdpKeys) {
  auto cfg = parse_client_config(
      with_apps(R"([{"name":"dns","local":"127.0.0.1:53","remote_port":6053,"type":"udp",
                     "udp_idle_s":5,"max_flows":10,"proxy_protocol":"v2"}])"),
      "apps.json", std::nullopt);
  ASSERT_EQ(cfg.apps.size(), 1u);
  EXPECT_EQ(cfg.apps[0].udp_idle_s, 5u);
  EXPECT_EQ(cfg.apps[0].max_flows, 10u);
  EXPECT_EQ(cfg.apps[0].proxy_protocol, ProxyProtocol::v2);
  const auto udp = [](const std::string& keys) {
    return with_apps(R"([{"name":"d","local":"127.0.0.1:53","remote_port":1,"type":"udp",)" + keys +
                     "}]");
  };
  EXPECT_EQ(client_problems(udp(R"("max_conns":5)")),
            Problems{"apps.json: apps[0].max_conns: expected no such key on a udp (it has "
                     "max_flows) app, got 5"});
  EXPECT_EQ(client_problems(udp(R"("proxy_protocol":"v1")")),
            Problems{"apps.json: apps[0].proxy_protocol: expected \"v2\" (a udp app's header "
                     "goes with each datagram, in binary), got \"v1\""});
  EXPECT_EQ(client_problems(udp(R"("udp_idle_s":0)")),
            Problems{"apps.json: apps[0].udp_idle_s: expected an integer from 1 to 86400, got 0"});
  EXPECT_EQ(client_problems(udp(R"("local":"unix:/run/x")")),
            Problems{"apps.json: apps[0].local: expected \"host:port\" (a udp app cannot live on "
                     "a Unix socket), got \"unix:/run/x\""});
  EXPECT_EQ(client_problems(
                with_apps(R"([{"name":"t","local":"127.0.0.1:1","remote_port":1,"max_flows":3}])")),
            Problems{"apps.json: apps[0].max_flows: expected no such key on a tcp app, got 3"});
}

TEST(ClientConfig, ProxyProtocol) {
  const auto app = [](const std::string& v) {
    return with_apps(R"([{"name":"w","local":"127.0.0.1:80","remote_port":1,"proxy_protocol":)" +
                     v + "}]");
  };
  EXPECT_EQ(parse_client_config(app("\"v1\""), "a", std::nullopt).apps[0].proxy_protocol,
            ProxyProtocol::v1);
  EXPECT_EQ(parse_client_config(app("\"v2\""), "a", std::nullopt).apps[0].proxy_protocol,
            ProxyProtocol::v2);
  EXPECT_EQ(parse_client_config(kApp.empty() ? "" : with_apps("[" + kApp + "]"), "a", std::nullopt)
                .apps[0]
                .proxy_protocol,
            ProxyProtocol::none);
  EXPECT_EQ(client_problems(app("\"v3\"")),
            Problems{"apps.json: apps[0].proxy_protocol: expected \"v1\" or \"v2\", got \"v3\""});
}

TEST(ClientConfig, UnixSocketLocal) {
  auto cfg = parse_client_config(
      with_apps(R"([{"name":"app","local":"unix:/run/app.sock","remote_port":6080}])"), "apps.json",
      std::nullopt);
  ASSERT_EQ(cfg.apps.size(), 1u);
  EXPECT_EQ(cfg.apps[0].unix_path, "/run/app.sock");
  EXPECT_EQ(cfg.apps[0].where(), "unix:/run/app.sock");
  EXPECT_EQ(client_problems(with_apps(R"([{"name":"a","local":"unix:run.sock","remote_port":1}])")),
            Problems{"apps.json: apps[0].local: expected \"unix:\" and an absolute path, like "
                     "\"unix:/run/app.sock\", got \"unix:run.sock\""});
}

// "remote_port": "6000-6009" with "local": "host:7000-7009": one app per port,
// NAME-6000 to NAME-6009, each reaching its own local port.
TEST(ClientConfig, PortRanges) {
  auto cfg = parse_client_config(
      with_apps(R"([{"name":"game","local":"127.0.0.1:7000-7009","remote_port":"6000-6009",
                     "type":"udp"},
                    {"name":"game-tcp","local":"[::1]:8000-8001","remote_port":"6000-6001"}])"),
      "apps.json", std::nullopt);
  ASSERT_EQ(cfg.apps.size(), 12u);
  EXPECT_EQ(cfg.apps[0].name, "game-6000");
  EXPECT_EQ(cfg.apps[0].remote_port, 6000);
  EXPECT_EQ(cfg.apps[0].local, (HostPort{"127.0.0.1", 7000}));
  EXPECT_EQ(cfg.apps[9].name, "game-6009");
  EXPECT_EQ(cfg.apps[9].local.port, 7009);
  EXPECT_EQ(cfg.apps[9].type, "udp");
  EXPECT_EQ(cfg.apps[10].name, "game-tcp-6000") << "a tcp range may reuse udp port numbers";
  EXPECT_EQ(cfg.apps[11].local, (HostPort{"::1", 8001}));
}

TEST(ClientConfig, PortRangeErrors) {
  const auto app = [](const std::string& local, const std::string& remote,
                      const std::string& name = "g") {
    return with_apps(R"([{"name":")" + name + R"(","local":")" + local + R"(","remote_port":)" +
                     remote + "}]");
  };
  EXPECT_EQ(client_problems(app("127.0.0.1:7000-7009", "\"6000-6008\"")),
            Problems{"apps.json: apps[0].local: expected a port range as long as remote_port's "
                     "(9 ports), not 10, got \"127.0.0.1:7000-7009\""});
  EXPECT_EQ(client_problems(app("127.0.0.1:7000", "\"6000-6009\"")),
            Problems{"apps.json: apps[0].local: expected a port range as long as remote_port's "
                     "(10 ports), like \"127.0.0.1:7000-7009\", got \"127.0.0.1:7000\""});
  EXPECT_EQ(client_problems(app("127.0.0.1:7000-7009", "6000")),
            Problems{"apps.json: apps[0].remote_port: expected a port range as long as local's (10 "
                     "ports), got 6000"});
  EXPECT_EQ(client_problems(app("127.0.0.1:7000-7009", "\"6009-6000\"")),
            Problems{"apps.json: apps[0].remote_port: expected a port from 0 to 65535, or a "
                     "range \"first-last\" of ports from 1 to 65535 with first <= last, got "
                     "\"6009-6000\""});
  EXPECT_EQ(client_problems(app("127.0.0.1:7009-7000", "\"6000-6009\"")),
            Problems{"apps.json: apps[0].local: expected \"host:port\", \"host:first-last\" or "
                     "\"unix:/path\", got \"127.0.0.1:7009-7000\""});
  EXPECT_EQ(client_problems(app("127.0.0.1:2000-3000", "\"6000-7000\"")),
            Problems{"apps.json: apps[0].remote_port: expected a range of at most 1000 ports, got "
                     "\"6000-7000\""});
  const std::string long_name(60, 'n');
  EXPECT_EQ(client_problems(app("127.0.0.1:7000-7001", "\"6000-6001\"", long_name)),
            Problems{"apps.json: apps[0].name: expected a name that stays within 64 characters "
                     "with \"-6000\" added, got \"" +
                     long_name + "\""});
  // A generated name may collide with an app of its own.
  EXPECT_EQ(
      client_problems(with_apps(
          R"([{"name":"g-6001","local":"127.0.0.1:1","remote_port":1},
              {"name":"g","local":"127.0.0.1:7000-7001","remote_port":"6000-6001"}])")),
      Problems{"apps.json: apps[1].name: expected a name unique within the group (apps[0] has "
               "\"g-6001\" too), got \"g\""});
  EXPECT_EQ(
      client_problems(with_apps(
          R"([{"name":"a","local":"127.0.0.1:1","remote_port":6001},
              {"name":"g","local":"127.0.0.1:7000-7001","remote_port":"6000-6001"}])")),
      Problems{"apps.json: apps[1].remote_port: expected a port no other tcp app uses (apps[0] has "
               "6001 too), got \"6000-6001\""});
}

TEST(ClientConfig, AppNames) {
  const std::string want =
      "apps.json: apps[0].name: expected a name of 1 to 64 characters from A-Z a-z 0-9 _ . -, got ";
  auto app = [](const std::string& name) {
    return with_apps(R"([{"name":)" + name + R"(,"local":"127.0.0.1:1","remote_port":1}])");
  };
  EXPECT_EQ(client_problems(app("\"my app\"")), Problems{want + "\"my app\""});
  EXPECT_EQ(client_problems(app("\"\"")), Problems{want + "\"\""});
  EXPECT_EQ(client_problems(app("\"a/b\"")), Problems{want + "\"a/b\""});
  const std::string n65(65, 'n');
  EXPECT_EQ(client_problems(app(in_quotes(n65))), Problems{want + in_quotes(n65)});
  EXPECT_EQ(client_problems(app(in_quotes(std::string(64, 'n')))), Problems{});
  // Long values are cut to 80 characters in messages.
  EXPECT_EQ(client_problems(app(in_quotes(std::string(100, 'n')))),
            Problems{want + in_quotes(std::string(76, 'n')).substr(0, 77) + "..."});
  EXPECT_EQ(client_problems(app("5")),
            Problems{"apps.json: apps[0].name: expected a string, got 5"});
}

TEST(ClientConfig, SeveralErrorsReportedTogether) {
  auto p = client_problems(
      R"({"group":"my home","extra":true,"apps":[{"name":"ssh","local":"22","remote_port":70000,"type":"http"}]})",
      "");
  EXPECT_EQ(
      p,
      (Problems{
          "apps.json: extra: expected one of the keys apps, group, heartbeat_interval_s, "
          "log_level, server, tls, token, token_file, zero_copy, got an unknown key",
          "apps.json: group: expected a name of 1 to 64 characters from A-Z a-z 0-9 _ . "
          "-, got \"my home\"",
          "apps.json: NTP_TOKEN: expected a non-empty token, got an empty value",
          R"(apps.json: apps[0].type: expected "tcp" or "udp", got "http")",
          R"(apps.json: apps[0].local: expected "host:port", "host:first-last" or "unix:/path", got "22")",
          "apps.json: apps[0].remote_port: expected an integer from 0 to 65535, got 70000"}));
}

// ---------------------------------------------------------------- the client's token

TEST(ClientToken, MissingEverywhere) {
  EXPECT_EQ(client_problems(R"({"group":"home","apps":[)" + kApp + "]}"),
            Problems{"apps.json: token: expected a token (\"token\", \"token_file\" or NTP_TOKEN), "
                     "got nothing"});
}

TEST(ClientToken, FromTheEnvironmentAlone) {
  auto cfg = parse_client_config(R"({"group":"home","apps":[)" + kApp + "]}", "apps.json",
                                 std::string("env-1f2e3d4c5b6a7980"));
  EXPECT_EQ(cfg.token, "env-1f2e3d4c5b6a7980");
}

TEST(ClientToken, EmptyEnvironmentValueIsAnError) {
  EXPECT_EQ(client_problems(with_apps("[" + kApp + "]"), ""),
            Problems{"apps.json: NTP_TOKEN: expected a non-empty token, got an empty value"});
}

// The token in use, wherever it came from, has at least 16 characters; the
// error names its source and length, never the token.
TEST(ClientToken, TheTokenInUseHasAtLeast16Characters) {
  const std::string floor =
      ": expected at least 16 characters (ntp-server --gen-token makes one), got ";
  EXPECT_EQ(client_problems(R"({"group":"home","token":"hunter2","apps":[)" + kApp + "]}"),
            Problems{"apps.json: token" + floor + "7"});
  EXPECT_EQ(client_problems(with_apps("[" + kApp + "]"), "short"),
            Problems{"apps.json: NTP_TOKEN" + floor + "5"});
  TempDir dir;
  auto file = dir.write("token", "abc\n");
  EXPECT_EQ(client_problems(R"({"group":"home","token_file":")" + file.string() + R"(","apps":[)" +
                            kApp + "]}"),
            Problems{"apps.json: token_file " + file.string() + floor + "3"});
  // A short token that is not used (NTP_TOKEN wins) is not checked.
  EXPECT_EQ(parse_client_config(R"({"group":"home","token":"hunter2","apps":[)" + kApp + "]}",
                                "apps.json", std::string("env-1f2e3d4c5b6a7980"))
                .token,
            "env-1f2e3d4c5b6a7980");
}

// Where the token came from, for the start-up check of who can read it.
TEST(ClientToken, RecordsWhereItCameFrom) {
  TempDir dir;
  auto file = dir.write("token", "file-2a3b4c5d6e7f8091\n");
  auto from_file = parse_client_config(
      R"({"group":"home","token_file":")" + file.string() + R"(","apps":[)" + kApp + "]}",
      "apps.json", std::nullopt);
  EXPECT_EQ(from_file.token_file, file.string());
  EXPECT_FALSE(from_file.token_inline);
  auto inline_token = parse_client_config(with_apps("[" + kApp + "]"), "apps.json", std::nullopt);
  EXPECT_TRUE(inline_token.token_inline);
  EXPECT_EQ(inline_token.token_file, "");
  // NTP_TOKEN is used, but the file still holds a secret.
  EXPECT_TRUE(parse_client_config(with_apps("[" + kApp + "]"), "apps.json",
                                  std::string("e-0123456789abcdef"))
                  .token_inline);
}

TEST(ClientToken, EmptyOrWrongTypeInline) {
  EXPECT_EQ(client_problems(R"({"group":"home","token":"","apps":[)" + kApp + "]}"),
            Problems{R"(apps.json: token: expected a non-empty string, got "")"});
  EXPECT_EQ(client_problems(R"({"group":"home","token":42,"apps":[)" + kApp + "]}"),
            Problems{"apps.json: token: expected a string, got 42"});
}

TEST(ClientToken, Precedence) {
  TempDir dir;
  auto file = dir.write("token", "file-2a3b4c5d6e7f8091\n");
  const std::string doc = R"({"group":"home","token":"inline-3c8e1f6a9b2d5047","token_file":")" +
                          file.string() + R"(","apps":[)" + kApp + "]}";
  EXPECT_EQ(parse_client_config(doc, "apps.json", std::string("env-1f2e3d4c5b6a7980")).token,
            "env-1f2e3d4c5b6a7980");
  EXPECT_EQ(parse_client_config(doc, "apps.json", std::nullopt).token, "file-2a3b4c5d6e7f8091");
  EXPECT_EQ(parse_client_config(with_apps("[" + kApp + "]"), "apps.json", std::nullopt).token,
            "t-0123456789abcdef");
}

// NTP_TOKEN wins, so a token_file that only exists on the service host (or is
// unreadable here) does not stop the override.
TEST(ClientToken, EnvTokenSkipsTheTokenFile) {
  TempDir dir;
  const auto missing = (dir.path() / "absent").string();
  const std::string doc =
      R"({"group":"home","token_file":")" + missing + R"(","apps":[)" + kApp + "]}";
  EXPECT_EQ(parse_client_config(doc, "apps.json", std::string("env-1f2e3d4c5b6a7980")).token,
            "env-1f2e3d4c5b6a7980");
}

TEST(ClientToken, FileTrailingNewlinesStripped) {
  TempDir dir;
  for (const char* content :
       {"s3cret-0123456789ab", "s3cret-0123456789ab\n", "s3cret-0123456789ab\r\n",
        "s3cret-0123456789ab\n\n", "s3cret-0123456789ab \n"}) {
    auto file = dir.write("token", content);
    const std::string doc =
        R"({"group":"home","token_file":")" + file.string() + R"(","apps":[)" + kApp + "]}";
    EXPECT_EQ(parse_client_config(doc, "apps.json", std::nullopt).token, "s3cret-0123456789ab")
        << ::testing::PrintToString(std::string(content));
  }
}

TEST(ClientToken, FileErrors) {
  TempDir dir;
  const auto missing = (dir.path() / "absent").string();
  EXPECT_EQ(client_problems(R"({"group":"home","token_file":")" + missing + R"(","apps":[)" + kApp +
                            "]}"),
            Problems{"apps.json: token_file: expected a readable file holding the token, got \"" +
                     missing + "\" (No such file or directory)"});
  auto empty = dir.write("empty", "\n");
  EXPECT_EQ(client_problems(R"({"group":"home","token_file":")" + empty.string() + R"(","apps":[)" +
                            kApp + "]}"),
            Problems{"apps.json: token_file: expected a file holding a non-empty token, got \"" +
                     empty.string() + "\" (empty)"});
  EXPECT_EQ(client_problems(R"({"group":"home","token_file":"","apps":[)" + kApp + "]}"),
            Problems{R"(apps.json: token_file: expected a non-empty string, got "")"});
  EXPECT_EQ(client_problems(R"({"group":"home","token_file":1,"apps":[)" + kApp + "]}"),
            Problems{"apps.json: token_file: expected a string, got 1"});
}

TEST(EnvToken, ReadsNtpToken) {
  const char* saved = std::getenv("NTP_TOKEN");
  std::optional<std::string> restore = saved ? std::optional<std::string>(saved) : std::nullopt;
  ::unsetenv("NTP_TOKEN");
  EXPECT_EQ(env_token(), std::nullopt);
  ::setenv("NTP_TOKEN", "abc", 1);
  EXPECT_EQ(env_token(), "abc");
  ::setenv("NTP_TOKEN", "", 1);
  EXPECT_EQ(env_token(), "");  // set but empty: an error later, not "unset"
  if (restore)
    ::setenv("NTP_TOKEN", restore->c_str(), 1);
  else
    ::unsetenv("NTP_TOKEN");
}

// ---------------------------------------------------------------- files

TEST(LoadConfig, FromFiles) {
  TempDir dir;
  auto apps = dir.write("apps.json", with_apps("[" + kApp + "]"));
  EXPECT_EQ(load_client_config(apps, std::nullopt).group, "home");
  auto server = dir.write("server.json", R"({"heartbeat_timeout_s":7})");
  EXPECT_EQ(load_server_config(server).heartbeat_timeout_s, 7);
}

TEST(LoadConfig, MessagesNameTheFile) {
  TempDir dir;
  auto bad = dir.write("server.json", R"({"bind":"x"})");
  try {
    load_server_config(bad);
    ADD_FAILURE() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.problems(), Problems{bad.string() + R"(: bind: expected "host:port", got "x")"});
  }
  const auto missing = dir.path() / "nope.json";
  try {
    load_client_config(missing, std::nullopt);
    ADD_FAILURE() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.problems(),
              Problems{missing.string() + ": cannot read: No such file or directory"});
  }
}

// ------------------------------------------------------------------ tls

TEST(ServerConfig, TlsIsOnByDefaultAndFalseTurnsItOff) {
  EXPECT_TRUE(parse_server_config("{}", "server.json").tls.has_value());
  EXPECT_TRUE(parse_server_config(R"({"tls":true})", "server.json").tls.has_value());
  EXPECT_FALSE(parse_server_config(R"({"tls":false})", "server.json").tls.has_value());
  auto t = parse_server_config(R"({"tls":{}})", "server.json").tls;
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->cert.empty() && t->key.empty() && t->client_ca.empty());
}

TEST(ServerConfig, TlsFiles) {
  const auto dir = std::filesystem::temp_directory_path();
  const auto file = (dir / "ntp-config-test-cert.pem").string();
  std::ofstream(file) << "x";
  auto t = parse_server_config(R"({"tls":{"cert":")" + file + R"(","key":")" + file +
                                   R"(","client_ca":")" + file + R"("}})",
                               "server.json")
               .tls;
  ASSERT_TRUE(t);
  EXPECT_EQ(t->cert, file);
  EXPECT_EQ(t->key, file);
  EXPECT_EQ(t->client_ca, file);
  EXPECT_EQ(server_problems(R"({"tls":{"cert":")" + file + R"("}})"),
            Problems{"server.json: tls.key: expected \"cert\" and \"key\" together (or neither, "
                     "for a generated certificate), got nothing"});
  EXPECT_EQ(server_problems(R"({"tls":{"cert":"/nonexistent/cert.pem","key":")" + file + "\"}}"),
            Problems{"server.json: tls.cert: expected a readable file, got "
                     "\"/nonexistent/cert.pem\" (No such file or directory)"});
  EXPECT_EQ(server_problems(R"({"tls":{"key":")" + dir.string() + R"(","cert":")" + file + "\"}}"),
            Problems{"server.json: tls.key: expected a readable file, got \"" + dir.string() +
                     "\" (Is a directory)"});
  std::filesystem::remove(file);
}

TEST(ServerConfig, TlsShapeErrors) {
  EXPECT_EQ(server_problems(R"({"tls":"on"})"),
            Problems{"server.json: tls: expected false, true or an object with cert, client_ca, "
                     "key, got \"on\""});
  EXPECT_EQ(server_problems(R"({"tls":{"ca":"x"}})"),
            Problems{"server.json: tls.ca: expected one of the keys cert, client_ca, key, got an "
                     "unknown key"});
  EXPECT_EQ(server_problems(R"({"tls":{"cert":""}})"),
            (Problems{"server.json: tls.cert: expected a non-empty string, got \"\"",
                      "server.json: tls.key: expected \"cert\" and \"key\" together (or "
                      "neither, for a generated certificate), got nothing"}));
}

TEST(ClientConfig, TlsIsOnByDefaultAndFalseTurnsItOff) {
  EXPECT_TRUE(parse_client_config(with_apps(R"([{"name":"a","local":"h:1","remote_port":0}])"),
                                  "apps.json", std::nullopt)
                  .tls.has_value());
  const std::string off =
      R"({"group":"home","token":"t-0123456789abcdef","tls":false,"apps":[{"name":"a","local":"h:1","remote_port":0}]})";
  EXPECT_FALSE(parse_client_config(off, "apps.json", std::nullopt).tls.has_value());
}

TEST(ClientConfig, TlsFingerprintInTheFormTheServerPrints) {
  const std::string fp = "SHA256:" + std::string(64, 'a');
  auto cfg = [](const std::string& tls) {
    return R"({"group":"home","token":"t-0123456789abcdef","tls":)" + tls +
           R"(,"apps":[{"name":"a","local":"h:1","remote_port":0}]})";
  };
  auto t =
      parse_client_config(cfg(R"({"server_fingerprint":")" + fp + "\"}"), "apps.json", std::nullopt)
          .tls;
  ASSERT_TRUE(t);
  EXPECT_EQ(t->server_fingerprint, fp);
  const std::string expected = "\"SHA256:\" followed by 64 hex digits, as ntp-server prints it";
  for (const std::string& bad : std::vector<std::string>{
           "aa:bb", std::string(64, 'a'), "SHA256:" + std::string(63, 'a'),
           "SHA256:" + std::string(63, 'a') + "g", "sha256:" + std::string(64, 'a')}) {
    EXPECT_EQ(client_problems(cfg(R"({"server_fingerprint":")" + bad + "\"}")),
              Problems{"apps.json: tls.server_fingerprint: expected " + expected + ", got \"" +
                       bad + "\""})
        << bad;
  }
  EXPECT_EQ(client_problems(cfg(R"({"pin":"x"})")),
            Problems{"apps.json: tls.pin: expected one of the keys ca, cert, key, "
                     "server_fingerprint, got an unknown key"});
  EXPECT_EQ(client_problems(cfg(R"({"ca":"/nonexistent/ca.pem"})")),
            Problems{"apps.json: tls.ca: expected a readable file, got \"/nonexistent/ca.pem\" "
                     "(No such file or directory)"});
}

// ------------------------------------------------------------------ limits

TEST(ServerConfig, Limits) {
  auto cfg = parse_server_config(
      R"({"max_groups":100,"group_defaults":{"max_apps":5,"max_conns":50,"bandwidth":"10MiB/s"},
          "groups":{"home":{"token":"t-0123456789abcdef","max_conns":3},"office":{"token":"u-0123456789abcdef","bandwidth":"1MB/s"}}})",
      "server.json");
  EXPECT_EQ(cfg.max_groups, 100u);
  auto home = cfg.limits_for("home");
  EXPECT_EQ(home.max_apps, 5u);   // the default
  EXPECT_EQ(home.max_conns, 3u);  // its own
  EXPECT_EQ(home.bandwidth, 10u * 1024 * 1024);
  auto office = cfg.limits_for("office");
  EXPECT_EQ(office.max_conns, 50u);
  EXPECT_EQ(office.bandwidth, 1000000u);
  auto none = parse_server_config("{}", "server.json");
  EXPECT_FALSE(none.max_groups);
  EXPECT_FALSE(none.limits_for("x").max_conns);
  EXPECT_FALSE(none.limits_for("x").bandwidth);
}

TEST(ServerConfig, LimitErrors) {
  EXPECT_EQ(server_problems(R"({"max_groups":0})"),
            Problems{"server.json: max_groups: expected an integer from 1 to 1000000, got 0"});
  EXPECT_EQ(server_problems(R"({"group_defaults":{"bandwidth":"fast"}})"),
            Problems{"server.json: group_defaults.bandwidth: expected a rate like \"10MiB/s\" (B, "
                     "KB, KiB, MB, MiB, GB, GiB, Mbit, Gbit per second), got \"fast\""});
  EXPECT_EQ(server_problems(R"({"group_defaults":{"token":"x"}})"),
            Problems{"server.json: group_defaults.token: expected one of the keys bandwidth, "
                     "max_apps, max_conns, got an unknown key"});
  EXPECT_EQ(server_problems(R"({"groups":{"home":{"token":"t-0123456789abcdef","max_conns":-1}}})"),
            Problems{"server.json: groups.home.max_conns: expected an integer from 1 to 1000000, "
                     "got -1"});
}

TEST(ClientConfig, AppLimits) {
  auto cfg =
      parse_client_config(with_apps(R"([{"name":"ssh","local":"h:22","remote_port":0,"max_conns":4,
                     "bandwidth":"1MiB/s","allow_cidrs":["192.0.2.0/24","2001:db8::1"]}])"),
                          "apps.json", std::nullopt);
  ASSERT_EQ(cfg.apps.size(), 1u);
  EXPECT_EQ(cfg.apps[0].max_conns, 4u);
  EXPECT_EQ(cfg.apps[0].bandwidth, 1024u * 1024);
  EXPECT_EQ(cfg.apps[0].allow_cidrs, (std::vector<std::string>{"192.0.2.0/24", "2001:db8::1/128"}));
  EXPECT_EQ(client_problems(with_apps(
                R"([{"name":"a","local":"h:1","remote_port":0,"allow_cidrs":["10.0.0.0/33"]}])")),
            Problems{"apps.json: apps[0].allow_cidrs[0]: expected an address or network like "
                     "\"192.0.2.0/24\" or \"2001:db8::/32\", got \"10.0.0.0/33\""});
  EXPECT_EQ(client_problems(
                with_apps(R"([{"name":"a","local":"h:1","remote_port":0,"allow_cidrs":[]}])")),
            Problems{"apps.json: apps[0].allow_cidrs: expected a non-empty array like "
                     "[\"192.0.2.0/24\"], got []"});
  EXPECT_EQ(
      client_problems(with_apps(R"([{"name":"a","local":"h:1","remote_port":0,"bandwidth":10}])")),
      Problems{"apps.json: apps[0].bandwidth: expected a rate like \"10MiB/s\" (B, KB, KiB, "
               "MB, MiB, GB, GiB, Mbit, Gbit per second), got 10"});
}

}  // namespace
}  // namespace ntp
