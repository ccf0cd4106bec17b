#include <gtest/gtest.h>
#include <limits.h>
#include <stdlib.h>

#include "isolate/mount_plan.h"
#include "isolate/sandbox.h"

namespace sbx::isolate {
namespace {

using Kind = internal::MountOp::Kind;

TEST(NormalizeSandboxPath, CleansAndRefuses) {
  EXPECT_EQ(*NormalizeSandboxPath("/a//b/./c/"), "/a/b/c");
  EXPECT_EQ(*NormalizeSandboxPath("/"), "/");
  for (const char* bad : {"", "relative", "/a/../b", "/.."}) {
    EXPECT_FALSE(NormalizeSandboxPath(bad).ok()) << bad;
  }
  EXPECT_FALSE(NormalizeSandboxPath(std::string("/a\0b", 4)).ok());
  EXPECT_FALSE(NormalizeSandboxPath("/" + std::string(5000, 'a')).ok());
}

const internal::MountOp* Find(const std::vector<internal::MountOp>& ops, Kind k,
                              const std::string& target) {
  for (const auto& op : ops) {
    if (op.kind == k && op.target == target) return &op;
  }
  return nullptr;
}

TEST(PlanMounts, DefaultRootIsMinimalAndReadOnly) {
  SandboxSpec spec;
  spec.id = "t";
  auto ops = PlanMounts(spec, "/run/sandboxd/root");
  ASSERT_TRUE(ops.ok()) << ops.error().ToString();
  const auto* usr = Find(*ops, Kind::kBind, "usr");
  ASSERT_NE(usr, nullptr);
  EXPECT_FALSE(usr->writable);
  EXPECT_NE(Find(*ops, Kind::kProc, "proc"), nullptr);
  EXPECT_NE(Find(*ops, Kind::kMaskFile, "proc/kcore"), nullptr);
  EXPECT_NE(Find(*ops, Kind::kReadOnly, "proc/sys"), nullptr);
  EXPECT_NE(Find(*ops, Kind::kDevpts, "dev/pts"), nullptr);
  EXPECT_NE(Find(*ops, Kind::kBind, "dev/null"), nullptr);
  EXPECT_NE(Find(*ops, Kind::kFile, "etc/passwd"), nullptr);
  EXPECT_EQ(Find(*ops, Kind::kFile, "etc/shadow"), nullptr);
  const auto* tmp = Find(*ops, Kind::kTmpfs, "tmp");
  ASSERT_NE(tmp, nullptr);
  EXPECT_NE(tmp->data.find("size=67108864"), std::string::npos);
  // Nothing of the host beyond the system dirs, a few /etc files (named by their real paths:
  // the child binds without following symlinks) and device nodes.
  auto real = [](const char* path) {
    char buf[PATH_MAX];
    return ::realpath(path, buf) != nullptr ? std::string(buf) : std::string(path);
  };
  for (const auto& op : *ops) {
    if (op.kind != Kind::kBind) continue;
    bool allowed = op.source == "/usr" || op.source.rfind("/lib", 0) == 0 ||
                   op.source == "/bin" || op.source == "/sbin" ||
                   op.source.rfind("/dev/", 0) == 0 || op.source == real("/etc/ld.so.cache") ||
                   op.source == real("/etc/localtime") || op.source == real("/etc/alternatives");
    EXPECT_TRUE(allowed) << op.source;
    char buf[PATH_MAX];
    if (op.source.rfind("/dev/", 0) != 0) {
      ASSERT_NE(::realpath(op.source.c_str(), buf), nullptr) << op.source;
      EXPECT_EQ(op.source, buf) << "a bind source with a symlink in its path";
    }
  }
  // /etc and /dev are made read-only last.
  EXPECT_EQ(ops->back().kind, Kind::kRemountReadOnly);
}

TEST(PlanMounts, RefusesHostileTargetsAndSources) {
  SandboxSpec spec;
  spec.id = "t";
  for (const char* target : {"/", "/proc/sys", "/dev/x", "relative", "/a/../etc"}) {
    SandboxSpec s = spec;
    s.binds.push_back({"/usr", target, false});
    EXPECT_FALSE(PlanMounts(s, "/run/sandboxd/root").ok()) << target;
  }
  SandboxSpec s = spec;
  s.binds.push_back({"/does/not/exist", "/x", false});
  EXPECT_FALSE(PlanMounts(s, "/run/sandboxd/root").ok());
  s = spec;
  s.binds.push_back({"relative/src", "/x", false});
  EXPECT_FALSE(PlanMounts(s, "/run/sandboxd/root").ok());
  s = spec;
  s.binds.push_back({"/run/sandboxd/root", "/x", false});
  EXPECT_FALSE(PlanMounts(s, "/run/sandboxd/root").ok());
}

TEST(SynthesizeEtc, SandboxUserAndHostname) {
  SandboxSpec spec;
  spec.hostname = "box";
  auto files = SynthesizeEtc(spec);
  std::string passwd, hosts;
  for (const auto& f : files) {
    if (f.name == "passwd") passwd = f.contents;
    if (f.name == "hosts") hosts = f.contents;
  }
  EXPECT_NE(passwd.find("sandbox:x:1000:1000:"), std::string::npos);
  EXPECT_NE(hosts.find("localhost box"), std::string::npos);
}

TEST(FormatIdMap, Line) { EXPECT_EQ(FormatIdMap(0, 100000, 65536), "0 100000 65536\n"); }

}  // namespace
}  // namespace sbx::isolate
