#include "supervisor/backend/backend.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>

#include "base/fs.h"
#include "docker_backend/container.h"
#include "docker_backend/engine_client.h"

namespace sbx::supervisor {
namespace {

using Clock = std::chrono::steady_clock;

// How often an unavailable Docker daemon is probed again, and an available one re-pinged.
constexpr auto kReprobeAfterFailure = std::chrono::seconds(2);
constexpr auto kRepingAfter = std::chrono::seconds(5);

class NativeRunSandbox : public RunSandbox {
 public:
  explicit NativeRunSandbox(std::unique_ptr<isolate::Sandbox> sb) : sb_(std::move(sb)) {}
  Result<isolate::ProcessResult> Run(const isolate::ProcessSpec& process,
                                     const isolate::Sandbox::OutputSink& sink) override {
    return sb_->Run(process, sink);
  }
  void Cancel() override { sb_->Cancel(); }
  bool Usable() override { return !sb_->setup_error() && sb_->alive() && !sb_->InitExited(); }
  Status Destroy() override { return sb_->Destroy(); }

 private:
  std::unique_ptr<isolate::Sandbox> sb_;
};

class NativeLiveSandbox : public LiveSandbox {
 public:
  NativeLiveSandbox(std::unique_ptr<isolate::Sandbox> sb, UniqueFd pidfd)
      : sb_(std::move(sb)), pidfd_(std::move(pidfd)) {}
  Result<isolate::LiveProcess> Start(const isolate::LiveProcessSpec& spec) override {
    return sb_->Start(spec);
  }
  Status Signal(isolate::ProcessId id, int sig) override { return sb_->Signal(id, sig); }
  Status Kill(isolate::ProcessId id) override { return sb_->Kill(id); }
  Status Resize(isolate::ProcessId id, isolate::PtySize size) override {
    return sb_->Resize(id, size);
  }
  Result<isolate::LiveProcessResult> ResultOf(isolate::ProcessId id) override {
    return sb_->ResultOf(id);
  }
  Result<isolate::LiveProcessResult> Wait(isolate::ProcessId id,
                                          std::chrono::milliseconds timeout) override {
    return sb_->Wait(id, timeout);
  }
  Status Release(isolate::ProcessId id) override { return sb_->Release(id); }
  Status Pause() override { return sb_->Pause(); }
  Status Resume() override { return sb_->Resume(); }
  Result<isolate::SandboxStats> Stats() override { return sb_->Stats(); }
  bool Alive() override { return sb_->alive() && !sb_->InitExited(); }
  pid_t InitPid() const override { return sb_->init_pid(); }
  int InitPidFd() const override { return pidfd_.get(); }
  uid_t HostUid() const override { return host_uid_; }
  gid_t HostGid() const override { return host_gid_; }
  const isolate::IsolationReport& Isolation() const override { return sb_->isolation(); }
  const std::optional<isolate::SetupError>& SetupError() const override {
    return sb_->setup_error();
  }
  Status Destroy() override { return sb_->Destroy(); }

  uid_t host_uid_ = 0;
  gid_t host_gid_ = 0;

 private:
  std::unique_ptr<isolate::Sandbox> sb_;
  UniqueFd pidfd_;
};

class NativeBackend : public Backend {
 public:
  NativeBackend(cgroup::Driver* driver, isolate::EngineOptions engine, BackendAvailability a)
      : driver_(driver), engine_(std::move(engine)), availability_(std::move(a)) {}
  BackendKind kind() const override { return BackendKind::kNative; }
  BackendAvailability Availability() override { return availability_; }
  Status AttachSeccomp(const SeccompSource& source, const std::string& name,
                       SandboxRequest& request) override {
    auto program = source.program(name);
    if (!program.ok()) return WithContext(std::move(program).error(), "seccomp profile");
    request.spec.seccomp = std::move(*program);
    return Ok();
  }
  Result<std::unique_ptr<RunSandbox>> Create(const SandboxRequest& request) override {
    if (!availability_.available || driver_ == nullptr) {
      return MakeError(ErrorCode::kUnavailable, "the native backend is unavailable: {}",
                       availability_.reason);
    }
    auto sb = isolate::Sandbox::Create(request.spec, *driver_, engine_);
    if (!sb.ok()) return std::move(sb).error();
    return std::unique_ptr<RunSandbox>(new NativeRunSandbox(std::move(*sb)));
  }
  Result<std::unique_ptr<LiveSandbox>> CreateLive(const SandboxRequest& request) override {
    if (!availability_.available || driver_ == nullptr) {
      return MakeError(ErrorCode::kUnavailable, "the native backend is unavailable: {}",
                       availability_.reason);
    }
    auto sb = isolate::Sandbox::Create(request.spec, *driver_, engine_);
    if (!sb.ok()) return std::move(sb).error();
    UniqueFd pidfd;
    if (!(*sb)->setup_error()) {
      const int fd = static_cast<int>(::syscall(SYS_pidfd_open, (*sb)->init_pid(), 0));
      if (fd < 0) return ErrnoError("pidfd_open of sandbox {}'s init", request.spec.id);
      pidfd = UniqueFd(fd);
    }
    auto live = std::make_unique<NativeLiveSandbox>(std::move(*sb), std::move(pidfd));
    live->host_uid_ = request.spec.host_id_base + request.spec.uid;
    live->host_gid_ = request.spec.host_id_base + request.spec.gid;
    return std::unique_ptr<LiveSandbox>(std::move(live));
  }
  Result<std::vector<std::string>> RemoveLeftovers() override {
    return std::vector<std::string>{};
  }

