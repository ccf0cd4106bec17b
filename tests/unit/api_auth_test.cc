#include <gtest/gtest.h>

#include <string>

#include "api/http/auth.h"
#include "base/sha256.h"

namespace sbx::api {
namespace {

// SHA-256 itself is tested in base_sha256_test.cc.




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

TEST(WebSocketProtocols, TheKeyOfferedByABrowser) {
  // "k3y!" in base64url without padding is "azN5IQ".
  EXPECT_EQ(KeyFromWebSocketProtocols("sandboxd.v1, sandboxd.bearer.azN5IQ"), "k3y!");
  EXPECT_EQ(KeyFromWebSocketProtocols("sandboxd.bearer.azN5IQ"), "k3y!");
  // base64url's own alphabet: '-' and '_' (bytes 0xfb 0xff).
  EXPECT_EQ(KeyFromWebSocketProtocols("sandboxd.bearer.-_8"), std::string("\xfb\xff"));
  EXPECT_FALSE(KeyFromWebSocketProtocols("sandboxd.v1"));
  EXPECT_FALSE(KeyFromWebSocketProtocols("sandboxd.bearer."));
  EXPECT_FALSE(KeyFromWebSocketProtocols("sandboxd.bearer.a+b/"));  // standard base64 refused
  EXPECT_FALSE(KeyFromWebSocketProtocols("sandboxd.bearer.abcde"));  // not whole bytes
  EXPECT_FALSE(KeyFromWebSocketProtocols("sandboxd.bearer." + std::string(2000, 'A')));
  EXPECT_FALSE(KeyFromWebSocketProtocols(""));
  EXPECT_TRUE(OffersWebSocketProtocol("chat, sandboxd.v1", "sandboxd.v1"));
  EXPECT_FALSE(OffersWebSocketProtocol("sandboxd.v10", "sandboxd.v1"));
}

}  // namespace
}  // namespace sbx::api
