#include "ntp/message.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace ntp {
namespace {

// Decodes what encode() made; fails the test when it does not decode.
Message round_trip(const Message& m) {
  Message out;
  std::string error;
  EXPECT_TRUE(decode(encode(m), out, error)) << encode(m) << ": " << error;
  EXPECT_EQ(out.index(), m.index()) << encode(m);
  EXPECT_EQ(encode(out), encode(m));
  return out;
}

// The error text decode() gives for `body`; "(decoded)" when it accepted it.
std::string decode_error(std::string_view body) {
  Message out;
  std::string error;
  if (decode(body, out, error)) return "(decoded)";
  return error;
}

TEST(Message, ChallengeRoundTrip) {
  const Message m = msg::Challenge{"ab01"};
  auto out = std::get<msg::Challenge>(round_trip(m));
  EXPECT_EQ(out.nonce, "ab01");
}

TEST(Message, LoginRoundTrip) {
  const Message m = msg::Login{"home", "n1", "p1"};
  auto out = std::get<msg::Login>(round_trip(m));
  EXPECT_EQ(out.group, "home");
  EXPECT_EQ(out.nonce, "n1");
  EXPECT_EQ(out.proof, "p1");
}

TEST(Message, WelcomeRoundTrip) {
  const Message m = msg::Welcome{"s1", "p2", 30};
  auto out = std::get<msg::Welcome>(round_trip(m));
  EXPECT_EQ(out.session, "s1");
  EXPECT_EQ(out.proof, "p2");
  EXPECT_EQ(out.heartbeat_timeout_s, 30);
}

TEST(Message, DataLoginRoundTrip) {
  const Message m = msg::DataLogin{"s1", 18446744073709551615u, "p3"};
  auto out = std::get<msg::DataLogin>(round_trip(m));
  EXPECT_EQ(out.session, "s1");
  EXPECT_EQ(out.seq, 18446744073709551615u);
  EXPECT_EQ(out.proof, "p3");
  EXPECT_NE(encode(m).find(R"("type":"data")"), std::string::npos) << encode(m);
}

TEST(Message, DataOkRoundTrip) {
  const Message m = msg::DataOk{"p4"};
  EXPECT_EQ(std::get<msg::DataOk>(round_trip(m)).proof, "p4");
}

TEST(Message, RegisterRoundTrip) {
  const Message m = msg::Register{{{"ssh", 6022},
                                   {"web", 0},
                                   {"max", 65535},
                                   {"limited", 6000, 4, 1048576, {"192.0.2.0/24", "::1/128"}}}};
  auto out = std::get<msg::Register>(round_trip(m));
  ASSERT_EQ(out.apps.size(), 4u);
  EXPECT_EQ(out.apps, std::get<msg::Register>(m).apps);
  EXPECT_FALSE(out.apps[0].max_conns);  // absent limits stay absent
  EXPECT_EQ(out.apps[3].max_conns, 4u);
  EXPECT_EQ(out.apps[3].bandwidth, 1048576u);
  EXPECT_EQ(out.apps[3].allow_cidrs, (std::vector<std::string>{"192.0.2.0/24", "::1/128"}));
  EXPECT_EQ(out.apps[0].name, "ssh");
  EXPECT_EQ(out.apps[0].remote_port, 6022);
  EXPECT_EQ(out.apps[1].remote_port, 0);
  EXPECT_EQ(out.apps[2].remote_port, 65535);
  const Message empty = msg::Register{};
  EXPECT_TRUE(std::get<msg::Register>(round_trip(empty)).apps.empty());
}

// A udp app's kind and flow settings, and an app that asks for addresses.
TEST(Message, RegisterCarriesTypeFlowsAndAddresses) {
  msg::AppRequest dns{"dns", 6053};
  dns.type = "udp";
  dns.max_flows = 10;
  dns.udp_idle_s = 5;
  msg::AppRequest web{"web", 6080};
  web.addresses = true;
  const Message m = msg::Register{{dns, web}};
  auto out = std::get<msg::Register>(round_trip(m));
  EXPECT_EQ(out.apps, std::get<msg::Register>(m).apps);
  EXPECT_EQ(out.apps[0].type, "udp");
  EXPECT_EQ(out.apps[1].type, "tcp") << "tcp is the default and goes unsaid";
  EXPECT_TRUE(out.apps[1].addresses);
  EXPECT_EQ(encode(Message{msg::Register{{{"ssh", 22}}}}),
            R"({"apps":[{"name":"ssh","remote_port":22}],"type":"register"})")
      << "a plain tcp app's entry is as before";
  Message bad;
  std::string error;
  EXPECT_FALSE(decode(R"({"type":"register","apps":[{"name":"a","remote_port":1,"type":"sctp"}]})",
                      bad, error));
  EXPECT_EQ(error, R"(type: expected "tcp" or "udp")");
}

TEST(Message, RegisterLimitsAreValidated) {
  Message m;
  std::string error;
  EXPECT_FALSE(decode(R"({"type":"register","apps":[{"name":"a","remote_port":1,"max_conns":0}]})",
                      m, error));
  EXPECT_EQ(error, "max_conns: expected an unsigned integer in range");
  EXPECT_FALSE(decode(
      R"({"type":"register","apps":[{"name":"a","remote_port":1,"bandwidth":"x"}]})", m, error));
  EXPECT_FALSE(decode(
      R"({"type":"register","apps":[{"name":"a","remote_port":1,"allow_cidrs":"10.0.0.0/8"}]})", m,
      error));
  EXPECT_EQ(error, "allow_cidrs: expected an array of strings");
}

TEST(Message, RegisteredRoundTrip) {
  const Message m = msg::Registered{{{"ssh", 6022, ""}, {"web", 0, "port 6080 is taken"}}};
  auto out = std::get<msg::Registered>(round_trip(m));
  ASSERT_EQ(out.apps.size(), 2u);
  EXPECT_EQ(out.apps[0].name, "ssh");
  EXPECT_EQ(out.apps[0].remote_port, 6022);
  EXPECT_EQ(out.apps[0].error, "");
  EXPECT_EQ(out.apps[1].name, "web");
  EXPECT_EQ(out.apps[1].error, "port 6080 is taken");
}

TEST(Message, EmptyMessagesRoundTrip) {
  const Message ping = msg::Ping{}, pong = msg::Pong{}, connected = msg::Connected{};
  round_trip(ping);
  round_trip(pong);
  round_trip(connected);
}

TEST(Message, NeedDataRoundTrip) {
  const Message m = msg::NeedData{7};
  EXPECT_EQ(std::get<msg::NeedData>(round_trip(m)).count, 7u);
}

TEST(Message, StartRoundTrip) {
  const Message m = msg::Start{"ssh", 42, "198.51.100.9:40112", "[2001:db8::1]:6022"};
  auto out = std::get<msg::Start>(round_trip(m));
  EXPECT_EQ(out.app, "ssh");
  EXPECT_EQ(out.conn, 42u);
  const Message big = msg::Start{"ssh", UINT64_MAX, {}, {}};
  EXPECT_EQ(std::get<msg::Start>(round_trip(big)).conn, UINT64_MAX);
}

TEST(Message, ErrorRoundTrip) {
  const Message m = msg::Error{"connect 127.0.0.1:22: Connection refused \"quoted\" \n ünï"};
  EXPECT_EQ(std::get<msg::Error>(round_trip(m)).message,
            "connect 127.0.0.1:22: Connection refused \"quoted\" \n ünï");
}

// The examples of docs/protocol.md decode as documented.
TEST(Message, DecodesTheProtocolDocExamples) {
  Message m;
  std::string error;
  ASSERT_TRUE(decode(
      R"({"type":"registered","apps":[{"name":"ssh","remote_port":6022},{"name":"web","error":"port 6080 is taken"}]})",
      m, error))
      << error;
  auto& reg = std::get<msg::Registered>(m);
  ASSERT_EQ(reg.apps.size(), 2u);
  EXPECT_EQ(reg.apps[0].remote_port, 6022);
  EXPECT_EQ(reg.apps[1].error, "port 6080 is taken");

  ASSERT_TRUE(decode(R"({"type":"register","apps":[{"name":"ssh","remote_port":6022}]})", m, error))
      << error;
  EXPECT_EQ(std::get<msg::Register>(m).apps.at(0).name, "ssh");
  ASSERT_TRUE(decode(R"({"type":"need_data","count":3})", m, error)) << error;
  EXPECT_EQ(std::get<msg::NeedData>(m).count, 3u);
  ASSERT_TRUE(decode(R"({"type":"start","app":"ssh","conn":42})", m, error)) << error;
  EXPECT_EQ(std::get<msg::Start>(m).conn, 42u);
  ASSERT_TRUE(
      decode(R"({"type":"welcome","session":"S","proof":"P","heartbeat_timeout_s":30})", m, error))
      << error;
  EXPECT_EQ(std::get<msg::Welcome>(m).heartbeat_timeout_s, 30);
  ASSERT_TRUE(decode(R"({"type":"error","message":"unsupported protocol version 2; this server )"
                     R"(speaks version 1"})",
                     m, error))
      << error;
  ASSERT_TRUE(decode(R"({"type":"pong"})", m, error)) << error;
  EXPECT_TRUE(std::holds_alternative<msg::Pong>(m));
  // Unknown extra members are ignored (room for later additions).
  ASSERT_TRUE(decode(R"({"type":"ping","later":true})", m, error)) << error;
}

