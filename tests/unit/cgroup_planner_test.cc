// Pure tests of the cgroup planners, mount table parsing and layout detection. No privileges.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "cgroup/cgroup.h"

namespace sbx::cgroup {
namespace {

using W = PlannedWrite;

constexpr uint64_t kMiB = 1024 * 1024;

// This development host: v1 controllers each on their own hierarchy, a controller-less cgroup2.
constexpr char kHybridMounts[] =
    "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n"
    "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n"
    "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n"
    "cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0\n"
    "cgroup /sys/fs/cgroup/cpuset cgroup rw,relatime,cpuset 0 0\n"
    "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n"
    "cgroup /sys/fs/cgroup/devices cgroup rw,relatime,devices 0 0\n"
    "cgroup /sys/fs/cgroup/freezer cgroup rw,relatime,freezer 0 0\n"
    "cgroup /sys/fs/cgroup/blkio cgroup rw,relatime,blkio 0 0\n"
    "cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0\n"
    "cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0\n"
    "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";

// systemd's hybrid mode (Ubuntu 20.04): cpu and cpuacct share one hierarchy.
constexpr char kSystemdHybridMounts[] =
    "tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0\n"
    "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n"
    "cgroup /sys/fs/cgroup/systemd cgroup rw,nosuid,nodev,noexec,relatime,xattr,"
    "name=systemd 0 0\n"
    "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0\n"
    "cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0\n"
    "cgroup /sys/fs/cgroup/pids cgroup rw,nosuid,nodev,noexec,relatime,pids 0 0\n";

// Ubuntu 24.04: cgroup2 only.
constexpr char kV2Mounts[] =
    "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"
    "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,"
    "memory_recursiveprot 0 0\n"
    "/dev/sda1 / ext4 rw,relatime 0 0\n";

// CentOS 7: v1 only.
constexpr char kV1OnlyMounts[] =
    "tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0\n"
    "cgroup /sys/fs/cgroup/systemd cgroup rw,nosuid,nodev,noexec,relatime,xattr,"
    "release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd 0 0\n"
    "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpuacct,cpu 0 0\n"
    "cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0\n"
    "cgroup /sys/fs/cgroup/pids cgroup rw,nosuid,nodev,noexec,relatime,pids 0 0\n"
    "cgroup /sys/fs/cgroup/net_cls,net_prio cgroup rw,nosuid,nodev,noexec,relatime,net_prio,"
    "net_cls 0 0\n";

// ---- planners ----

TEST(PlanV2Writes, NoLimitsNoWrites) {
  auto w = PlanV2Writes({});
  ASSERT_TRUE(w.ok()) << w.error().ToString();
  EXPECT_TRUE(w->empty());
}

TEST(PlanV2Writes, Cpu) {
  auto w = PlanV2Writes({.cpus = 1.5});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, (std::vector<W>{{"", "cpu.max", "150000 100000"}}));
}

TEST(PlanV2Writes, SmallestCpuQuotaIsOneMillisecond) {
  auto w = PlanV2Writes({.cpus = 0.01});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, (std::vector<W>{{"", "cpu.max", "1000 100000"}}));
  w = PlanV2Writes({.cpus = 0.0125});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, (std::vector<W>{{"", "cpu.max", "1250 100000"}}));
}

TEST(PlanV2Writes, Memory) {
  auto w = PlanV2Writes({.memory_bytes = 256 * kMiB});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, (std::vector<W>{{"", "memory.max", "268435456"},
                                {"", "memory.swap.max", "0", true},
                                {"", "memory.oom.group", "1"}}));
}

TEST(PlanV2Writes, Pids) {
  auto w = PlanV2Writes({.pids = 64});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, (std::vector<W>{{"", "pids.max", "64"}}));
}

TEST(PlanV2Writes, AllLimitsInOrder) {
  auto w = PlanV2Writes({.cpus = 2, .memory_bytes = 4 * kMiB, .pids = 1});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, (std::vector<W>{{"", "cpu.max", "200000 100000"},
                                {"", "memory.max", "4194304"},
                                {"", "memory.swap.max", "0", true},
                                {"", "memory.oom.group", "1"},
                                {"", "pids.max", "1"}}));
}

TEST(PlanV1Writes, NoLimitsNoWrites) {
  auto w = PlanV1Writes({});
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(w->empty());
}

