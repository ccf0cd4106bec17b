#include "supervisor/backend/warm_pool.h"

#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sbx::supervisor {

namespace {

// After a failed build, the builder waits this long (or for Stop) before it tries again.
constexpr auto kRetryAfterFailure = std::chrono::seconds(5);

bool SameInsns(const std::vector<sock_filter>& a, const std::vector<sock_filter>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(sock_filter)) == 0);
}

// A warm sandbox as its run sees it: the sandbox it was built with, in the directory that held
// its mounts (moved out to the run); the directory goes when the run is done with it.
class WarmRunSandbox : public RunSandbox {
 public:
  explicit WarmRunSandbox(std::unique_ptr<WarmSandbox> warm) : warm_(std::move(warm)) {}
  Result<isolate::ProcessResult> Run(const isolate::ProcessSpec& process,
                                     const isolate::Sandbox::OutputSink& sink) override {
    return warm_->sandbox->Run(process, sink);
  }
  void Cancel() override { warm_->sandbox->Cancel(); }
  bool Usable() override { return warm_->sandbox->Usable(); }
  Status Destroy() override { return warm_->sandbox->Destroy(); }
  bool BuiltAhead() const override { return true; }

 private:
  std::unique_ptr<WarmSandbox> warm_;
};

}  // namespace

bool SameSeccompProgram(const std::optional<seccomp::Program>& a,
                        const std::optional<seccomp::Program>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a) return true;
  return a->profile_name == b->profile_name && a->notify == b->notify &&
         SameInsns(a->insns, b->insns) && SameInsns(a->answers, b->answers);
}

WarmSandbox::~WarmSandbox() {
  if (sandbox) {
    if (Status st = sandbox->Destroy(); !st.ok()) {
      spdlog::warn("warm sandbox {}: cleanup: {}", id, st.error().ToString());
    }
    sandbox.reset();
  }
  if (mounts) {
    if (Status st = mounts->Teardown(); !st.ok()) {
      spdlog::warn("warm sandbox {}: unmounting: {}", id, st.error().ToString());
    }
    mounts.reset();
  }
  if (!dir.empty() && ::rmdir(dir.c_str()) < 0 && errno != ENOENT) {
    spdlog::warn("warm sandbox {}: rmdir {}: {}", id, dir, std::strerror(errno));
  }
}

WarmPool::WarmPool(WarmPoolOptions options) : options_(std::move(options)) {
  if (options_.size == 0 || options_.native == nullptr || !options_.spec) return;
  root_ = options_.data_dir + "/" + kWarmDir;
  if (Status st = MountPointsTmpfs(root_); !st.ok()) {
    spdlog::warn("no warm sandboxes: {}", st.error().ToString());
    root_.clear();
    return;
  }
  builder_ = std::thread([this] { Loop(); });
}

WarmPool::~WarmPool() { Stop(); }

void WarmPool::Stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  ready_cv_.notify_all();
  if (builder_.joinable()) builder_.join();
  std::deque<std::unique_ptr<WarmSandbox>> left;
  {
    std::lock_guard<std::mutex> lk(mu_);
    left.swap(ready_);
  }
  left.clear();  // destroyed outside the lock
  if (!root_.empty()) {
    if (::umount2(root_.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) < 0) {
      spdlog::warn("unmounting {}: {}", root_, std::strerror(errno));
    } else if (::rmdir(root_.c_str()) < 0) {
      spdlog::warn("rmdir {}: {}", root_, std::strerror(errno));
    }
    root_.clear();
  }
}

uint64_t WarmPool::taken() const {
  std::lock_guard<std::mutex> lk(mu_);
  return taken_;
}

bool WarmPool::WaitReady(size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  return ready_cv_.wait_for(lk, timeout, [&] { return stopping_ || ready_.size() >= n; }) &&
         ready_.size() >= n;
}

