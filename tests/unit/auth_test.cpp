#include "ntp/auth.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>

namespace ntp {
namespace {

bool is_lower_hex(const std::string& s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// RFC 4231, test case 2: an independent answer for HMAC-SHA256.
TEST(Hmac, Rfc4231TestCase2) {
  EXPECT_EQ(hmac_hex("Jefe", {"what do ya want for nothing?"}),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

// RFC 4231, test case 1 (a binary key) and 6 (a key longer than the block size).
TEST(Hmac, Rfc4231TestCases1And6) {
  EXPECT_EQ(hmac_hex(std::string(20, '\x0b'), {"Hi There"}),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(hmac_hex(std::string(131, '\xaa'),
                     {"Test Using Larger Than Block-Size Key - Hash Key First"}),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(Hmac, PartsAreJoinedWithNewlines) {
  EXPECT_EQ(hmac_hex("k", {"a", "b", "c"}), hmac_hex("k", {"a\nb\nc"}));
  EXPECT_NE(hmac_hex("k", {"ab", "c"}), hmac_hex("k", {"a", "bc"}));
  EXPECT_EQ(hmac_hex("k", {}), hmac_hex("k", {""}));
}

TEST(Hmac, IsLowercaseHexOf32Bytes) {
  auto h = hmac_hex("key", {"data"});
  EXPECT_EQ(h.size(), 64u);
  EXPECT_TRUE(is_lower_hex(h)) << h;
}

// The proofs are exactly what docs/protocol.md specifies, so another
// implementation following the document interoperates.
TEST(LoginProofs, MatchTheProtocolDocument) {
  auto p = login_proofs("home-9f2c4e7a1b6d8035", "home", "cnonce", "snonce", "cb");
  EXPECT_EQ(p.client, hmac_hex("home-9f2c4e7a1b6d8035", {"ntp1 client\nhome\ncnonce\nsnonce\ncb"}));
  EXPECT_EQ(p.server, hmac_hex("home-9f2c4e7a1b6d8035", {"ntp1 server\nhome\ncnonce\nsnonce\ncb"}));
  EXPECT_EQ(p.data_key,
            hmac_hex("home-9f2c4e7a1b6d8035", {"ntp1 data key\nhome\ncnonce\nsnonce\ncb"}));
  auto d = data_proofs(p.data_key, "sess", 42, "cb2");
  EXPECT_EQ(d.client, hmac_hex(p.data_key, {"ntp1 data\nsess\n42\ncb2"}));
  EXPECT_EQ(d.server, hmac_hex(p.data_key, {"ntp1 data ok\nsess\n42\ncb2"}));
}

// A man in the middle who terminates TLS has another TLS session (another
// tls-exporter value) on each side: a proof made for one does not hold for the other.
TEST(LoginProofs, BoundToTheChannel) {
  auto one = login_proofs("tok", "home", "cn", "sn", "session-one");
  auto two = login_proofs("tok", "home", "cn", "sn", "session-two");
  EXPECT_NE(one.client, two.client);
  EXPECT_NE(one.server, two.server);
  EXPECT_NE(one.data_key, two.data_key);
  EXPECT_NE(data_proofs("k", "s", 1, "one").client, data_proofs("k", "s", 1, "two").client);
}

TEST(LoginProofs, AllThreeDiffer) {
  auto p = login_proofs("tok", "home", "cn", "sn", "");
  EXPECT_NE(p.client, p.server);
  EXPECT_NE(p.client, p.data_key);
  EXPECT_NE(p.server, p.data_key);
  EXPECT_EQ(p.client.size(), 64u);
}

TEST(LoginProofs, Deterministic) {
  auto a = login_proofs("tok", "home", "cn", "sn", "");
  auto b = login_proofs("tok", "home", "cn", "sn", "");
  EXPECT_EQ(a.client, b.client);
  EXPECT_EQ(a.server, b.server);
  EXPECT_EQ(a.data_key, b.data_key);
}

TEST(LoginProofs, WrongTokenGivesAnotherProof) {
  auto right = login_proofs("tok", "home", "cn", "sn", "");
  auto wrong = login_proofs("tok2", "home", "cn", "sn", "");
  EXPECT_NE(right.client, wrong.client);
  EXPECT_NE(right.server, wrong.server);
  EXPECT_NE(right.data_key, wrong.data_key);
  EXPECT_FALSE(proof_equal(right.client, wrong.client));
}

TEST(LoginProofs, BoundToGroupAndBothNonces) {
  auto base = login_proofs("tok", "home", "cn", "sn", "");
  EXPECT_NE(base.client, login_proofs("tok", "office", "cn", "sn", "").client);
  EXPECT_NE(base.client, login_proofs("tok", "home", "cn2", "sn", "").client);
  EXPECT_NE(base.client, login_proofs("tok", "home", "cn", "sn2", "").client);
}

// A recorded login replayed against a fresh challenge does not verify.
TEST(LoginProofs, ReplayAgainstANewChallengeFails) {
  const auto client_nonce = random_hex(kNonceBytes);
  const auto recorded =
      login_proofs("tok", "home", client_nonce, random_hex(kNonceBytes), "").client;
  const auto fresh_challenge = random_hex(kNonceBytes);
  const auto expected = login_proofs("tok", "home", client_nonce, fresh_challenge, "").client;
  EXPECT_FALSE(proof_equal(expected, recorded));
}

TEST(DataProofs, DifferAndBindTheSession) {
  auto d = data_proofs("key", "s1", 7, "");
  EXPECT_NE(d.client, d.server);
  EXPECT_NE(d.client, data_proofs("key", "s2", 7, "").client);
  EXPECT_NE(d.client, data_proofs("key2", "s1", 7, "").client);
  // Each number its own proof: a recorded one is good for its number only.
  EXPECT_NE(d.client, data_proofs("key", "s1", 8, "").client);
  // A data proof is not a login proof with the same inputs.
  EXPECT_NE(d.client, login_proofs("key", "s1", "7", "", "").client);
}

TEST(ProofEqual, ComparesWholeStrings) {
  EXPECT_TRUE(proof_equal("abc", "abc"));
  EXPECT_TRUE(proof_equal("", ""));
  EXPECT_FALSE(proof_equal("abc", "abd"));
  EXPECT_FALSE(proof_equal("abc", "ab"));
  EXPECT_FALSE(proof_equal("ab", "abc"));
  EXPECT_FALSE(proof_equal("", "a"));
  EXPECT_FALSE(proof_equal("Abc", "abc"));
}

TEST(RandomHex, LengthAndAlphabet) {
  EXPECT_EQ(random_hex(0), "");
  EXPECT_EQ(random_hex(1).size(), 2u);
  auto n = random_hex(kNonceBytes);
  EXPECT_EQ(n.size(), 2 * kNonceBytes);
  EXPECT_TRUE(is_lower_hex(n)) << n;
}

TEST(RandomHex, Unique) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(random_hex(16));
  EXPECT_EQ(seen.size(), 1000u);
  // Every hex digit shows up across the samples (not stuck bits).
  std::set<char> digits;
  for (auto& s : seen) digits.insert(s.begin(), s.end());
  EXPECT_EQ(digits.size(), 16u);
}

}  // namespace
}  // namespace ntp
