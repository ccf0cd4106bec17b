// The real daemon (sandboxd-server) as systemd runs it:
//   - the notify protocol against a NOTIFY_SOCKET datagram socket opened here: READY=1 only once
//     the listener answers, STATUS= with the counts, WATCHDOG=1 at the rate WATCHDOG_USEC asks
//     for, RELOADING=1 (+ MONOTONIC_USEC) then READY=1 around a policy reload (SIGHUP and POST
//     /v1/policies:reload), STOPPING=1 on SIGTERM;
//   - socket activation: a listening unix socket handed over as fd 3 with LISTEN_FDS=1,
//     LISTEN_PID (set in the child after fork) and LISTEN_FDNAMES;
//   - GET /metrics after a known sequence of runs: the counts match exactly;
//   - cgroup delegation: started in a cgroup of its own with --cgroup-delegation yes, the daemon
//     moves into <own>/supervisor and its sandboxes' cgroups appear below <own>/sandboxd.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "base/fs.h"
#include "base/sha256.h"
#include "integration/server_harness.h"

namespace sbx::testing {
namespace {

using api::testing::HttpReply;
using api::testing::MakeRequest;
using api::testing::RawConn;
using api::testing::RoundTrip;
using Clock = std::chrono::steady_clock;

constexpr char kAlice[] = "systemd-test-alice";
constexpr char kBob[] = "systemd-test-bob";
constexpr char kRoot[] = "systemd-test-root";

class ServeSystemdTest : public ServerTest {
 protected:
  using ChildEnv = ServerEnv;

  void SetUp() override {
    ServerTest::SetUp();
    if (IsSkipped()) return;
    SetUpServer("systemd",
                "  \"*\": review\n  \"true\": allow\n  \"false\": allow\n"
                "  \"sleep *\": allow\n  \"rm *\": allow\n  \"tail *\": allow\n");
    api_sock_ = dir_ + "/api.sock";
    notify_path_ = dir_ + "/notify.sock";
  }
  void TearDown() override {
    // The daemon first (SIGTERM: it ends its runs and removes their mounts and cgroups), then
    // the cgroup it was started in.
    if (pid_ > 0) StopServer(SIGTERM);
    if (!own_cgroup_.empty()) RemoveOwnCgroup();
    ServerTest::TearDown();
  }

  void WriteConfig(const std::string& extra = "") {
    ServerTest::WriteConfig("unix:" + api_sock_,
                            {{"alice", "submitter", kAlice},
                             {"bob", "reviewer", kBob},
                             {"root", "admin", kRoot}},
                            "cgroup_delegation: no\nmax_concurrent_runs: 2\n" + extra);
  }

  // A datagram socket the daemon sends its notifications to.
  void OpenNotifySocket() {
    notify_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(notify_);
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, notify_path_.c_str(), notify_path_.size() + 1);
    ASSERT_EQ(::bind(notify_.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0);
  }

  // The next notification, or "" after `timeout`.
  std::string NextNotification(std::chrono::milliseconds timeout) {
    pollfd p{notify_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return "";
    char buf[4096];
    ssize_t n = ::recv(notify_.get(), buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }
  // Reads notifications until one contains `what`; the ones before it are kept in `seen_`.
  std::string WaitFor(const std::string& what, std::chrono::milliseconds timeout =
                                                   std::chrono::seconds(30)) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      std::string m = NextNotification(left);
      if (m.empty()) continue;
      seen_.push_back(m);
      if (m.find(what) != std::string::npos) return m;
    }
    return "";
  }

  void StartDaemon(const ChildEnv& env) { StartServer(env); }

  std::string Submit(const std::string& body) {
    auto r = Call("POST", "/v1/runs", kAlice, body);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.Json().value("id", "");
  }
  nlohmann::json WaitCompleted(const std::string& id) { return WaitForEvent(id, "run.completed"); }
  nlohmann::json WaitForEvent(const std::string& id, const std::string& type) {
    return ServerTest::WaitForEvent(id, type, kAlice);
  }

