// Skips that CI must never take.
//
// A privileged test skips when this host lacks what it needs (root, namespaces, cgroups,
// seccomp, a Docker daemon). CI's machine has all of them, so there such a skip hides a broken
// test or a broken host: with SBX_REQUIRE_PRIVILEGED=1 in the environment (.ci/run sets it) it
// fails instead. Skips for what a host may legitimately lack (a hybrid cgroup layout on a pure
// v2 host, a 32-bit syscall entry, journald) stay plain GTEST_SKIPs.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace sbx::testing {

inline bool PrivilegedRequired() {
  const char* v = std::getenv("SBX_REQUIRE_PRIVILEGED");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

}  // namespace sbx::testing

// Skips the test with `why`, or fails it when SBX_REQUIRE_PRIVILEGED=1. Returns from the
// function, like GTEST_SKIP.
#define SBX_SKIP_PRIVILEGED(why)                                                          \
  do {                                                                                    \
    const std::string sbx_skip_why_ = (why);                                              \
    if (::sbx::testing::PrivilegedRequired()) {                                           \
      GTEST_FAIL() << "SBX_REQUIRE_PRIVILEGED=1, and this test would skip: " << sbx_skip_why_; \
    }                                                                                     \
    GTEST_SKIP() << sbx_skip_why_;                                                        \
  } while (0)
