// The Docker backend without a Docker daemon: the stream demultiplexer, the container and exec
// planners, the figures read back, version negotiation, and the client against a fake daemon on
// a unix socket (replies, chunked bodies, a daemon that never answers, one that is not there).
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "base/unique_fd.h"
#include "docker_backend/container_plan.h"
#include "docker_backend/engine_client.h"
#include "docker_backend/frames.h"
#include "tests/support/dockerd.h"

namespace sbx::docker {
namespace {

using nlohmann::json;

TEST(FrameDemuxer, SplitsStreamsAtAnyByteBoundary) {
  std::string wire = EncodeFrame(1, "hello ") + EncodeFrame(2, "oops\n") + EncodeFrame(1, "") +
                     EncodeFrame(1, "world\n");
  for (size_t step : {size_t{1}, size_t{3}, size_t{7}, size_t{8}, wire.size()}) {
    std::string out, err;
    FrameDemuxer d([&](int s, std::string_view data) { (s == 1 ? out : err).append(data); });
    for (size_t i = 0; i < wire.size(); i += step) d.Feed(std::string_view(wire).substr(i, step));
    EXPECT_EQ(out, "hello world\n") << "step " << step;
    EXPECT_EQ(err, "oops\n") << "step " << step;
    EXPECT_FALSE(d.mid_frame());
  }
}

TEST(FrameDemuxer, DeliversALargeFrameInPiecesAndSeesATruncatedOne) {
  std::string payload(100000, 'x');
  std::string wire = EncodeFrame(2, payload);
  size_t calls = 0, bytes = 0;
  FrameDemuxer d([&](int s, std::string_view data) {
    EXPECT_EQ(s, 2);
    ++calls;
    bytes += data.size();
  });
  d.Feed(std::string_view(wire).substr(0, 5000));
  EXPECT_EQ(bytes, 5000u - 8);  // delivered before the frame is complete
  EXPECT_TRUE(d.mid_frame());
  d.Feed(std::string_view(wire).substr(5000));
  EXPECT_EQ(bytes, payload.size());
  EXPECT_EQ(calls, 2u);
  EXPECT_FALSE(d.mid_frame());
}

ContainerSpec Spec() {
  ContainerSpec s;
  s.name = "sbx-run_x";
  s.image = "busybox:1";
  s.daemon_identity = "node-a";
  s.run_id = "run_x";
  s.cpus = 0.5;
  s.memory_bytes = 64ull << 20;
  s.pids = 32;
  s.seccomp_json = R"({"defaultAction":"SCMP_ACT_ERRNO"})";
  s.user = "101000:101000";
  s.binds = {{"/srv/ws", "/workspace", false}, {"/var/lib/x/artifacts", "/artifacts", true}};
  return s;
}

TEST(CreateBody, CarriesEveryProtectionOfANativeSandbox) {
  auto b = CreateBody(Spec());
  ASSERT_TRUE(b.ok()) << b.error().ToString();
  const json& h = (*b)["HostConfig"];
  EXPECT_EQ(h["NetworkMode"], "none");
  EXPECT_EQ((*b)["NetworkDisabled"], true);
  EXPECT_EQ(h["NanoCpus"], 500'000'000);
  EXPECT_EQ(h["Memory"], 64ull << 20);
  EXPECT_EQ(h["MemorySwap"], 64ull << 20);
  EXPECT_EQ(h["PidsLimit"], 32);
  EXPECT_EQ(h["CapDrop"], json::array({"ALL"}));
  EXPECT_FALSE(h.contains("CapAdd"));
  EXPECT_EQ(h["Privileged"], false);
  EXPECT_EQ(h["SecurityOpt"][0], "no-new-privileges:true");
  EXPECT_EQ(h["SecurityOpt"][1], std::string("seccomp=") + Spec().seccomp_json);
  EXPECT_EQ(h["ReadonlyRootfs"], true);
  EXPECT_EQ(h["Init"], true);
  EXPECT_EQ(h["CgroupnsMode"], "private");
  EXPECT_EQ(h["RestartPolicy"]["Name"], "no");
  EXPECT_NE(h["Tmpfs"]["/tmp"].get<std::string>().find("size=67108864"), std::string::npos);
  ASSERT_EQ(h["Mounts"].size(), 2u);
  EXPECT_EQ(h["Mounts"][0]["Source"], "/srv/ws");
  EXPECT_EQ(h["Mounts"][0]["ReadOnly"], true);
  EXPECT_EQ(h["Mounts"][1]["Target"], "/artifacts");
  EXPECT_EQ(h["Mounts"][1]["ReadOnly"], false);
  EXPECT_EQ((*b)["User"], "101000:101000");
  EXPECT_EQ((*b)["Labels"][kLabelDaemon], "node-a");
  EXPECT_EQ((*b)["Labels"][kLabelRunId], "run_x");
  EXPECT_EQ((*b)["Labels"][kLabelManaged], "true");
  EXPECT_EQ((*b)["Entrypoint"], json::array({"sleep"}));
  EXPECT_EQ((*b)["Tty"], false);
}

TEST(ImageAllowlist, PatternsOrTheDefaultImageAlone) {
  EXPECT_TRUE(CheckImageAllowed("debian:12", {}, "debian:12").ok());
  auto other = CheckImageAllowed("debian:11", {}, "debian:12");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, ErrorCode::kPermissionDenied);
  EXPECT_NE(other.error().message.find("docker_image ('debian:12') only"), std::string::npos);
  EXPECT_FALSE(CheckImageAllowed("", {}, "").ok());
  const std::vector<std::string> allowed = {"busybox:*", "registry.local/team/*"};
  EXPECT_TRUE(CheckImageAllowed("busybox:1.36", allowed, "").ok());
  EXPECT_TRUE(CheckImageAllowed("registry.local/team/app:3", allowed, "").ok());
  auto refused = CheckImageAllowed("registry.local/other/app:3", allowed, "busybox:1");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("busybox:*, registry.local/team/*"), std::string::npos);
  EXPECT_FALSE(CheckImageAllowed("busybox", allowed, "").ok());  // no tag: not "busybox:*"
}

