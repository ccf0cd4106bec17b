// Which backend runs a run: what it asked for, where that is available, and what the failure
// says when nothing can serve it. Also the native host probe's wording.
#include <gtest/gtest.h>

#include "supervisor/backend/backend.h"

namespace sbx::supervisor {
namespace {

class FakeBackend : public Backend {
 public:
  FakeBackend(BackendKind kind, bool available, std::string reason)
      : kind_(kind), available_(available), reason_(std::move(reason)) {}
  BackendKind kind() const override { return kind_; }
  BackendAvailability Availability() override {
    return {BackendKindName(kind_), available_, available_ ? "" : reason_, ""};
  }
  Status AttachSeccomp(const SeccompSource&, const std::string&, SandboxRequest&) override {
    return Ok();
  }
  Result<std::unique_ptr<RunSandbox>> Create(const SandboxRequest&) override {
    return MakeError(ErrorCode::kInternal, "not in this test");
  }
  Result<std::vector<std::string>> RemoveLeftovers() override { return std::vector<std::string>{}; }

 private:
  BackendKind kind_;
  bool available_;
  std::string reason_;
};

TEST(SelectBackend, AutoPrefersNativeAndFallsBackToDocker) {
  FakeBackend native(BackendKind::kNative, true, "");
  FakeBackend docker(BackendKind::kDocker, true, "");
  FakeBackend native_off(BackendKind::kNative, false, "missing cgroups (no memory controller)");
  EXPECT_EQ(*SelectBackend("auto", &native, &docker), &native);
  EXPECT_EQ(*SelectBackend("auto", &native_off, &docker), &docker);
  EXPECT_EQ(*SelectBackend("auto", nullptr, &docker), &docker);
  EXPECT_EQ(*SelectBackend("native", &native, &docker), &native);
  EXPECT_EQ(*SelectBackend("docker", &native, &docker), &docker);
}

TEST(SelectBackend, AnExplicitChoiceIsNeverSwapped) {
  FakeBackend native(BackendKind::kNative, true, "");
  FakeBackend docker_off(BackendKind::kDocker, false, "cannot reach the Docker daemon at /x");
  auto r = SelectBackend("docker", &native, &docker_off);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(r.error().message.find("docker: cannot reach the Docker daemon at /x"),
            std::string::npos)
      << r.error().message;
  auto n = SelectBackend("native", nullptr, &docker_off);
  ASSERT_FALSE(n.ok());
  EXPECT_NE(n.error().message.find("native: not configured"), std::string::npos);
}

TEST(SelectBackend, NothingAvailableSaysWhatIsMissingForEach) {
  FakeBackend native_off(BackendKind::kNative, false, "missing root privileges");
  FakeBackend docker_off(BackendKind::kDocker, false, "cannot reach the Docker daemon");
  auto r = SelectBackend("auto", &native_off, &docker_off);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message,
            "no backend can run it (native: missing root privileges; docker: cannot reach the "
            "Docker daemon)");
  EXPECT_FALSE(SelectBackend("podman", &native_off, &docker_off).ok());
  EXPECT_FALSE(CheckBackendName("").ok());
  EXPECT_TRUE(CheckBackendName("auto").ok());
}

TEST(ProbeNativeHost, NamesWhatIsMissing) {
  auto a = ProbeNativeHost(nullptr, "cgroup v2 controller 'memory' not enabled");
  EXPECT_EQ(a.name, "native");
  EXPECT_FALSE(a.available);
  EXPECT_NE(a.reason.find("missing cgroups (cgroup v2 controller 'memory' not enabled)"),
            std::string::npos)
      << a.reason;
}

}  // namespace
}  // namespace sbx::supervisor