TEST(Message, NotJson) {
  EXPECT_EQ(decode_error("not json"), "expected a JSON object");
  EXPECT_EQ(decode_error(""), "expected a JSON object");
  EXPECT_EQ(decode_error(R"({"type":"ping")"), "expected a JSON object");
  EXPECT_EQ(decode_error(R"({"type":"ping"} trailing)"), "expected a JSON object");
}

TEST(Message, NotAnObject) {
  EXPECT_EQ(decode_error("[]"), "expected a JSON object");
  EXPECT_EQ(decode_error(R"("ping")"), "expected a JSON object");
  EXPECT_EQ(decode_error("42"), "expected a JSON object");
  EXPECT_EQ(decode_error("null"), "expected a JSON object");
}

TEST(Message, MissingOrBadType) {
  EXPECT_EQ(decode_error("{}"), "type: expected a string");
  EXPECT_EQ(decode_error(R"({"type":5})"), "type: expected a string");
  EXPECT_EQ(decode_error(R"({"type":null})"), "type: expected a string");
  EXPECT_EQ(decode_error(R"({"type":"bogus"})"), "type: unknown message type \"bogus\"");
  EXPECT_EQ(decode_error(R"({"type":"PING"})"), "type: unknown message type \"PING\"");
  EXPECT_EQ(decode_error(R"({"type":")" + std::string(33, 'x') + R"("})"),
            "type: expected a shorter string");
}

