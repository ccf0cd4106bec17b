// Long-lived sandboxes, end to end below the API: a real SQLite store, real native sandboxes,
// the command policy's sandboxes section, processes with their output, pause, expiry, delete,
// and a daemon that died with sandboxes running.
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <filesystem>
#include <mutex>
#include <thread>

#include "base/fs.h"
#include "integration/sandbox_harness.h"
#include "supervisor/policy/command_policy.h"
#include "supervisor/review/seccomp_profiles.h"
#include "supervisor/sandbox/sandbox_service.h"
#include "supervisor/service/run_manager.h"

namespace sbx::testing {
namespace {

using store::ProcessState;
using store::SandboxState;
using supervisor::Principal;
using supervisor::Role;

constexpr const char* kPolicy = R"(
rules:
  "*": allow
  "/bin/date *": deny
  "/bin/hostname *": review
sandboxes:
  allow_within: {cpus: 1, memory: 512MiB, pids: 256, timeout_s: 3600, idle_timeout_s: 3600}
  otherwise: review
)";

class SandboxServiceTest : public SandboxTest {
 protected:
  void SetUp() override {
    SandboxTest::SetUp();
    if (IsSkipped()) return;
    char dir[] = "/tmp/sbx-sandboxes-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    ::chmod(dir, 0711);  // the sandboxes reach their mount points through it
    dir_ = dir;
    auto s = store::Open("sqlite://" + dir_ + "/sandboxd.db");
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    store_ = std::move(*s);
    ASSERT_TRUE(store_->Migrate().ok());
    ASSERT_EQ(::mkdir((dir_ + "/data").c_str(), 0711), 0);
    auto p = policy::CommandPolicy::LoadText(kPolicy, "test-policy.yaml");
    ASSERT_TRUE(p.ok()) << p.error().ToString();
    policy_ = *p;
    StartService();
  }
  void StartService() {
    native_ = supervisor::MakeNativeBackend(driver_.get(), engine_,
                                            supervisor::ProbeNativeHost(driver_.get(), ""));
    bus_ = std::make_unique<supervisor::EventBus>(*store_);
    supervisor::SandboxServiceOptions o;
    o.node = "test-node";
    o.data_dir = dir_ + "/data";
    o.native = native_.get();
    o.limits.maxima.memory_bytes = 1ll << 30;
    o.limits.workspace_roots = {dir_ + "/ws"};
    o.limits.workspace_rw_roots = {dir_ + "/rw"};
    o.seccomp.program = [](const std::string& name) -> Result<seccomp::Program> {
      if (!name.empty() && name != "default") {
        return MakeError(ErrorCode::kNotFound, "no seccomp profile '{}'", name);
      }
      // Live sandboxes take a plain program: denials answered by the filter itself.
      return seccomp::Compile(supervisor::SeccompProfileSet::Builtin()->Find("")->profile);
    };
    o.command_policy = [this] { return policy_; };
    auto svc = supervisor::SandboxService::Start(*store_, *bus_, o);
    ASSERT_TRUE(svc.ok()) << svc.error().ToString();
    service_ = std::move(*svc);
  }
  void TearDown() override {
    if (service_) service_->Stop();
    service_.reset();
    bus_.reset();
    store_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  store::SandboxRecord CreateRunning(store::SandboxRequest req = {}) {
    auto c = service_->Create(std::move(req), alice_);
    EXPECT_TRUE(c.ok()) << c.error().ToString();
    if (!c.ok()) return {};
    EXPECT_EQ(c->sandbox.state, SandboxState::kRunning) << store::RenderEndReason(c->sandbox.reason);
    return c->sandbox;
  }
  supervisor::ProcessOutcome Exec(const std::string& id, std::vector<std::string> argv,
                                  const Principal& who) {
    store::ProcessRequest pr;
    pr.argv = std::move(argv);
    auto p = service_->StartProcess(id, pr, who);
    EXPECT_TRUE(p.ok()) << p.error().ToString();
    if (!p.ok()) return {};
    auto w = service_->WaitProcess(id, p->id, std::chrono::seconds(30), 1 << 20, who);
    EXPECT_TRUE(w.ok()) << w.error().ToString();
    return w.ok() ? *w : supervisor::ProcessOutcome{};
  }
  // The sandbox's state, once it is `want` (bounded: no event tells a test of a sandbox's end).
  store::SandboxRecord WaitState(const std::string& id, SandboxState want,
                                 std::chrono::seconds within) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    for (;;) {
      auto r = store_->GetSandbox(id);
      EXPECT_TRUE(r.ok());
      if (!r.ok() || r->state == want || std::chrono::steady_clock::now() > deadline) return *r;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  std::string ReadIn(const std::string& id, const std::string& path) {
    auto root = service_->Files(id, alice_);
    EXPECT_TRUE(root.ok()) << root.error().ToString();
    if (!root.ok()) return "";
    auto r = root->Read(path);
    if (!r.ok()) return "<" + r.error().ToString() + ">";
    std::string data(r->info.size, '\0');
    auto n = ReadAllAt(r->file.get(), data.data(), data.size(), 0);
    return n.ok() ? data.substr(0, *n) : "";
  }

  std::string dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<supervisor::Backend> native_;
  std::unique_ptr<supervisor::EventBus> bus_;
  std::unique_ptr<supervisor::SandboxService> service_;
  std::shared_ptr<const policy::CommandPolicy> policy_;
  Principal alice_{"alice", Role::kSubmitter};
  Principal mallory_{"mallory", Role::kSubmitter};
  Principal bob_{"bob", Role::kReviewer};
};

TEST_F(SandboxServiceTest, ProcessesRunInALiveSandboxAndAnotherKeySeesNothing) {
  auto sb = CreateRunning();
  ASSERT_FALSE(sb.id.empty());
  EXPECT_EQ(sb.approval->approved_by, "policy");
  auto out = Exec(sb.id, {"/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"}, alice_);
  EXPECT_EQ(out.process.state, ProcessState::kFinished);
  ASSERT_TRUE(out.process.result.has_value());
  EXPECT_EQ(out.process.result->exit_code, 3);
  EXPECT_EQ(out.stdout_head, "hello\n");
  EXPECT_EQ(out.stderr_head, "oops\n");
  // State kept between processes: the second sees the first's file.
  Exec(sb.id, {"/bin/sh", "-c", "echo kept > /tmp/f"}, alice_);
  EXPECT_EQ(Exec(sb.id, {"/bin/cat", "/tmp/f"}, alice_).stdout_head, "kept\n");

  // Another submitter: as if the sandbox did not exist.
  EXPECT_EQ(service_->Get(sb.id, mallory_).error().code, ErrorCode::kNotFound);
  store::ProcessRequest pr;
  pr.argv = {"/bin/true"};
  EXPECT_EQ(service_->StartProcess(sb.id, pr, mallory_).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(service_->Files(sb.id, mallory_).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(service_->Delete(sb.id, mallory_).error().code, ErrorCode::kNotFound);
  store::SandboxFilter f;
  auto page = service_->List(f, mallory_);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->sandboxes.empty());
  EXPECT_EQ(service_->List(f, bob_)->sandboxes.size(), 1u);
}

TEST_F(SandboxServiceTest, ABackgroundProcessStreamsEveryByteOnceAndItsLogsOutliveTheSandbox) {
  auto sb = CreateRunning();
  store::ProcessRequest pr;
  pr.argv = {"/bin/sh", "-c", "i=0; while [ $i -lt 200 ]; do echo line$i; i=$((i+1)); done"};
  pr.tag = "counter";
  auto p = service_->StartProcess(sb.id, pr, alice_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->state, ProcessState::kRunning);
  // Attach by tag, from the start, while it runs.
  auto h = service_->Output(sb.id, "counter", alice_);
  ASSERT_TRUE(h.ok()) << h.error().ToString();
  std::mutex mu;
  std::condition_variable cv;
  std::vector<supervisor::ProcessEvent> seen;
  bool finished = false;
  auto on = [&](const supervisor::ProcessEvent& e) {
    std::lock_guard lock(mu);
    seen.push_back(e);
    if (e.type == supervisor::ProcessEventType::kFinished) finished = true;
    cv.notify_all();
  };
  if (h->live) {
    auto sub = h->live->Subscribe(0, on);
    std::lock_guard lock(mu);
    // The history goes before anything the listener got meanwhile.
    seen.insert(seen.begin(), sub.history.begin(), sub.history.end());
    if (sub.finished) finished = true;
  }
  {
    std::unique_lock lock(mu);
    if (h->live) {
      ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return finished; }));
    }
  }
  // The history from the files says the same, seq by seq, once the process is over.
  auto w = service_->WaitProcess(sb.id, p->id, std::chrono::seconds(30), 1 << 20, alice_);
  ASSERT_TRUE(w.ok());
  auto stored = supervisor::ReadProcessEvents(h->dir, 0, 100000);
  ASSERT_TRUE(stored.ok());
  std::string expected;
  for (int i = 0; i < 200; ++i) expected += "line" + std::to_string(i) + "\n";
  EXPECT_EQ(w->stdout_head, expected);
  int64_t covered = 0;
  for (size_t i = 0; i < stored->size(); ++i) {
    EXPECT_EQ((*stored)[i].seq, static_cast<int64_t>(i) + 1);
    if ((*stored)[i].type == supervisor::ProcessEventType::kLog) {
      EXPECT_EQ((*stored)[i].offset, covered);  // every byte once, in order
      covered += (*stored)[i].length;
    }
  }
  EXPECT_EQ(covered, static_cast<int64_t>(expected.size()));
  if (h->live) {
    std::lock_guard lock(mu);
    ASSERT_EQ(seen.size(), stored->size());
    for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i].seq, (*stored)[i].seq);
  }
  // A replay from the middle.
  // A replay from the middle: everything after process.started.
  auto tail = supervisor::ReadProcessEvents(h->dir, 1, 100000);
  ASSERT_TRUE(tail.ok());
  ASSERT_EQ(tail->size(), stored->size() - 1);
  EXPECT_EQ(tail->front().seq, 2);

  // Deleted: the record, the result and the logs stay.
  auto del = service_->Delete(sb.id, alice_);
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(del->state, SandboxState::kStopped);
  EXPECT_EQ(store::RenderEndReason(del->reason), "deleted");
  auto again = service_->Delete(sb.id, alice_);  // idempotent
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->state, SandboxState::kStopped);
  auto gone = service_->WaitProcess(sb.id, p->id, std::chrono::seconds(1), 1 << 20, alice_);
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(gone->stdout_head, expected);
  EXPECT_EQ(service_->Files(sb.id, alice_).error().code, ErrorCode::kFailedPrecondition);
}