TEST(CreateBody, RefusesRootNamesAndRelativeBinds) {
  for (const char* user : {"0", "0:0", "root", "", "1000:abc"}) {
    auto s = Spec();
    s.user = user;
    EXPECT_FALSE(CreateBody(s).ok()) << user;
  }
  auto s = Spec();
  s.binds.push_back({"relative", "/x", false});
  EXPECT_FALSE(CreateBody(s).ok());
  s = Spec();
  s.image.clear();
  EXPECT_FALSE(CreateBody(s).ok());
  s = Spec();
  s.seccomp_json.clear();
  EXPECT_EQ((*CreateBody(s))["HostConfig"]["SecurityOpt"][1], "seccomp=unconfined");
}

TEST(ExecBody, AddsDefaultsTheProcessDidNotSet) {
  ExecSpec e;
  e.argv = {"sh", "-c", "env"};
  e.env = {"HOME=/work", "A=1"};
  e.user = "101000:101000";
  json b = ExecBody(e);
  EXPECT_EQ(b["Cmd"], json(e.argv));
  auto env = b["Env"].get<std::vector<std::string>>();
  EXPECT_EQ(std::count(env.begin(), env.end(), "HOME=/work"), 1);
  EXPECT_EQ(std::count(env.begin(), env.end(), "HOME=/tmp"), 0);
  EXPECT_EQ(std::count_if(env.begin(), env.end(),
                          [](const std::string& v) { return v.rfind("PATH=", 0) == 0; }),
            1);
  EXPECT_EQ(b["AttachStdout"], true);
  EXPECT_EQ(b["AttachStderr"], true);
  EXPECT_EQ(b["AttachStdin"], false);
  EXPECT_EQ(b["User"], "101000:101000");
}

