// Open() on URLs that name no usable database: no server and no privileges needed.
#include <gtest/gtest.h>

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

TEST(StoreOpenTest, SqliteInAMissingDirectoryFailsWithAHint) {
  auto s = Open("sqlite:///nonexistent-dir-for-sbx-test/store.db");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("directory"), std::string::npos) << s.error().message;
}

}  // namespace
}  // namespace sbx::store