 private:
  cgroup::Driver* driver_;
  isolate::EngineOptions engine_;
  BackendAvailability availability_;
};

Result<std::string> ReadAllFrom(int fd) {
  std::string out;
  char buf[64 << 10];
  for (;;) {  // from the fd's offset, as a native process reads it
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("reading stdin");
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

class DockerRunSandbox : public RunSandbox {
 public:
  DockerRunSandbox(std::unique_ptr<docker::Container> c, isolate::IsolationReport iso)
      : container_(std::move(c)), isolation_(std::move(iso)) {}

  Result<isolate::ProcessResult> Run(const isolate::ProcessSpec& process,
                                     const isolate::Sandbox::OutputSink& sink) override {
    docker::ExecRequest req;
    req.exec.argv = process.argv;
    req.exec.env = process.env;
    req.exec.cwd = process.cwd;
    req.timeout_ms = process.timeout_ms;
    req.output_limit_bytes = process.output_limit_bytes;
    if (process.stdin_fd >= 0) {
      auto data = ReadAllFrom(process.stdin_fd);
      if (!data.ok()) return std::move(data).error();
      req.stdin_data = std::move(*data);
    }
    auto out = container_->Run(req, sink);
    if (!out.ok()) return std::move(out).error();
    isolate::ProcessResult r;
    r.isolation = isolation_;
    r.exit_code = out->exit_code;
    r.signal = out->signal;
    r.wall_ms = out->wall_ms;
    r.cpu_ms = out->cpu_ms;
    r.memory_peak_bytes = out->memory_peak_bytes;
    r.stdout_bytes = out->stdout_bytes;
    r.stderr_bytes = out->stderr_bytes;
    r.output_truncated = out->output_truncated;
    switch (out->end) {
      case docker::ExecEnd::kExited: r.reason = isolate::EndReason::kExited; break;
      case docker::ExecEnd::kSignaled: r.reason = isolate::EndReason::kSignaled; break;
      case docker::ExecEnd::kOomKilled: r.reason = isolate::EndReason::kOomKilled; break;
      case docker::ExecEnd::kTimedOut: r.reason = isolate::EndReason::kTimedOut; break;
      case docker::ExecEnd::kCancelled: r.reason = isolate::EndReason::kCancelled; break;
      case docker::ExecEnd::kStartFailed: {
        r.reason = isolate::EndReason::kSetupFailed;
        r.exit_code.reset();
        // The runtime's text says which (Docker answers 126 for a missing file too).
        const std::string& why = out->start_error;
        const int err = why.find("no such file") != std::string::npos ||
                                why.find("not found") != std::string::npos
                            ? ENOENT
                        : why.find("permission denied") != std::string::npos ? EACCES
                        : out->exit_code == 126                               ? EACCES
                                                                              : ENOENT;
        r.error = isolate::SetupError{
            "execve", err,
            fmt::format("{}: {} ({})", process.argv.empty() ? "" : process.argv[0],
                        err == ENOENT ? "command not found" : "not executable", out->start_error)};
        break;
      }
    }
    return r;
  }
  void Cancel() override { container_->Cancel(); }
  Status Destroy() override { return container_->Destroy(); }

 private:
  std::unique_ptr<docker::Container> container_;
  isolate::IsolationReport isolation_;
};

class DockerBackend : public Backend {
 public:
  explicit DockerBackend(DockerBackendOptions o) : options_(std::move(o)) {
    availability_.name = "docker";
    availability_.reason = "not probed yet";
  }
  BackendKind kind() const override { return BackendKind::kDocker; }

  BackendAvailability Availability() override {
    (void)Client();
    std::lock_guard<std::mutex> lk(mu_);
    return availability_;
  }

  Status AttachSeccomp(const SeccompSource& source, const std::string& name,
                       SandboxRequest& request) override {
    auto text = source.json(name);
    if (!text.ok()) return WithContext(std::move(text).error(), "seccomp profile");
    request.seccomp_json = std::move(*text);
    return Ok();
  }
  Result<std::unique_ptr<RunSandbox>> Create(const SandboxRequest& request) override {
    auto client = Client();
    if (!client.ok()) return std::move(client).error();
    const isolate::SandboxSpec& s = request.spec;
    if (s.allow_host_network) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "the Docker backend runs containers with network none only");
    }
    docker::ContainerSpec c;
    c.name = "sbx-" + s.id;
    c.image = request.image.empty() ? options_.default_image : request.image;
    if (c.image.empty()) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "the run names no image and no docker_image is configured");
    }
    SBX_TRY(docker::CheckImageAllowed(c.image, options_.allowed_images, options_.default_image));
    c.daemon_identity = options_.identity;
    c.run_id = s.id;
    c.hostname = s.hostname.empty() ? "sandbox" : s.hostname;
    c.cpus = s.limits.cpus.value_or(0);
    c.memory_bytes = s.limits.memory_bytes.value_or(0);
    c.pids = s.limits.pids.value_or(0);
    c.tmp_size_bytes = s.tmp_size_bytes;
    c.network_disabled = options_.network_disabled;
    c.max_open_files = s.max_open_files;
    c.seccomp_json = request.seccomp_json;
    if (c.seccomp_json.empty() && s.seccomp) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "the Docker backend needs the seccomp profile's JSON text");
    }
    // The same host ids as the native sandbox user, so the run's mounts (owned by them) work.
    const unsigned uid = s.host_id_base + s.uid, gid = s.host_id_base + s.gid;
    c.user = fmt::format("{}:{}", uid, gid);
    for (const auto& b : s.binds) c.binds.push_back({b.source, b.target, b.writable});
    auto container = request.processes == 1 ? docker::Container::Prepare(*client, c)
                                            : docker::Container::Create(*client, c);
    if (!container.ok()) return std::move(container).error();
    isolate::IsolationReport iso;
    iso.namespaces = {"pid", "mount", "network", "ipc", "uts"};
    iso.network = "none";
    iso.cgroup_version = "docker";
    iso.cgroup_controllers = {"cpu", "memory", "pids"};
    iso.seccomp_profile = c.seccomp_json.empty()                         ? "unconfined"
                          : s.seccomp && !s.seccomp->profile_name.empty() ? s.seccomp->profile_name
                                                                          : "default";
    iso.user = fmt::format("{}:{} (host {}:{}, no user namespace)", uid, gid, uid, gid);
    iso.no_new_privs = true;
    iso.capabilities = "none";
    return std::unique_ptr<RunSandbox>(new DockerRunSandbox(std::move(*container), iso));
  }

  Result<std::vector<std::string>> RemoveLeftovers() override {
    auto client = Client();
    if (!client.ok()) return std::move(client).error();
    return docker::RemoveLeftovers(**client, options_.identity);
  }

 private:
  Result<std::shared_ptr<const docker::EngineClient>> Client() {
    std::lock_guard<std::mutex> lk(mu_);
    const auto now = Clock::now();
    if (client_) {
      if (now - probed_at_ < kRepingAfter) return client_;
      probed_at_ = now;
      auto ping = client_->Call("GET", "/_ping", {}, {}, std::chrono::milliseconds(3000));
      if (ping.ok() && ping->status == 200) return client_;
      client_.reset();
      availability_.available = false;
      availability_.reason = ping.ok() ? docker::ReplyError(*ping, "GET /_ping").ToString()
                                       : ping.error().ToString();
      return MakeError(ErrorCode::kUnavailable, "Docker: {}", availability_.reason);
    }
    if (probed_at_ != Clock::time_point{} && now - probed_at_ < kReprobeAfterFailure) {
      return MakeError(ErrorCode::kUnavailable, "Docker: {}", availability_.reason);
    }
    probed_at_ = now;
    docker::ClientOptions co;
    co.host = options_.host;
    co.call_timeout = options_.call_timeout;
    auto c = docker::EngineClient::Connect(co);
    if (!c.ok()) {
      availability_.available = false;
      availability_.reason = c.error().ToString();
      return MakeError(ErrorCode::kUnavailable, "Docker: {}", availability_.reason);
    }
    client_ = std::shared_ptr<const docker::EngineClient>(std::move(*c));
    availability_.available = true;
    availability_.reason.clear();
    availability_.detail = fmt::format("Docker {}, Engine API {} at {}", client_->server_version(),
                                       client_->api_version(), client_->socket_path());
    return client_;
  }

  DockerBackendOptions options_;
  std::mutex mu_;
  std::shared_ptr<const docker::EngineClient> client_;
  BackendAvailability availability_;
  Clock::time_point probed_at_{};
};

}  // namespace

