// The change set's manifest: what SaveChanges writes reads back the same, and a manifest that
// is not one (a path that climbs out, an unknown operation, another version) is refused with
// what is wrong, so a damaged data directory never becomes a write outside the workspace.
#include <gtest/gtest.h>

#include "supervisor/workspace/changes.h"

namespace sbx::supervisor {
namespace {

ChangeSet Sample() {
  ChangeSet set;
  ChangeEntry w{"dir/a.txt", ChangeEntry::Op::kWrite, 0640, 5, std::string(64, 'b'), "blobs/0"};
  w.base = {ChangeBase::Kind::kFile, 0644, std::string(64, 'c'), "", false};
  ChangeEntry d{"gone", ChangeEntry::Op::kDelete};
  d.base = {ChangeBase::Kind::kSymlink, 0, "", "../target", true};
  ChangeEntry m{"dir", ChangeEntry::Op::kMakeDir, 0700};
  ChangeEntry r{"old", ChangeEntry::Op::kRemoveDir};
  r.base.kind = ChangeBase::Kind::kDir;
  set.entries = {m, w, d, r};
  set.refused = {{"link", "a symbolic link the run made"}};
  set.total_bytes = 5;
  return set;
}

TEST(ChangeSet, RoundTrips) {
  const ChangeSet set = Sample();
  auto back = ChangeSetFromJson(nlohmann::json::parse(ChangeSetToJson(set).dump()));
  ASSERT_TRUE(back.ok()) << back.error().ToString();
  EXPECT_EQ(*back, set);
}

TEST(ChangeSet, RefusesPathsOutsideTheWorkspaceAndUnknownOps) {
  for (const char* bad : {"../etc/passwd", "/etc/passwd", "a/../../b", "a//b", "a/./b", "", "a/",
                          "a\nb"}) {
    nlohmann::json j = ChangeSetToJson(Sample());
    j["entries"][1]["path"] = bad;
    auto r = ChangeSetFromJson(j);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  }
  nlohmann::json op = ChangeSetToJson(Sample());
  op["entries"][0]["op"] = "chmod";
  EXPECT_FALSE(ChangeSetFromJson(op).ok());
  nlohmann::json kind = ChangeSetToJson(Sample());
  kind["entries"][0]["base"]["kind"] = "fifo";
  EXPECT_FALSE(ChangeSetFromJson(kind).ok());
  nlohmann::json version = ChangeSetToJson(Sample());
  version["version"] = 2;
  EXPECT_FALSE(ChangeSetFromJson(version).ok());
  nlohmann::json missing = ChangeSetToJson(Sample());
  missing["entries"][1].erase("sha256");
  EXPECT_FALSE(ChangeSetFromJson(missing).ok());
  EXPECT_FALSE(ChangeSetFromJson(nlohmann::json::array()).ok());
}

// Whatever the manifest says, a mode never carries setuid, setgid or sticky bits.
TEST(ChangeSet, ModesLoseSpecialBits) {
  nlohmann::json j = ChangeSetToJson(Sample());
  j["entries"][1]["mode"] = 06755;
  auto r = ChangeSetFromJson(j);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->entries[1].mode, 0755u);
}

// A set with refusals is refused whole before anything is looked at.
TEST(ChangeSet, ASetWithRefusalsIsNotApplied) {
  auto r = ApplyChangeSet(-1, "/nonexistent", Sample(), 0, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(r.error().message.find("link"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace sbx::supervisor
