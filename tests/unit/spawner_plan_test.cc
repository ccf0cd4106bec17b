// The plan a spawner receives: what EncodePlan writes, DecodePlan reads back whole, and bytes
// that are not a plan are refused, never read past their end.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include "isolate/spawner.h"

namespace sbx::isolate::internal {
namespace {

ChildPlan SamplePlan(const seccomp::Program* prog) {
  ChildPlan plan;
  plan.stage_dir = "/run/sandboxd/root";
  MountOp bind{MountOp::Kind::kBind, "/usr", "usr", "", 0755, 0, false, true};
  MountOp file{MountOp::Kind::kFile, "", "etc/hostname", "box\n", 0644, 0, false, false};
  MountOp tmp{MountOp::Kind::kTmpfs, "", "tmp", "size=64m", 01777, 6, true, true};
  plan.mounts = {bind, file, tmp};
  plan.hostname = "box";
  plan.uid = 1000;
  plan.gid = 1001;
  plan.read_only_root = false;
  plan.rlimits = {{RLIMIT_NOFILE, {1024, 2048}}, {RLIMIT_CORE, {0, 0}}};
  plan.seccomp = prog;
  plan.sync_fd = 7;
  return plan;
}

seccomp::Program SampleProgram() {
  seccomp::Program p;
  p.notify = seccomp::NotifyMode::kLearn;
  p.insns = {{0x20, 0, 0, 4}, {0x15, 1, 0, 0xc000003e}, {0x06, 0, 0, 0x7fff0000}};
  return p;
}

TEST(SpawnerPlanTest, RoundTripsEveryField) {
  seccomp::Program prog = SampleProgram();
  ChildPlan in = SamplePlan(&prog);
  DecodedPlan out;
  ASSERT_TRUE(DecodePlan(EncodePlan(in), &out).ok());
  EXPECT_EQ(out.plan.stage_dir, in.stage_dir);
  ASSERT_EQ(out.plan.mounts.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(out.plan.mounts[i].kind, in.mounts[i].kind);
    EXPECT_EQ(out.plan.mounts[i].source, in.mounts[i].source);
    EXPECT_EQ(out.plan.mounts[i].target, in.mounts[i].target);
    EXPECT_EQ(out.plan.mounts[i].data, in.mounts[i].data);
    EXPECT_EQ(out.plan.mounts[i].mode, in.mounts[i].mode);
    EXPECT_EQ(out.plan.mounts[i].flags, in.mounts[i].flags);
    EXPECT_EQ(out.plan.mounts[i].writable, in.mounts[i].writable);
    EXPECT_EQ(out.plan.mounts[i].is_dir, in.mounts[i].is_dir);
  }
  EXPECT_EQ(out.plan.hostname, "box");
  EXPECT_EQ(out.plan.uid, 1000u);
  EXPECT_EQ(out.plan.gid, 1001u);
  EXPECT_FALSE(out.plan.read_only_root);
  ASSERT_EQ(out.plan.rlimits.size(), 2u);
  EXPECT_EQ(out.plan.rlimits[0].first, RLIMIT_NOFILE);
  EXPECT_EQ(out.plan.rlimits[0].second.rlim_cur, 1024u);
  EXPECT_EQ(out.plan.rlimits[0].second.rlim_max, 2048u);
  ASSERT_EQ(out.plan.seccomp, &out.seccomp);
  EXPECT_EQ(out.seccomp.notify, seccomp::NotifyMode::kLearn);
  ASSERT_EQ(out.seccomp.insns.size(), 3u);
  EXPECT_EQ(out.seccomp.insns[1].k, 0xc000003eu);
  EXPECT_EQ(out.seccomp.insns[1].jt, 1);
  // fds are not part of the bytes: they travel as SCM_RIGHTS.
  EXPECT_EQ(out.plan.sync_fd, -1);
}

TEST(SpawnerPlanTest, UnconfinedStaysUnconfined) {
  DecodedPlan out;
  ASSERT_TRUE(DecodePlan(EncodePlan(SamplePlan(nullptr)), &out).ok());
  EXPECT_EQ(out.plan.seccomp, nullptr);
}

TEST(SpawnerPlanTest, EveryTruncationAndTrailingBytesAreRefused) {
  seccomp::Program prog = SampleProgram();
  std::string bytes = EncodePlan(SamplePlan(&prog));
  for (size_t n = 0; n < bytes.size(); ++n) {
    DecodedPlan out;
    EXPECT_FALSE(DecodePlan(std::string_view(bytes).substr(0, n), &out).ok()) << n;
  }
  DecodedPlan out;
  EXPECT_FALSE(DecodePlan(bytes + "x", &out).ok());
}

TEST(SpawnerPlanTest, HugeCountsAndBadKindsAreRefusedBeforeAllocating) {
  seccomp::Program prog = SampleProgram();
  std::string bytes = EncodePlan(SamplePlan(&prog));
  // The mount count follows the magic and the stage dir (u32 length + text).
  size_t at = 4 + 4 + std::string("/run/sandboxd/root").size();
  std::string huge = bytes;
  huge[at + 3] = '\x7f';  // 0x7f000003 mounts
  DecodedPlan out;
  EXPECT_FALSE(DecodePlan(huge, &out).ok());
  std::string bad_kind = bytes;
  bad_kind[at + 4] = '\x63';  // the first mount's kind: 99
  DecodedPlan out2;
  EXPECT_FALSE(DecodePlan(bad_kind, &out2).ok());
  std::string bad_magic = bytes;
  bad_magic[0] ^= 1;
  DecodedPlan out3;
  EXPECT_FALSE(DecodePlan(bad_magic, &out3).ok());
}

}  // namespace
}  // namespace sbx::isolate::internal
