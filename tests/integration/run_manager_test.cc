// The review gate and the run lifecycle, end to end: a real SQLite store, real sandboxes.
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <latch>
#include <mutex>
#include <set>
#include <thread>
#include <sstream>

#include "base/fs.h"
#include "integration/sandbox_harness.h"
#include "supervisor/policy/command_policy.h"
#include "supervisor/review/review.h"
#include "supervisor/service/run_manager.h"
#include "supervisor/workspace/run_logs.h"
#include "support/raw_sql.h"

namespace sbx::testing {
namespace {

using store::EventType;
using store::RunState;
using supervisor::Principal;
using supervisor::Role;

class RunManagerTest : public SandboxTest {
 protected:
  void SetUp() override {
    SandboxTest::SetUp();
    if (IsSkipped()) return;
    char dir[] = "/tmp/sbx-runs-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    ::chmod(dir, 0711);  // the sandboxes reach their mount points through it
    dir_ = dir;
    auto s = store::Open("sqlite://" + dir_ + "/sandboxd.db");
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    store_ = std::move(*s);
    ASSERT_TRUE(store_->Migrate().ok());
    StartManager();
  }
  // A manager on the store, its events collected for WaitCompleted (again: a restart).
  void StartManager() {
    supervisor::RunManagerOptions o;
    o.node = "test-node";
    o.data_dir = dir_ + "/data";
    o.cgroups = driver_.get();
    o.limits.max_queue = 3;
    o.limits.maxima.memory_bytes = 1ll << 30;
    auto m = supervisor::RunManager::Start(*store_, o);
    ASSERT_TRUE(m.ok()) << m.error().ToString();
    manager_ = std::move(*m);
    manager_->Subscribe("", [this](const store::EventRecord& e) {
      std::lock_guard<std::mutex> lk(mu_);
      events_.push_back(e);
      cv_.notify_all();
    });
  }
  void TearDown() override {
    if (manager_) manager_->Stop();
    manager_.reset();
    store_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  store::RunRecord Request(std::vector<std::string> argv) {
    store::RunRecord r;
    r.argv = std::move(argv);
    return r;
  }
  store::RunRecord Submit(store::RunRecord r) {
    auto c = manager_->Submit(std::move(r), alice_);
    EXPECT_TRUE(c.ok()) << c.error().ToString();
    return c.ok() ? c->run : store::RunRecord{};
  }
  // Waits (on the event stream, bounded) for the run to complete and returns it.
  store::RunRecord WaitCompleted(const std::string& id) {
    std::unique_lock<std::mutex> lk(mu_);
    bool done = cv_.wait_for(lk, std::chrono::seconds(60), [&] {
      for (const auto& e : events_) {
        if (e.run_id == id && e.type == EventType::kRunCompleted) return true;
      }
      return false;
    });
    EXPECT_TRUE(done) << "run " << id << " did not complete";
    lk.unlock();
    return *store_->GetRun(id);
  }
  std::vector<store::EventRecord> EventsOf(const std::string& id) {
    auto evs = store_->ListEvents(id, 0, 1000);
    EXPECT_TRUE(evs.ok());
    return evs.ok() ? *evs : std::vector<store::EventRecord>{};
  }

  std::string dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<supervisor::RunManager> manager_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<store::EventRecord> events_;
  Principal alice_{"alice", Role::kSubmitter};
  Principal bob_{"bob", Role::kReviewer};
};

TEST_F(RunManagerTest, TheCommandPolicyApprovesRefusesOrLeavesItToAReviewer) {
  auto p = policy::CommandPolicy::LoadText(R"(
rules:
  "*": review
  "/bin/echo *": allow
  "/bin/date *": deny
)",
                                           "test-policy.yaml");
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  manager_->SetCommandPolicy(*p);

