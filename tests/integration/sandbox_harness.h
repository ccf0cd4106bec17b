// Shared fixture for the privileged integration tests: real sandboxes under a test-owned parent
// cgroup that is removed at the end.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "cgroup/cgroup.h"
#include "isolate/sandbox.h"
#include "seccomp/seccomp.h"

namespace sbx::testing {

struct RunOutput {
  isolate::ProcessResult result;
  std::string out;
  std::string err;
};

class SandboxTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override;

  // A default spec (every layer on, the builtin seccomp profile) with the test programs bound
  // read-only at /t.
  isolate::SandboxSpec DefaultSpec();
  // Creates a sandbox from `spec`, runs argv in it, destroys it.
  RunOutput Run(isolate::SandboxSpec spec, std::vector<std::string> argv,
                uint64_t timeout_ms = 20'000);
  RunOutput RunIn(isolate::Sandbox& sb, std::vector<std::string> argv,
                  uint64_t timeout_ms = 20'000);
  std::unique_ptr<isolate::Sandbox> Create(const isolate::SandboxSpec& spec);

  static std::string Hostile() { return "/t/hostile"; }
  // The mount point of every cgroup hierarchy the driver uses (the unified one, each v1 one).
  static std::vector<std::string> CgroupRoots();
  // Whether any process on the host has this comm (a hostile program's chosen name).
  static bool ProcessNamed(const std::string& name);
  // How sandboxes are created (a test may set engine_.spawner).
  static isolate::EngineOptions engine_;
  static std::string parent_;
  static std::unique_ptr<cgroup::Driver> driver_;
  static std::string skip_reason_;
};

}  // namespace sbx::testing