TEST_F(SandboxServiceTest, ATimeoutKillsTheWholeTreeADoubleForkedSetsidChildToo) {
  auto sb = CreateRunning();
  store::ProcessRequest pr;
  // The child leaves its session and its parent, and records its pid.
  pr.argv = {"/bin/sh", "-c",
             "setsid sh -c 'echo $$ > /tmp/child; exec sleep 300' & sleep 300"};
  pr.timeout_s = 1;
  auto p = service_->StartProcess(sb.id, pr, alice_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  auto w = service_->WaitProcess(sb.id, p->id, std::chrono::seconds(30), 1 << 20, alice_);
  ASSERT_TRUE(w.ok()) << w.error().ToString();
  EXPECT_EQ(store::RenderEndReason(w->process.result->reason), "timed_out");
  const std::string child = ReadIn(sb.id, "/tmp/child");
  ASSERT_FALSE(child.empty());
  // The pid is gone inside the sandbox: kill -0 fails.
  auto probe = Exec(sb.id, {"/bin/sh", "-c", "kill -0 " + child.substr(0, child.find('\n')) +
                                                 " 2>/dev/null && echo alive || echo gone"},
                    alice_);
  EXPECT_EQ(probe.stdout_head, "gone\n");
}

TEST_F(SandboxServiceTest, PauseFreezesACounterAndResumeContinuesIt) {
  auto sb = CreateRunning();
  store::ProcessRequest pr;
  pr.argv = {"/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /tmp/c.new; "
                              "mv /tmp/c.new /tmp/c; sleep 0.02; done"};
  ASSERT_TRUE(service_->StartProcess(sb.id, pr, alice_).ok());
  auto counter = [&] {
    std::string s = ReadIn(sb.id, "/tmp/c");
    return s.empty() || s[0] == '<' ? -1 : std::stoi(s);
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (counter() < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GE(counter(), 3);
  auto paused = service_->Pause(sb.id, alice_);
  ASSERT_TRUE(paused.ok()) << paused.error().ToString();
  EXPECT_EQ(paused->state, SandboxState::kPaused);
  const int frozen = counter();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(counter(), frozen);
  auto live = service_->Live(sb.id);
  ASSERT_TRUE(live.stats.has_value());
  EXPECT_TRUE(live.stats->paused);
  EXPECT_EQ(service_->Pause(sb.id, alice_).error().code, ErrorCode::kFailedPrecondition);
  // Nothing starts in a frozen sandbox, and nothing is recorded for the attempt.
  const size_t before = service_->ListProcesses(sb.id, {}, alice_)->size();
  store::ProcessRequest in_frozen;
  in_frozen.argv = {"/bin/true"};
  EXPECT_EQ(service_->StartProcess(sb.id, in_frozen, alice_).error().code,
            ErrorCode::kFailedPrecondition);
  EXPECT_EQ(service_->ListProcesses(sb.id, {}, alice_)->size(), before);
  auto resumed = service_->Resume(sb.id, alice_);
  ASSERT_TRUE(resumed.ok()) << resumed.error().ToString();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (counter() <= frozen && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GT(counter(), frozen);
}

TEST_F(SandboxServiceTest, IdleAndLifetimeExpiryEndTheSandbox) {
  store::SandboxRequest idle;
  idle.idle_timeout_s = 1;
  auto a = CreateRunning(idle);
  store::SandboxRequest brief;
  brief.timeout_s = 2;
  brief.idle_timeout_s = 3600;
  auto b = CreateRunning(brief);
  // A running process keeps an idle sandbox alive; the lifetime ends it regardless.
  store::ProcessRequest pr;
  pr.argv = {"/bin/sleep", "300"};
  auto p = service_->StartProcess(b.id, pr, alice_);
  ASSERT_TRUE(p.ok());
  auto ea = WaitState(a.id, SandboxState::kFailed, std::chrono::seconds(15));
  EXPECT_EQ(ea.state, SandboxState::kFailed);
  EXPECT_EQ(store::RenderEndReason(ea.reason), "idle");
  auto eb = WaitState(b.id, SandboxState::kFailed, std::chrono::seconds(15));
  EXPECT_EQ(eb.state, SandboxState::kFailed);
  EXPECT_EQ(store::RenderEndReason(eb.reason), "expired");
  auto proc = store_->GetProcess(b.id, std::to_string(p->id));
  ASSERT_TRUE(proc.ok());
  EXPECT_EQ(proc->state, ProcessState::kFinished);
  EXPECT_EQ(store::RenderEndReason(proc->result->reason), "killed");
  EXPECT_EQ(service_->live_count(), 0u);
}

TEST_F(SandboxServiceTest, ThePolicyDecidesSandboxesAndProcessesAndAReviewerTheRest) {
  // Larger than the policy allows: a reviewer decides, never the submitter.
  store::SandboxRequest big;
  big.memory_bytes = 1ll << 30;
  auto c = service_->Create(big, alice_);
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_EQ(c->sandbox.state, SandboxState::kAwaitingReview);
  EXPECT_EQ(service_->Approve(c->sandbox.id, alice_).error().code, ErrorCode::kPermissionDenied);
  auto approved = service_->Approve(c->sandbox.id, bob_);
  ASSERT_TRUE(approved.ok()) << approved.error().ToString();
  EXPECT_EQ(approved->state, SandboxState::kRunning);
  EXPECT_EQ(approved->approval->approved_by, "bob");

  // A process the policy denies is refused; one it sends to review waits for a reviewer.
  store::ProcessRequest denied;
  denied.argv = {"/bin/date"};
  auto d = service_->StartProcess(approved->id, denied, alice_);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, ErrorCode::kPermissionDenied);
  store::ProcessRequest review;
  review.argv = {"/bin/hostname"};
  auto r = service_->StartProcess(approved->id, review, alice_);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->state, ProcessState::kAwaitingReview);
  EXPECT_EQ(service_->ApproveProcess(approved->id, std::to_string(r->id), alice_).error().code,
            ErrorCode::kPermissionDenied);
  auto started = service_->ApproveProcess(approved->id, std::to_string(r->id), bob_);
  ASSERT_TRUE(started.ok()) << started.error().ToString();
  EXPECT_EQ(started->state, ProcessState::kRunning);
  auto w = service_->WaitProcess(approved->id, r->id, std::chrono::seconds(30), 1 << 20, alice_);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->process.result->exit_code, 0);
  EXPECT_FALSE(w->stdout_head.empty());

  // A waiter on a process awaiting review waits through the decision: it times out while
  // nobody decides, sees the approved process to its end, and a rejection at once.
  auto r2 = service_->StartProcess(approved->id, review, alice_);
  ASSERT_TRUE(r2.ok());
  auto still = service_->WaitProcess(approved->id, r2->id, std::chrono::milliseconds(200), 1024,
                                     alice_);
  ASSERT_FALSE(still.ok());
  EXPECT_EQ(still.error().code, ErrorCode::kUnavailable);
  std::thread reviewer([&] {
    (void)service_->ApproveProcess(approved->id, std::to_string(r2->id), bob_);
  });
  auto through = service_->WaitProcess(approved->id, r2->id, std::chrono::seconds(30), 1024,
                                       alice_);
  reviewer.join();
  ASSERT_TRUE(through.ok()) << through.error().ToString();
  EXPECT_EQ(through->process.state, ProcessState::kFinished);
  EXPECT_EQ(through->process.result->exit_code, 0);
  auto r3 = service_->StartProcess(approved->id, review, alice_);
  ASSERT_TRUE(r3.ok());
  std::thread rejecter([&] {
    (void)service_->RejectProcess(approved->id, std::to_string(r3->id), bob_, "no");
  });
  auto rejected = service_->WaitProcess(approved->id, r3->id, std::chrono::seconds(30), 1024,
                                        alice_);
  rejecter.join();
  ASSERT_TRUE(rejected.ok()) << rejected.error().ToString();
  EXPECT_EQ(rejected->process.state, ProcessState::kRejected);

  // Rejected sandboxes end FAILED with the reviewer's reason.
  auto c2 = service_->Create(big, alice_);
  ASSERT_TRUE(c2.ok());
  auto rej = service_->Reject(c2->sandbox.id, bob_, "too big");
  ASSERT_TRUE(rej.ok());
  EXPECT_EQ(store::RenderEndReason(rej->reason), "rejected: too big");

  // Out of range: refused before anything is stored.
  store::SandboxRequest huge;
  huge.memory_bytes = 8ll << 30;
  EXPECT_EQ(service_->Create(huge, alice_).error().code, ErrorCode::kInvalidArgument);
}

TEST_F(SandboxServiceTest, SandboxesOfADeadDaemonEndFailedAtTheNextStart) {
  auto sb = CreateRunning();
  store::ProcessRequest pr;
  pr.argv = {"/bin/sleep", "300"};
  auto p = service_->StartProcess(sb.id, pr, alice_);
  ASSERT_TRUE(p.ok());
  // What a daemon killed with SIGKILL leaves in the store: the sandbox RUNNING on this node.
  // (Stop() would end it supervisor_shutdown; here the records are put back as a crash leaves
  // them, after the sandbox itself is gone.)
  service_->Stop();
  service_.reset();
  auto left = store_->GetSandbox(sb.id);
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(store::RenderEndReason(left->reason), "supervisor_shutdown");
  store::SandboxRecord orphan;
  orphan.submitter = "alice";
  auto c = store_->CreateSandbox(orphan);
  ASSERT_TRUE(c.ok());
  for (auto [from, to] : {std::pair{SandboxState::kPending, SandboxState::kAwaitingReview},
                          {SandboxState::kAwaitingReview, SandboxState::kStarting},
                          {SandboxState::kStarting, SandboxState::kRunning}}) {
    store::SandboxUpdate u;
    u.node = "test-node";
    ASSERT_TRUE(store_->UpdateSandbox(c->sandbox.id, {from}, to, u).ok());
  }
  StartService();
  auto after = store_->GetSandbox(c->sandbox.id);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->state, SandboxState::kFailed);
  EXPECT_EQ(store::RenderEndReason(after->reason), "supervisor_restart");
}

