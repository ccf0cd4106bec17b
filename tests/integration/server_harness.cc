#include "integration/server_harness.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "base/sha256.h"
#include "base/syscalls.h"

namespace sbx::testing {

using api::testing::HttpReply;
using api::testing::MakeRequest;
using api::testing::MakeWsUpgrade;
using api::testing::RawConn;
using api::testing::RoundTrip;
using api::testing::WsReadFrame;

void ServerTest::SetUpServer(const std::string& name, const std::string& rules) {
  std::string templ = "/tmp/sbx-" + name + "-XXXXXX";
  ASSERT_NE(::mkdtemp(templ.data()), nullptr);
  ::chmod(templ.c_str(), 0711);  // the sandboxes reach their mount points through it
  dir_ = templ;
  node_ = name + "-test";
  cgroup_parent_ = "sandboxd-" + node_ + "-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir_ + "/policies");
  std::ofstream(dir_ + "/policies/commands.yaml") << "rules:\n" << rules;
}

void ServerTest::TearDown() {
  if (pid_ > 0) {
    UniqueFd pidfd(sys::PidfdOpen(pid_));
    ::kill(pid_, SIGTERM);
    pollfd p{pidfd.get(), POLLIN, 0};
    if (!pidfd || ::poll(&p, 1, 30'000) != 1) ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  for (const auto& root : CgroupRoots()) ::rmdir((root + "/" + cgroup_parent_).c_str());
  if (!dir_.empty()) std::filesystem::remove_all(dir_);
}

void ServerTest::WriteConfig(const std::string& listen, const std::vector<ServerKey>& keys,
                             const std::string& extra) {
  std::ofstream out(dir_ + "/sandboxd.yaml");
  out << "listen: [\"" << listen << "\"]\n"
      << "database: " << (database_.empty() ? "sqlite://" + dir_ + "/sandboxd.db" : database_)
      << "\n"
      << "data_dir: " << dir_ << "/data\n"
      << "node: " << node_ << "\n"
      << "cgroup_parent: " << cgroup_parent_ << "\n"
      << "policy_dir: " << dir_ << "/policies\n"
      << "api_keys:\n";
  for (const auto& k : keys) {
    out << "  - {name: " << k.name << ", role: " << k.role
        << ", key_sha256: " << Sha256Hex(k.key) << "}\n";
  }
  out << extra;
}

void ServerTest::StartServer(const ServerEnv& env) {
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  // Everything the child needs is built before fork: the test process has threads.
  const std::string server = std::string(SBX_BINARY_DIR) + "/supervisor/sandboxd-server";
  const std::string config = dir_ + "/sandboxd.yaml";
  std::vector<const char*> argv = {server.c_str(), "--config", config.c_str()};
  for (const auto& a : env.args) argv.push_back(a.c_str());
  argv.push_back(nullptr);
  pid_ = ::fork();
  ASSERT_GE(pid_, 0);
  if (pid_ == 0) {
    if (env.netns_fd >= 0 && ::setns(env.netns_fd, CLONE_NEWNET) != 0) ::_exit(126);
    ::dup2(out[1], 1);
    std::string self = std::to_string(::getpid());
    for (const auto& procs : env.cgroups) {
      int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0 || ::write(fd, self.data(), self.size()) < 0) ::_exit(126);
      ::close(fd);
    }
    for (const auto& [k, v] : env.vars) ::setenv(k.c_str(), v.c_str(), 1);
    if (!env.stderr_path.empty()) {
      int fd = ::open(env.stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      struct stat st {};
      if (fd < 0 || ::fstat(fd, &st) != 0 || ::dup2(fd, 2) < 0) ::_exit(126);
      std::string stream = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
      ::setenv("JOURNAL_STREAM", stream.c_str(), 1);
    }
    if (env.watchdog_pid) ::setenv("WATCHDOG_PID", self.c_str(), 1);
    if (env.listen_fd >= 0) {
      // As systemd does: the fds from 3 on, LISTEN_PID naming the process that gets them.
      if (env.listen_fd != 3) {
        ::dup2(env.listen_fd, 3);
      } else {
        ::fcntl(3, F_SETFD, 0);
      }
      ::setenv("LISTEN_FDS", "1", 1);
      ::setenv("LISTEN_PID", self.c_str(), 1);
      ::setenv("LISTEN_FDNAMES", "api", 1);
    }
    ::execv(server.c_str(), const_cast<char* const*>(argv.data()));
    ::_exit(127);
  }
  ::close(out[1]);
  stdout_fd_.reset(out[0]);
}

void ServerTest::StartServerOnLoopback(const ServerEnv& env) {
  StartServer(env);
  std::string text = ReadUntilReady();
  stdout_fd_.reset();  // later output goes to a closed pipe: SIGPIPE is ignored by the daemon
  ASSERT_NE(text.find("sandboxd: ready"), std::string::npos) << text;
  const std::string listening = "listening on " + host_ + ":";
  size_t at = text.find(listening);
  ASSERT_NE(at, std::string::npos) << text;
  port_ = static_cast<uint16_t>(std::stoi(text.substr(at + listening.size())));
}

std::string ServerTest::ReadUntilReady() {
  std::string text;
  char buf[4096];
  while (text.find("sandboxd: ready") == std::string::npos) {
    ssize_t n = ::read(stdout_fd_.get(), buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

int ServerTest::StopServer(int signal) {
  ::kill(pid_, signal);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

std::optional<RawConn> ServerTest::Connect() const {
  return api_sock_.empty() ? RawConn::Tcp(port_, 0, host_.c_str()) : RawConn::Unix(api_sock_);
}

HttpReply ServerTest::Call(const std::string& method, const std::string& target, const char* key,
                           const std::string& body) {
  auto c = Connect();
  EXPECT_TRUE(c.has_value());
  if (!c) return {};
  std::vector<std::pair<std::string, std::string>> headers;
  if (key != nullptr) headers.push_back({"x-api-key", key});
  if (!body.empty()) headers.push_back({"Content-Type", "application/json"});
  auto r = RoundTrip(*c, MakeRequest(method, target, headers, body));
  EXPECT_TRUE(r.has_value()) << method << " " << target;
  return r ? *r : HttpReply{};
}

nlohmann::json ServerTest::WaitForEvent(const std::string& id, const std::string& type,
                                        const char* key) {
  auto ws = Connect();
  if (!ws) return {};
  ws->SetTimeout(std::chrono::seconds(60));
  ws->Send(MakeWsUpgrade("/v1/runs/" + id + "/events?after=0", {{"x-api-key", key}}));
  auto head = api::testing::ReadHead(*ws);
  if (!head || head->status != 101) return {};
  for (;;) {
    auto f = WsReadFrame(*ws);
    if (!f || f->opcode == 8) return {};
    auto ev = nlohmann::json::parse(f->payload);
    if (ev.value("type", "") == type) return ev;
  }
}

}  // namespace sbx::testing