TEST(Message, WrongFieldTypes) {
  EXPECT_EQ(decode_error(R"({"type":"challenge"})"), "nonce: expected a string");
  EXPECT_EQ(decode_error(R"({"type":"challenge","nonce":5})"), "nonce: expected a string");
  EXPECT_EQ(decode_error(R"({"type":"login","group":"g","nonce":"n"})"),
            "proof: expected a string");
  EXPECT_EQ(decode_error(R"({"type":"login","group":["g"],"nonce":"n","proof":"p"})"),
            "group: expected a string");
  EXPECT_EQ(
      decode_error(R"({"type":"welcome","session":"s","proof":"p","heartbeat_timeout_s":"30"})"),
      "heartbeat_timeout_s: expected an unsigned integer in range");
  EXPECT_EQ(decode_error(R"({"type":"data","session":"s","seq":1,"proof":true})"),
            "proof: expected a string");
  EXPECT_EQ(decode_error(R"({"type":"data","session":"s","seq":-1,"proof":"p"})"),
            "seq: expected an unsigned integer in range");
  EXPECT_EQ(decode_error(R"({"type":"data","session":"s","nonce":"n","proof":"p"})"),
            "seq: expected an unsigned integer in range");
  EXPECT_EQ(decode_error(R"({"type":"data_ok"})"), "proof: expected a string");
  EXPECT_EQ(decode_error(R"({"type":"register"})"), "apps: expected an array");
  EXPECT_EQ(decode_error(R"({"type":"register","apps":{}})"), "apps: expected an array");
  EXPECT_EQ(decode_error(R"({"type":"register","apps":["ssh"]})"), "apps: expected objects");
  EXPECT_EQ(decode_error(R"({"type":"register","apps":[{"name":"ssh"}]})"),
            "remote_port: expected an unsigned integer in range");
  EXPECT_EQ(decode_error(R"({"type":"registered","apps":[{"remote_port":1}]})"),
            "name: expected a string");
  EXPECT_EQ(decode_error(R"({"type":"registered","apps":[{"name":"a","error":5}]})"),
            "error: expected a string");
  EXPECT_EQ(decode_error(R"({"type":"need_data","count":"1"})"),
            "count: expected an unsigned integer in range");
  EXPECT_EQ(decode_error(R"({"type":"start","app":"ssh","conn":1.5})"),
            "conn: expected an unsigned integer in range");
  EXPECT_EQ(decode_error(R"({"type":"start","conn":1})"), "app: expected a string");
  EXPECT_EQ(decode_error(R"({"type":"error"})"), "message: expected a string");
}