Result<std::unique_ptr<LiveSandbox>> Backend::CreateLive(const SandboxRequest&) {
  return MakeError(ErrorCode::kFailedPrecondition,
                   "long-lived sandboxes run on the native backend; the {} backend holds runs "
                   "only",
                   BackendKindName(kind()));
}

const char* BackendKindName(BackendKind kind) {
  return kind == BackendKind::kDocker ? "docker" : "native";
}

Status CheckBackendName(std::string_view name) {
  if (name == "native" || name == "docker" || name == "auto") return Ok();
  return MakeError(ErrorCode::kInvalidArgument, "backend '{}' is unknown (native, docker, auto)",
                   std::string(name));
}

BackendAvailability ProbeNativeHost(const cgroup::Driver* driver, const std::string& cgroup_error) {
  BackendAvailability a;
  a.name = "native";
  std::vector<std::string> missing;
  if (::geteuid() != 0) {
    missing.push_back(fmt::format("root privileges (sandboxd runs as uid {})", ::geteuid()));
  }
  if (::access("/proc/self/ns/user", F_OK) != 0) {
    missing.push_back("user namespaces (the kernel has no CONFIG_USER_NS)");
  } else if (auto max = ReadFile("/proc/sys/user/max_user_namespaces"); max.ok() &&
             max->substr(0, max->find('\n')) == "0") {
    missing.push_back("user namespaces (sysctl user.max_user_namespaces is 0)");
  }
  if (::prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0 && errno == EINVAL) {
    missing.push_back("seccomp (the kernel has no CONFIG_SECCOMP)");
  }
  if (driver == nullptr) {
    missing.push_back("cgroups (" + (cgroup_error.empty() ? "no cgroup driver" : cgroup_error) + ")");
  } else {
    a.detail = fmt::format("cgroup layout {}", cgroup::LayoutName(driver->host().layout));
  }
  a.available = missing.empty();
  for (const auto& m : missing) a.reason += (a.reason.empty() ? "missing " : "; missing ") + m;
  return a;
}

