#include "supervisor/service/run_manager.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "base/dir.h"
#include "base/fs.h"
#include "supervisor/checkout/remove_tree.h"
#include "supervisor/workspace/workspace.h"

namespace sbx::supervisor {

namespace {

// Removes <runs>/<id>/checkout, what a run with a pinned checkout had while it ran, for every
// run: at start no run is running here.
void SweepCheckouts(const std::string& runs) {
  UniqueFd dir(::open(runs.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return;
  auto names = ListDirNames(dir.get(), 10'000'000);
  if (!names.ok()) return;
  for (const std::string& id : *names) {
    UniqueFd run(::openat(dir.get(), id.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st;
    if (!run || ::fstatat(run.get(), "checkout", &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
    if (Status rm = checkout::RemoveTreeAt(run.get(), "checkout"); !rm.ok()) {
      spdlog::warn("run {}: removing the checkout an earlier daemon left: {}", id,
                   rm.error().ToString());
    } else {
      spdlog::info("run {}: removed the checkout an earlier daemon left", id);
    }
  }
}

}  // namespace

RunManager::RunManager(store::Store& store, RunManagerOptions options)
    : store_(store),
      options_(std::move(options)),
      events_(store, [metrics = options_.metrics](const store::EventRecord& ev) {
        if (metrics != nullptr) metrics->OnEvent(ev.run_id, store::EventTypeName(ev.type), ev.data);
      }) {}

Result<std::unique_ptr<RunManager>> RunManager::Start(store::Store& store,
                                                      RunManagerOptions options) {
  if (options.cgroups == nullptr && !options.native) {
    return MakeError(ErrorCode::kInvalidArgument, "RunManager needs a cgroup driver");
  }
  if (Status st = CheckBackendName(options.default_backend); !st.ok()) {
    return WithContext(std::move(st).error(), "default_backend");
  }
  if (!options.native) {
    options.native =
        MakeNativeBackend(options.cgroups, options.engine, ProbeNativeHost(options.cgroups, ""));
  }
  if (options.node.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    options.node = host;
  }
  // The node's name is also its label "node" (a run may ask for one node by name).
  if (Status st = store::CheckNodeLabels({{"node", options.node}}, "node"); !st.ok()) {
    return std::move(st).error();
  }
  if (Status st = store::CheckNodeLabels(options.node_labels, "node_labels"); !st.ok()) {
    return std::move(st).error();
  }
  if (::mkdir(options.data_dir.c_str(), 0711) < 0 && errno != EEXIST) {
    return ErrnoError("mkdir {}", options.data_dir);
  }
  std::string runs = options.data_dir + "/runs";
  if (::mkdir(runs.c_str(), 0711) < 0 && errno != EEXIST) return ErrnoError("mkdir {}", runs);
  if (Status st = CheckSearchableByOthers(runs); !st.ok()) {
    return WithContext(std::move(st).error(), "data_dir");
  }
  // Mounts of runs a killed daemon left behind (their sandboxes died with it).
  if (Status st = SweepStaleMounts(options.data_dir); !st.ok()) {
    return WithContext(std::move(st).error(), "removing mounts left by an earlier daemon");
  }

  // Checkouts of runs a killed daemon left behind (their mounts are gone now).
  SweepCheckouts(runs);

  std::unique_ptr<RunManager> m(new RunManager(store, std::move(options)));
  const RunManagerOptions& o = m->options_;
  ReviewOptions ro;
  ro.data_dir = o.data_dir;
  ro.limits = o.limits;
  ro.default_backend = o.default_backend;
  ro.command_policy = o.command_policy;
  ro.jobs = o.jobs;
  ro.seccomp = o.seccomp;
  ro.seccomp_json = o.seccomp_json;
  ro.seccomp_profiles_dir = o.seccomp_profiles_dir;
  ro.on_policy_reload = o.on_policy_reload;
  // Until the executor exists, its workers find queued runs when they start.
  ro.on_queued = [raw = m.get()] { raw->Queued(); };
  if (o.on_commit) m->events_.SetCommitHook(o.on_commit);
  auto review = Review::Create(store, m->events_, std::move(ro));
  if (!review.ok()) return std::move(review).error();
  m->review_ = std::move(*review);
  m->projects_ = std::make_unique<Projects>(store, m->events_, *m->review_,
                                            ProjectOptions{o.data_dir, o.limits, o.planners, o.node});

  // Crash recovery: what this node was running when it died did not finish.
  if (Status st = RecoverNode(store, m->events_, o.node); !st.ok()) {
    return WithContext(std::move(st).error(), "crash recovery");
  }
  // Their containers (Docker's survive the daemon that made them).
  if (o.docker) {
    auto removed = o.docker->RemoveLeftovers();
    if (removed.ok()) {
      for (const auto& name : *removed) {
        spdlog::warn("removed container {} left by an earlier run of the daemon", name);
      }
    } else {
      spdlog::warn("Docker: cannot look for containers left by an earlier run: {}",
                   removed.error().ToString());
    }
  }
  m->review_->ReplanStalled();
  Review* rv = m->review_.get();
  SeccompPrograms seccomp = [rv](const std::string& name) { return rv->SeccompProgram(name); };
  // Warm sandboxes are native ones, for runs that name no backend: none when those go to Docker.
  // Their limits: a request's that names none.
  auto defaults = ResolveLimits({}, o.limits);
  if (o.limits.warm_sandboxes > 0 && o.default_backend != "docker" &&
      o.native->Availability().available && defaults.ok()) {
    WarmPoolOptions w;
    w.size = static_cast<size_t>(o.limits.warm_sandboxes);
    w.data_dir = o.data_dir;
    w.artifacts_quota_bytes = o.limits.artifacts_quota_bytes;
    w.spec = [seccomp, defaults = *defaults, ids = o.sandbox_id_base] {
      return BaseSpec(defaults, ids, seccomp, "");
    };
    m->warm_ = std::make_unique<WarmBackend>(*o.native, std::move(w));
  }
  ExecutorOptions eo;
  eo.node = o.node;
  eo.data_dir = o.data_dir;
  eo.workers = o.limits.max_concurrent_runs;
  eo.workspace_roots = o.limits.workspace_roots;
  eo.artifacts_quota_bytes = o.limits.artifacts_quota_bytes;
  eo.default_backend = o.default_backend;
  // With warm sandboxes, the executor's native backend is the pool in front of it.
  eo.native = m->warm_ ? static_cast<Backend*>(m->warm_.get()) : o.native.get();
  eo.docker = o.docker.get();
  eo.seccomp = seccomp;
  eo.seccomp_json = [rv](const std::string& name) { return rv->SeccompJson(name); };
  eo.metrics = o.metrics;
  eo.sandbox_id_base = o.sandbox_id_base;
  // The node in the store: registered before it claims anything, beating from then on.
  store::NodeRecord self{.name = o.node,
                         .labels = m->NodeLabels(),
                         .capacity = o.limits.max_concurrent_runs,
                         .version = o.node_version,
                         .address = o.node_address};
  auto registered = store.RegisterNode(self);
  if (!registered.ok()) return WithContext(std::move(registered).error(), "registering the node");
  eo.labels = self.labels;
  m->executor_ = std::make_unique<Executor>(store, m->events_, std::move(eo));
  Executor* ex = m->executor_.get();
  ex->SetDraining(registered->state == store::NodeState::kDraining);
  NodeHooks hooks{.set_draining = [ex](bool draining) { ex->SetDraining(draining); },
                  .fence = [ex] { return ex->Fence(); },
                  .unfence = [ex] { ex->Unfence(); },
                  .wake = [ex] { ex->Wake(); },
                  .wait_idle = [ex](std::chrono::milliseconds t) { return ex->WaitIdle(t); }};
  // Runs queued and events committed by other nodes wake this one as they commit.
  auto watch = store.Watch({.events = [raw = m.get()](const std::string& run_id) {
                              raw->events_.RemoteCommitted(run_id);
                            },
                            .queued = [raw = m.get()] { raw->Queued(); }});
  if (!watch.ok()) return WithContext(std::move(watch).error(), "watching the database");
  m->watch_ = std::move(*watch);
  m->heartbeat_ = std::make_unique<Heartbeat>(store, m->events_, std::move(self),
                                              o.heartbeat_interval, o.node_timeout,
                                              std::move(hooks), /*shared=*/m->watch_ != nullptr);
  return m;
}

RunManager::~RunManager() { Stop(); }

void RunManager::SetNodeAddress(const std::string& address) {
  if (!heartbeat_) return;
  heartbeat_->SetAddress(address);
}

std::string RunManager::node_address() const {
  return heartbeat_ ? heartbeat_->address() : options_.node_address;
}

std::map<std::string, std::string> RunManager::NodeLabels() const {
  std::map<std::string, std::string> labels = options_.node_labels;
  labels["node"] = options_.node;
  utsname u{};
  if (::uname(&u) == 0) {
    labels.emplace("os", "linux");
    const std::string machine = u.machine;
    labels.emplace("arch", machine == "x86_64" ? "amd64" : machine == "aarch64" ? "arm64" : machine);
    // A host name that is no label value (over 63 characters) is left out.
    if (store::CheckNodeLabels({{"hostname", u.nodename}}, "hostname").ok()) {
      labels.emplace("hostname", u.nodename);
    }
  }
  // backend.native=true / backend.docker=true: what this node can run now.
  for (const BackendAvailability& b : Backends()) {
    if (b.available) labels.emplace("backend." + b.name, "true");
  }
  return labels;
}

std::vector<BackendAvailability> RunManager::Backends() const {
  std::vector<BackendAvailability> out;
  out.push_back(options_.native->Availability());
  if (options_.docker) {
    out.push_back(options_.docker->Availability());
  } else {
    out.push_back({"docker", false, "not configured (docker_host)", ""});
  }
  return out;
}

SeccompSource RunManager::seccomp_source(bool live) const {
  Review* rv = review_.get();
  if (live) {
    return {[rv](const std::string& name) { return rv->SeccompPlainProgram(name); },
            [rv](const std::string& name) { return rv->SeccompJson(name); }};
  }
  return {[rv](const std::string& name) { return rv->SeccompProgram(name); },
          [rv](const std::string& name) { return rv->SeccompJson(name); }};
}

void RunManager::Stop() {
  // The heartbeat and the watch first: they call into the executor and the bus.
  if (heartbeat_) heartbeat_->Stop();
  watch_.reset();
  if (executor_) executor_->Stop();
  if (warm_) warm_->pool().Stop();
}

void RunManager::Queued() {
  if (executor_) executor_->Wake();
  std::lock_guard<std::mutex> lk(queued_mu_);
  for (const auto& [token, wake] : queued_subscribers_) wake();
}

uint64_t RunManager::SubscribeQueued(std::function<void()> wake) {
  std::lock_guard<std::mutex> lk(queued_mu_);
  queued_subscribers_.emplace(next_queued_token_, std::move(wake));
  return next_queued_token_++;
}

void RunManager::UnsubscribeQueued(uint64_t token) {
  std::lock_guard<std::mutex> lk(queued_mu_);
  queued_subscribers_.erase(token);
}

Result<store::RunRecord> RunManager::Cancel(std::string_view run_id, const Principal& who) {
  // A run this node is executing is ended by its worker, after its last bytes of output.
  if (executor_ && executor_->Cancel(run_id, who)) return store_.GetRun(run_id);
  return review_->Cancel(run_id, who);
}

}  // namespace sbx::supervisor