  // allow: approved by the policy, with the rule, and run without a reviewer.
  auto allowed = Submit(Request({"/bin/echo", "auto"}));
  EXPECT_EQ(allowed.state, RunState::kQueued);
  ASSERT_TRUE(allowed.approval.has_value());
  EXPECT_EQ(allowed.approval->approved_by, "policy");
  EXPECT_EQ(allowed.approval->rule, "test-policy.yaml:4 /bin/echo *");
  EXPECT_EQ(allowed.policy["decision"], "allow");
  auto done = WaitCompleted(allowed.id);
  EXPECT_EQ(done.state, RunState::kSucceeded);
  EXPECT_EQ(*ReadFile(dir_ + "/data/runs/" + allowed.id + "/stdout"), "auto\n");
  // Nothing on stderr, nothing left in /artifacts: no empty log file, no files/ directory.
  struct stat st{};
  EXPECT_NE(::stat((dir_ + "/data/runs/" + allowed.id + "/stderr").c_str(), &st), 0);
  EXPECT_NE(::stat((dir_ + "/data/runs/" + allowed.id + "/artifacts/files").c_str(), &st), 0);
  EXPECT_EQ(::stat((dir_ + "/data/runs/" + allowed.id + "/artifacts/report.md").c_str(), &st), 0);

  // deny: never queued, ends CANCELLED with the reason; nobody can approve it afterwards.
  auto denied = Submit(Request({"/bin/date", "-u"}));
  EXPECT_EQ(denied.state, RunState::kCancelled);
  ASSERT_TRUE(denied.result.has_value());
  EXPECT_EQ(store::RenderEndReason(denied.result->reason).rfind("policy_denied", 0), 0u)
      << store::RenderEndReason(denied.result->reason);
  EXPECT_FALSE(manager_->Approve(denied.id, bob_).ok());
  // Its events and audit records, each in the order they happened.
  auto events = store_->ListEvents(denied.id, 0, 100);
  ASSERT_TRUE(events.ok());
  std::vector<std::string> seen;
  for (const auto& e : *events) {
    seen.push_back(std::string(store::EventTypeName(e.type)) + " " + e.data.value("state", ""));
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"run.status PENDING", "run.status PLANNED",
                                            "run.status CANCELLED", "run.completed CANCELLED"}));
  auto denied_audit = store_->ListAudit({.run_id = denied.id});
  ASSERT_TRUE(denied_audit.ok());
  std::vector<std::string> actions;
  for (const auto& a : *denied_audit) actions.push_back(a.action);
  EXPECT_EQ(actions, (std::vector<std::string>{"run.submitted", "policy.decision", "run.denied"}));

  // A destructive command is denied whatever the rules say.
  auto rm = Submit(Request({"/bin/rm", "-rf", "/"}));
  EXPECT_EQ(rm.state, RunState::kCancelled);
  EXPECT_EQ(rm.policy["protection"], "destructive");

  // review: waits.
  auto review = Submit(Request({"/bin/ls"}));
  EXPECT_EQ(review.state, RunState::kAwaitingReview);

  // Every decision is in the audit trail.
  for (const auto* r : {&allowed, &denied, &review}) {
    auto audit = store_->ListAudit({.run_id = r->id});
    ASSERT_TRUE(audit.ok());
    bool found = false;
    for (const auto& a : *audit) {
      if (a.action == "policy.decision") {
        found = true;
        EXPECT_EQ(a.details["decision"], r->policy["decision"]);
      }
    }
    EXPECT_TRUE(found) << r->id;
  }
}