std::unique_ptr<Backend> MakeNativeBackend(cgroup::Driver* driver, isolate::EngineOptions engine,
                                           BackendAvailability availability) {
  availability.name = "native";
  return std::make_unique<NativeBackend>(driver, std::move(engine), std::move(availability));
}

std::unique_ptr<Backend> MakeDockerBackend(DockerBackendOptions options) {
  return std::make_unique<DockerBackend>(std::move(options));
}

Result<Backend*> SelectBackend(std::string_view requested, Backend* native, Backend* docker) {
  SBX_TRY(CheckBackendName(requested));
  auto why_not = [](Backend* b, const char* name) -> std::string {
    if (b == nullptr) return fmt::format("{}: not configured", name);
    return fmt::format("{}: {}", name, b->Availability().reason);
  };
  if (requested == "native") {
    if (native != nullptr && native->Availability().available) return native;
    return MakeError(ErrorCode::kUnavailable, "backend native cannot run it ({})",
                     why_not(native, "native"));
  }
  if (requested == "docker") {
    if (docker != nullptr && docker->Availability().available) return docker;
    return MakeError(ErrorCode::kUnavailable, "backend docker cannot run it ({})",
                     why_not(docker, "docker"));
  }
  if (native != nullptr && native->Availability().available) return native;
  if (docker != nullptr && docker->Availability().available) return docker;
  return MakeError(ErrorCode::kUnavailable, "no backend can run it ({}; {})",
                   why_not(native, "native"), why_not(docker, "docker"));
}

Result<std::unique_ptr<RunSandbox>> Backend::CreateForRun(SandboxRequest request,
                                                          const RunMountsRequest& mounts,
                                                          std::optional<RunMounts>& out) {
  isolate::SandboxSpec& spec = request.spec;
  auto prepared = RunMounts::Prepare(mounts.run_dir, mounts.workspace, mounts.mode,
                                     mounts.artifacts_quota_bytes, spec.host_id_base + spec.uid,
                                     spec.host_id_base + spec.gid);
  if (!prepared.ok()) return std::move(prepared).error();
  out.emplace(std::move(*prepared));
  for (auto& b : out->Binds()) spec.binds.push_back(std::move(b));
  return Create(request);
}

}  // namespace sbx::supervisor
