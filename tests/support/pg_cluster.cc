#include "tests/support/pg_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "base/unique_fd.h"
#include "tests/support/raw_sql.h"

namespace sbx::testing {
namespace {

namespace fs = std::filesystem;

std::string Tail(const std::string& path, size_t max_bytes = 2000) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  if (s.size() > max_bytes) s = "…" + s.substr(s.size() - max_bytes);
  return s;
}

// A port the kernel just handed out on 127.0.0.1. Another process may take it before the server
// binds it; Start() retries with a new one when pg_ctl start fails.
Result<int> FreeLoopbackPort() {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoError("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoError("bind 127.0.0.1:0");
  }
  socklen_t len = sizeof(addr);
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return ErrnoError("getsockname");
  }
  return static_cast<int>(ntohs(addr.sin_port));
}

// Waits for `pid` for at most timeout_s, through a pidfd so that no sleep is involved; kills it
// past the deadline. Returns the wait status.
Result<int> WaitWithDeadline(pid_t pid, int timeout_s) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    UniqueFd guard(pidfd);
    pollfd p{pidfd, POLLIN, 0};
    int rc;
    do {
      rc = poll(&p, 1, timeout_s * 1000);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) kill(pid, SIGKILL);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return ErrnoError("waitpid {}", pid);
  }
  if (pidfd >= 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
    return MakeError(ErrorCode::kUnavailable, "timed out after {} s", timeout_s);
  }
  return status;
}

}  // namespace

Result<std::string> FindPgBinDir() {
  if (const char* env = std::getenv("SBX_PG_BINDIR"); env != nullptr && *env != '\0') {
    if (access((std::string(env) + "/initdb").c_str(), X_OK) != 0) {
      return ErrnoError("SBX_PG_BINDIR={} has no executable initdb", env);
    }
    return std::string(env);
  }
  std::vector<std::pair<int, std::string>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    fs::path bin = entry.path() / "bin";
    if (access((bin / "initdb").c_str(), X_OK) == 0 &&
        access((bin / "pg_ctl").c_str(), X_OK) == 0) {
      found.emplace_back(std::atoi(entry.path().filename().c_str()), bin.string());
    }
  }
  if (found.empty()) {
    return MakeError(ErrorCode::kUnavailable,
                     "PostgreSQL server binaries (initdb, pg_ctl) not found in "
                     "/usr/lib/postgresql/*/bin; install them with `scripts/install-deps.sh test` "
                     "(Debian package postgresql) or set SBX_PG_BINDIR");
  }
  std::sort(found.begin(), found.end());
  return found.back().second;
}

Result<std::unique_ptr<PgCluster>> PgCluster::Start(const PgOptions& options) {
  auto bin_dir = FindPgBinDir();
  if (!bin_dir.ok()) return std::move(bin_dir).error();
  std::unique_ptr<PgCluster> c(new PgCluster());
  c->bin_dir_ = *bin_dir;

  if (geteuid() == 0) {
    errno = 0;
    passwd* pw = getpwnam("postgres");
    if (pw == nullptr) {
      return MakeError(ErrorCode::kUnavailable,
                       "initdb refuses to run as root and there is no 'postgres' user to run it "
                       "as; install the postgresql package (it creates the user) or run the "
                       "tests as another user");
    }
    c->drop_privileges_ = true;
    c->uid_ = pw->pw_uid;
    c->gid_ = pw->pw_gid;
  }

  std::string tmpl = "/tmp/sbx-pg-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) return ErrnoError("mkdtemp {}", tmpl);
  c->dir_ = tmpl;
  if (c->drop_privileges_ && chown(c->dir_.c_str(), c->uid_, c->gid_) != 0) {
    return ErrnoError("chown {} to postgres", c->dir_);
  }

  SBX_TRY(c->RunTool("initdb",
                     {"-D", c->dir_ + "/data", "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--locale=C", "--no-sync"},
                     120));
  if (!options.trusted_network.empty()) {
    std::ofstream hba(c->dir_ + "/data/pg_hba.conf", std::ios::app);
    hba << "host all all " << options.trusted_network << " trust\n";
    if (!hba.flush()) return MakeError(ErrorCode::kInternal, "cannot append to pg_hba.conf");
  }
  const std::string listen =
      options.also_listen.empty() ? "127.0.0.1" : "127.0.0.1," + options.also_listen;
  // Two tries: the port picked may be taken by someone else before the server binds it.
  Status started;
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto port = FreeLoopbackPort();
    if (!port.ok()) return std::move(port).error();
    c->port_ = *port;
    // pg_ctl passes -o through /bin/sh; the mkdtemp path has no characters the shell cares about.
    std::string options = "-p " + std::to_string(c->port_) + " -k " + c->dir_ +
                          " -c listen_addresses=" + listen + " -c fsync=off"
                          " -c synchronous_commit=off -c full_page_writes=off"
                          " -c max_connections=60";
    started = c->RunTool("pg_ctl",
                         {"start", "-D", c->dir_ + "/data", "-l", c->dir_ + "/server.log", "-w",
                          "-t", "30", "-o", options},
                         60);
    if (started.ok()) break;
  }
  if (!started.ok()) {
    Error e = std::move(started).error();
    e.message += "\nserver.log:\n" + Tail(c->dir_ + "/server.log");
    return e;
  }
  c->running_ = true;
  // pg_ctl -w returns once the server accepts connections; one query proves it end to end.
  auto ready = QueryRawScalar(c->Url("postgres"), "SELECT 1");
  if (!ready.ok()) return WithContext(std::move(ready).error(), "first query");
  return c;
}

