#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "base/fs.h"
#include "isolate/sandbox.h"
#include "supervisor/cli/commands.h"
#include "supervisor/cli/exec_options.h"
#include "supervisor/cli/seccomp_cache.h"
#include "supervisor/exec/result_json.h"

namespace sbx::supervisor {
namespace {

constexpr const char* kSeccompCacheDir = "/run/sandboxd/seccomp";

std::atomic<pid_t> g_forward_to{-1};

// Signals sent to `sandboxd exec` go to the sandbox's init, which forwards them to the command
// (as `docker run --init` with its signal proxy).
void ForwardSignal(int sig) {
  pid_t pid = g_forward_to.load();
  if (pid > 0) ::kill(pid, sig);
}

std::string NewSandboxId() {
  static const char kHex[] = "0123456789abcdef";
  unsigned char bytes[6] = {};
  if (::getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) {
    // Unique enough without entropy: the pid cannot repeat among live sandboxes.
    pid_t pid = ::getpid();
    std::memcpy(bytes, &pid, sizeof pid);
  }
  std::string id = "x";
  for (unsigned char b : bytes) {
    id.push_back(kHex[b >> 4]);
    id.push_back(kHex[b & 15]);
  }
  return id;
}

Status WriteResult(const std::string& path, const std::string& json) {
  if (path == "-") {
    std::fwrite(json.data(), 1, json.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    return Ok();
  }
  std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return ErrnoError("open {}", tmp);
  SBX_TRY(WriteAll(fd.get(), json + "\n"));
  if (::rename(tmp.c_str(), path.c_str()) < 0) return ErrnoError("rename {}", path);
  return Ok();
}

Result<std::optional<seccomp::Program>> CompileProfile(const std::string& which) {
  if (which == "unconfined") {
    spdlog::warn("seccomp=unconfined: no seccomp filter (weakens isolation)");
    return std::optional<seccomp::Program>();
  }
  std::string text, name = "default";
  if (which.empty()) {
    text = seccomp::DefaultProfileJson();
  } else {
    auto t = ReadFile(which, 4 << 20);
    if (!t.ok()) return WithContext(std::move(t).error(), "--security-opt seccomp=" + which);
    text = std::move(*t);
    name = std::filesystem::path(which).stem().string();
  }
  seccomp::CompileOptions copts;
  copts.notify_errors = seccomp::NotifySupported();  // names each denial in the result
  auto prog = CompileProfileCached(text, name, kSeccompCacheDir, copts);
  if (!prog.ok()) return WithContext(std::move(prog).error(), "seccomp profile " + which);
  return std::optional<seccomp::Program>(std::move(*prog));
}

int Fail(const ExecOptions& o, isolate::ProcessResult res, const std::string& stage,
         const Error& e) {
  res.reason = isolate::EndReason::kSetupFailed;
  res.error = isolate::SetupError{stage, e.sys_errno, e.ToString()};
  std::fprintf(stderr, "sandboxd: %s: %s\n", stage.c_str(), e.ToString().c_str());
  if (!o.result_file.empty()) (void)WriteResult(o.result_file, ResultToJson(res).dump(2));
  return 125;
}

}  // namespace

int ExecCommand(const std::vector<std::string>& args) {
  auto parsed = ParseExecArgs(args);
  if (!parsed.ok()) {
    std::fprintf(stderr, "sandboxd exec: %s\n", parsed.error().ToString().c_str());
    return 125;
  }
  ExecOptions& o = *parsed;
  if (o.help) {
    std::fputs(ExecUsage().c_str(), stdout);
    return 0;
  }
  if (o.log_level != "warn") spdlog::set_level(spdlog::level::from_str(o.log_level));
  if (o.sandbox.allow_host_network) spdlog::warn("--network host (weakens isolation)");

  isolate::ProcessResult res;
  auto prog = CompileProfile(o.seccomp);
  if (!prog.ok()) return Fail(o, res, "seccomp profile", prog.error());
  o.sandbox.seccomp = std::move(*prog);
  o.sandbox.id = NewSandboxId();
  if (o.interactive) o.process.stdin_fd = STDIN_FILENO;

  auto driver = cgroup::Driver::Open(cgroup::DriverOptions{o.cgroup_parent});
  if (!driver.ok()) return Fail(o, res, "cgroup", driver.error());

  auto sb = isolate::Sandbox::Create(o.sandbox, **driver);
  if (!sb.ok()) return Fail(o, res, "create sandbox", sb.error());
  spdlog::debug("sandbox {}: init pid {}", (*sb)->id(), (*sb)->init_pid());

  g_forward_to = (*sb)->init_pid();
  struct sigaction sa {};
  sa.sa_handler = ForwardSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) ::sigaction(sig, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto sink = [](int stream, std::string_view data) {
    int fd = stream == 1 ? STDOUT_FILENO : STDERR_FILENO;
    (void)WriteAll(fd, data);  // a closed stdout must not stop the sandbox
  };
  auto run = (*sb)->Run(o.process, sink);
  g_forward_to = -1;
  if (!run.ok()) return Fail(o, res, "run", run.error());
  res = std::move(*run);
  if (Status st = (*sb)->Destroy(); !st.ok()) {
    spdlog::warn("sandbox {}: cleanup: {}", o.sandbox.id, st.error().ToString());
  }
  if (res.reason == isolate::EndReason::kSetupFailed && res.error) {
    std::fprintf(stderr, "sandboxd: setup failed: %s\n", res.error->message.c_str());
  } else if (res.reason == isolate::EndReason::kTimedOut) {
    std::fprintf(stderr, "sandboxd: timed out after %llu ms; killed\n",
                 static_cast<unsigned long long>(o.process.timeout_ms));
  } else if (res.reason == isolate::EndReason::kOomKilled) {
    std::fprintf(stderr, "sandboxd: killed: out of memory\n");
  }
  if (!res.seccomp_denials.empty() && res.ShellExitCode() != 0) {
    std::string list;
    for (const auto& d : res.seccomp_denials) {
      list += fmt::format("{}{} denied {} time{}", list.empty() ? "" : ", ", d.name, d.count,
                          d.count == 1 ? "" : "s");
    }
    std::fprintf(stderr, "sandboxd: seccomp: %s\n", list.c_str());
  }
  if (!o.result_file.empty()) {
    if (Status st = WriteResult(o.result_file, ResultToJson(res).dump(2)); !st.ok()) {
      std::fprintf(stderr, "sandboxd: --result: %s\n", st.error().ToString().c_str());
    }
  }
  return res.reason == isolate::EndReason::kSetupFailed && !res.exit_code ? 125
                                                                          : res.ShellExitCode();
}

}  // namespace sbx::supervisor