TEST(ParseStats, ReadsCgroupV1AndV2Figures) {
  auto v1 = ParseStats(json::parse(
      R"({"cpu_stats":{"cpu_usage":{"total_usage":123000000}},"memory_stats":{"usage":10,"max_usage":4096}})"));
  EXPECT_EQ(v1.cpu_total_ns, 123000000u);
  EXPECT_EQ(v1.memory_peak_bytes, 4096u);
  auto v2 = ParseStats(json::parse(R"({"cpu_stats":{"cpu_usage":{"total_usage":5}},"memory_stats":{"usage":777}})"));
  EXPECT_EQ(v2.memory_peak_bytes, 777u);
  auto empty = ParseStats(json::parse(R"({"read":"0001-01-01T00:00:00Z"})"));
  EXPECT_EQ(empty.cpu_total_ns, 0u);
}

TEST(StatsLines, KeepsTheHighestFiguresAcrossSplitSamples) {
  StatsLines lines;
  std::string a = R"({"cpu_stats":{"cpu_usage":{"total_usage":2000000}},"memory_stats":{"max_usage":900}})";
  std::string b = R"({"cpu_stats":{"cpu_usage":{"total_usage":5000000}},"memory_stats":{"max_usage":700}})";
  lines.Feed(a.substr(0, 10));
  EXPECT_EQ(lines.samples(), 0);
  lines.Feed(a.substr(10) + "\n" + b.substr(0, 5));
  EXPECT_EQ(lines.samples(), 1);
  EXPECT_EQ(lines.figures().cpu_total_ns, 2000000u);
  lines.Feed(b.substr(5) + "\nnot json\n\n");
  EXPECT_EQ(lines.samples(), 2);
  EXPECT_EQ(lines.figures().cpu_total_ns, 5000000u);
  EXPECT_EQ(lines.figures().memory_peak_bytes, 900u);  // the peak stays the highest seen
  // A sample of a container that stopped in between (zeros) takes nothing away.
  lines.Feed(R"({"read":"0001-01-01T00:00:00Z","cpu_stats":{},"memory_stats":{}})" "\n");
  EXPECT_EQ(lines.figures().cpu_total_ns, 5000000u);
}

// An exec_die event as dockerd 20.10 sends it on GET /events.
std::string ExecDie(const std::string& exec_id, const std::string& code) {
  return R"({"status":"exec_die","id":"c0ffee","from":"img:1","Type":"container",)"
         R"("Action":"exec_die","Actor":{"ID":"c0ffee","Attributes":{"execID":")" +
         exec_id + R"(","exitCode":")" + code +
         R"(","image":"img:1","name":"sbx-r1"}},"scope":"local","time":1,"timeNano":1})" "\n";
}

TEST(ExecDieLines, TakesTheExitCodeOfItsOwnExecOnly) {
  ExecDieLines lines("e2");
  // Another exec of the same container ends first; a split line waits for its end.
  EXPECT_EQ(lines.Feed(ExecDie("e1", "3")), std::nullopt);
  std::string mine = ExecDie("e2", "42");
  EXPECT_EQ(lines.Feed(mine.substr(0, 40)), std::nullopt);
  EXPECT_EQ(lines.Feed(mine.substr(40)), 42);
  // The first one counts.
  EXPECT_EQ(lines.Feed(ExecDie("e2", "7")), 42);
}

TEST(ExecDieLines, IgnoresWhatIsNotAnExitCode) {
  ExecDieLines lines("e2");
  EXPECT_EQ(lines.Feed("garbage\n\n[1,2]\n"), std::nullopt);
  EXPECT_EQ(lines.Feed(R"({"Action":"exec_die","Actor":"e2"})" "\n"), std::nullopt);
  EXPECT_EQ(lines.Feed(ExecDie("e2", "")), std::nullopt);
  EXPECT_EQ(lines.Feed(ExecDie("e2", "12abc")), std::nullopt);
  EXPECT_EQ(lines.Feed(ExecDie("e2", "99999999999999999999")), std::nullopt);
  std::string other = ExecDie("e2", "1");
  other.replace(other.find("exec_die", 30), 8, "exec_start");  // the Action, not the status
  EXPECT_EQ(lines.Feed(other), std::nullopt);
  EXPECT_EQ(lines.Feed(ExecDie("e2", "0")), 0);
}