TEST_F(RunManagerTest, WaitsForReviewThenRunsAndRecordsEverything) {
  auto run = Submit(Request({"/bin/sh", "-c", "echo hello; echo oops >&2"}));
  EXPECT_EQ(run.state, RunState::kAwaitingReview);
  ASSERT_TRUE(run.policy.is_object());
  EXPECT_EQ(run.policy["decision"], "review");
  // Nothing runs without an approval.
  auto again = store_->GetRun(run.id);
  EXPECT_EQ(again->state, RunState::kAwaitingReview);

  auto approved = manager_->Approve(run.id, bob_);
  ASSERT_TRUE(approved.ok()) << approved.error().ToString();
  EXPECT_EQ(approved->approval->approved_by, "bob");
  auto done = WaitCompleted(run.id);
  EXPECT_EQ(done.state, RunState::kSucceeded);
  ASSERT_TRUE(done.result.has_value());
  EXPECT_EQ(done.result->exit_code, 0);
  EXPECT_EQ(done.node, "test-node");

  auto out = ReadFile(dir_ + "/data/runs/" + run.id + "/stdout");
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, "hello\n");
  // Events: seq strictly increasing; every log byte before run.completed.
  auto evs = EventsOf(run.id);
  ASSERT_FALSE(evs.empty());
  std::string logged;
  for (size_t i = 0; i < evs.size(); ++i) {
    EXPECT_EQ(evs[i].seq, static_cast<int64_t>(i + 1));
    if (evs[i].type == EventType::kStepLog && evs[i].data["stream"] == "stdout") {
      // The event says where the chunk is; the bytes are in the log file.
      EXPECT_FALSE(evs[i].data.contains("data"));
      EXPECT_EQ(evs[i].data["offset"].get<int64_t>(), static_cast<int64_t>(logged.size()));
      logged += supervisor::LogEventBytes(evs[i], dir_ + "/data");
    }
  }
  EXPECT_EQ(logged, "hello\n");
  EXPECT_EQ(evs.back().type, EventType::kRunCompleted);
  // The audit trail saw it all and verifies.
  store::AuditFilter f;
  f.run_id = run.id;
  auto audit = store_->ListAudit(f);
  ASSERT_TRUE(audit.ok());
  EXPECT_GE(audit->size(), 5u);
  EXPECT_TRUE(store_->VerifyAudit()->ok);
}

TEST_F(RunManagerTest, SubmitterCannotApproveItsOwnRun) {
  auto run = Submit(Request({"/bin/true"}));
  Principal self{"alice", Role::kReviewer};
  auto r = manager_->Approve(run.id, self);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kPermissionDenied);
  auto r2 = manager_->Approve(run.id, Principal{"mallory", Role::kSubmitter});
  EXPECT_FALSE(r2.ok());
  EXPECT_EQ(store_->GetRun(run.id)->state, RunState::kAwaitingReview);
}

TEST_F(RunManagerTest, StepsShareASandboxAndStopAtTheFirstFailure) {
  store::RunRecord r;
  r.steps = {{"write", {"/bin/sh", "-c", "echo state > /tmp/f"}},
             {"read", {"/bin/cat", "/tmp/f"}},
             {"fail", {"/bin/sh", "-c", "exit 3"}},
             {"never", {"/bin/echo", "unreachable"}}};
  auto run = Submit(r);
  ASSERT_TRUE(manager_->Approve(run.id, bob_).ok());
  auto done = WaitCompleted(run.id);
  EXPECT_EQ(done.state, RunState::kFailed);
  ASSERT_EQ(done.result->steps.size(), 3u);
  EXPECT_EQ(done.result->steps[2].exit_code, 3);
  EXPECT_EQ(*ReadFile(dir_ + "/data/runs/" + run.id + "/stdout"), "state\n");
}

TEST_F(RunManagerTest, AStepCannotChangeTheStdinOfTheNext) {
  store::RunRecord r;
  r.stdin_data = "hello\n";
  // The first step reads its stdin, then tries to write to it, to truncate it and to leave its
  // read position at the end; the second reads the same bytes from the start.
  r.steps = {{"tamper", {"/bin/sh", "-c",
                         "cat; echo MUTATED >&0 2>/dev/null; : 1<>/dev/stdin 2>/dev/null; "
                         "printf X 1<>/proc/self/fd/0 2>/dev/null; true"}},
             {"read", {"/bin/cat"}}};
  auto run = Submit(r);
  ASSERT_TRUE(manager_->Approve(run.id, bob_).ok());
  auto done = WaitCompleted(run.id);
  EXPECT_EQ(done.state, RunState::kSucceeded) << store::RenderEndReason(done.result->reason);
  EXPECT_EQ(*ReadFile(dir_ + "/data/runs/" + run.id + "/stdout"), "hello\nhello\n");
}