TEST_F(SandboxServiceTest, ASnapshotBranchesANewSandboxWithTheFilesOfTheFirst) {
  auto sb = CreateRunning();
  Exec(sb.id, {"/bin/sh", "-c", "mkdir -p /tmp/d && printf 'a\\000b' > /tmp/d/bin && "
                                "echo report > /artifacts/r.txt"},
       alice_);
  auto snap = service_->Snapshot(sb.id, "base", alice_);
  ASSERT_TRUE(snap.ok()) << snap.error().ToString();
  EXPECT_EQ(snap->name, "base");
  EXPECT_EQ(service_->Snapshot(sb.id, "base", alice_).error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(service_->Snapshot(sb.id, "../x", alice_).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(service_->Snapshot(sb.id, "m", mallory_).error().code, ErrorCode::kNotFound);
  // Changed after the snapshot: not in it.
  Exec(sb.id, {"/bin/sh", "-c", "echo later > /tmp/later"}, alice_);
  ASSERT_TRUE(service_->Delete(sb.id, alice_).ok());

  store::SandboxRequest from;
  from.from_snapshot = "base";
  auto branch = CreateRunning(from);
  ASSERT_FALSE(branch.id.empty());
  EXPECT_EQ(ReadIn(branch.id, "/tmp/d/bin"), std::string("a\0b", 3));
  EXPECT_EQ(ReadIn(branch.id, "/artifacts/r.txt"), "report\n");
  EXPECT_EQ(ReadIn(branch.id, "/tmp/later").substr(0, 1), "<");  // not found
  auto rec = store_->GetSandbox(branch.id);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->info["from_snapshot"]["name"], "base");

  // Another key's snapshot is not found; once deleted, it is gone for its owner too.
  store::SandboxRequest theirs;
  theirs.from_snapshot = "base";
  EXPECT_EQ(service_->Create(theirs, mallory_).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(service_->ListSnapshots(mallory_)->size(), 0u);
  ASSERT_EQ(service_->ListSnapshots(alice_)->size(), 1u);
  ASSERT_TRUE(service_->DeleteSnapshot("base", alice_).ok());
  EXPECT_EQ(service_->Create(from, alice_).error().code, ErrorCode::kNotFound);
}

TEST_F(SandboxServiceTest, AReadWriteWorkspaceIsTheHostDirectoryWithItsOwnersFiles) {
  // A developer's directory (uid 4242) shared read-write; another one only read-only.
  const std::string rw = dir_ + "/rw", proj = rw + "/proj", ro = dir_ + "/ws";
  ASSERT_EQ(::mkdir(rw.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(proj.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(ro.c_str(), 0755), 0);
  std::ofstream(proj + "/main.c") << "int main;\n";
  ASSERT_EQ(::chown(proj.c_str(), 4242, 4242), 0);
  ASSERT_EQ(::chown((proj + "/main.c").c_str(), 4242, 4242), 0);

  store::SandboxRequest req;
  req.workspace_path = proj;
  req.workspace_mode = "rw";
  auto sb = CreateRunning(req);
  ASSERT_FALSE(sb.id.empty());
  auto out = Exec(sb.id, {"/bin/sh", "-c", "echo new > /workspace/new.txt && "
                                           "echo more >> /workspace/main.c && id -u && "
                                           "stat -c %u /workspace/main.c"},
                  alice_);
  EXPECT_EQ(out.process.result->exit_code, 0) << out.stderr_head;
  // Inside, the owner's files are the sandbox user's; on the host, the sandbox's are the owner's.
  EXPECT_EQ(out.stdout_head, "1000\n1000\n");
  struct stat st {};
  ASSERT_EQ(::stat((proj + "/new.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 4242u);
  EXPECT_EQ(st.st_gid, 4242u);
  auto text = ReadFile(proj + "/main.c");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "int main;\nmore\n");

  // Refused: rw outside the rw roots, a root-owned directory, and rw for nothing configured.
  store::SandboxRequest outside;
  outside.workspace_path = ro;
  outside.workspace_mode = "rw";
  EXPECT_FALSE(service_->Create(outside, alice_).ok());
  const std::string rooted = rw + "/rooted";
  ASSERT_EQ(::mkdir(rooted.c_str(), 0755), 0);
  store::SandboxRequest root_owned;
  root_owned.workspace_path = rooted;
  root_owned.workspace_mode = "rw";
  auto refused = service_->Create(root_owned, alice_);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kPermissionDenied);
  // The same directory read-only: the sandbox cannot write into it.
  store::SandboxRequest readonly;
  readonly.workspace_path = ro;
  readonly.workspace_mode = "ro";
  auto r = CreateRunning(readonly);
  auto denied = Exec(r.id, {"/bin/sh", "-c", "echo x > /workspace/x"}, alice_);
  EXPECT_NE(denied.process.result->exit_code, 0);
  EXPECT_NE(::access((ro + "/x").c_str(), F_OK), 0);
}

}  // namespace
}  // namespace sbx::testing
