// Runs through the run manager on the Docker backend (a test-owned dockerd, a busybox image):
// backend selection (an image goes to Docker, native with an image is refused, auto falls back
// to Docker where native is unavailable, neither says what is missing), the result's backend,
// steps sharing one container, logs, artifacts, timeouts, a missing image, containers a crashed
// daemon left behind, and a Docker daemon that dies mid-run.
#include <signal.h>
#include <sys/stat.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>

#include "base/fs.h"
#include "docker_backend/container.h"
#include "docker_backend/engine_client.h"
#include "integration/sandbox_harness.h"
#include "supervisor/policy/command_policy.h"
#include "supervisor/service/run_manager.h"
#include "supervisor/workspace/artifacts.h"
#include "tests/support/dockerd.h"
#include "tests/support/skip.h"

namespace sbx::testing {
namespace {

using store::EventType;
using store::RunState;
using supervisor::Principal;
using supervisor::Role;

class BackendRunsTest : public SandboxTest {
 protected:
  void SetUp() override {
    SandboxTest::SetUp();
    if (IsSkipped()) return;
    auto d = TestDockerd::Shared();
    if (!d.ok()) SBX_SKIP_PRIVILEGED("no Docker daemon for the test: " + d.error().ToString());
    dockerd_ = *d;
    auto image = dockerd_->BusyboxImage();
    ASSERT_TRUE(image.ok()) << image.error().ToString();
    image_ = *image;
    char dir[] = "/tmp/sbx-druns-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    ::chmod(dir, 0711);
    dir_ = dir;
    auto s = store::Open("sqlite://" + dir_ + "/sandboxd.db");
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    store_ = std::move(*s);
    ASSERT_TRUE(store_->Migrate().ok());
  }
  void TearDown() override {
    if (manager_) manager_->Stop();
    manager_.reset();
    store_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  supervisor::RunManagerOptions Options(const std::string& node = "docker-test-node") {
    supervisor::RunManagerOptions o;
    o.node = node;
    o.data_dir = dir_ + "/data";
    o.cgroups = driver_.get();
    o.limits.maxima.memory_bytes = 1ll << 30;
    auto p = policy::CommandPolicy::LoadText("rules:\n  \"*\": allow\n", "allow-all.yaml");
    EXPECT_TRUE(p.ok());
    if (p.ok()) o.command_policy = *p;
    supervisor::DockerBackendOptions d;
    d.allowed_images = {"sbx-test-*"};
    d.host = dockerd_->host();
    d.identity = node;
    o.docker = supervisor::MakeDockerBackend(d);
    return o;
  }
  void Start(supervisor::RunManagerOptions o) {
    auto m = supervisor::RunManager::Start(*store_, std::move(o));
    ASSERT_TRUE(m.ok()) << m.error().ToString();
    manager_ = std::move(*m);
    manager_->Subscribe("", [this](const store::EventRecord& e) {
      std::lock_guard<std::mutex> lk(mu_);
      events_.push_back(e);
      cv_.notify_all();
    });
  }
  store::RunRecord Submit(store::RunRecord r) {
    auto c = manager_->Submit(std::move(r), alice_);
    EXPECT_TRUE(c.ok()) << c.error().ToString();
    return c.ok() ? c->run : store::RunRecord{};
  }
  bool WaitFor(const std::string& id, EventType type, std::chrono::seconds limit) {
    std::unique_lock<std::mutex> lk(mu_);
    return cv_.wait_for(lk, limit, [&] {
      for (const auto& e : events_) {
        if (e.run_id == id && e.type == type) return true;
      }
      return false;
    });
  }
  store::RunRecord WaitCompleted(const std::string& id) {
    EXPECT_TRUE(WaitFor(id, EventType::kRunCompleted, std::chrono::seconds(90)))
        << "run " << id << " did not complete";
    return *store_->GetRun(id);
  }
  // Containers of this daemon identity that exist now.
  std::vector<std::string> Containers(const std::string& identity) {
    docker::ClientOptions o;
    o.host = dockerd_->host();
    auto c = docker::EngineClient::Connect(o);
    EXPECT_TRUE(c.ok());
    if (!c.ok()) return {};
    auto list = (*c)->CallJson(
        "GET", "/containers/json?all=true&filters=" +
                   docker::UrlEncode(docker::DaemonLabelFilter(identity)),
        "list");
    EXPECT_TRUE(list.ok());
    std::vector<std::string> ids;
    if (list.ok()) {
      for (const auto& j : *list) ids.push_back(j.value("Id", ""));
    }
    return ids;
  }

  TestDockerd* dockerd_ = nullptr;
  std::string image_;
  std::string dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<supervisor::RunManager> manager_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<store::EventRecord> events_;
  Principal alice_{"alice", Role::kSubmitter};
};

TEST_F(BackendRunsTest, AnImageRunsOnDockerWithSharedStepsLogsAndArtifacts) {
  Start(Options());
  store::RunRecord r;
  r.image = image_;
  r.steps = {{"make", {"/bin/sh", "-c", "echo built > /tmp/state; echo report > /artifacts/out.txt; "
                                        "mkdir /artifacts/sub; echo deep > /artifacts/sub/x; echo one"}},
             {"check", {"/bin/sh", "-c", "cat /tmp/state; echo warn >&2"}}};
  auto run = Submit(r);
  EXPECT_EQ(run.backend, "docker");
  EXPECT_EQ(run.image, image_);
  auto done = WaitCompleted(run.id);
  EXPECT_EQ(done.state, RunState::kSucceeded) << store::RenderEndReason(done.result->reason);
  ASSERT_TRUE(done.result.has_value());
  EXPECT_EQ(done.result->backend, "docker");
  ASSERT_EQ(done.result->steps.size(), 2u);
  EXPECT_EQ(done.result->steps[1].exit_code, 0);
  const std::string run_dir = dir_ + "/data/runs/" + run.id;
  EXPECT_EQ(*ReadFile(run_dir + "/stdout"), "one\nbuilt\n");
  EXPECT_EQ(*ReadFile(run_dir + "/stderr"), "warn\n");
  const std::string files = supervisor::ArtifactDir(dir_ + "/data", run.id) + "/files";
  EXPECT_EQ(*ReadFile(files + "/out.txt"), "report\n");
  EXPECT_EQ(*ReadFile(files + "/sub/x"), "deep\n");
  bool announced = false;
  auto events = store_->ListEvents(run.id, 0, 1000);
  ASSERT_TRUE(events.ok());
  for (const auto& e : *events) {
    if (e.type == EventType::kArtifactCreated && e.data["name"] == "files/out.txt") announced = true;
  }
  EXPECT_TRUE(announced);
  EXPECT_TRUE(Containers("docker-test-node").empty()) << "the run's container was left behind";
}

TEST_F(BackendRunsTest, NativeWithAnImageIsRefused) {
  Start(Options());
  store::RunRecord r;
  r.argv = {"/bin/true"};
  r.image = image_;
  r.backend = "native";
  auto c = manager_->Submit(r, alice_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(c.error().message.find("needs the docker backend"), std::string::npos);
  r.backend = "bogus";
  r.image.clear();
  EXPECT_FALSE(manager_->Submit(r, alice_).ok());
}

TEST_F(BackendRunsTest, AutoTakesDockerWhereNativeIsUnavailable) {
  auto o = Options();
  o.native = supervisor::MakeNativeBackend(nullptr, {}, {"native", false, "missing cgroups (test)", ""});
  supervisor::DockerBackendOptions d;
    d.allowed_images = {"sbx-test-*"};
  d.host = dockerd_->host();
  d.identity = o.node;
  d.default_image = image_;
  o.docker = supervisor::MakeDockerBackend(d);
  o.default_backend = "auto";
  Start(std::move(o));
  auto backends = manager_->Backends();
  ASSERT_EQ(backends.size(), 2u);
  EXPECT_FALSE(backends[0].available);
  EXPECT_EQ(backends[0].reason, "missing cgroups (test)");
  EXPECT_TRUE(backends[1].available) << backends[1].reason;
  store::RunRecord r;
  r.argv = {"/bin/sh", "-c", "echo $HOSTNAME"};
  auto run = Submit(r);
  EXPECT_EQ(run.backend, "auto");
  auto done = WaitCompleted(run.id);
  EXPECT_EQ(done.state, RunState::kSucceeded) << store::RenderEndReason(done.result->reason);
  EXPECT_EQ(done.result->backend, "docker");
}

TEST_F(BackendRunsTest, WhenNoBackendCanServeTheRunSaysWhatIsMissing) {
  auto o = Options();
  o.native = supervisor::MakeNativeBackend(nullptr, {}, {"native", false, "missing cgroups (test)", ""});
  supervisor::DockerBackendOptions d;
    d.allowed_images = {"sbx-test-*"};
  d.host = "unix://" + dir_ + "/no-docker.sock";
  d.identity = o.node;
  o.docker = supervisor::MakeDockerBackend(d);
  o.default_backend = "auto";
  Start(std::move(o));
  store::RunRecord r;
  r.argv = {"/bin/true"};
  auto done = WaitCompleted(Submit(r).id);
  EXPECT_EQ(done.state, RunState::kFailed);
  const std::string& why = store::RenderEndReason(done.result->reason);
  EXPECT_EQ(why.rfind("setup_failed: no backend can run it", 0), 0u) << why;
  EXPECT_NE(why.find("native: missing cgroups (test)"), std::string::npos) << why;
  EXPECT_NE(why.find("docker: cannot reach the Docker daemon"), std::string::npos) << why;
  EXPECT_EQ(done.result->backend, "");
}

TEST_F(BackendRunsTest, AMissingImageFailsWithTheReason) {
  Start(Options());
  store::RunRecord r;
  r.argv = {"/bin/true"};
  r.image = "sbx-test-not-imported:1";
  auto done = WaitCompleted(Submit(r).id);
  EXPECT_EQ(done.state, RunState::kFailed);
  EXPECT_NE(
      store::RenderEndReason(done.result->reason).find("not in the Docker daemon's image store"),
      std::string::npos)
      << store::RenderEndReason(done.result->reason);
  EXPECT_EQ(store::RenderEndReason(done.result->reason).rfind("setup_failed: ", 0), 0u);
}

TEST_F(BackendRunsTest, ImagesOutsideTheAllowlistOrWithVolumesAreRefused) {
  Start(Options());
  // Not in docker_images ("sbx-test-*"), though the daemon has it under that name too.
  store::RunRecord r;
  r.argv = {"/bin/true"};
  r.image = "busybox-elsewhere:1";
  auto outside = WaitCompleted(Submit(r).id);
  EXPECT_EQ(outside.state, RunState::kFailed);
  EXPECT_NE(store::RenderEndReason(outside.result->reason).find("image 'busybox-elsewhere:1' is not allowed"),
            std::string::npos)
      << store::RenderEndReason(outside.result->reason);
  // Allowed by name, but it declares VOLUME /data: Docker would make a host volume for it.
  auto volume = dockerd_->BusyboxImageWithAVolume();
  ASSERT_TRUE(volume.ok()) << volume.error().ToString();
  r.image = *volume;
  auto declared = WaitCompleted(Submit(r).id);
  EXPECT_EQ(declared.state, RunState::kFailed);
  EXPECT_NE(store::RenderEndReason(declared.result->reason).find("declares volumes (/data)"), std::string::npos)
      << store::RenderEndReason(declared.result->reason);
  EXPECT_TRUE(Containers("docker-test-node").empty()) << "a refused image made a container";
}

TEST_F(BackendRunsTest, ATimeoutEndsTheRunTimedOut) {
  Start(Options());
  store::RunRecord r;
  r.argv = {"/bin/sh", "-c", "echo started; sleep 60"};
  r.image = image_;
  r.limits.timeout_s = 1;
  auto done = WaitCompleted(Submit(r).id);
  EXPECT_EQ(done.state, RunState::kFailed);
  EXPECT_EQ(store::RenderEndReason(done.result->reason), "timed_out");
  EXPECT_EQ(*ReadFile(dir_ + "/data/runs/" + done.id + "/stdout"), "started\n");
}

TEST_F(BackendRunsTest, CancellingARunningContainerKillsIt) {
  Start(Options());
  store::RunRecord r;
  r.argv = {"/bin/sleep", "60"};
  r.image = image_;
  auto run = Submit(r);
  ASSERT_TRUE(WaitFor(run.id, EventType::kStepStarted, std::chrono::seconds(30)));
  ASSERT_TRUE(manager_->Cancel(run.id, alice_).ok());
  auto done = WaitCompleted(run.id);
  EXPECT_EQ(done.state, RunState::kCancelled);
  EXPECT_TRUE(Containers("docker-test-node").empty());
}

TEST_F(BackendRunsTest, ContainersACrashedDaemonLeftAreRemovedAtStart) {
  const std::string node = "crashed-node";
  // A run this node was executing when it died, and its container.
  store::RunRecord r;
  r.submitter = "alice";
  r.argv = {"/bin/sleep", "60"};
  r.network = "none";
  auto created = store_->CreateRun(r);
  ASSERT_TRUE(created.ok()) << created.error().ToString();
  const std::string id = created->run.id;
  ASSERT_TRUE(store_->Transition(id, {RunState::kPending}, RunState::kPlanned, {}).ok());
  ASSERT_TRUE(store_->Transition(id, {RunState::kPlanned}, RunState::kAwaitingReview, {}).ok());
  ASSERT_TRUE(store_->Transition(id, {RunState::kAwaitingReview}, RunState::kQueued, {}).ok());
  auto claimed = store_->ClaimNextQueued(node);
  ASSERT_TRUE(claimed.ok() && claimed->has_value());
  docker::ClientOptions co;
  co.host = dockerd_->host();
  auto client = docker::EngineClient::Connect(co);
  ASSERT_TRUE(client.ok());
  docker::ContainerSpec spec;
  spec.name = "sbx-" + id;
  spec.image = image_;
  spec.daemon_identity = node;
  spec.run_id = id;
  spec.seccomp_json = std::string(seccomp::DefaultProfileJson());
  auto leftover = docker::Container::Create(std::shared_ptr<const docker::EngineClient>(std::move(*client)), spec);
  ASSERT_TRUE(leftover.ok()) << leftover.error().ToString();
  ASSERT_EQ(Containers(node).size(), 1u);

  Start(Options(node));
  EXPECT_TRUE(Containers(node).empty()) << "the crashed daemon's container survived the restart";
  auto run = store_->GetRun(id);
  EXPECT_EQ(run->state, RunState::kFailed);
  EXPECT_EQ(store::RenderEndReason(run->result->reason), "supervisor_restart");
  (void)(*leftover)->Destroy();  // already gone: a no-op
}

TEST_F(BackendRunsTest, ADockerDaemonThatDiesMidRunFailsTheRunWithTheReason) {
  auto own = TestDockerd::Start();
  ASSERT_TRUE(own.ok()) << own.error().ToString();
  auto image = (*own)->BusyboxImage();
  ASSERT_TRUE(image.ok()) << image.error().ToString();
  auto o = Options();
  supervisor::DockerBackendOptions d;
    d.allowed_images = {"sbx-test-*"};
  d.host = (*own)->host();
  d.identity = o.node;
  d.call_timeout = std::chrono::milliseconds(5000);
  o.docker = supervisor::MakeDockerBackend(d);
  Start(std::move(o));
  store::RunRecord r;
  r.argv = {"/bin/sh", "-c", "echo up; sleep 60"};
  r.image = *image;
  auto run = Submit(r);
  {
    // Its first output: the container runs.
    std::unique_lock<std::mutex> lk(mu_);
    ASSERT_TRUE(cv_.wait_for(lk, std::chrono::seconds(30), [&] {
      for (const auto& e : events_) {
        if (e.run_id == run.id && e.type == EventType::kStepLog) return true;
      }
      return false;
    }));
  }
  const auto killed_at = std::chrono::steady_clock::now();
  (*own)->Kill();
  auto done = WaitCompleted(run.id);
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, std::chrono::seconds(30));
  EXPECT_EQ(done.state, RunState::kFailed);
  EXPECT_NE(store::RenderEndReason(done.result->reason).find("Docker daemon"), std::string::npos)
      << store::RenderEndReason(done.result->reason);
  manager_->Stop();
  manager_.reset();
  // What a real crash leaves: the container's processes and its shim. Gone with the test.
  (*own)->KillContainers();
  EXPECT_TRUE((*own)->Stop().ok());
}

}  // namespace
}  // namespace sbx::testing