  static bool CleanExit(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
  int Terminate() { return StopServer(SIGTERM); }

  void RemoveOwnCgroup() {
    // Deepest first: the sandboxes' parent and the daemon's leaf, then the cgroup itself.
    for (const auto& root : CgroupRoots()) {
      std::string own = root + own_cgroup_;
      ::rmdir((own + "/" + cgroup_parent_).c_str());
      ::rmdir((own + "/supervisor").c_str());
      ::rmdir(own.c_str());
    }
  }

  std::string notify_path_;
  std::string own_cgroup_;
  UniqueFd notify_;
  std::vector<std::string> seen_;
};

TEST_F(ServeSystemdTest, NotifyProtocolReadyWatchdogReloadStopping) {
  WriteConfig();
  OpenNotifySocket();
  ChildEnv env;
  constexpr int kWatchdogUsec = 400'000;  // pings every 200 ms
  env.vars = {{"NOTIFY_SOCKET", notify_path_}, {"WATCHDOG_USEC", std::to_string(kWatchdogUsec)}};
  env.watchdog_pid = true;
  StartDaemon(env);

  std::string ready = WaitFor("READY=1");
  ASSERT_FALSE(ready.empty()) << "no READY=1";
  // READY=1 means the listener answers now, not soon.
  auto c = RawConn::Unix(api_sock_);
  ASSERT_TRUE(c.has_value()) << "READY=1 came before the listener was bound";
  auto health = RoundTrip(*c, MakeRequest("GET", "/healthz", {}, ""));
  ASSERT_TRUE(health.has_value());
  EXPECT_EQ(health->status, 200);
  EXPECT_NE(ready.find("STATUS=0 running, 0 queued"), std::string::npos) << ready;
  // Nothing but watchdog pings (and STATUS) before READY.
  for (size_t i = 0; i + 1 < seen_.size(); ++i) {
    EXPECT_EQ(seen_[i].find("READY=1"), std::string::npos) << seen_[i];
  }

  // Watchdog pings at half of WATCHDOG_USEC: count them over two seconds.
  auto start = Clock::now();
  int pings = 0;
  auto last = start;
  std::chrono::microseconds max_gap{0};
  while (Clock::now() - start < std::chrono::seconds(2)) {
    std::string m = NextNotification(std::chrono::milliseconds(500));
    if (m == "WATCHDOG=1") {
      auto now = Clock::now();
      if (pings > 0) {
        max_gap = std::max(max_gap,
                           std::chrono::duration_cast<std::chrono::microseconds>(now - last));
      }
      last = now;
      ++pings;
    }
  }
  EXPECT_GE(pings, 6) << "expected about 10 pings in 2 s at a 200 ms interval";
  EXPECT_LE(pings, 14) << "expected about 10 pings in 2 s at a 200 ms interval";
  EXPECT_LT(max_gap.count(), kWatchdogUsec) << "a gap between pings reached WATCHDOG_USEC";

  // POST /v1/policies:reload: RELOADING=1 with MONOTONIC_USEC, then READY=1.
  seen_.clear();
  ASSERT_EQ(Call("POST", "/v1/policies:reload", kRoot).status, 200);
  std::string reloading = WaitFor("RELOADING=1", std::chrono::seconds(10));
  ASSERT_FALSE(reloading.empty());
  std::smatch usec;
  ASSERT_TRUE(std::regex_search(reloading, usec, std::regex("MONOTONIC_USEC=([0-9]+)")))
      << reloading;
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  uint64_t now_usec = static_cast<uint64_t>(now.tv_sec) * 1'000'000 + now.tv_nsec / 1000;
  uint64_t sent = std::stoull(usec[1]);
  EXPECT_LE(sent, now_usec);
  EXPECT_GT(sent + 10'000'000, now_usec) << "MONOTONIC_USEC is not CLOCK_MONOTONIC now";
  EXPECT_FALSE(WaitFor("READY=1", std::chrono::seconds(10)).empty());

  // SIGHUP: the same.
  ASSERT_EQ(::kill(pid_, SIGHUP), 0);
  EXPECT_FALSE(WaitFor("RELOADING=1", std::chrono::seconds(10)).empty());
  EXPECT_FALSE(WaitFor("READY=1", std::chrono::seconds(10)).empty());

  // SIGTERM: STOPPING=1, then a clean exit.
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  EXPECT_FALSE(WaitFor("STOPPING=1", std::chrono::seconds(10)).empty());
  int status = 0;
  ASSERT_EQ(::waitpid(pid_, &status, 0), pid_);
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST_F(ServeSystemdTest, WatchdogOffWhenMeantForAnotherPid) {
  WriteConfig();
  OpenNotifySocket();
  ChildEnv env;
  // WATCHDOG_PID names another process (systemd set it for the parent): no pings.
  env.vars = {{"NOTIFY_SOCKET", notify_path_},
              {"WATCHDOG_USEC", "200000"},
              {"WATCHDOG_PID", std::to_string(::getpid())}};
  StartDaemon(env);
  ASSERT_FALSE(WaitFor("READY=1").empty());
  seen_.clear();
  while (!NextNotification(std::chrono::milliseconds(600)).empty()) {
  }
  for (const auto& m : seen_) EXPECT_EQ(m, "") << m;
  EXPECT_TRUE(CleanExit(Terminate()));
}

TEST_F(ServeSystemdTest, SocketActivationTakesTheListeningFd) {
  // The configured listen address is the activated socket's: it is taken, not bound again (a
  // second bind would fail: a live socket is already there).
  WriteConfig();
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path, api_sock_.c_str(), api_sock_.size() + 1);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0);
  ASSERT_EQ(::listen(listener.get(), 16), 0);
  struct stat before {};
  ASSERT_EQ(::stat(api_sock_.c_str(), &before), 0);