TEST(PlanV1Writes, Cpu) {
  auto w = PlanV1Writes({.cpus = 0.5});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, (std::vector<W>{{"cpu", "cpu.cfs_period_us", "100000"},
                                {"cpu", "cpu.cfs_quota_us", "50000"}}));
}

TEST(PlanV1Writes, MemorySwapLimitComesAfterTheMemoryLimit) {
  auto w = PlanV1Writes({.memory_bytes = 64 * kMiB});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, (std::vector<W>{{"memory", "memory.limit_in_bytes", "67108864"},
                                {"memory", "memory.memsw.limit_in_bytes", "67108864", true},
                                {"memory", "memory.swappiness", "0", true}}));
}

TEST(PlanV1Writes, Pids) {
  auto w = PlanV1Writes({.pids = 4194304});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, (std::vector<W>{{"pids", "pids.max", "4194304"}}));
}

TEST(PlanV1Writes, AllLimitsInOrder) {
  auto w = PlanV1Writes({.cpus = 0.25, .memory_bytes = 512 * kMiB, .pids = 100});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, (std::vector<W>{{"cpu", "cpu.cfs_period_us", "100000"},
                                {"cpu", "cpu.cfs_quota_us", "25000"},
                                {"memory", "memory.limit_in_bytes", "536870912"},
                                {"memory", "memory.memsw.limit_in_bytes", "536870912", true},
                                {"memory", "memory.swappiness", "0", true},
                                {"pids", "pids.max", "100"}}));
}

