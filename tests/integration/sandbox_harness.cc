#include "integration/sandbox_harness.h"

#include <sys/stat.h>

#include <atomic>

#include "base/fs.h"

namespace sbx::testing {

std::string SandboxTest::parent_;
std::unique_ptr<cgroup::Driver> SandboxTest::driver_;
std::string SandboxTest::skip_reason_;

void SandboxTest::SetUpTestSuite() {
  if (::geteuid() != 0) {
    skip_reason_ = "needs root (namespaces, cgroups, mounts)";
    return;
  }
  parent_ = fmt::format("sandboxd-test-{}", ::getpid());
  auto d = cgroup::Driver::Open(cgroup::DriverOptions{parent_});
  if (!d.ok()) {
    skip_reason_ = "no usable cgroup layout: " + d.error().ToString();
    return;
  }
  driver_ = std::move(*d);
}

void SandboxTest::TearDownTestSuite() {
  if (!driver_) return;
  // Remove the test's parent cgroup in every hierarchy (each sandbox removed its own child).
  cgroup::HostInfo host = driver_->host();
  driver_.reset();
  if (!host.unified_mount.empty()) ::rmdir((host.unified_mount + "/" + parent_).c_str());
  for (const auto& [ctrl, mount] : host.v1_mounts) ::rmdir((mount + "/" + parent_).c_str());
}

void SandboxTest::SetUp() {
  if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
}

isolate::SandboxSpec SandboxTest::DefaultSpec() {
  static std::atomic<int> seq{0};
  isolate::SandboxSpec spec;
  spec.id = fmt::format("t{}-{}", ::getpid(), seq++);
  spec.binds.push_back({SBX_TESTCASES_DIR, "/t", false});
  auto prog = seccomp::Compile(seccomp::DefaultProfile());
  EXPECT_TRUE(prog.ok()) << prog.error().ToString();
  if (prog.ok()) spec.seccomp = std::move(*prog);
  return spec;
}

std::unique_ptr<isolate::Sandbox> SandboxTest::Create(const isolate::SandboxSpec& spec) {
  auto sb = isolate::Sandbox::Create(spec, *driver_);
  EXPECT_TRUE(sb.ok()) << sb.error().ToString();
  if (!sb.ok()) return nullptr;
  return std::move(*sb);
}

RunOutput SandboxTest::RunIn(isolate::Sandbox& sb, std::vector<std::string> argv,
                             uint64_t timeout_ms) {
  RunOutput o;
  isolate::ProcessSpec p;
  p.argv = std::move(argv);
  p.timeout_ms = timeout_ms;
  auto r = sb.Run(p, [&](int stream, std::string_view d) { (stream == 1 ? o.out : o.err) += d; });
  EXPECT_TRUE(r.ok()) << r.error().ToString();
  if (r.ok()) o.result = std::move(*r);
  return o;
}

RunOutput SandboxTest::Run(isolate::SandboxSpec spec, std::vector<std::string> argv,
                           uint64_t timeout_ms) {
  auto sb = Create(spec);
  if (!sb) return {};
  RunOutput o = RunIn(*sb, std::move(argv), timeout_ms);
  Status st = sb->Destroy();
  EXPECT_TRUE(st.ok()) << st.error().ToString();
  // No cgroup left behind.
  const auto& host = driver_->host();
  if (!host.unified_mount.empty()) {
    struct stat s;
    EXPECT_NE(::stat((host.unified_mount + "/" + parent_ + "/" + spec.id).c_str(), &s), 0)
        << "cgroup of " << spec.id << " left behind";
  }
  return o;
}

}  // namespace sbx::testing