TEST_F(RunManagerTest, CancelKillsARunningSandbox) {
  auto run = Submit(Request({"/bin/sleep", "300"}));
  ASSERT_TRUE(manager_->Approve(run.id, bob_).ok());
  {
    std::unique_lock<std::mutex> lk(mu_);
    ASSERT_TRUE(cv_.wait_for(lk, std::chrono::seconds(30), [&] {
      for (const auto& e : events_) {
        if (e.run_id == run.id && e.type == EventType::kStepStarted) return true;
      }
      return false;
    }));
  }
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(manager_->Cancel(run.id, alice_).ok());
  auto done = WaitCompleted(run.id);
  EXPECT_EQ(done.state, RunState::kCancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST_F(RunManagerTest, RejectAndCancelBeforeRunning) {
  auto a = Submit(Request({"/bin/true"}));
  auto rejected = manager_->Reject(a.id, bob_, "not today");
  ASSERT_TRUE(rejected.ok());
  EXPECT_EQ(rejected->state, RunState::kCancelled);
  EXPECT_EQ(store::RenderEndReason(rejected->result->reason), "rejected: not today");
  // Terminal: approving now is a conflict and changes nothing.
  auto late = manager_->Approve(a.id, bob_);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(store_->GetRun(a.id)->state, RunState::kCancelled);

  auto b = Submit(Request({"/bin/true"}));
  auto c = manager_->Cancel(b.id, alice_);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->state, RunState::kCancelled);
}

TEST_F(RunManagerTest, LimitsBeyondTheMaximaAreRefusedNotClamped) {
  store::RunRecord r = Request({"/bin/true"});
  r.limits.memory_bytes = 2ll << 30;
  auto c = manager_->Submit(r, alice_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(c.error().message.find("limits.memory"), std::string::npos);
  store::RunFilter all;
  EXPECT_TRUE(store_->ListRuns(all)->runs.empty());
  // Defaults are filled in and recorded.
  auto ok = Submit(Request({"/bin/true"}));
  EXPECT_EQ(ok.limits.pids, manager_->options().limits.defaults.pids);
}

TEST_F(RunManagerTest, BadRequestsChangeNothing) {
  store::RunRecord neither;
  EXPECT_FALSE(manager_->Submit(neither, alice_).ok());
  store::RunRecord both = Request({"/bin/true"});
  both.steps = {{"x", {"/bin/true"}}};
  EXPECT_FALSE(manager_->Submit(both, alice_).ok());
  store::RunRecord net = Request({"/bin/true"});
  net.network = "host";
  EXPECT_FALSE(manager_->Submit(net, alice_).ok());
  EXPECT_FALSE(manager_->Approve("run_doesnotexist0000000", bob_).ok());
  store::RunFilter all;
  EXPECT_TRUE(store_->ListRuns(all)->runs.empty());
}

TEST_F(RunManagerTest, IdempotencyKeyReturnsTheSameRun) {
  store::RunRecord r = Request({"/bin/true"});
  r.idempotency_key = "k1";
  auto first = manager_->Submit(r, alice_);
  auto second = manager_->Submit(r, alice_);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_TRUE(first->created);
  EXPECT_FALSE(second->created);
  EXPECT_EQ(first->run.id, second->run.id);
}

TEST_F(RunManagerTest, BinaryOutputIsKeptByteExact) {
  auto run = Submit(Request({"/bin/sh", "-c", "printf '\\377\\376ok'"}));
  ASSERT_TRUE(manager_->Approve(run.id, bob_).ok());
  WaitCompleted(run.id);
  std::string logged;
  for (const auto& e : EventsOf(run.id)) {
    if (e.type != EventType::kStepLog) continue;
    EXPECT_EQ(e.data["stream"], "stdout");
    logged += supervisor::LogEventBytes(e, dir_ + "/data");
  }
  EXPECT_EQ(logged, "\xff\xfeok");
  EXPECT_EQ(*ReadFile(dir_ + "/data/runs/" + run.id + "/stdout"), "\xff\xfeok");
}

TEST_F(RunManagerTest, RunsLeftRunningByADeadDaemonEndFailed) {
  auto run = Submit(Request({"/bin/true"}));
  manager_->Stop();
  manager_.reset();
  // As a crashed daemon would leave it: claimed, RUNNING, never finished.
  ASSERT_TRUE(store_->Transition(run.id, {RunState::kAwaitingReview}, RunState::kQueued, {}).ok());
  ASSERT_TRUE(store_->ClaimNextQueued("test-node")->has_value());
  supervisor::RunManagerOptions o;
  o.node = "test-node";
  o.data_dir = dir_ + "/data";
  o.cgroups = driver_.get();
  auto m = supervisor::RunManager::Start(*store_, o);
  ASSERT_TRUE(m.ok());
  auto r = store_->GetRun(run.id);
  EXPECT_EQ(r->state, RunState::kFailed);
  EXPECT_EQ(store::RenderEndReason(r->result->reason), "supervisor_restart");
  (*m)->Stop();
}

// The cgroup directories named warm-* under `parent`, in each hierarchy of `roots`.
std::vector<std::string> WarmCgroups(const std::vector<std::string>& roots,
                                     const std::string& parent) {
  std::vector<std::string> out;
  for (const auto& root : roots) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(root + "/" + parent, ec)) {
      if (e.is_directory() && e.path().filename().string().rfind("warm-", 0) == 0) {
        out.push_back(e.path().string());
      }
    }
  }
  return out;
}