std::unique_ptr<WarmSandbox> WarmPool::Take(const isolate::SandboxSpec& spec) {
  std::unique_ptr<WarmSandbox> found;
  std::deque<std::unique_ptr<WarmSandbox>> stale;
  {
    std::lock_guard<std::mutex> lk(mu_);
    while (!ready_.empty() && !found) {
      std::unique_ptr<WarmSandbox> w = std::move(ready_.front());
      ready_.pop_front();
      if (!w->sandbox->Usable() || !SameSeccompProgram(w->seccomp, spec.seccomp)) {
        stale.push_back(std::move(w));  // dead, or built with a profile no longer in force
        continue;
      }
      if (w->limits != spec.limits) {
        ready_.push_front(std::move(w));  // another run's shape: it stays for the next one
        break;
      }
      found = std::move(w);
      ++taken_;
    }
  }
  if (found || !stale.empty()) cv_.notify_all();
  for (const auto& w : stale) spdlog::info("warm sandbox {}: unusable, destroyed", w->id);
  stale.clear();
  return found;
}

Result<std::unique_ptr<WarmSandbox>> WarmPool::Build() {
  auto spec = options_.spec();
  if (!spec.ok()) return std::move(spec).error();
  auto w = std::make_unique<WarmSandbox>();
  {
    std::lock_guard<std::mutex> lk(mu_);
    w->id = fmt::format("warm-{}-{}", ::getpid(), ++built_);
  }
  w->dir = fmt::format("{}/{}", root_, w->id);
  if (::mkdir(w->dir.c_str(), 0711) < 0) {
    Error e = ErrnoError("mkdir {}", w->dir);
    w->dir.clear();  // not ours to remove
    return e;
  }
  spec->id = w->id;
  w->limits = spec->limits;
  w->seccomp = spec->seccomp;
  SandboxRequest request;
  request.spec = std::move(*spec);
  // Its own /artifacts under its directory, as a run's under the run's.
  auto sb = options_.native->CreateForRun(
      std::move(request),
      {w->dir, nullptr, WorkspaceMode::kReadOnly, options_.artifacts_quota_bytes}, w->mounts);
  if (!sb.ok()) return std::move(sb).error();
  w->sandbox = std::move(*sb);
  if (!w->sandbox->Usable()) {
    return MakeError(ErrorCode::kInternal, "warm sandbox {} failed its setup", w->id);
  }
  return w;
}

void WarmPool::Loop() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return stopping_ || ready_.size() < options_.size; });
    if (stopping_) return;
    lk.unlock();
    auto built = Build();
    lk.lock();
    if (!built.ok()) {
      spdlog::warn("building a warm sandbox: {}; retrying in {} s", built.error().ToString(),
                   kRetryAfterFailure.count());
      cv_.wait_for(lk, kRetryAfterFailure, [&] { return stopping_; });
      continue;
    }
    if (stopping_) {
      lk.unlock();
      built->reset();  // destroyed outside the lock
      return;
    }
    ready_.push_back(std::move(*built));
    ready_cv_.notify_all();
  }
}

WarmBackend::WarmBackend(Backend& native, WarmPoolOptions options)
    : native_(native), pool_(WithNative(native, std::move(options))) {}

Result<std::unique_ptr<RunSandbox>> WarmBackend::CreateForRun(SandboxRequest request,
                                                              const RunMountsRequest& mounts,
                                                              std::optional<RunMounts>& out) {
  if (mounts.workspace == nullptr &&
      (request.seccomp_profile.empty() || request.seccomp_profile == "default")) {
    if (std::unique_ptr<WarmSandbox> w = pool_.Take(request.spec)) {
      spdlog::debug("run {}: in warm sandbox {}", request.spec.id, w->id);
      out = std::move(w->mounts);
      w->mounts.reset();
      return std::unique_ptr<RunSandbox>(std::make_unique<WarmRunSandbox>(std::move(w)));
    }
  }
  return native_.CreateForRun(std::move(request), mounts, out);
}

}  // namespace sbx::supervisor