PgCluster::~PgCluster() { (void)Stop(); }

Status PgCluster::Stop() {
  if (dir_.empty()) return Ok();
  Status stopped;
  if (running_) {
    stopped = RunTool("pg_ctl", {"stop", "-D", dir_ + "/data", "-m", "fast", "-w", "-t", "30"}, 60);
    if (!stopped.ok()) {
      stopped = RunTool("pg_ctl", {"stop", "-D", dir_ + "/data", "-m", "immediate", "-w"}, 30);
    }
    running_ = false;
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
  dir_.clear();
  if (!stopped.ok()) return stopped;
  if (ec) return MakeError(ErrorCode::kInternal, "removing the cluster: {}", ec.message());
  return Ok();
}

std::string PgCluster::Url(std::string_view database, std::string_view host) const {
  return "postgresql://postgres@" + std::string(host) + ":" + std::to_string(port_) + "/" +
         std::string(database);
}

Status PgCluster::CreateDatabase(std::string_view name) {
  return ExecRawSql(Url("postgres"), "CREATE DATABASE \"" + std::string(name) + "\"");
}

Status PgCluster::DropDatabase(std::string_view name) {
  return ExecRawSql(Url("postgres"),
                    "DROP DATABASE IF EXISTS \"" + std::string(name) + "\" WITH (FORCE)");
}

Status PgCluster::RunTool(const std::string& tool, std::vector<std::string> args, int timeout_s) {
  const std::string log_path = dir_ + "/tools.log";
  UniqueFd log(open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!log) return ErrnoError("open {}", log_path);

  // Everything the child needs is built before fork: after it, only async-signal-safe calls.
  std::vector<std::string> argv_s;
  argv_s.push_back(bin_dir_ + "/" + tool);
  for (auto& a : args) argv_s.push_back(std::move(a));
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string env_path = "PATH=" + bin_dir_ + ":/usr/bin:/bin";
  std::string env_lc = "LC_ALL=C";
  std::vector<char*> envp = {env_path.data(), env_lc.data(), nullptr};
  const std::string cwd = dir_;
  const bool drop = drop_privileges_;
  const uid_t uid = uid_;
  const gid_t gid = gid_;
  const int log_fd = log.get();

  pid_t pid = fork();
  if (pid < 0) return ErrnoError("fork for {}", tool);
  if (pid == 0) {
    // The server tools chdir nowhere themselves and refuse a cwd they cannot read.
    if (dup2(log_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0) _exit(126);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    if (drop && (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0)) _exit(126);
    if (chdir(cwd.c_str()) != 0) _exit(126);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  auto status = WaitWithDeadline(pid, timeout_s);
  if (!status.ok()) {
    return MakeError(ErrorCode::kUnavailable, "{} {}\n{}", tool, status.error().message,
                     Tail(log_path));
  }
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return MakeError(ErrorCode::kUnavailable, "{} failed (wait status {:#x}):\n{}", tool, *status,
                     Tail(log_path));
  }
  return Ok();
}

}  // namespace sbx::testing