// Mount points under `dir` (the host's mount table).
std::vector<std::string> MountsUnder(const std::string& dir) {
  std::vector<std::string> out;
  std::istringstream table(*ReadFile("/proc/self/mountinfo"));
  for (std::string line; std::getline(table, line);) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    fields >> id >> parent >> dev >> root >> point;
    if (point.rfind(dir + "/", 0) == 0) out.push_back(point);
  }
  return out;
}

TEST_F(RunManagerTest, AWarmSandboxServesOneRunAndLeavesNothingToTheNext) {
  supervisor::WarmPool* pool = manager_->warm_pool();
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->WaitReady(1, std::chrono::seconds(30)));
  // The first run leaves a file in /tmp, one in /artifacts and a process behind.
  auto first = Submit(Request(
      {"/bin/sh", "-c",
       "echo secret > /tmp/left; echo kept > /artifacts/a.txt; (exec sleep 300 &) ; echo done"}));
  ASSERT_TRUE(manager_->Approve(first.id, bob_).ok());
  auto done = WaitCompleted(first.id);
  EXPECT_EQ(done.state, RunState::kSucceeded);
  EXPECT_EQ(pool->taken(), 1u);
  EXPECT_EQ(*ReadFile(dir_ + "/data/runs/" + first.id + "/artifacts/files/a.txt"), "kept\n");

  // The next run of the same shape gets another warm sandbox: none of that is in it.
  ASSERT_TRUE(pool->WaitReady(1, std::chrono::seconds(30)));
  auto second = Submit(Request({"/bin/sh", "-c",
                                "cat /tmp/left 2>&1; ls -A /artifacts; "
                                "for p in /proc/[0-9]*; do cat $p/comm; done"}));
  ASSERT_TRUE(manager_->Approve(second.id, bob_).ok());
  EXPECT_EQ(WaitCompleted(second.id).state, RunState::kSucceeded);
  EXPECT_EQ(pool->taken(), 2u);
  std::string out = *ReadFile(dir_ + "/data/runs/" + second.id + "/stdout");
  EXPECT_EQ(out.find("secret"), std::string::npos) << out;
  EXPECT_EQ(out.find("a.txt"), std::string::npos) << out;
  EXPECT_EQ(out.find("sleep"), std::string::npos) << out;
  EXPECT_NE(out.find("No such file"), std::string::npos) << out;

  // Another shape (its own memory limit) is built for the run, and the limit holds.
  auto limited = Request({"/bin/sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null; echo ok"});
  limited.limits.memory_bytes = 96ll << 20;
  auto third = Submit(limited);
  ASSERT_TRUE(manager_->Approve(third.id, bob_).ok());
  EXPECT_EQ(WaitCompleted(third.id).state, RunState::kSucceeded);
  EXPECT_EQ(pool->taken(), 2u);
  auto run = store_->GetRun(third.id);
  EXPECT_EQ(run->limits.memory_bytes, 96ll << 20);
}