  ChildEnv env;
  env.listen_fd = listener.get();
  StartDaemon(env);
  std::string out = ReadUntilReady();
  ASSERT_NE(out.find("sandboxd: ready"), std::string::npos) << out;
  EXPECT_NE(out.find("listening on unix:" + api_sock_), std::string::npos) << out;
  // Connections queued on our listener are accepted by the daemon.
  listener.reset();  // only the daemon holds it now
  EXPECT_EQ(Call("GET", "/healthz", nullptr).status, 200);
  // The socket file is systemd's (here: ours); the daemon did not replace it.
  struct stat after {};
  ASSERT_EQ(::stat(api_sock_.c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  EXPECT_TRUE(CleanExit(Terminate()));
}

TEST_F(ServeSystemdTest, SocketActivationIgnoredForAnotherPid) {
  // LISTEN_PID of another process: the fds are not ours; the daemon binds its own listener.
  WriteConfig();
  ChildEnv env;
  env.vars = {{"LISTEN_FDS", "1"}, {"LISTEN_PID", std::to_string(::getpid())}};
  StartDaemon(env);
  std::string out = ReadUntilReady();
  ASSERT_NE(out.find("sandboxd: ready"), std::string::npos) << out;
  EXPECT_EQ(Call("GET", "/healthz", nullptr).status, 200);
  EXPECT_TRUE(CleanExit(Terminate()));
}

// "name{labels} value" lines of a Prometheus text page, by "name{labels}".
std::map<std::string, double> ParseMetrics(const std::string& page) {
  std::map<std::string, double> out;
  std::istringstream in(page);
  static const std::regex kSample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (-?[0-9.eE+-]+|\+Inf|NaN)$)");
  static const std::regex kComment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$)");
  std::set<std::string> typed;
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("#")) {
      EXPECT_TRUE(std::regex_match(line, kComment)) << line;
      if (line.starts_with("# TYPE ")) {
        std::string name = line.substr(7, line.find(' ', 7) - 7);
        EXPECT_TRUE(typed.insert(name).second) << "family typed twice: " << name;
      }
      continue;
    }
    std::smatch m;
    EXPECT_TRUE(std::regex_match(line, m, kSample)) << "not a sample line: " << line;
    if (m.empty()) continue;
    std::string name = m[1];
    bool has_type = typed.count(name) > 0;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (name.ends_with(suffix)) {
        has_type = has_type || typed.count(name.substr(0, name.size() - std::strlen(suffix)));
      }
    }
    EXPECT_TRUE(has_type) << "sample before its # TYPE: " << line;
    size_t space = line.rfind(' ');
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

TEST_F(ServeSystemdTest, MetricsCountAKnownSequenceOfRuns) {
  WriteConfig();
  StartDaemon({});
  ASSERT_NE(ReadUntilReady().find("sandboxd: ready"), std::string::npos);

  // allow -> SUCCEEDED exited; allow -> FAILED exited; allow -> FAILED timed_out;
  // allow -> FAILED oom_killed (tail keeps an endless line in memory);
  // review -> rejected; the destructive-command protection -> policy_denied.
  std::string ok = Submit(R"({"argv": ["/bin/true"]})");
  std::string fail = Submit(R"({"argv": ["/bin/false"]})");
  std::string slow = Submit(R"({"argv": ["/bin/sleep", "30"], "limits": {"timeout_s": 1}})");
  std::string oom = Submit(
      R"({"argv": ["/usr/bin/tail", "/dev/zero"], "limits": {"memory": "16m", "timeout_s": 60}})");
  std::string review = Submit(R"({"argv": ["/bin/echo", "hi"]})");
  std::string denied = Submit(R"({"argv": ["rm", "-rf", "/"]})");
  EXPECT_EQ(Call("POST", "/v1/runs/" + review + ":reject", kBob).status, 200);
  EXPECT_EQ(WaitCompleted(ok).value("state", ""), "SUCCEEDED");
  EXPECT_EQ(WaitCompleted(fail).value("state", ""), "FAILED");
  auto timed = WaitCompleted(slow);
  EXPECT_EQ(timed.value("reason", ""), "timed_out") << timed.dump();
  auto killed = WaitCompleted(oom);
  EXPECT_EQ(killed.value("reason", ""), "oom_killed") << killed.dump();
  EXPECT_EQ(WaitCompleted(review).value("state", ""), "CANCELLED");
  EXPECT_EQ(WaitCompleted(denied).value("state", ""), "CANCELLED");
  ASSERT_EQ(Call("GET", "/v1/runs/" + ok, kAlice).status, 200);

  // Public by default; no secrets on the page.
  HttpReply page = Call("GET", "/metrics", nullptr);
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_NE(page.Header("content-type").find("text/plain; version=0.0.4"), std::string::npos)
      << page.Header("content-type");
  EXPECT_EQ(page.body.find(Sha256Hex(kAlice)), std::string::npos);
  EXPECT_EQ(page.body.find(ok), std::string::npos) << "a run id is a label value";
  auto m = ParseMetrics(page.body);

  EXPECT_EQ(m[R"(sandboxd_runs_total{state="SUCCEEDED",reason="exited"})"], 1);
  EXPECT_EQ(m[R"(sandboxd_runs_total{state="FAILED",reason="exited"})"], 1);
  EXPECT_EQ(m[R"(sandboxd_runs_total{state="FAILED",reason="timed_out"})"], 1);
  EXPECT_EQ(m[R"(sandboxd_runs_total{state="CANCELLED",reason="rejected"})"], 1);
  EXPECT_EQ(m[R"(sandboxd_runs_total{state="CANCELLED",reason="policy_denied"})"], 1);
  double runs = 0;
  for (const auto& [k, v] : m) {
    if (k.starts_with("sandboxd_runs_total{")) runs += v;
  }
  EXPECT_EQ(m[R"(sandboxd_runs_total{state="FAILED",reason="oom_killed"})"], 1);
  EXPECT_EQ(runs, 6);
  EXPECT_EQ(m[R"(sandboxd_policy_decisions_total{decision="allow"})"], 4);
  EXPECT_EQ(m[R"(sandboxd_policy_decisions_total{decision="review"})"], 1);
  EXPECT_EQ(m[R"(sandboxd_policy_decisions_total{decision="deny"})"], 1);
  EXPECT_EQ(m["sandboxd_timeouts_total"], 1);
  EXPECT_EQ(m["sandboxd_oom_kills_total"], 1);
  EXPECT_EQ(m["sandboxd_sandboxes_active"], 0);
  EXPECT_EQ(m["sandboxd_sandbox_start_seconds_count"], 4);
  EXPECT_EQ(m[R"(sandboxd_sandbox_start_seconds_bucket{le="+Inf"})"], 4);
  // The 16m run has a shape of its own: built for it; the others may have found a warm one.
  EXPECT_EQ(m[R"(sandboxd_sandboxes_started_total{source="warm"})"] +
                m[R"(sandboxd_sandboxes_started_total{source="built"})"],
            4);
  EXPECT_GE(m[R"(sandboxd_sandboxes_started_total{source="built"})"], 1);
  EXPECT_EQ(m["sandboxd_run_duration_seconds_count"], 4);
  EXPECT_GE(m["sandboxd_run_duration_seconds_sum"], 1.0) << "the timed-out run took 1 s";
  EXPECT_EQ(m["sandboxd_queue_length"], 0);
  EXPECT_EQ(m["sandboxd_runs_awaiting_review"], 0);
  // API requests by route pattern, never by raw path.
  EXPECT_EQ(m[R"(sandboxd_api_requests_total{method="POST",route="/v1/runs",status="201"})"], 6);
  EXPECT_EQ(
      m[R"(sandboxd_api_requests_total{method="POST",route="/v1/runs/{id}:reject",status="200"})"],
      1);
  EXPECT_EQ(m[R"(sandboxd_api_requests_total{method="GET",route="/v1/runs/{id}",status="200"})"],
            1);
  EXPECT_EQ(m[R"(sandboxd_api_requests_total{method="GET",route="/v1/runs/{id}/events",status="101"})"],
            6);
  EXPECT_EQ(m[R"(sandboxd_api_request_duration_seconds_count{method="POST",route="/v1/runs"})"], 6);
  for (const auto& [k, v] : m) {
    EXPECT_EQ(k.find("route=\"/v1/runs/" + ok), std::string::npos) << k;
  }
  // An unknown path is counted under "unmatched".
  EXPECT_EQ(Call("GET", "/no/such/" + ok, kAlice).status, 404);
  auto again = ParseMetrics(Call("GET", "/metrics", nullptr).body);
  EXPECT_EQ(again[R"(sandboxd_api_requests_total{method="GET",route="unmatched",status="404"})"], 1);
  EXPECT_EQ(again[R"(sandboxd_api_requests_total{method="GET",route="/metrics",status="200"})"], 1);
  EXPECT_TRUE(CleanExit(Terminate()));
}

TEST_F(ServeSystemdTest, MetricsRequireAKeyWhenConfigured) {
  WriteConfig("metrics_require_key: true\n");
  StartDaemon({});
  ASSERT_NE(ReadUntilReady().find("sandboxd: ready"), std::string::npos);
  EXPECT_EQ(Call("GET", "/metrics", nullptr).status, 401);
  EXPECT_EQ(Call("GET", "/metrics", "not-a-key").status, 401);
  EXPECT_EQ(Call("GET", "/metrics", kAlice).status, 200);  // any valid key
  EXPECT_TRUE(CleanExit(Terminate()));
}

TEST_F(ServeSystemdTest, LogsForTheJournalWhenStderrIsTheJournalStream) {
  struct stat st {};
  if (::stat("/run/systemd/journal/socket", &st) == 0) {
    GTEST_SKIP() << "journald runs here: the entries go to its socket, not to the stream";
  }
  // stderr is "the journal's stream" (JOURNAL_STREAM names it). With no journal socket to send
  // structured entries to, lines fall back to the stream with sd-daemon(3) priority prefixes.
  WriteConfig();
  ChildEnv env;
  env.stderr_path = dir_ + "/stderr";
  env.args = {"--log-level", "info"};
  StartDaemon(env);
  ASSERT_NE(ReadUntilReady().find("sandboxd: ready"), std::string::npos);
  ASSERT_EQ(Call("POST", "/v1/policies:reload", kRoot).status, 200);  // an info line
  EXPECT_TRUE(CleanExit(Terminate()));
  auto text = ReadFile(env.stderr_path);
  ASSERT_TRUE(text.ok());
  EXPECT_NE(text->find("<6>command policy reloaded from"), std::string::npos) << *text;
  // No plain-text timestamps: every line carries a priority.
  std::istringstream lines(*text);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_TRUE(std::regex_search(line, std::regex("^<[0-7]>"))) << line;
  }
}