TEST(Message, NumbersOutOfRange) {
  EXPECT_EQ(decode_error(R"({"type":"need_data","count":-1})"),
            "count: expected an unsigned integer in range");
  EXPECT_EQ(decode_error(R"({"type":"need_data","count":1025})"),
            "count: expected an unsigned integer in range");
  EXPECT_EQ(decode_error(R"({"type":"need_data","count":1024})"), "(decoded)");
  EXPECT_EQ(decode_error(R"({"type":"register","apps":[{"name":"a","remote_port":65536}]})"),
            "remote_port: expected an unsigned integer in range");
  EXPECT_EQ(decode_error(R"({"type":"register","apps":[{"name":"a","remote_port":-1}]})"),
            "remote_port: expected an unsigned integer in range");
  EXPECT_EQ(decode_error(R"({"type":"registered","apps":[{"name":"a","remote_port":70000}]})"),
            "remote_port: expected an unsigned integer in range");
  EXPECT_EQ(
      decode_error(R"({"type":"welcome","session":"s","proof":"p","heartbeat_timeout_s":86401})"),
      "heartbeat_timeout_s: expected an unsigned integer in range");
  EXPECT_EQ(decode_error(R"({"type":"start","app":"a","conn":18446744073709551615})"), "(decoded)");
  // Beyond uint64: nlohmann parses it as a float, which is not an unsigned integer.
  EXPECT_EQ(decode_error(R"({"type":"start","app":"a","conn":18446744073709551616})"),
            "conn: expected an unsigned integer in range");
  EXPECT_EQ(decode_error(R"({"type":"need_data","count":1e3})"),
            "count: expected an unsigned integer in range");
}

TEST(Message, StringLengthsAreBounded) {
  EXPECT_EQ(decode_error(R"({"type":"challenge","nonce":")" + std::string(256, 'a') + "\"}"),
            "(decoded)");
  EXPECT_EQ(decode_error(R"({"type":"challenge","nonce":")" + std::string(257, 'a') + "\"}"),
            "nonce: expected a shorter string");
  EXPECT_EQ(decode_error(R"({"type":"error","message":")" + std::string(1024, 'a') + "\"}"),
            "(decoded)");
  EXPECT_EQ(decode_error(R"({"type":"error","message":")" + std::string(1025, 'a') + "\"}"),
            "message: expected a shorter string");
}

// Whatever arrives in a frame, decode() answers true or false and never throws.
TEST(Message, NeverThrowsOnArbitraryInput) {
  std::vector<std::string> seeds;
  const Message samples[] = {msg::Challenge{"ab"},
                             msg::Login{"home", "n", "p"},
                             msg::Welcome{"s", "p", 30},
                             msg::DataLogin{"s", 3, "p"},
                             msg::DataOk{"p"},
                             msg::Register{{{"ssh", 6022}}},
                             msg::Registered{{{"ssh", 6022, ""}, {"web", 0, "taken"}}},
                             msg::Ping{},
                             msg::Pong{},
                             msg::NeedData{2},
                             msg::Start{"ssh", 9, {}, {}},
                             msg::Connected{},
                             msg::Error{"why"}};
  for (auto& m : samples) seeds.push_back(encode(m));

  std::mt19937 rng(12345);
  auto byte = [&] { return static_cast<char>(rng() & 0xff); };
  const std::string json_chars = "{}[]\":,0123456789-+.eEtruefalsnl \\";
  std::vector<std::string> inputs;
  for (int i = 0; i < 200; ++i) {  // random bytes
    std::string s(rng() % 64, '\0');
    for (auto& c : s) c = byte();
    inputs.push_back(std::move(s));
  }
  for (int i = 0; i < 200; ++i) {  // random JSON-ish punctuation
    std::string s(rng() % 64, '\0');
    for (auto& c : s) c = json_chars[rng() % json_chars.size()];
    inputs.push_back(std::move(s));
  }
  for (int i = 0; i < 600; ++i) {  // valid messages, mutated
    std::string s = seeds[rng() % seeds.size()];
    for (int k = 1 + static_cast<int>(rng() % 4); k > 0 && !s.empty(); --k) {
      auto pos = rng() % s.size();
      switch (rng() % 4) {
        case 0:
          s[pos] = byte();
          break;
        case 1:
          s[pos] = json_chars[rng() % json_chars.size()];
          break;
        case 2:
          s.erase(pos, 1 + rng() % 8);
          break;
        case 3:
          s.insert(pos, 1, json_chars[rng() % json_chars.size()]);
          break;
      }
    }
    inputs.push_back(std::move(s));
  }
  // Deep nesting, as big as a frame allows.
  inputs.push_back(std::string(kMaxFrame / 2, '[') + std::string(kMaxFrame / 2, ']'));
  inputs.push_back("{\"type\":" + std::string(30000, '[') + std::string(30000, ']') + "}");
  inputs.push_back(std::string("{\"type\":\"ping\"\0}", 16));

  int decoded = 0;
  for (auto& in : inputs) {
    Message out;
    std::string error;
    bool ok = false;
    EXPECT_NO_THROW(ok = decode(in, out, error)) << ::testing::PrintToString(in);
    if (ok)
      ++decoded;
    else
      EXPECT_FALSE(error.empty()) << "rejected without a reason: " << ::testing::PrintToString(in);
  }
  EXPECT_GT(decoded, 0) << "no mutation survived: the mutator is too destructive to be useful";
}

}  // namespace
}  // namespace ntp
