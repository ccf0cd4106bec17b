// The sandboxes' host id range against /etc/subuid and /etc/subgid allotments.
#include "isolate/id_range.h"

#include <gtest/gtest.h>

namespace sbx::isolate {
namespace {

TEST(IdRange, ParsesSubIdFiles) {
  auto r = ParseSubIds("# users\nalice:100000:65536\n\n1001:165536:65536\n");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].owner, "alice");
  EXPECT_EQ((*r)[0].start, 100000u);
  EXPECT_EQ((*r)[1].owner, "1001");
  EXPECT_EQ((*r)[1].count, 65536u);
  for (const char* bad : {"alice:100000\n", "alice:x:65536\n", ":1:2\n", "a:1:2:3\n",
                          "a:-1:5\n"}) {
    auto e = ParseSubIds(std::string("ok:1:1\n") + bad);
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_NE(e.error().message.find("line 2"), std::string::npos) << e.error().message;
  }
}

TEST(IdRange, AnOverlapIsRefusedWithAFreeBaseToUse) {
  std::vector<SubIdRange> users = {{"alice", 100000, 65536}, {"bob", 165536, 65536}};
  EXPECT_TRUE(CheckSandboxIds(300000, users, "/etc/subuid").ok());
  EXPECT_TRUE(CheckSandboxIds(231072, users, "/etc/subuid").ok());  // right after bob's
  EXPECT_TRUE(CheckSandboxIds(34464, users, "/etc/subuid").ok());   // ends where alice's starts
  auto st = CheckSandboxIds(100000, users, "/etc/subuid");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(st.error().message.find("alice's range 100000:65536 in /etc/subuid"),
            std::string::npos)
      << st.error().message;
  // Past alice's and then bob's range, in steps of the sandboxes' range.
  EXPECT_NE(st.error().message.find("sandbox_id_base: 231072"), std::string::npos)
      << st.error().message;
  auto one_id = CheckSandboxIds(165535 - 65535, {{"carol", 165535, 1}}, "/etc/subgid");
  EXPECT_FALSE(one_id.ok());
}

TEST(IdRange, TheRangeMustFitTheIdSpace) {
  EXPECT_FALSE(CheckSandboxIds(0, {}, "").ok());
  EXPECT_FALSE(CheckSandboxIds(0xFFFFFFFFull - 100, {}, "").ok());
  EXPECT_TRUE(CheckSandboxIds(0xFFFFFFFFull - 65536, {}, "").ok());
}

}  // namespace
}  // namespace sbx::isolate