TEST_F(RunManagerTest, AWarmSandboxKilledWhileWaitingIsNotUsed) {
  supervisor::WarmPool* pool = manager_->warm_pool();
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->WaitReady(1, std::chrono::seconds(30)));
  // Its init (the only process in its cgroup), killed from outside.
  auto cgroups = WarmCgroups(CgroupRoots(), parent_);
  ASSERT_FALSE(cgroups.empty());
  bool killed = false;
  for (const auto& dir : cgroups) {
    auto procs = ReadFile(dir + "/cgroup.procs");
    if (!procs.ok() || procs->empty()) continue;
    pid_t pid = static_cast<pid_t>(std::stol(*procs));
    // Dead before the run is submitted: its pidfd turns readable when it has exited.
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    ASSERT_TRUE(pidfd.valid()) << std::strerror(errno);
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    struct pollfd p = {pidfd.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 30'000), 1) << "the warm init did not die";
    killed = true;
    break;
  }
  ASSERT_TRUE(killed);
  auto run = Submit(Request({"/bin/echo", "fresh"}));
  ASSERT_TRUE(manager_->Approve(run.id, bob_).ok());
  auto done = WaitCompleted(run.id);
  EXPECT_EQ(done.state, RunState::kSucceeded) << store::RenderEndReason(done.result->reason);
  EXPECT_EQ(*ReadFile(dir_ + "/data/runs/" + run.id + "/stdout"), "fresh\n");
}

TEST_F(RunManagerTest, StopDestroysTheWarmSandboxes) {
  ASSERT_NE(manager_->warm_pool(), nullptr);
  ASSERT_TRUE(manager_->warm_pool()->WaitReady(1, std::chrono::seconds(30)));
  EXPECT_FALSE(WarmCgroups(CgroupRoots(), parent_).empty());
  EXPECT_FALSE(MountsUnder(dir_).empty());
  manager_->Stop();
  EXPECT_TRUE(WarmCgroups(CgroupRoots(), parent_).empty());
  EXPECT_TRUE(MountsUnder(dir_).empty());
  struct stat st;
  EXPECT_NE(::stat((dir_ + "/data/warm").c_str(), &st), 0);
}

TEST_F(RunManagerTest, NoWarmSandboxesWhenTurnedOff) {
  manager_->Stop();
  manager_.reset();
  supervisor::RunManagerOptions o;
  o.node = "test-node";
  o.data_dir = dir_ + "/data";
  o.cgroups = driver_.get();
  o.limits.warm_sandboxes = 0;
  auto m = supervisor::RunManager::Start(*store_, o);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->warm_pool(), nullptr);
  EXPECT_TRUE(WarmCgroups(CgroupRoots(), parent_).empty());
  EXPECT_TRUE(MountsUnder(dir_).empty());
  (*m)->Stop();
}

TEST_F(RunManagerTest, QueueLimitAnswersResourceExhausted) {
  // Stop the workers so that approved runs stay QUEUED.
  manager_->Stop();
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto run = Submit(Request({"/bin/true"}));
    ASSERT_TRUE(store_->Transition(run.id, {RunState::kAwaitingReview}, RunState::kQueued, {}).ok());
  }
  auto c = manager_->Submit(Request({"/bin/true"}), alice_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, ErrorCode::kResourceExhausted);
}

