// supervisor/observability/metrics.h: what the run manager's events count, bounded labels, and
// the text format.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>

#include <string>

#include "supervisor/observability/metrics.h"

namespace sbx::supervisor {
namespace {

bool Has(const std::string& page, const std::string& line) {
  return page.find("\n" + line + "\n") != std::string::npos || page.starts_with(line + "\n");
}

TEST(Metrics, CountsRunsDecisionsAndStepOutcomesFromEvents) {
  Metrics m;
  m.OnEvent("r1", "run.status", {{"state", "PLANNED"}, {"policy", {{"decision", "allow"}}}});
  m.OnEvent("r2", "run.status", {{"state", "PLANNED"}, {"policy", {{"decision", "deny"}}}});
  m.OnEvent("r1", "run.status", {{"state", "RUNNING"}});
  m.OnEvent("r1", "step.finished", {{"reason", "oom_killed"}});
  m.OnEvent("r1", "step.finished", {{"reason", "timed_out"}});
  m.OnEvent("r1", "run.completed", {{"state", "FAILED"}, {"reason", "oom_killed"}});
  m.OnEvent("r2", "run.completed",
            {{"state", "CANCELLED"}, {"reason", "policy_denied: rm -rf / is destructive"}});
  m.OnEvent("r3", "run.completed", {{"state", "FAILED"}, {"reason", "something new"}});
  std::string page = m.Render();
  EXPECT_TRUE(Has(page, R"(sandboxd_runs_total{state="FAILED",reason="oom_killed"} 1)")) << page;
  EXPECT_TRUE(Has(page, R"(sandboxd_runs_total{state="CANCELLED",reason="policy_denied"} 1)"));
  EXPECT_TRUE(Has(page, R"(sandboxd_runs_total{state="FAILED",reason="other"} 1)"));
  EXPECT_TRUE(Has(page, R"(sandboxd_policy_decisions_total{decision="allow"} 1)"));
  EXPECT_TRUE(Has(page, R"(sandboxd_policy_decisions_total{decision="review"} 0)"));
  EXPECT_TRUE(Has(page, R"(sandboxd_policy_decisions_total{decision="deny"} 1)"));
  EXPECT_TRUE(Has(page, "sandboxd_oom_kills_total 1"));
  EXPECT_TRUE(Has(page, "sandboxd_timeouts_total 1"));
  // Only r1 ran: one duration.
  EXPECT_TRUE(Has(page, "sandboxd_run_duration_seconds_count 1"));
  EXPECT_EQ(page.find("r1"), std::string::npos) << "a run id in a label";
}

TEST(Metrics, SeccompDenialsAreOptionalAndBounded) {
  Metrics m;
  m.OnEvent("r", "step.finished", {{"reason", "exited"}});  // no seccomp_denials: nothing
  EXPECT_EQ(m.Render().find("sandboxd_seccomp_denials_total{"), std::string::npos);
  m.OnEvent("r", "step.finished",
            {{"reason", "exited"},
             {"seccomp_denials",
              {"ptrace", {{"syscall", "mount"}, {"count", 3}}, "bad\"name", 42}}});
  std::string page = m.Render();
  EXPECT_TRUE(Has(page, R"(sandboxd_seccomp_denials_total{syscall="ptrace"} 1)")) << page;
  EXPECT_TRUE(Has(page, R"(sandboxd_seccomp_denials_total{syscall="mount"} 3)"));
  EXPECT_TRUE(Has(page, R"(sandboxd_seccomp_denials_total{syscall="other"} 1)"));
  for (int i = 0; i < 200; ++i) {
    m.OnEvent("r", "step.finished",
              {{"reason", "exited"}, {"seccomp_denials", {"sys_" + std::to_string(i)}}});
  }
  page = m.Render();
  size_t names = 0;
  for (size_t at = 0; (at = page.find("sandboxd_seccomp_denials_total{", at)) != std::string::npos;
       ++at) {
    ++names;
  }
  EXPECT_EQ(names, kMaxSyscallLabels);
}

TEST(Metrics, HistogramsAreCumulativeWithInf) {
  Metrics m;
  m.SandboxStarted(std::chrono::milliseconds(3));
  m.SandboxStarted(std::chrono::milliseconds(30));
  m.SandboxStarted(std::chrono::seconds(60), /*warm=*/true);
  m.SandboxEnded();
  std::string page = m.Render();
  EXPECT_TRUE(Has(page, R"(sandboxd_sandbox_start_seconds_bucket{le="0.005"} 1)")) << page;
  EXPECT_TRUE(Has(page, R"(sandboxd_sandbox_start_seconds_bucket{le="0.05"} 2)"));
  EXPECT_TRUE(Has(page, R"(sandboxd_sandbox_start_seconds_bucket{le="10"} 2)"));
  EXPECT_TRUE(Has(page, R"(sandboxd_sandbox_start_seconds_bucket{le="+Inf"} 3)"));
  EXPECT_TRUE(Has(page, "sandboxd_sandbox_start_seconds_count 3"));
  EXPECT_TRUE(Has(page, "sandboxd_sandboxes_active 2"));
  EXPECT_TRUE(Has(page, R"(sandboxd_sandboxes_started_total{source="warm"} 1)")) << page;
  EXPECT_TRUE(Has(page, R"(sandboxd_sandboxes_started_total{source="built"} 2)")) << page;
  EXPECT_NE(page.find("# TYPE sandboxd_sandbox_start_seconds histogram\n"), std::string::npos);
}

TEST(Metrics, ApiRequestsByRoutePatternAndQueueGauges) {
  Metrics m;
  m.ApiRequest("GET", "/v1/runs/{id}", 200, std::chrono::milliseconds(2));
  m.ApiRequest("GET", "/v1/runs/{id}", 200, std::chrono::milliseconds(4));
  m.ApiRequest("GET", "", 404, std::chrono::milliseconds(1));
  std::string page = m.Render();
  EXPECT_TRUE(Has(page,
                  R"(sandboxd_api_requests_total{method="GET",route="/v1/runs/{id}",status="200"} 2)"))
      << page;
  EXPECT_TRUE(
      Has(page, R"(sandboxd_api_requests_total{method="GET",route="unmatched",status="404"} 1)"));
  EXPECT_TRUE(Has(
      page, R"(sandboxd_api_request_duration_seconds_count{method="GET",route="/v1/runs/{id}"} 2)"));
  EXPECT_EQ(page.find("sandboxd_queue_length"), std::string::npos);  // no source: left out
  m.SetQueueCounts([] { return std::optional<QueueCounts>(QueueCounts{7, 2}); });
  page = m.Render();
  EXPECT_TRUE(Has(page, "sandboxd_queue_length 7"));
  EXPECT_TRUE(Has(page, "sandboxd_runs_awaiting_review 2"));
}

// The heap gauge follows what is allocated: 64 MiB held shows, and is gone once freed. (ASan
// keeps its own heap and glibc's figures do not see it, so there the gauge is not checked.)
TEST(Metrics, HeapInUseFollowsAllocations) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizer's allocator replaces glibc's";
#else
  auto heap = [] {
    std::string page = Metrics().Render();
    auto at = page.find("\nsandboxd_heap_in_use_bytes ");
    EXPECT_NE(at, std::string::npos) << page;
    return at == std::string::npos ? 0.0 : std::stod(page.substr(at + 28));
  };
  const double before = heap();
  auto block = std::make_unique<char[]>(64 << 20);
  block[0] = 1;
  const double held = heap();
  block.reset();
  const double after = heap();
  EXPECT_GE(held - before, 60.0 * (1 << 20));
  EXPECT_LT(after - before, 4.0 * (1 << 20));
#endif
}

TEST(Metrics, RunPhasesAreHistogramsByPhase) {
  Metrics m;
  EXPECT_EQ(m.Render().find("sandboxd_run_phase_seconds"), std::string::npos);  // none yet
  m.RunPhase("create_sandbox", std::chrono::microseconds(800));
  m.RunPhase("create_sandbox", std::chrono::milliseconds(3));
  m.RunPhase("steps", std::chrono::seconds(2));
  std::string page = m.Render();
  EXPECT_TRUE(Has(page, "# TYPE sandboxd_run_phase_seconds histogram")) << page;
  EXPECT_TRUE(Has(page, R"(sandboxd_run_phase_seconds_bucket{phase="create_sandbox",le="0.001"} 1)"))
      << page;
  EXPECT_TRUE(Has(page, R"(sandboxd_run_phase_seconds_count{phase="create_sandbox"} 2)")) << page;
  EXPECT_TRUE(Has(page, R"(sandboxd_run_phase_seconds_bucket{phase="steps",le="1"} 0)")) << page;
  EXPECT_TRUE(Has(page, R"(sandboxd_run_phase_seconds_count{phase="steps"} 1)")) << page;
}

TEST(Metrics, EscapesLabelValues) {
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(NormalizeRunReason("setup_failed: mount: EPERM"), "setup_failed");
  EXPECT_EQ(NormalizeRunReason("rejected: no"), "rejected");
  EXPECT_EQ(NormalizeRunReason("timeout"), "timed_out");
}

}  // namespace
}  // namespace sbx::supervisor