void ExpectInvalid(const Limits& limits, const std::string& needle) {
  for (auto plan : {PlanV2Writes, PlanV1Writes}) {
    auto w = plan(limits);
    ASSERT_FALSE(w.ok());
    EXPECT_EQ(w.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(w.error().message.find(needle), std::string::npos) << w.error().message;
  }
}

TEST(PlanWrites, RejectsBadCpus) {
  ExpectInvalid({.cpus = 0}, "cpus");
  ExpectInvalid({.cpus = -1}, "cpus");
  ExpectInvalid({.cpus = 0.005}, "cpus");
  ExpectInvalid({.cpus = 5000}, "cpus");
  ExpectInvalid({.cpus = std::numeric_limits<double>::quiet_NaN()}, "cpus");
  ExpectInvalid({.cpus = std::numeric_limits<double>::infinity()}, "cpus");
}

TEST(PlanWrites, RejectsMemoryBelowFourMiB) {
  ExpectInvalid({.memory_bytes = 4 * kMiB - 1}, "below the minimum of 4 MiB");
  ExpectInvalid({.memory_bytes = 0}, "below the minimum of 4 MiB");
  EXPECT_TRUE(PlanV2Writes({.memory_bytes = 4 * kMiB}).ok());
}

TEST(PlanWrites, RejectsBadPids) {
  ExpectInvalid({.pids = 0}, "pids limit must be between 1 and 4194304");
  ExpectInvalid({.pids = kMaxPids + 1}, "pids limit");
}

TEST(PlanWrites, OneBadLimitFailsTheWholePlan) {
  ExpectInvalid({.cpus = 1, .memory_bytes = 1024, .pids = 10}, "memory");
}

// ---- mount table ----

TEST(ParseMountTable, ThisHybridHost) {
  HostInfo h = ParseMountTable(kHybridMounts);
  EXPECT_EQ(h.unified_mount, "/sys/fs/cgroup/unified");
  EXPECT_EQ(h.v1_mounts, (std::map<std::string, std::string>{{"blkio", "/sys/fs/cgroup/blkio"},
                                                             {"cpu", "/sys/fs/cgroup/cpu"},
                                                             {"cpuacct", "/sys/fs/cgroup/cpuacct"},
                                                             {"cpuset", "/sys/fs/cgroup/cpuset"},
                                                             {"devices", "/sys/fs/cgroup/devices"},
                                                             {"freezer", "/sys/fs/cgroup/freezer"},
                                                             {"memory", "/sys/fs/cgroup/memory"},
                                                             {"pids", "/sys/fs/cgroup/pids"}}));
  EXPECT_EQ(h.layout, Layout::kNone);  // not classified yet
  EXPECT_TRUE(h.v2_controllers.empty());
  EXPECT_EQ(ClassifyLayout(h), Layout::kHybrid);
}

TEST(ParseMountTable, CoMountedControllersShareAMountPoint) {
  HostInfo h = ParseMountTable(kSystemdHybridMounts);
  EXPECT_EQ(h.unified_mount, "/sys/fs/cgroup/unified");
  EXPECT_EQ(h.v1_mounts,
            (std::map<std::string, std::string>{{"cpu", "/sys/fs/cgroup/cpu,cpuacct"},
                                                {"cpuacct", "/sys/fs/cgroup/cpu,cpuacct"},
                                                {"memory", "/sys/fs/cgroup/memory"},
                                                {"pids", "/sys/fs/cgroup/pids"}}));
  EXPECT_EQ(ClassifyLayout(h), Layout::kHybrid);
}

TEST(ParseMountTable, PureV2) {
  HostInfo h = ParseMountTable(kV2Mounts);
  EXPECT_EQ(h.unified_mount, "/sys/fs/cgroup");
  EXPECT_TRUE(h.v1_mounts.empty());
  h.v2_controllers = {"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"};
  EXPECT_EQ(ClassifyLayout(h), Layout::kV2);
}

TEST(ParseMountTable, V1Only) {
  HostInfo h = ParseMountTable(kV1OnlyMounts);
  EXPECT_EQ(h.unified_mount, "");
  EXPECT_EQ(h.v1_mounts,
            (std::map<std::string, std::string>{{"cpu", "/sys/fs/cgroup/cpu,cpuacct"},
                                                {"cpuacct", "/sys/fs/cgroup/cpu,cpuacct"},
                                                {"memory", "/sys/fs/cgroup/memory"},
                                                {"net_cls", "/sys/fs/cgroup/net_cls,net_prio"},
                                                {"net_prio", "/sys/fs/cgroup/net_cls,net_prio"},
                                                {"pids", "/sys/fs/cgroup/pids"}}));
  EXPECT_EQ(ClassifyLayout(h), Layout::kV1Only);
}

TEST(ParseMountTable, NameSystemdIsNotAController) {
  HostInfo h =
      ParseMountTable("cgroup /sys/fs/cgroup/systemd cgroup rw,nosuid,xattr,name=systemd 0 0\n");
  EXPECT_TRUE(h.v1_mounts.empty());
  EXPECT_EQ(ClassifyLayout(h), Layout::kNone);
}

TEST(ParseMountTable, DecodesEscapedMountPoints) {
  HostInfo h = ParseMountTable(
      "cgroup2 /mnt/my\\040cgroup cgroup2 rw 0 0\n"
      "cgroup /mnt/mem\\134ory cgroup rw,memory 0 0\n");
  EXPECT_EQ(h.unified_mount, "/mnt/my cgroup");
  EXPECT_EQ(h.v1_mounts.at("memory"), "/mnt/mem\\ory");
}

TEST(ParseMountTable, FirstCgroup2MountWinsAndJunkIsIgnored) {
  HostInfo h = ParseMountTable(
      "garbage\n\n"
      "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n"
      "cgroup2 /run/other cgroup2 rw 0 0\n");
  EXPECT_EQ(h.unified_mount, "/sys/fs/cgroup");
}

TEST(ParseMountTable, Empty) {
  HostInfo h = ParseMountTable("");
  EXPECT_EQ(ClassifyLayout(h), Layout::kNone);
}

// ---- layout ----

TEST(ClassifyLayout, V2WhenTheUnifiedRootOffersTheControllers) {
  // Even with v1 hierarchies around (e.g. an unused v1 mount left by a container runtime).
  HostInfo h = ParseMountTable(kSystemdHybridMounts);
  h.v2_controllers = {"cpu", "memory", "pids"};
  EXPECT_EQ(ClassifyLayout(h), Layout::kV2);
}

TEST(ClassifyLayout, V2WhenNoV1LimitingControllerIsMounted) {
  HostInfo h;
  h.unified_mount = "/sys/fs/cgroup";
  h.v1_mounts = {{"freezer", "/sys/fs/cgroup/freezer"}};
  h.v2_controllers = {"memory"};  // the v2 driver says what is missing
  EXPECT_EQ(ClassifyLayout(h), Layout::kV2);
}

TEST(ClassifyLayout, HybridWhenControllersAreOnV1) {
  HostInfo h;
  h.unified_mount = "/sys/fs/cgroup/unified";
  h.v1_mounts = {{"memory", "/sys/fs/cgroup/memory"}};
  h.v2_controllers = {"cpu", "pids"};
  EXPECT_EQ(ClassifyLayout(h), Layout::kHybrid);
}

TEST(LayoutName, Names) {
  EXPECT_STREQ(LayoutName(Layout::kV2), "v2");
  EXPECT_STREQ(LayoutName(Layout::kHybrid), "hybrid");
  EXPECT_STREQ(LayoutName(Layout::kV1Only), "v1");
  EXPECT_STREQ(LayoutName(Layout::kNone), "none");
}

// ---- DetectHost, reading cgroup.controllers from a temp dir ----

class DetectHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sbx-cgroup-detect-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  void Put(const std::string& rel, const std::string& text) {
    std::filesystem::path p = root_ + rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  std::string root_;
};

TEST_F(DetectHostTest, PureV2) {
  Put("/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
  auto h = DetectHost(kV2Mounts, root_);
  ASSERT_TRUE(h.ok()) << h.error().ToString();
  EXPECT_EQ(h->layout, Layout::kV2);
  EXPECT_EQ(h->unified_mount, "/sys/fs/cgroup");  // unprefixed
  EXPECT_EQ(h->v2_controllers, (std::vector<std::string>{"cpuset", "cpu", "io", "memory", "hugetlb",
                                                         "pids", "rdma", "misc"}));
}

TEST_F(DetectHostTest, Hybrid) {
  Put("/sys/fs/cgroup/unified/cgroup.controllers", "\n");
  auto h = DetectHost(kHybridMounts, root_);
  ASSERT_TRUE(h.ok()) << h.error().ToString();
  EXPECT_EQ(h->layout, Layout::kHybrid);
  EXPECT_TRUE(h->v2_controllers.empty());
  EXPECT_EQ(h->v1_mounts.at("pids"), "/sys/fs/cgroup/pids");
}

TEST_F(DetectHostTest, V1OnlyReadsNothing) {
  auto h = DetectHost(kV1OnlyMounts, root_);
  ASSERT_TRUE(h.ok()) << h.error().ToString();
  EXPECT_EQ(h->layout, Layout::kV1Only);
}

TEST_F(DetectHostTest, MissingControllersFileIsAnError) {
  auto h = DetectHost(kV2Mounts, root_);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().code, ErrorCode::kNotFound);
  EXPECT_NE(h.error().message.find("/sys/fs/cgroup/cgroup.controllers"), std::string::npos);
}

// ---- Driver::Open on unsupported layouts (touches nothing) ----

TEST(DriverOpen, V1OnlyIsUnsupported) {
  HostInfo h = ParseMountTable(kV1OnlyMounts);
  h.layout = ClassifyLayout(h);
  auto d = Driver::Open({}, h);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(d.error().message.find("only cgroup v1"), std::string::npos) << d.error().message;
  EXPECT_NE(d.error().message.find("systemd.unified_cgroup_hierarchy=1"), std::string::npos);
}

TEST(DriverOpen, NoCgroupsIsUnsupported) {
  auto d = Driver::Open({}, HostInfo{});
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(d.error().message.find("no cgroup filesystem"), std::string::npos);
}

TEST(DriverOpen, HybridWithoutAV1ControllerSaysWhichIsMissing) {
  HostInfo h = ParseMountTable(kHybridMounts);
  h.v1_mounts.erase("pids");
  h.layout = Layout::kHybrid;
  auto d = Driver::Open({.parent = "sandboxd-never-created"}, h);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(d.error().message.find("cgroup v1 controller 'pids' is not mounted"), std::string::npos)
      << d.error().message;
}

TEST(DriverOpen, RejectsBadParents) {
  HostInfo h = ParseMountTable(kHybridMounts);
  h.layout = Layout::kHybrid;
  for (std::string parent : {"", "/abs", "a//b", "../escape", "a/./b", "a/.."}) {
    auto d = Driver::Open({.parent = parent}, h);
    ASSERT_FALSE(d.ok()) << parent;
    EXPECT_EQ(d.error().code, ErrorCode::kInvalidArgument) << parent;
  }
}

}  // namespace
}  // namespace sbx::cgroup