TEST(CreateBodyFor, RunsTheProcessAsTheContainersOwnUnderInit) {
  ContainerSpec spec;
  spec.name = "sbx-r1";
  spec.image = "img:1";
  spec.user = "101000:101000";
  spec.seccomp_json = "{}";
  ExecSpec main;
  main.argv = {"/bin/sh", "-c", "echo hi"};
  main.env = {"A=1"};
  main.cwd = "/tmp";
  auto b = CreateBodyFor(spec, main);
  ASSERT_TRUE(b.ok()) << b.error().ToString();
  EXPECT_EQ((*b)["Entrypoint"], json::array({"/bin/sh"}));
  EXPECT_EQ((*b)["Cmd"], json::array({"-c", "echo hi"}));
  EXPECT_EQ((*b)["WorkingDir"], "/tmp");
  EXPECT_EQ((*b)["Env"][0], "A=1");
  EXPECT_EQ((*b)["HostConfig"]["Init"], true);
  EXPECT_EQ((*b)["HostConfig"]["NetworkMode"], "none");
  EXPECT_EQ((*b)["AttachStdout"], true);
  EXPECT_EQ((*b)["OpenStdin"], false);
  main.attach_stdin = true;
  auto with_stdin = CreateBodyFor(spec, main);
  EXPECT_EQ((*with_stdin)["OpenStdin"], true);
  EXPECT_EQ((*with_stdin)["StdinOnce"], true);
  main.argv.clear();
  EXPECT_FALSE(CreateBodyFor(spec, main).ok());
  main.argv = {"/bin/true"};
  spec.user = "0:0";
  EXPECT_FALSE(CreateBodyFor(spec, main).ok()) << "root must be refused here too";
}

TEST(IsInitExecFailure, OnlyTheInitsOwnWordsWith126Or127) {
  EXPECT_TRUE(IsInitExecFailure("[FATAL tini (7)] exec /no/such failed: No such file or directory\n", 127));
  EXPECT_TRUE(IsInitExecFailure("[FATAL tini (7)] exec /tmp failed: Permission denied\n", 126));
  EXPECT_FALSE(IsInitExecFailure("[FATAL tini (7)] exec /no/such failed: x", 0));
  EXPECT_FALSE(IsInitExecFailure("no such file", 127));
}

TEST(Versions, NegotiatesDownToWhatTheClientSpeaks) {
  EXPECT_EQ(*NegotiateApiVersion("1.43"), std::string(kMaxApiVersion));
  EXPECT_EQ(*NegotiateApiVersion("1.40"), "1.40");
  EXPECT_FALSE(NegotiateApiVersion("1.24").ok());
  EXPECT_FALSE(NegotiateApiVersion("garbage").ok());
  EXPECT_LT(CompareApiVersions("1.9", "1.10"), 0);
}

TEST(SocketPathFor, AcceptsUnixSocketsOnly) {
  EXPECT_EQ(*SocketPathFor("unix:///run/d.sock"), "/run/d.sock");
  EXPECT_EQ(*SocketPathFor("unix:/run/d.sock"), "/run/d.sock");
  EXPECT_EQ(*SocketPathFor("/run/d.sock"), "/run/d.sock");
  EXPECT_FALSE(SocketPathFor("tcp://127.0.0.1:2375").ok());
  EXPECT_FALSE(SocketPathFor("unix://relative").ok());
}

TEST(Misc, StartFailuresAndFilters) {
  EXPECT_TRUE(IsExecStartFailure("OCI runtime exec failed: exec failed: ... no such file", 127));
  EXPECT_FALSE(IsExecStartFailure("OCI runtime exec failed", 0));
  EXPECT_FALSE(IsExecStartFailure("hello", 127));
  EXPECT_EQ(json::parse(DaemonLabelFilter("n1"))["label"][0], "io.sandboxd.daemon=n1");
  EXPECT_EQ(UrlEncode("a b/{\"x\"}"), "a%20b%2F%7B%22x%22%7D");
}

