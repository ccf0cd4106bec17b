// cgroup/cgroup.h: where a daemon that owns its cgroup (systemd Delegate=yes) puts itself and its
// sandboxes, on a pure v2 host and on a hybrid one.
#include <gtest/gtest.h>

#include "cgroup/cgroup.h"

namespace sbx::cgroup {
namespace {

constexpr char kHybridProcCgroup[] =
    "12:pids:/system.slice/sandboxd.service\n"
    "11:cpu,cpuacct:/system.slice/sandboxd.service\n"
    "10:memory:/system.slice/sandboxd.service\n"
    "9:devices:/system.slice/sandboxd.service\n"
    "1:name=systemd:/system.slice/sandboxd.service\n"
    "0::/system.slice/sandboxd.service\n";

HostInfo Hybrid() {
  HostInfo h;
  h.layout = Layout::kHybrid;
  h.unified_mount = "/sys/fs/cgroup/unified";
  h.v1_mounts = {{"cpu", "/sys/fs/cgroup/cpu,cpuacct"},
                 {"cpuacct", "/sys/fs/cgroup/cpu,cpuacct"},
                 {"memory", "/sys/fs/cgroup/memory"},
                 {"pids", "/sys/fs/cgroup/pids"}};
  return h;
}

TEST(CgroupDelegation, ParsesProcSelfCgroup) {
  OwnCgroups own = ParseProcCgroup(kHybridProcCgroup);
  EXPECT_EQ(own.unified, "/system.slice/sandboxd.service");
  EXPECT_EQ(own.v1.at("memory"), "/system.slice/sandboxd.service");
  EXPECT_EQ(own.v1.at("cpu"), "/system.slice/sandboxd.service");
  EXPECT_EQ(own.v1.at("cpuacct"), "/system.slice/sandboxd.service");
  EXPECT_EQ(own.v1.count("name=systemd"), 0u);
  EXPECT_EQ(ParseProcCgroup("0::/a:b\n").unified, "/a:b");
}

TEST(CgroupDelegation, PureV2PutsTheDaemonInALeafAndSandboxesBesideIt) {
  HostInfo h;
  h.layout = Layout::kV2;
  h.unified_mount = "/sys/fs/cgroup";
  auto plan = PlanDelegation(ParseProcCgroup("0::/system.slice/sandboxd.service\n"), h, "sandboxd");
  ASSERT_TRUE(plan.ok()) << plan.error().ToString();
  EXPECT_EQ(plan->own, "/system.slice/sandboxd.service");
  EXPECT_EQ(plan->leaf, "/system.slice/sandboxd.service/supervisor");
  EXPECT_TRUE(plan->enable_controllers);
  EXPECT_EQ(plan->driver.parent, "system.slice/sandboxd.service/sandboxd");
  EXPECT_TRUE(plan->driver.v1_parents.empty());
}

TEST(CgroupDelegation, AlreadyInTheLeafAfterARestartInPlace) {
  HostInfo h;
  h.layout = Layout::kV2;
  h.unified_mount = "/sys/fs/cgroup";
  auto plan = PlanDelegation(ParseProcCgroup("0::/system.slice/sandboxd.service/supervisor\n"), h,
                             "sandboxd");
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->own, "/system.slice/sandboxd.service");
  EXPECT_EQ(plan->leaf, "/system.slice/sandboxd.service/supervisor");
}

TEST(CgroupDelegation, HybridUsesTheUnitsV1CgroupsOrTheRoot) {
  std::string text = kHybridProcCgroup;
  text.replace(text.find("12:pids:/system.slice/sandboxd.service"),
               std::string("12:pids:/system.slice/sandboxd.service").size(), "12:pids:/");
  auto plan = PlanDelegation(ParseProcCgroup(text), Hybrid(), "sandboxd");
  ASSERT_TRUE(plan.ok()) << plan.error().ToString();
  EXPECT_FALSE(plan->enable_controllers);  // no controllers in a hybrid unified hierarchy
  EXPECT_EQ(plan->driver.parent, "system.slice/sandboxd.service/sandboxd");
  EXPECT_EQ(plan->driver.v1_parents.at("memory"), "system.slice/sandboxd.service/sandboxd");
  EXPECT_EQ(plan->driver.v1_parents.at("cpu"), "system.slice/sandboxd.service/sandboxd");
  // pids was not delegated to the unit: its parent stays at the hierarchy's root.
  EXPECT_EQ(plan->driver.v1_parents.at("pids"), "sandboxd");
}

TEST(CgroupDelegation, RootCgroupIsNotADelegation) {
  HostInfo h;
  h.layout = Layout::kV2;
  h.unified_mount = "/sys/fs/cgroup";
  auto plan = PlanDelegation(ParseProcCgroup("0::/\n"), h, "sandboxd");
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().code, ErrorCode::kFailedPrecondition);
}

TEST(CgroupDelegation, DetectsASystemdService) {
  OwnCgroups svc = ParseProcCgroup("0::/system.slice/sandboxd.service\n");
  EXPECT_TRUE(LooksDelegatedBySystemd(svc, "0123456789abcdef"));
  EXPECT_FALSE(LooksDelegatedBySystemd(svc, nullptr));
  EXPECT_FALSE(LooksDelegatedBySystemd(svc, ""));
  EXPECT_TRUE(LooksDelegatedBySystemd(
      ParseProcCgroup("0::/system.slice/sandboxd.service/supervisor\n"), "x"));
  EXPECT_FALSE(LooksDelegatedBySystemd(ParseProcCgroup("0::/user.slice/session-1.scope\n"), "x"));
}

}  // namespace
}  // namespace sbx::cgroup
