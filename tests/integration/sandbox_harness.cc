#include "integration/sandbox_harness.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>

#include "base/fs.h"
#include "tests/support/skip.h"

namespace sbx::testing {

isolate::EngineOptions SandboxTest::engine_;
std::string SandboxTest::parent_;
std::unique_ptr<cgroup::Driver> SandboxTest::driver_;
std::string SandboxTest::skip_reason_;

namespace {

// Removes the parent cgroups of earlier test processes that died before their teardown (a
// crash, a kill): "sandboxd-test-PID" whose PID no longer runs, children first.
void RemoveStaleTestCgroups(const cgroup::HostInfo& host) {
  std::vector<std::string> roots;
  if (!host.unified_mount.empty()) roots.push_back(host.unified_mount);
  for (const auto& [ctrl, mount] : host.v1_mounts) roots.push_back(mount);
  for (const auto& root : roots) {
    DIR* d = ::opendir(root.c_str());
    if (d == nullptr) continue;
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.rfind("sandboxd-test-", 0) != 0) continue;
      pid_t pid = static_cast<pid_t>(std::atoi(name.c_str() + 14));
      if (pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
      std::string parent = root + "/" + name;
      if (DIR* p = ::opendir(parent.c_str())) {
        while (dirent* c = ::readdir(p)) {
          if (c->d_type == DT_DIR && c->d_name[0] != '.') {
            ::rmdir((parent + "/" + c->d_name).c_str());
          }
        }
        ::closedir(p);
      }
      ::rmdir(parent.c_str());
    }
    ::closedir(d);
  }
}

}  // namespace

void SandboxTest::SetUpTestSuite() {
  if (::geteuid() != 0) {
    skip_reason_ = "needs root (namespaces, cgroups, mounts)";
    return;
  }
  if (auto host = cgroup::DetectHost(); host.ok()) RemoveStaleTestCgroups(*host);
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
  if (!skip_reason_.empty()) SBX_SKIP_PRIVILEGED(skip_reason_);
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
  auto sb = isolate::Sandbox::Create(spec, *driver_, engine_);
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

std::vector<std::string> SandboxTest::CgroupRoots() {
  std::vector<std::string> roots;
  const auto& host = driver_->host();
  if (!host.unified_mount.empty()) roots.push_back(host.unified_mount);
  for (const auto& [ctrl, mount] : host.v1_mounts) roots.push_back(mount);
  return roots;
}

bool SandboxTest::ProcessNamed(const std::string& name) {
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return false;
  bool found = false;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    auto comm = ReadFile(std::string("/proc/") + e->d_name + "/comm");
    if (comm.ok() && *comm == name + "\n") found = true;
  }
  ::closedir(d);
  return found;
}

}  // namespace sbx::testing
