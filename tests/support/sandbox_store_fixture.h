// The fixture of the sandbox and process store contract tests
// (tests/integration/store_sandbox_contract_test.cc and store_process_contract_test.cc): a fresh,
// migrated database per test as in StoreBackendTest, and helpers that make sandboxes and
// processes in a given state and race several daemons (Stores on the one database).
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "supervisor/store/store.h"
#include "tests/support/store_fixture.h"

namespace sbx::testing {

class SandboxStoreTest : public StoreBackendTest {
 protected:
  using SandboxRecord = store::SandboxRecord;
  using ProcessRecord = store::ProcessRecord;
  using SandboxFilter = store::SandboxFilter;
  using ProcessFilter = store::ProcessFilter;
  using S = store::SandboxState;
  using P = store::ProcessState;

  static SandboxRecord NewSandbox(std::string submitter = "alice") {
    SandboxRecord s;
    s.submitter = std::move(submitter);
    s.network = "none";
    return s;
  }

  SandboxRecord CreateSandbox(SandboxRecord s = NewSandbox()) {
    auto c = store_->CreateSandbox(s);
    EXPECT_TRUE(c.ok()) << c.error().ToString();
    if (!c.ok()) return {};
    EXPECT_TRUE(c->created);
    return c->sandbox;
  }

  // The states a sandbox passes through from PENDING to `target`.
  static std::vector<S> SandboxPathTo(S target) {
    const std::vector<S> happy = {S::kAwaitingReview, S::kStarting, S::kRunning, S::kPaused};
    std::vector<S> path;
    if (target == S::kPending) return path;
    for (S s : happy) {
      path.push_back(s);
      if (s == target) return path;
      if (s == S::kRunning && store::IsTerminal(target)) break;
    }
    path.push_back(target);  // STOPPED or FAILED, from RUNNING
    return path;
  }

  // A new sandbox moved along SandboxPathTo(target).
  SandboxRecord CreateSandboxIn(S target, SandboxRecord s = NewSandbox()) {
    SandboxRecord sandbox = CreateSandbox(std::move(s));
    for (S next : SandboxPathTo(target)) {
      auto u = store_->UpdateSandbox(sandbox.id, {sandbox.state}, next, {});
      EXPECT_TRUE(u.ok()) << u.error().ToString();
      if (!u.ok()) return sandbox;
      sandbox = *u;
    }
    return sandbox;
  }

  static ProcessRecord NewProcess(const std::string& sandbox_id, std::string tag = "") {
    ProcessRecord p;
    p.sandbox_id = sandbox_id;
    p.submitter = "alice";
    p.argv = {"/bin/echo", "hi"};
    p.tag = std::move(tag);
    return p;
  }

  ProcessRecord AddProcess(const std::string& sandbox_id, std::string tag = "") {
    auto c = store_->CreateProcess(NewProcess(sandbox_id, std::move(tag)));
    EXPECT_TRUE(c.ok()) << c.error().ToString();
    return c.ok() ? *c : ProcessRecord{};
  }

  // A new process of the sandbox, moved to `target` (FINISHED through RUNNING).
  ProcessRecord AddProcessIn(const std::string& sandbox_id, P target, std::string tag = "") {
    ProcessRecord p = AddProcess(sandbox_id, std::move(tag));
    std::vector<P> path;
    if (target == P::kFinished) path = {P::kRunning, P::kFinished};
    if (target != P::kAwaitingReview && target != P::kFinished) path = {target};
    for (P next : path) {
      auto u = store_->UpdateProcess(sandbox_id, p.id, {p.state}, next, {});
      EXPECT_TRUE(u.ok()) << u.error().ToString();
      if (!u.ok()) return p;
      p = *u;
    }
    return p;
  }

  // Opens `n` more stores (other daemons), then runs body(t, store) on a thread each, all
  // released together; joins them.
  void Race(int n, const std::function<void(int, store::Store&)>& body) {
    std::vector<std::unique_ptr<store::Store>> stores;
    for (int t = 0; t < n; ++t) {
      stores.push_back(OpenStore());
      ASSERT_NE(stores.back(), nullptr);
    }
    std::latch start(n);
    std::vector<std::thread> threads;
    for (int t = 0; t < n; ++t) {
      threads.emplace_back([&, t] {
        start.arrive_and_wait();
        body(t, *stores[t]);
      });
    }
    for (auto& th : threads) th.join();
  }

  std::vector<std::string> SandboxIds(const SandboxFilter& filter) {
    auto page = store_->ListSandboxes(filter);
    EXPECT_TRUE(page.ok()) << page.error().ToString();
    std::vector<std::string> out;
    if (page.ok()) {
      for (const auto& s : page->sandboxes) out.push_back(s.id);
    }
    return out;
  }

  std::vector<int64_t> ProcessIds(const std::string& sandbox_id, const ProcessFilter& filter) {
    auto list = store_->ListProcesses(sandbox_id, filter);
    EXPECT_TRUE(list.ok()) << list.error().ToString();
    std::vector<int64_t> out;
    if (list.ok()) {
      for (const auto& p : *list) out.push_back(p.id);
    }
    return out;
  }
};

inline void ExpectCode(const Error& e, ErrorCode code) { EXPECT_EQ(e.code, code) << e.ToString(); }
// The call failed with `code`.
template <typename R>
void ExpectFailedWith(const R& r, ErrorCode code) {
  ASSERT_FALSE(r.ok());
  ExpectCode(r.error(), code);
}

}  // namespace sbx::testing
