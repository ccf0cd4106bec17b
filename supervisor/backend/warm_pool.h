// Warm sandboxes: native sandboxes built before their run arrives, so that a run with the
// default shape does not wait for one to be built.
//
// Building a sandbox (its cgroups on every hierarchy, clone3 with seven namespaces, the id maps,
// a root of read-only binds, loopback, the /artifacts tmpfs) takes most of a short run's time
// from claim to run.completed. The pool keeps `size` of them ready, built on its own thread
// with the service's default limits and the default seccomp profile, each with its own
// /artifacts. A run takes one only when it would have been built exactly so: the native
// backend, no workspace, the same limits and the same compiled seccomp program (a reloaded
// profile makes the waiting ones unusable: they are thrown away, never used). Every warm
// sandbox serves one run and is destroyed with it; nothing runs in it before that run.
//
// The pool sits in front of the native backend as a Backend of its own (WarmBackend): the run
// manager hands the executor that one in the native backend's place, and its CreateForRun()
// answers a run of the pool's shape with a waiting sandbox; nothing else knows they exist.
//
// A warm sandbox is named "warm-<daemon pid>-<n>": its cgroup, and its directory, which holds
// its /artifacts mount, on a tmpfs the pool mounts at <data_dir>/warm. A daemon killed with
// SIGKILL takes the inits with it (their control sockets close); its cgroups and mounts are
// removed at the next start like a run's (RemoveLeftovers, SweepStaleMounts).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "base/result.h"
#include "isolate/spec.h"
#include "supervisor/backend/backend.h"
#include "supervisor/workspace/workspace.h"

namespace sbx::supervisor {

// One warm sandbox. What the run takes (sandbox, mounts) it moves out; destroying what is left
// kills the sandbox, unmounts and removes the directory.
struct WarmSandbox {
  WarmSandbox() = default;
  WarmSandbox(const WarmSandbox&) = delete;
  WarmSandbox& operator=(const WarmSandbox&) = delete;
  ~WarmSandbox();

  std::string id;   // "warm-<pid>-<n>": its cgroup's name
  std::string dir;  // <data_dir>/warm/<id>: holds the /artifacts mount
  std::unique_ptr<RunSandbox> sandbox;
  std::optional<RunMounts> mounts;
  cgroup::Limits limits;
  std::optional<seccomp::Program> seccomp;
};

struct WarmPoolOptions {
  size_t size = 1;  // how many to keep ready; 0: none (Take() always answers null)
  std::string data_dir;
  uint64_t artifacts_quota_bytes = 64ull << 20;
  Backend* native = nullptr;  // not owned; must be the native backend
  // The spec a warm sandbox is built from (limits, seccomp, uid/gid, …), asked for before each
  // build so that a reloaded default profile is picked up. Its id and binds are the pool's.
  std::function<Result<isolate::SandboxSpec>()> spec;
};

class WarmPool {
 public:
  // Starts the builder thread (none for size 0).
  explicit WarmPool(WarmPoolOptions options);
  ~WarmPool();  // Stop()
  WarmPool(const WarmPool&) = delete;
  WarmPool& operator=(const WarmPool&) = delete;

  // A ready sandbox built with exactly `spec`'s limits, or null. Ask only for runs of the
  // pool's shape otherwise (the pool's spec but for the limits): `spec.seccomp` is the default
  // profile's program as it is now, so a waiting sandbox built with another one was built
  // before a reload. Such sandboxes, and dead ones, are destroyed on the way. Wakes the builder.
  std::unique_ptr<WarmSandbox> Take(const isolate::SandboxSpec& spec);

  // Joins the builder and destroys every waiting sandbox. Idempotent.
  void Stop();

  // How many runs have taken one so far.
  uint64_t taken() const;
  // Blocks until at least `n` are waiting, the pool stops, or `timeout` passes; whether `n` are.
  bool WaitReady(size_t n, std::chrono::milliseconds timeout);

 private:
  void Loop();
  Result<std::unique_ptr<WarmSandbox>> Build();

  WarmPoolOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::deque<std::unique_ptr<WarmSandbox>> ready_;
  uint64_t built_ = 0;
  uint64_t taken_ = 0;
  std::condition_variable ready_cv_;  // a sandbox was added, or Stop()
  std::string root_;  // <data_dir>/warm, a tmpfs holding each one's directory; "": no pool
  std::thread builder_;
};

// The native backend with the pool in front. CreateForRun() gives a run of the pool's shape (no
// workspace, the default seccomp profile; Take() compares the limits and the compiled program) a
// waiting sandbox, with the /artifacts mount it was built with; any other request, and one that
// finds none waiting, goes to the native backend, as does everything else.
class WarmBackend : public Backend {
 public:
  // Starts the pool, which builds its sandboxes with `native` (not owned; it must outlive this).
  // `options.native` is ignored.
  WarmBackend(Backend& native, WarmPoolOptions options);

  BackendKind kind() const override { return native_.kind(); }
  BackendAvailability Availability() override { return native_.Availability(); }
  Status AttachSeccomp(const SeccompSource& source, const std::string& name,
                       SandboxRequest& request) override {
    return native_.AttachSeccomp(source, name, request);
  }
  Result<std::unique_ptr<RunSandbox>> Create(const SandboxRequest& request) override {
    return native_.Create(request);
  }
  Result<std::unique_ptr<RunSandbox>> CreateForRun(SandboxRequest request,
                                                   const RunMountsRequest& mounts,
                                                   std::optional<RunMounts>& out) override;
  Result<std::vector<std::string>> RemoveLeftovers() override { return native_.RemoveLeftovers(); }

  WarmPool& pool() { return pool_; }

 private:
  static WarmPoolOptions WithNative(Backend& native, WarmPoolOptions options) {
    options.native = &native;
    return options;
  }

  Backend& native_;
  WarmPool pool_;
};

// Whether two compiled programs are the same filter (and the same answers for a notifying one).
bool SameSeccompProgram(const std::optional<seccomp::Program>& a,
                        const std::optional<seccomp::Program>& b);

}  // namespace sbx::supervisor