// The policy's review section: how many distinct reviewers, and until when.
std::shared_ptr<const policy::CommandPolicy> ReviewPolicy(const std::string& review) {
  auto p = policy::CommandPolicy::LoadText("rules:\n  \"*\": review\nreview: " + review + "\n",
                                           "review-policy.yaml");
  EXPECT_TRUE(p.ok()) << p.error().ToString();
  return p.ok() ? *p : nullptr;
}

TEST_F(RunManagerTest, ARunWaitsForAsManyDistinctReviewersAsThePolicyAsks) {
  manager_->SetCommandPolicy(ReviewPolicy("{approvals: {low: 2, medium: 2, high: 2}}"));
  auto run = Submit(Request({"/bin/echo", "hi"}));
  ASSERT_EQ(run.state, RunState::kAwaitingReview);
  EXPECT_EQ(run.policy["approvals_required"], 2);
  const std::string plan = supervisor::PlanSha256(run);
  EXPECT_EQ(plan.size(), 64u);
  Principal carol{"carol", Role::kReviewer};

  auto first = manager_->Approve(run.id, bob_, {"looks fine", plan});
  ASSERT_TRUE(first.ok()) << first.error().ToString();
  EXPECT_EQ(first->state, RunState::kAwaitingReview);
  ASSERT_TRUE(first->approval.has_value());
  EXPECT_EQ(first->approval->approved_by, "");
  ASSERT_EQ(first->approval->votes.size(), 1u);
  EXPECT_EQ(first->approval->votes[0].by, "bob");
  EXPECT_EQ(first->approval->votes[0].comment, "looks fine");
  EXPECT_EQ(first->approval->votes[0].plan_sha256, plan);
  // The same reviewer twice counts once; a plan other than the run's is refused.
  auto again = manager_->Approve(run.id, bob_);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);
  auto stale = manager_->Approve(run.id, carol, {"", std::string(64, '0')});
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(store_->GetRun(run.id)->approval->votes.size(), 1u);

  auto second = manager_->Approve(run.id, carol, {"ok"});
  ASSERT_TRUE(second.ok()) << second.error().ToString();
  EXPECT_EQ(second->approval->approved_by, "carol");
  EXPECT_EQ(second->approval->votes.size(), 2u);
  EXPECT_EQ(WaitCompleted(run.id).state, RunState::kSucceeded);
  auto audit = store_->ListAudit({.run_id = run.id});
  ASSERT_TRUE(audit.ok());
  std::vector<std::string> decided;
  for (const auto& a : *audit) {
    if (a.action == "run.approval_vote" || a.action == "run.approved") {
      decided.push_back(a.actor + " " + a.action + " " + a.details.value("comment", ""));
      EXPECT_EQ(a.details["plan_sha256"], plan);
    }
  }
  EXPECT_EQ(decided, (std::vector<std::string>{"bob run.approval_vote looks fine",
                                               "carol run.approved ok"}));
  EXPECT_TRUE(store_->VerifyAudit()->ok);
}

// The plan's hash is fixed when the run is planned: a run whose stored commands were changed
// afterwards (a row edited behind the daemon's back) no longer matches it and cannot be approved,
// whatever plan the reviewer names.
TEST_F(RunManagerTest, ARunChangedAfterItWasPlannedCannotBeApproved) {
  auto run = Submit(Request({"/bin/echo", "harmless"}));
  ASSERT_EQ(run.state, RunState::kAwaitingReview);
  const std::string planned = run.policy.value("plan_sha256", "");
  ASSERT_EQ(planned, supervisor::PlanSha256(run));
  ASSERT_TRUE(sbx::testing::ExecRawSql("sqlite://" + dir_ + "/sandboxd.db",
                                       "UPDATE runs SET argv = '[\"/bin/sh\",\"-c\",\"id\"]' "
                                       "WHERE id = '" + run.id + "'")
                  .ok());
  const auto changed = store_->GetRun(run.id);
  ASSERT_EQ(changed->argv[0], "/bin/sh");
  const std::string now = supervisor::PlanSha256(*changed);
  ASSERT_NE(now, planned);
  for (const std::string& seen : {std::string(), planned, now}) {
    auto r = manager_->Approve(run.id, bob_, {"", seen});
    ASSERT_FALSE(r.ok()) << seen;
    EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition) << seen;
  }
  EXPECT_EQ(store_->GetRun(run.id)->state, RunState::kAwaitingReview);
  EXPECT_FALSE(store_->GetRun(run.id)->approval.has_value());
}

