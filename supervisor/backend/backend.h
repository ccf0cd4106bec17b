// The backends a run's sandbox can come from, behind one contract: the native engine
// (isolate::Sandbox in the daemon's cgroups) and Docker (docker_backend/: a container created
// through the Engine API with the same limits, seccomp profile, user and binds). Both take a
// SandboxRequest, run ProcessSpecs one after another with output streamed to an OutputSink, and
// report ProcessResults with the same reasons, so the run manager, the logs, the events and the
// artifacts do not know which one ran a run.
//
// Selection (SelectBackend): a run asks for "native", "docker" or "auto"; auto takes native when
// this host supports it (root, user namespaces, cgroups, seccomp: probed at start) and Docker
// otherwise. A backend that cannot serve says why, and the run fails with that reason.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "cgroup/cgroup.h"
#include "isolate/sandbox.h"
#include "isolate/spec.h"
#include "seccomp/seccomp.h"
#include "supervisor/workspace/workspace.h"

namespace sbx::supervisor {

enum class BackendKind { kNative, kDocker };
const char* BackendKindName(BackendKind kind);  // "native", "docker"

// Whether a backend can serve runs here, and if not, what is missing.
struct BackendAvailability {
  std::string name;
  bool available = false;
  std::string reason;  // why not (empty when available)
  std::string detail;  // e.g. "Docker 20.10.24, Engine API 1.41 at /var/run/docker.sock"
};

// What one run's sandbox is made of, for either backend.
struct SandboxRequest {
  isolate::SandboxSpec spec;  // id, limits, binds, uid/gid and host_id_base, compiled seccomp
  std::string seccomp_json;   // the same profile as JSON text (Docker compiles its own copy)
  std::string image;          // Docker: the run's image; "" = the backend's default image
  // How many processes Run() will be given, when known (0: unknown). 1 lets Docker run it as
  // the container's own process, as `docker run` does, instead of exec'ing it into an idle one.
  size_t processes = 0;
  // The seccomp profile's name as the run gave it ("" or "default": the builtin one).
  std::string seccomp_profile;
};

// The host-side mounts of a run's sandbox (RunMounts::Prepare): /artifacts under `run_dir` and,
// when `workspace` is set, /workspace. They outlive the sandbox: the run takes its artifacts and
// its diff from them after Destroy().
struct RunMountsRequest {
  std::string run_dir;
  const ResolvedWorkspace* workspace = nullptr;  // not owned; null: no /workspace
  WorkspaceMode mode = WorkspaceMode::kReadOnly;  // ignored without a workspace
  uint64_t artifacts_quota_bytes = 64ull << 20;
};

// The seccomp profiles a backend may take a run's from, by name ("" or "default": the builtin
// one): compiled to a BPF program, or as the profile's JSON text.
struct SeccompSource {
  std::function<Result<seccomp::Program>(const std::string& name)> program;
  std::function<Result<std::string>(const std::string& name)> json;
};

// One run's sandbox. Run() is called from one thread at a time; Cancel() from any thread.
class RunSandbox {
 public:
  virtual ~RunSandbox() = default;
  // As isolate::Sandbox::Run: an Error means the backend failed (the daemon went away), not the
  // program; a timeout or cancellation kills the whole sandbox.
  virtual Result<isolate::ProcessResult> Run(const isolate::ProcessSpec& process,
                                             const isolate::Sandbox::OutputSink& sink) = 0;
  virtual void Cancel() = 0;
  // Whether Run() can still start a process: false once the sandbox failed its setup or died
  // (its init killed from outside). Cheap; for a sandbox built ahead of its run.
  virtual bool Usable() { return true; }
  // Whether it was built before its run arrived (a warm sandbox, warm_pool.h); for the metrics.
  virtual bool BuiltAhead() const { return false; }
  // Kills everything and releases the sandbox (cgroup, container). Idempotent.
  virtual Status Destroy() = 0;
};

// A long-lived sandbox's engine side (supervisor/sandbox/): processes started side by side, as
// isolate::Sandbox's live operations (isolate/live.h) describe them, and the sandbox frozen,
// measured and ended as a whole. Thread-safe.
class LiveSandbox {
 public:
  virtual ~LiveSandbox() = default;
  virtual Result<isolate::LiveProcess> Start(const isolate::LiveProcessSpec& spec) = 0;
  virtual Status Signal(isolate::ProcessId id, int sig) = 0;
  virtual Status Kill(isolate::ProcessId id) = 0;
  virtual Status Resize(isolate::ProcessId id, isolate::PtySize size) = 0;
  virtual Result<isolate::LiveProcessResult> ResultOf(isolate::ProcessId id) = 0;
  virtual Result<isolate::LiveProcessResult> Wait(isolate::ProcessId id,
                                                  std::chrono::milliseconds timeout) = 0;
  virtual Status Release(isolate::ProcessId id) = 0;
  virtual Status Pause() = 0;
  virtual Status Resume() = 0;
  virtual Result<isolate::SandboxStats> Stats() = 0;
  // Whether the sandbox still stands (its init alive).
  virtual bool Alive() = 0;
  // The init's host pid and a pidfd on it: the sandbox's files are under /proc/<pid>/root.
  virtual pid_t InitPid() const = 0;
  virtual int InitPidFd() const = 0;
  // The sandbox user's host ids.
  virtual uid_t HostUid() const = 0;
  virtual gid_t HostGid() const = 0;
  virtual const isolate::IsolationReport& Isolation() const = 0;
  virtual const std::optional<isolate::SetupError>& SetupError() const = 0;
  // Kills everything and releases the sandbox. Idempotent.
  virtual Status Destroy() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual BackendKind kind() const = 0;
  // Cached; an unavailable Docker backend probes the daemon again (at most every few seconds),
  // so a daemon started after sandboxd is picked up.
  virtual BackendAvailability Availability() = 0;
  // Puts seccomp profile `name` into `request` in the form this backend enforces: the native
  // engine loads the compiled program (request.spec.seccomp), Docker compiles its own copy from
  // the JSON text (request.seccomp_json), so neither is asked for the other's form. An error
  // says which profile could not be had, and why.
  virtual Status AttachSeccomp(const SeccompSource& source, const std::string& name,
                               SandboxRequest& request) = 0;
  virtual Result<std::unique_ptr<RunSandbox>> Create(const SandboxRequest& request) = 0;
  // A run's sandbox with its host-side mounts: makes the mounts as `mounts` says (into `out`,
  // owned by the sandbox user's host ids), adds their binds to the request's spec and Create()s
  // the sandbox. A backend that keeps sandboxes built ahead of their runs may hand out a waiting
  // one that fits instead, with the mounts it was built with (WarmBackend). Errors: the mounts'
  // (`out` stays empty) or the sandbox's (`out` holds the mounts, for the run to take down).
  virtual Result<std::unique_ptr<RunSandbox>> CreateForRun(SandboxRequest request,
                                                           const RunMountsRequest& mounts,
                                                           std::optional<RunMounts>& out);
  // A long-lived sandbox (the request's spec with its binds already made). A backend that
  // cannot hold one says why (kFailedPrecondition): Docker's live exec is not built yet.
  virtual Result<std::unique_ptr<LiveSandbox>> CreateLive(const SandboxRequest& request);
  // Crash recovery: removes what a killed daemon of this identity left (Docker: its labelled
  // containers); returns their names. Native: nothing (the cgroup driver does it).
  virtual Result<std::vector<std::string>> RemoveLeftovers() = 0;
};

// Whether this host can build native sandboxes: root, user namespaces, seccomp, and a cgroup
// driver (`driver` null: `cgroup_error` says why there is none).
BackendAvailability ProbeNativeHost(const cgroup::Driver* driver, const std::string& cgroup_error);

// The native engine. `availability` is ProbeNativeHost()'s answer; Create() refuses when it is
// unavailable.
std::unique_ptr<Backend> MakeNativeBackend(cgroup::Driver* driver, isolate::EngineOptions engine,
                                           BackendAvailability availability);

struct DockerBackendOptions {
  std::string host;      // docker_host: unix:///PATH; "" = $DOCKER_HOST or /var/run/docker.sock
  std::string identity;  // io.sandboxd.daemon label: this daemon's node name
  std::string default_image;  // for runs that name none; "" = such runs fail with the reason
  // The images runs may use (fnmatch patterns, docker::CheckImageAllowed); empty: the
  // default_image only.
  std::vector<std::string> allowed_images;
  std::chrono::milliseconds call_timeout{30'000};
  bool network_disabled = true;  // docker::ContainerSpec::network_disabled
};
// Connects lazily: an unreachable daemon makes the backend unavailable (with the reason), not
// the start of sandboxd.
std::unique_ptr<Backend> MakeDockerBackend(DockerBackendOptions options);

// The backend for a run asking for `requested` ("native", "docker" or "auto"). Either backend
// may be null (not configured). kUnavailable with what is missing when none can serve it.
Result<Backend*> SelectBackend(std::string_view requested, Backend* native, Backend* docker);

// "native", "docker", "auto"; kInvalidArgument otherwise.
Status CheckBackendName(std::string_view name);

}  // namespace sbx::supervisor
