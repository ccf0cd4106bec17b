// Open() on URLs that name no usable database: no server and no privileges needed.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "supervisor/store/store.h"

namespace sbx::store {
namespace {

TEST(StoreOpenTest, RejectsUnsupportedUrls) {
  for (const char* url : {"mysql://x/y", "sqlite://relative.db", "sqlite://", "", "/tmp/x.db"}) {
    auto s = Open(url);
    ASSERT_FALSE(s.ok()) << url;
    EXPECT_EQ(s.error().code, ErrorCode::kInvalidArgument) << url;
  }
}

TEST(StoreOpenTest, UnreachablePostgresIsUnavailableAndHidesThePassword) {
  // Port 1 on loopback: nothing listens there.
  auto s = Open("postgresql://sbx:hunter2@127.0.0.1:1/sandboxd?connect_timeout=5");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(s.error().ToString().find("hunter2"), std::string::npos) << s.error().ToString();
}

TEST(StoreOpenTest, APeerTimeoutAddsLivenessParametersTheUrlDoesNotSetItself) {
  using std::chrono::milliseconds;
  EXPECT_EQ(WithPeerTimeout("postgresql://u@h/db", milliseconds(6000)),
            "postgresql://u@h/db?connect_timeout=6&tcp_user_timeout=6000&keepalives=1&"
            "keepalives_idle=2&"
            "keepalives_interval=1&options=-c%20idle_in_transaction_session_timeout%3D3000");
  // What the URL says wins; the rest is added after it.
  EXPECT_EQ(WithPeerTimeout("postgres://h/db?sslmode=require&keepalives_idle=30&options=x",
                            milliseconds(1500)),
            "postgres://h/db?sslmode=require&keepalives_idle=30&options=x&"
            "connect_timeout=2&tcp_user_timeout=1500&keepalives=1&keepalives_interval=1");
  // SQLite, and no timeout: as given.
  EXPECT_EQ(WithPeerTimeout("sqlite:///tmp/x.db", milliseconds(6000)), "sqlite:///tmp/x.db");
  EXPECT_EQ(WithPeerTimeout("postgresql://u@h/db", milliseconds(0)), "postgresql://u@h/db");
  // The password stays out of errors with the parameters added too.
  auto s = Open("postgresql://sbx:hunter2@127.0.0.1:1/sandboxd?connect_timeout=5",
                {.peer_timeout = milliseconds(2000)});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().ToString().find("hunter2"), std::string::npos) << s.error().ToString();
  EXPECT_EQ(s.error().ToString().find("tcp_user_timeout"), std::string::npos)
      << s.error().ToString();
}

TEST(StoreOpenTest, SqliteInAMissingDirectoryFailsWithAHint) {
  auto s = Open("sqlite:///nonexistent-dir-for-sbx-test/store.db");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("directory"), std::string::npos) << s.error().message;
}

}  // namespace
}  // namespace sbx::store