TEST_F(ServeSystemdTest, LogLevelFiltersLines) {
  WriteConfig("log_level: warning\n");
  ChildEnv env;
  env.stderr_path = dir_ + "/stderr";
  StartDaemon(env);
  ASSERT_NE(ReadUntilReady().find("sandboxd: ready"), std::string::npos);
  ASSERT_EQ(Call("POST", "/v1/policies:reload", kRoot).status, 200);
  EXPECT_TRUE(CleanExit(Terminate()));
  auto text = ReadFile(env.stderr_path);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->find("command policy reloaded"), std::string::npos) << *text;
}

TEST_F(ServeSystemdTest, DelegatedCgroupHoldsTheDaemonAndItsSandboxes) {
  const auto& host = driver_->host();
  if (host.unified_mount.empty()) GTEST_SKIP() << "no cgroup2 mount";
  // What systemd does for a unit with Delegate=yes: a cgroup of its own in every hierarchy.
  own_cgroup_ = "/sbx-delegation-test-" + std::to_string(::getpid());
  ChildEnv env;
  std::vector<std::string> roots = {host.unified_mount};
  for (const char* c : {"cpu", "memory", "pids"}) {
    if (auto it = host.v1_mounts.find(c); it != host.v1_mounts.end()) roots.push_back(it->second);
  }
  for (const auto& root : roots) {
    ASSERT_EQ(::mkdir((root + own_cgroup_).c_str(), 0755), 0) << root;
    env.cgroups.push_back(root + own_cgroup_ + "/cgroup.procs");
  }
  if (host.layout == cgroup::Layout::kV2) {
    // The unit's parent (here: the root) enables the controllers for it.
    (void)WriteFile(host.unified_mount + "/cgroup.subtree_control", "+cpu +memory +pids");
  }
  WriteConfig();
  env.args = {"--cgroup-delegation", "yes"};
  StartDaemon(env);
  ASSERT_NE(ReadUntilReady().find("sandboxd: ready"), std::string::npos);

  // The daemon left the delegated cgroup for its leaf.
  auto self = ReadFile("/proc/" + std::to_string(pid_) + "/cgroup");
  ASSERT_TRUE(self.ok());
  EXPECT_NE(self->find("0::" + own_cgroup_ + "/supervisor\n"), std::string::npos) << *self;
  auto procs = ReadFile(host.unified_mount + own_cgroup_ + "/cgroup.procs");
  ASSERT_TRUE(procs.ok());
  EXPECT_EQ(*procs, "");

  // A sandbox's cgroup is below <own>/<cgroup_parent>, in the unified hierarchy and in v1 memory.
  std::string id = Submit(R"({"argv": ["/bin/sleep", "30"], "limits": {"memory": "64m"}})");
  std::string unified_dir = host.unified_mount + own_cgroup_ + "/" + cgroup_parent_ + "/" + id;
  // step.started comes once the sandbox (and so its cgroup) exists.
  ASSERT_FALSE(WaitForEvent(id, "step.started").is_null());
  struct stat st {};
  EXPECT_EQ(::stat(unified_dir.c_str(), &st), 0) << unified_dir;
  if (auto mem = host.v1_mounts.find("memory"); mem != host.v1_mounts.end()) {
    std::string v1 = mem->second + own_cgroup_ + "/" + cgroup_parent_ + "/" + id;
    EXPECT_EQ(::stat(v1.c_str(), &st), 0) << v1;
  }
  int cancel = Call("POST", "/v1/runs/" + id + ":cancel", kAlice).status;
  EXPECT_TRUE(cancel == 200 || cancel == 202) << cancel;
  EXPECT_EQ(WaitCompleted(id).value("state", ""), "CANCELLED");
  EXPECT_NE(::stat(unified_dir.c_str(), &st), 0) << "the sandbox's cgroup was not removed";
  EXPECT_TRUE(CleanExit(Terminate()));
}

}  // namespace
}  // namespace sbx::testing
