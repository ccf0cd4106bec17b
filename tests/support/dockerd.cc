#include "tests/support/dockerd.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "base/fs.h"
#include "docker_backend/engine_client.h"

namespace sbx::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kImageRepo = "sbx-test-busybox";
constexpr const char* kImageTag = "1";

std::string FindDockerd() {
  for (const char* p : {"/usr/sbin/dockerd", "/usr/bin/dockerd", "/usr/local/bin/dockerd"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "";
}

std::string LogTail(const std::string& path) {
  auto text = ReadFile(path, 64 << 20);
  if (!text.ok()) return "(no log)";
  std::string s = *text;
  if (s.size() > 2000) s = s.substr(s.size() - 2000);
  return s;
}

// Mount points below `dir` (deepest first), from /proc/self/mountinfo.
std::vector<std::string> MountsBelow(const std::string& dir) {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, mount_point;
    fields >> id >> parent >> dev >> root >> mount_point;
    if (mount_point.rfind(dir + "/", 0) == 0) out.push_back(mount_point);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  return out;
}

// `value` as width-1 octal digits, zero-padded, and a NUL (a tar header's numeric field). Written
// by hand: GCC's -Wformat-truncation cannot see that the value fits, at -O1 (the TSan build).
void PutOctal(char* field, size_t width, uint64_t value) {
  field[width - 1] = '\0';
  for (size_t i = width - 1; i-- > 0;) {
    field[i] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
}

void AddEntry(std::string& tar, const std::string& name, char type, unsigned mode,
              std::string_view data, const std::string& link = "") {
  char h[512] = {};
  std::memcpy(h, name.data(), std::min<size_t>(name.size(), 99));
  PutOctal(h + 100, 8, mode);
  PutOctal(h + 108, 8, 0);
  PutOctal(h + 116, 8, 0);
  PutOctal(h + 124, 12, type == '0' ? data.size() : 0);
  PutOctal(h + 136, 12, 1'700'000'000);
  h[156] = type;
  std::memcpy(h + 157, link.data(), std::min<size_t>(link.size(), 99));
  std::memcpy(h + 257, "ustar", 6);
  std::memcpy(h + 263, "00", 2);
  std::memcpy(h + 265, "root", 4);
  std::memcpy(h + 297, "root", 4);
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(h + 148, 8, "%06o", sum);
  h[155] = ' ';
  tar.append(h, sizeof h);
  if (type == '0') {
    tar.append(data);
    tar.append((512 - data.size() % 512) % 512, '\0');
  }
}

}  // namespace

Result<std::string> BusyboxRootfsTar(const std::string& busybox_path) {
  auto busybox = ReadFile(busybox_path, 64 << 20);
  if (!busybox.ok()) return std::move(busybox).error();
  std::string tar;
  for (const char* d : {"bin/", "tmp/", "etc/", "proc/", "dev/", "sys/", "workspace/", "artifacts/"}) {
    AddEntry(tar, d, '5', std::strcmp(d, "tmp/") == 0 ? 01777 : 0755, {});
  }
  AddEntry(tar, "etc/passwd", '0', 0644, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n");
  AddEntry(tar, "bin/busybox", '0', 0755, *busybox);
  for (const char* applet :
       {"sh",    "true",  "false", "echo", "cat",   "sleep", "ls",    "id",    "mkdir", "rm",
        "grep",  "head",  "tail",  "wc",   "dd",    "seq",   "env",   "test",  "printf", "kill",
        "ps",    "touch", "chmod", "stat", "yes",   "sync",  "hostname", "cut", "tr",   "sed"}) {
    AddEntry(tar, std::string("bin/") + applet, '2', 0777, {}, "busybox");
  }
  tar.append(1024, '\0');
  return tar;
}

Result<std::unique_ptr<TestDockerd>> TestDockerd::Start() {
  if (::geteuid() != 0) {
    return MakeError(ErrorCode::kUnavailable, "starting dockerd needs root");
  }
  const std::string dockerd = FindDockerd();
  if (dockerd.empty()) {
    return MakeError(ErrorCode::kUnavailable,
                     "dockerd not found; install Debian's docker.io (scripts/install-deps.sh test)");
  }
  char tmpl[] = "/tmp/sbx-dockerd-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return ErrnoError("mkdtemp");
  std::unique_ptr<TestDockerd> d(new TestDockerd());
  d->dir_ = tmpl;
  ::chmod(tmpl, 0711);
  d->socket_ = d->dir_ + "/docker.sock";
  const std::string log = d->dir_ + "/dockerd.log";
  std::vector<std::string> args = {dockerd,
                                   "--data-root=" + d->dir_ + "/data",
                                   "--exec-root=" + d->dir_ + "/exec",
                                   "--pidfile=" + d->dir_ + "/dockerd.pid",
                                   "-H", "unix://" + d->socket_,
                                   "--iptables=false",
                                   "--ip6tables=false",
                                   "--bridge=none",
                                   "--storage-driver=overlay2",
                                   "--containerd-namespace=sbx-test",
                                   "--containerd-plugins-namespace=sbx-test-plugins"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  UniqueFd log_fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!log_fd) return ErrnoError("open {}", log);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork");
  if (pid == 0) {
    // Async-signal-safe calls only: the test process may have threads.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    ::setpgid(0, 0);
    ::dup2(log_fd.get(), 1);
    ::dup2(log_fd.get(), 2);
    int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  d->pid_ = pid;
  // Ready when it answers /_ping; give up when it exits or after a minute.
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  for (;;) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      d->pid_ = -1;
      std::string tail = LogTail(log);
      (void)d->Stop();
      return MakeError(ErrorCode::kUnavailable, "dockerd exited at start: {}", tail);
    }
    if (::access(d->socket_.c_str(), F_OK) == 0) {
      docker::ClientOptions o;
      o.host = d->host();
      o.call_timeout = std::chrono::milliseconds(5000);
      if (auto c = docker::EngineClient::Connect(o); c.ok()) return d;
    }
    if (Clock::now() > deadline) {
      std::string tail = LogTail(log);
      (void)d->Stop();
      return MakeError(ErrorCode::kUnavailable, "dockerd did not answer within 60 s: {}", tail);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Result<TestDockerd*> TestDockerd::Shared() {
  static std::unique_ptr<TestDockerd> shared;
  static std::optional<Error> failed;
  if (shared) return shared.get();
  if (failed) return *failed;
  auto d = Start();
  if (!d.ok()) {
    failed = d.error();
    return std::move(d).error();
  }
  shared = std::move(*d);
  return shared.get();
}

TestDockerd::~TestDockerd() { (void)Stop(); }

void TestDockerd::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

void TestDockerd::KillContainers() {
  std::vector<std::string> ids;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/data/containers", ec)) {
    ids.push_back(e.path().filename().string());
  }
  auto ours = [&](const std::string& text) {
    if (text.find(dir_) != std::string::npos) return true;
    for (const auto& id : ids) {
      if (text.find(id) != std::string::npos) return true;
    }
    return false;
  };
  for (int round = 0; round < 100; ++round) {
    bool any = false;
    for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
      const std::string name = e.path().filename().string();
      if (name.empty() || name[0] < '0' || name[0] > '9') continue;
      const pid_t pid = std::atoi(name.c_str());
      if (pid == ::getpid()) continue;
      auto cg = ReadFile("/proc/" + name + "/cgroup");
      auto cmd = ReadFile("/proc/" + name + "/cmdline");
      if ((cg.ok() && ours(*cg)) || (cmd.ok() && ours(*cmd))) {
        ::kill(pid, SIGKILL);
        any = true;
      }
    }
    if (!any) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (const auto& hierarchy : std::filesystem::directory_iterator("/sys/fs/cgroup", ec)) {
    for (const auto& id : ids) ::rmdir((hierarchy.path().string() + "/docker/" + id).c_str());
  }
}

Status TestDockerd::Stop() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    int status = 0;
    for (;;) {
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_ || (r < 0 && errno == ECHILD)) break;
      if (Clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid_ = -1;
  }
  if (dir_.empty()) return Ok();
  // The parent cgroup runc made for containers ("docker" in each hierarchy): removed when empty
  // (rmdir fails while another daemon's container is in it).
  std::error_code cg_ec;
  for (const auto& h : std::filesystem::directory_iterator("/sys/fs/cgroup", cg_ec)) {
    ::rmdir((h.path().string() + "/docker").c_str());
  }
  // What it (or its containerd) left mounted: overlay layers, the exec root's netns files.
  for (const auto& m : MountsBelow(dir_)) ::umount2(m.c_str(), MNT_DETACH);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "removing {}: {}", dir_, ec.message());
  dir_.clear();
  return Ok();
}

Result<std::string> TestDockerd::BusyboxImageWithAVolume() {
  const std::string repo = std::string(kImageRepo) + "-volume";
  std::string busybox = ::access("/bin/busybox", X_OK) == 0 ? "/bin/busybox" : "/usr/bin/busybox";
  auto tar = BusyboxRootfsTar(busybox);
  if (!tar.ok()) return std::move(tar).error();
  docker::ClientOptions o;
  o.host = host();
  auto c = docker::EngineClient::Connect(o);
  if (!c.ok()) return std::move(c).error();
  SBX_TRY((*c)->ImportImage(*tar, repo, kImageTag, {"VOLUME /data"}));
  return repo + ":" + kImageTag;
}

Result<std::string> TestDockerd::BusyboxImage() {
  const std::string name = std::string(kImageRepo) + ":" + kImageTag;
  if (image_ready_) return name;
  std::string busybox;
  for (const char* p : {"/bin/busybox", "/usr/bin/busybox"}) {
    if (::access(p, X_OK) == 0) {
      busybox = p;
      break;
    }
  }
  if (busybox.empty()) {
    return MakeError(ErrorCode::kUnavailable,
                     "busybox not found; install busybox-static (scripts/install-deps.sh test)");
  }
  auto tar = BusyboxRootfsTar(busybox);
  if (!tar.ok()) return std::move(tar).error();
  docker::ClientOptions o;
  o.host = host();
  auto c = docker::EngineClient::Connect(o);
  if (!c.ok()) return std::move(c).error();
  SBX_TRY((*c)->ImportImage(*tar, kImageRepo, kImageTag));
  image_ready_ = true;
  return name;
}

}  // namespace sbx::testing