TEST(BusyboxRootfsTar, IsAUstarArchiveWithTheApplets) {
  char path[] = "/tmp/sbx-fakebb-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "\x7f" "ELF", 4), 4);
  ::close(fd);
  auto tar = sbx::testing::BusyboxRootfsTar(path);
  ::unlink(path);
  ASSERT_TRUE(tar.ok()) << tar.error().ToString();
  EXPECT_EQ(tar->size() % 512, 0u);
  EXPECT_EQ(tar->substr(257, 5), "ustar");
  EXPECT_NE(tar->find("bin/sh"), std::string::npos);
  EXPECT_NE(tar->find("bin/busybox"), std::string::npos);
}

// A fake daemon: accepts on a unix socket and answers each connection with `reply` (or nothing).
class FakeDaemon {
 public:
  explicit FakeDaemon(std::string reply, bool answer = true) : reply_(std::move(reply)), answer_(answer) {
    char dir[] = "/tmp/sbx-fakedocker-XXXXXX";
    EXPECT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/docker.sock";
    fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path_.c_str());
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_.get(), 16), 0);
    thread_ = std::thread([this] { Loop(); });
  }
  ~FakeDaemon() {
    stop_ = true;
    ::shutdown(fd_.get(), SHUT_RDWR);
    thread_.join();
    std::filesystem::remove_all(dir_);
  }
  std::string host() const { return "unix://" + path_; }
  int requests() const { return requests_; }

 private:
  void Loop() {
    std::vector<UniqueFd> held;
    while (!stop_) {
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      UniqueFd c(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) continue;
      ++requests_;
      std::string request;
      char buf[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(c.get(), buf, sizeof buf);
        if (n <= 0) break;
        request.append(buf, static_cast<size_t>(n));
      }
      if (answer_) {
        (void)!::write(c.get(), reply_.data(), reply_.size());
      } else {
        held.push_back(std::move(c));  // never answers, never closes
      }
    }
  }
  std::string reply_;
  bool answer_;
  std::string dir_, path_;
  UniqueFd fd_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
};

TEST(EngineClient, NegotiatesAndReadsChunkedReplies) {
  FakeDaemon d(
      "HTTP/1.1 200 OK\r\nApi-Version: 1.43\r\nContent-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\n\r\n"
      "b\r\n{\"Version\":\r\n7\r\n\"24.0\"}\r\n0\r\n\r\n");
  ClientOptions o;
  o.host = d.host();
  auto c = EngineClient::Connect(o);
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_EQ((*c)->api_version(), std::string(kMaxApiVersion));
  EXPECT_EQ((*c)->server_version(), "24.0");
}

TEST(EngineClient, ADaemonThatNeverAnswersTimesOut) {
  FakeDaemon d("", /*answer=*/false);
  ClientOptions o;
  o.host = d.host();
  o.call_timeout = std::chrono::milliseconds(300);
  auto start = std::chrono::steady_clock::now();
  auto c = EngineClient::Connect(o);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(c.error().message.find("did not answer within 300 ms"), std::string::npos)
      << c.error().ToString();
  EXPECT_LT(took, std::chrono::seconds(3));
}

TEST(EngineClient, AMissingDaemonSaysWhatToCheck) {
  ClientOptions o;
  o.host = "unix:///tmp/sbx-no-such-dir/docker.sock";
  auto c = EngineClient::Connect(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(c.error().ToString().find("is dockerd running"), std::string::npos) << c.error().ToString();
}

TEST(EngineClient, DaemonErrorsKeepTheirMessage) {
  FakeDaemon d(
      "HTTP/1.1 404 Not Found\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n"
      "Content-Length: 42\r\n\r\n{\"message\":\"No such image: nothere:latest\"}");
  ClientOptions o;
  o.host = d.host();
  auto c = EngineClient::Connect(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, ErrorCode::kNotFound);
  EXPECT_NE(c.error().message.find("No such image: nothere:latest"), std::string::npos)
      << c.error().ToString();
}

}  // namespace
}  // namespace sbx::docker
