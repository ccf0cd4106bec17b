#include <gtest/gtest.h>

#include "supervisor/checkout/repo_location.h"

namespace sbx::supervisor::checkout {
namespace {

std::string Url(const std::string& repo) {
  auto loc = ParseRepo(repo);
  EXPECT_TRUE(loc.ok()) << repo << ": " << (loc.ok() ? "" : loc.error().ToString());
  return loc.ok() ? loc->url : "";
}

Error Refused(const std::string& repo) {
  auto loc = ParseRepo(repo);
  EXPECT_FALSE(loc.ok()) << repo << " was accepted as " << (loc.ok() ? loc->url : "");
  if (loc.ok()) return Error{};
  EXPECT_EQ(loc.error().code, ErrorCode::kInvalidArgument) << repo;
  return loc.error();
}

TEST(CheckoutRepoLocation, LocalPathsAndFileUrlsNormalizeToOnePath) {
  EXPECT_EQ(Url("/srv/repo"), "/srv/repo");
  EXPECT_EQ(Url("/srv//repo/./x/"), "/srv/repo/x");
  EXPECT_EQ(Url("file:///srv/repo"), "/srv/repo");
  EXPECT_EQ(Url("file://localhost/srv/repo/"), "/srv/repo");
  EXPECT_EQ(Url("FILE:///srv/repo"), "/srv/repo");
  auto loc = ParseRepo("file:///srv/repo");
  ASSERT_TRUE(loc.ok());
  EXPECT_EQ(loc->kind, RepoLocation::Kind::kLocalPath);
}

TEST(CheckoutRepoLocation, HttpUrlsNormalizeSchemeHostPortAndTrailingSlash) {
  EXPECT_EQ(Url("HTTPS://Example.COM:443/Org/Repo.git/"), "https://example.com/Org/Repo.git");
  EXPECT_EQ(Url("http://example.com:80/r"), "http://example.com/r");
  EXPECT_EQ(Url("http://example.com:8080/r"), "http://example.com:8080/r");
  EXPECT_EQ(Url("https://[::1]:8443/r.git"), "https://[::1]:8443/r.git");
  EXPECT_EQ(Url("https://git.example.com/a%20b/r.git"), "https://git.example.com/a%20b/r.git");
  auto loc = ParseRepo("http://example.com/r");
  ASSERT_TRUE(loc.ok());
  EXPECT_EQ(loc->kind, RepoLocation::Kind::kHttp);
  loc = ParseRepo("https://example.com/r");
  ASSERT_TRUE(loc.ok());
  EXPECT_EQ(loc->kind, RepoLocation::Kind::kHttps);
}

TEST(CheckoutRepoLocation, OtherSchemesAreRefusedSayingWhichAreAccepted) {
  for (const char* repo : {"ssh://git@example.com/r.git", "git://example.com/r.git",
                           "ftp://example.com/r", "git+ssh://example.com/r"}) {
    Error e = Refused(repo);
    EXPECT_NE(e.message.find("https://"), std::string::npos) << e.message;
    EXPECT_NE(e.message.find("file://"), std::string::npos) << e.message;
  }
  Error e = Refused("ssh://git@example.com/r.git");
  EXPECT_NE(e.message.find("'ssh://'"), std::string::npos) << e.message;
}

TEST(CheckoutRepoLocation, MalformedReposAreRefused) {
  for (const char* repo : {"",
                           "relative/path",
                           "git@example.com:org/r.git",
                           "/",
                           "/srv/../etc",
                           "/srv/r\n",
                           "file://otherhost/srv/r",
                           "file:///srv/r%2e%2e",
                           "file:///srv/../r",
                           "https://",
                           "https:///r",
                           "https://example.com",
                           "https://example.com/",
                           "https://exa mple.com/r",
                           "https://example.com/r?x=1",
                           "https://example.com/r#frag",
                           "https://example.com:0/r",
                           "https://example.com:70000/r",
                           "https://example.com:/r",
                           "https://example.com:ab/r",
                           "https://-example.com/r",
                           "https://example.com/a/../r",
                           "https://example.com/a\\b",
                           "https://ex\xc3\xa4mple.com/r",
                           "https://[zz]/r",
                           "://x/y"}) {
    Refused(repo);
  }
  Refused(std::string("/srv/r\0x", 8));
  Refused("/" + std::string(5000, 'a'));
}

TEST(CheckoutRepoLocation, CredentialsAreRefusedWithoutBeingRepeated) {
  for (const char* repo :
       {"https://user:s3cr3t-token@example.com/r.git", "http://s3cr3t-token@example.com/r.git"}) {
    Error e = Refused(repo);
    EXPECT_EQ(e.message.find("s3cr3t"), std::string::npos) << e.message;
    EXPECT_NE(e.message.find("credentials"), std::string::npos) << e.message;
  }
  // A token in a query is refused too, and not repeated either.
  Error e = Refused("https://example.com/r.git?access_token=s3cr3t");
  EXPECT_EQ(e.message.find("s3cr3t"), std::string::npos) << e.message;
}

TEST(CheckoutRepoLocation, CommitShasAreFortyLowercaseHexDigits) {
  EXPECT_TRUE(IsCommitSha("0123456789abcdef0123456789abcdef01234567"));
  EXPECT_FALSE(IsCommitSha("0123456789ABCDEF0123456789abcdef01234567"));
  EXPECT_FALSE(IsCommitSha("0123456789abcdef0123456789abcdef0123456"));
  EXPECT_FALSE(IsCommitSha("0123456789abcdef0123456789abcdef012345678"));
  EXPECT_FALSE(IsCommitSha("0123456789abcdef0123456789abcdef0123456g"));
  EXPECT_FALSE(IsCommitSha("main"));
  EXPECT_FALSE(IsCommitSha(""));
}

}  // namespace
}  // namespace sbx::supervisor::checkout
