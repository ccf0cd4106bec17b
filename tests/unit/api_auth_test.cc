#include <gtest/gtest.h>

#include <string>

#include "api/auth.h"
#include "api/sha256.h"

namespace sbx::api {
namespace {

std::string Pattern(size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(static_cast<char>(i % 251));
  return s;
}

TEST(Sha256, FipsVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(
      Sha256Hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmn"
                "opqklmnopqrlmnopqrsmnopqrstnopqrstu"),
      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, PaddingBoundaries) {
  // Lengths around the 55/56/64-byte padding edges (expected values from Python's hashlib).
  const std::pair<size_t, const char*> cases[] = {
      {55, "463eb28e72f82e0a96c0a4cc53690c571281131f672aa229e0d45ae59b598b59"},
      {56, "da2ae4d6b36748f2a318f23e7ab1dfdf45acdc9d049bd80e59de82a60895f562"},
      {63, "29af2686fd53374a36b0846694cc342177e428d1647515f078784d69cdb9e488"},
      {64, "fdeab9acf3710362bd2658cdc9a29e8f9c757fcf9811603a8c447cd1d9151108"},
      {65, "4bfd2c8b6f1eec7a2afeb48b934ee4b2694182027e6d0fc075074f2fabb31781"},
      {119, "da18797ed7c3a777f0847f429724a2d8cd5138e6ed2895c3fa1a6d39d18f7ec6"},
      {120, "f52b23db1fbb6ded89ef42a23ce0c8922c45f25c50b568a93bf1c075420bbb7c"},
      {128, "471fb943aa23c511f6f72f8d1652d9c880cfa392ad80503120547703e56a2be5"},
  };
  for (const auto& [n, hex] : cases) EXPECT_EQ(Sha256Hex(Pattern(n)), hex) << n;
}

TEST(Sha256, IncrementalEqualsOneShot) {
  std::string data = Pattern(300);
  std::string expected = Sha256Hex(data);
  for (size_t split = 0; split <= data.size(); split += 7) {
    Sha256Hasher h;
    h.Update(std::string_view(data).substr(0, split));
    h.Update(std::string_view(data).substr(split));
    EXPECT_EQ(DigestHex(h.Final()), expected) << split;
  }
}

TEST(Sha256, ParseDigestHex) {
  std::string hex = Sha256Hex("x");
  ASSERT_TRUE(ParseDigestHex(hex).has_value());
  EXPECT_EQ(DigestHex(*ParseDigestHex(hex)), hex);
  std::string upper = hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  EXPECT_EQ(ParseDigestHex(upper), ParseDigestHex(hex));
  EXPECT_FALSE(ParseDigestHex(hex.substr(1)).has_value());
  EXPECT_FALSE(ParseDigestHex(hex + "0").has_value());
  EXPECT_FALSE(ParseDigestHex(std::string(64, 'g')).has_value());
}

TEST(ConstantTimeEqual, Compares) {
  const uint8_t a[] = {1, 2, 3};
  const uint8_t b[] = {1, 2, 3};
  const uint8_t c[] = {1, 2, 4};
  const uint8_t d[] = {1, 2};
  EXPECT_TRUE(ConstantTimeEqual(a, b));
  EXPECT_FALSE(ConstantTimeEqual(a, c));
  EXPECT_FALSE(ConstantTimeEqual(a, d));
}

TEST(Roles, ParseAndOrder) {
  EXPECT_EQ(*ParseRole("submitter"), Role::kSubmitter);
  EXPECT_EQ(*ParseRole("reviewer"), Role::kReviewer);
  EXPECT_EQ(*ParseRole("admin"), Role::kAdmin);
  EXPECT_FALSE(ParseRole("root").ok());
  EXPECT_FALSE(ParseRole("Admin").ok());
  for (Role r : {Role::kSubmitter, Role::kReviewer, Role::kAdmin}) {
    EXPECT_EQ(*ParseRole(RoleName(r)), r);
    EXPECT_TRUE(RoleAllows(r, Access::kPublic));
    EXPECT_TRUE(RoleAllows(r, Access::kSubmitter));
  }
  EXPECT_FALSE(RoleAllows(Role::kSubmitter, Access::kReviewer));
  EXPECT_TRUE(RoleAllows(Role::kReviewer, Access::kReviewer));
  EXPECT_FALSE(RoleAllows(Role::kReviewer, Access::kAdmin));
  EXPECT_TRUE(RoleAllows(Role::kAdmin, Access::kReviewer));
  EXPECT_TRUE(RoleAllows(Role::kAdmin, Access::kAdmin));
}

TEST(Authenticator, MatchesOnlyTheHashedKey) {
  auto auth = Authenticator::Create({{"alice", Role::kSubmitter, Sha256Hex("alice-key")},
                                     {"rita", Role::kReviewer, Sha256Hex("rita-key")}});
  ASSERT_TRUE(auth.ok()) << auth.error().message;
  EXPECT_EQ(auth->size(), 2u);
  std::optional<Principal> p = auth->Authenticate("rita-key");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->key_name, "rita");
  EXPECT_EQ(p->role, Role::kReviewer);
  EXPECT_EQ(auth->Authenticate("alice-key")->key_name, "alice");
  EXPECT_FALSE(auth->Authenticate("alice-key ").has_value());
  EXPECT_FALSE(auth->Authenticate("").has_value());
  // The configured digest itself is not a key.
  EXPECT_FALSE(auth->Authenticate(Sha256Hex("alice-key")).has_value());
  EXPECT_FALSE(Authenticator().Authenticate("alice-key").has_value());
}

TEST(Authenticator, RefusesBadConfig) {
  std::string h = Sha256Hex("k");
  EXPECT_FALSE(Authenticator::Create({{"", Role::kAdmin, h}}).ok());
  EXPECT_FALSE(Authenticator::Create({{"a", Role::kAdmin, "abc"}}).ok());
  EXPECT_FALSE(
      Authenticator::Create({{"a", Role::kAdmin, h}, {"a", Role::kAdmin, Sha256Hex("j")}}).ok());
  auto same_key = Authenticator::Create({{"a", Role::kAdmin, h}, {"b", Role::kSubmitter, h}});
  ASSERT_FALSE(same_key.ok());
  EXPECT_EQ(same_key.error().code, ErrorCode::kInvalidArgument);
}

TEST(ExtractApiKey, HeaderForms) {
  using SV = std::optional<std::string_view>;
  EXPECT_EQ(ExtractApiKey(SV("k1"), std::nullopt), SV("k1"));
  EXPECT_EQ(ExtractApiKey(std::nullopt, SV("Bearer k2")), SV("k2"));
  EXPECT_EQ(ExtractApiKey(std::nullopt, SV("bearer   k3 ")), SV("k3"));
  EXPECT_EQ(ExtractApiKey(SV("k1"), SV("Bearer k2")), SV("k1"));
  EXPECT_EQ(ExtractApiKey(SV(""), SV("Bearer k2")), SV("k2"));
  EXPECT_EQ(ExtractApiKey(std::nullopt, SV("Basic dXNlcjpwYXNz")), std::nullopt);
  EXPECT_EQ(ExtractApiKey(std::nullopt, SV("Bearer")), std::nullopt);
  EXPECT_EQ(ExtractApiKey(std::nullopt, SV("Bearerk")), std::nullopt);
  EXPECT_EQ(ExtractApiKey(std::nullopt, std::nullopt), std::nullopt);
}

}  // namespace
}  // namespace sbx::api