// Reviewers approving at the same moment: each vote counts exactly once, none is lost, and
// the run is queued exactly once.
TEST_F(RunManagerTest, ConcurrentApprovalsCountEachReviewerOnce) {
  manager_->SetCommandPolicy(ReviewPolicy("{approvals: {low: 3, medium: 3, high: 3}}"));
  for (int round = 0; round < 20; ++round) {
    auto run = Submit(Request({"/bin/true"}));
    ASSERT_EQ(run.state, RunState::kAwaitingReview);
    std::vector<std::thread> reviewers;
    std::atomic<int> queued{0}, failed{0};
    std::latch start(4);  // all four at once
    for (const char* name : {"r1", "r2", "r3", "r1"}) {
      reviewers.emplace_back([&, name] {
        start.arrive_and_wait();
        auto r = manager_->Approve(run.id, Principal{name, Role::kReviewer});
        if (!r.ok()) {
          ++failed;
        } else if (r->state != RunState::kAwaitingReview) {
          ++queued;
        }
      });
    }
    for (auto& t : reviewers) t.join();
    EXPECT_EQ(queued.load(), 1);
    EXPECT_EQ(failed.load(), 1);  // r1's second approval
    auto done = WaitCompleted(run.id);
    ASSERT_TRUE(done.approval.has_value());
    std::set<std::string> by;
    for (const auto& v : done.approval->votes) by.insert(v.by);
    EXPECT_EQ(by, (std::set<std::string>{"r1", "r2", "r3"}));
    EXPECT_EQ(done.approval->votes.size(), 3u);
  }
}

// A run nobody decides on is cancelled when its review expires, also when the daemon that
// planned it restarted meanwhile; a decided one is not.
TEST_F(RunManagerTest, AReviewNobodyDecidesExpiresAlsoAcrossARestart) {
  manager_->SetCommandPolicy(ReviewPolicy("{expire_after_s: 1}"));
  auto a = Submit(Request({"/bin/true"}));
  ASSERT_EQ(a.state, RunState::kAwaitingReview);
  ASSERT_TRUE(a.policy.contains("review_expires_at_ms"));
  auto decided = Submit(Request({"/bin/true"}));
  ASSERT_TRUE(manager_->Approve(decided.id, bob_).ok());
  auto expired = WaitCompleted(a.id);
  EXPECT_EQ(expired.state, RunState::kCancelled);
  ASSERT_TRUE(expired.result.has_value());
  EXPECT_EQ(expired.result->reason.code, store::EndCode::kReviewExpired);
  EXPECT_EQ(WaitCompleted(decided.id).state, RunState::kSucceeded);

  auto b = Submit(Request({"/bin/true"}));
  ASSERT_EQ(b.state, RunState::kAwaitingReview);
  manager_->Stop();
  manager_.reset();
  StartManager();
  ASSERT_TRUE(manager_);
  auto after_restart = WaitCompleted(b.id);
  EXPECT_EQ(after_restart.state, RunState::kCancelled);
  EXPECT_EQ(after_restart.result->reason.code, store::EndCode::kReviewExpired);
  // Approving what has expired is refused.
  auto late = manager_->Approve(b.id, bob_);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, ErrorCode::kFailedPrecondition);
}

}  // namespace
}  // namespace sbx::testing
