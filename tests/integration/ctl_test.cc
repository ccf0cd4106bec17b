// sandboxctl end to end: the real daemon (sandboxd-server) on a Unix socket with a temporary
// SQLite database and data dir and a test-owned cgroup parent, and the real CLI run as a child
// process whose stdout, stderr and exit status are checked. Nothing waits by sleeping: the tests
// read the CLI's output until the line they need appears.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "base/fs.h"
#include "base/sha256.h"
#include "base/unique_fd.h"
#include "cgroup/cgroup.h"
#include "tests/support/child_process.h"
#include "tests/support/skip.h"

namespace sbx::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr char kSubmitterKey[] = "ctl-test-key-for-the-submitter";
constexpr char kReviewerKey[] = "ctl-test-key-for-the-reviewer";
constexpr char kAdminKey[] = "ctl-test-key-for-the-admin";
constexpr char kCgroupPrefix[] = "sandboxd-ctltest-";

std::string BinDir() { return std::string(SBX_BINARY_DIR) + "/supervisor"; }

// Removes the cgroup `name` in every hierarchy where it exists and is empty (children first:
// a crashed daemon may have left run cgroups behind, but never processes in a dead test's tree).
void RemoveCgroup(const cgroup::HostInfo& host, const std::string& name, bool children) {
  std::vector<std::string> roots;
  if (!host.unified_mount.empty()) roots.push_back(host.unified_mount);
  for (const auto& [ctrl, mount] : host.v1_mounts) roots.push_back(mount);
  for (const auto& root : roots) {
    std::string dir = root + "/" + name;
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) continue;
    if (children) {
      if (DIR* d = ::opendir(dir.c_str())) {
        while (dirent* e = ::readdir(d)) {
          if (e->d_type == DT_DIR && e->d_name[0] != '.') ::rmdir((dir + "/" + e->d_name).c_str());
        }
        ::closedir(d);
      }
    }
    if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) {
      std::fprintf(stderr, "ctl_test: cgroup %s left in place: %s\n", dir.c_str(),
                   std::strerror(errno));
    }
  }
}

// The parent cgroups of earlier test processes that died before their teardown.
void RemoveStaleCgroups(const cgroup::HostInfo& host) {
  std::vector<std::string> roots;
  if (!host.unified_mount.empty()) roots.push_back(host.unified_mount);
  for (const auto& [ctrl, mount] : host.v1_mounts) roots.push_back(mount);
  const std::string prefix = kCgroupPrefix;
  for (const auto& root : roots) {
    DIR* d = ::opendir(root.c_str());
    if (d == nullptr) continue;
    std::vector<std::string> stale;
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.rfind(prefix, 0) != 0) continue;
      pid_t pid = static_cast<pid_t>(std::atoi(name.c_str() + prefix.size()));
      if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) stale.push_back(name);
    }
    ::closedir(d);
    for (const auto& name : stale) RemoveCgroup(host, name, true);
  }
}

class CtlTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) {
      skip_reason_ = "needs root (the daemon creates cgroups and sandboxes)";
      return;
    }
    auto host = cgroup::DetectHost();
    if (!host.ok()) {
      skip_reason_ = "no cgroup mounts: " + host.error().ToString();
      return;
    }
    host_ = *host;
    RemoveStaleCgroups(host_);
    char dir[] = "/tmp/sbx-ctl-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    // The sandboxes reach their mounts under data_dir as an unprivileged host id.
    ASSERT_EQ(::chmod(dir, 0711), 0);
    ASSERT_EQ(::mkdir((dir_ + "/policies").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((dir_ + "/work").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((dir_ + "/roots").c_str(), 0755), 0);
    {
      std::ofstream jobs(dir_ + "/policies/jobs.yaml");
      jobs << "jobs:\n  hello:\n    argv: [/bin/busybox, echo, \"hi {name}\"]\n    params:\n"
              "      name: {type: string, pattern: \"[a-z]+\"}\n    keys: [sub]\n"
              "    review: false\n";
    }
    cgroup_ = kCgroupPrefix + std::to_string(::getpid());
    socket_ = dir_ + "/api.sock";
    std::string config = fmt::format(
        "listen: [\"unix:{0}\"]\n"
        "database: \"sqlite://{1}/db.sqlite\"\n"
        "data_dir: \"{1}/data\"\n"
        "policy_dir: \"{1}/policies\"\n"
        "cgroup_parent: \"{2}\"\n"
        "max_concurrent_runs: 2\n"
        "node: ctl-node\n"
        "node_labels: {{zone: here}}\n"
        "workspace_roots: [\"{1}/roots\"]\n"
        "api_keys:\n"
        "  - {{name: sub, role: submitter, key_sha256: {3}}}\n"
        "  - {{name: rev, role: reviewer, key_sha256: {4}}}\n"
        "  - {{name: adm, role: admin, key_sha256: {5}}}\n",
        socket_, dir_, cgroup_, Sha256Hex(kSubmitterKey), Sha256Hex(kReviewerKey),
        Sha256Hex(kAdminKey));
    {
      UniqueFd f(::open((dir_ + "/sandboxd.yaml").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
      ASSERT_TRUE(f.valid());
      ASSERT_TRUE(WriteAll(f.get(), config).ok());
    }

    Child::Options o;
    o.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    o.merge_stderr = true;
    daemon_ = Child::Start({BinDir() + "/sandboxd-server", "--config", dir_ + "/sandboxd.yaml"}, o)
                  .release();
    ASSERT_NE(daemon_, nullptr);
    bool ready = daemon_->WaitFor(1, "sandboxd: ready", 60s);
    ASSERT_TRUE(ready) << "sandboxd-server did not start:\n" << daemon_->out();
    // Keep reading what the daemon prints (so that it never blocks on a full pipe) until it
    // exits.
    Child* d = daemon_;
    daemon_done_ = new std::future<int>(
        std::async(std::launch::async, [d] { return d->Finish(std::chrono::hours(24)); }));
  }

  static void TearDownTestSuite() {
    if (daemon_ != nullptr) {
      daemon_->Signal(SIGTERM);
      if (daemon_done_ != nullptr) {
        if (daemon_done_->wait_for(30s) != std::future_status::ready) daemon_->Signal(SIGKILL);
        int code = daemon_done_->get();
        EXPECT_EQ(code, 0) << "sandboxd-server:\n" << daemon_->out();
        delete daemon_done_;
        daemon_done_ = nullptr;
      }
      delete daemon_;
      daemon_ = nullptr;
    }
    if (!cgroup_.empty()) RemoveCgroup(host_, cgroup_, false);
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  void SetUp() override {
    if (!skip_reason_.empty()) SBX_SKIP_PRIVILEGED(skip_reason_);
    ASSERT_NE(daemon_, nullptr);
  }

  static Child::Options CtlOptions(const char* key, const std::string& cwd = "") {
    Child::Options o;
    o.env = {"PATH=/usr/bin:/bin", "SANDBOXD_HOST=unix:" + socket_};
    if (key != nullptr) o.env.push_back(std::string("SANDBOXD_API_KEY=") + key);
    o.cwd = cwd.empty() ? dir_ + "/work" : cwd;
    return o;
  }

  static std::unique_ptr<Child> StartCtl(std::vector<std::string> args, const char* key,
                                         const std::string& cwd = "") {
    args.insert(args.begin(), BinDir() + "/sandboxctl");
    auto c = Child::Start(args, CtlOptions(key, cwd));
    EXPECT_NE(c, nullptr);
    return c;
  }

  static CtlResult Ctl(std::vector<std::string> args, const char* key,
                       const std::string& cwd = "") {
    return Collect(StartCtl(std::move(args), key, cwd).get());
  }

  static nlohmann::json Json(const CtlResult& r) {
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON:\n" << r.out << "\nstderr:\n" << r.err;
    return j;
  }

  // Starts `sandboxctl run ARGS` as the submitter and waits until it says the run waits for
  // review; returns the run's id through `id`.
  static std::unique_ptr<Child> StartRun(std::vector<std::string> args, std::string* id) {
    args.insert(args.begin(), "run");
    auto c = StartCtl(std::move(args), kSubmitterKey);
    if (!c) return c;
    bool waiting = c->WaitFor(2, "\n  sandboxctl approve ");
    EXPECT_TRUE(waiting) << "stdout:\n" << c->out() << "\nstderr:\n" << c->err();
    std::smatch m;
    static const std::regex kId("sandboxctl approve (run_[A-Za-z0-9]+)");
    const std::string err = c->err();
    if (std::regex_search(err, m, kId)) *id = m[1];
    EXPECT_FALSE(id->empty()) << err;
    return c;
  }

  static void Approve(const std::string& id) {
    CtlResult r = Ctl({"approve", id}, kReviewerKey);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("approved run " + id), std::string::npos) << r.out;
  }

  // Submits without following and returns the id.
  static std::string Submit(std::vector<std::string> args, const char* key = kSubmitterKey) {
    args.insert(args.begin(), {"run", "--no-follow"});
    CtlResult r = Ctl(std::move(args), key);
    EXPECT_EQ(r.code, 0) << r.err;
    std::string id = r.out.substr(0, r.out.find('\n'));
    EXPECT_EQ(id.rfind("run_", 0), 0u) << r.out;
    return id;
  }

  // What the program wrote on stderr: the CLI's own notices come before it (they are about the
  // review, which ends before the program starts).
  static std::string ProgramStderr(const std::string& err, const std::string& id) {
    std::string marker = "sandboxctl: run " + id + " was approved\n";
    size_t at = err.find(marker);
    return at == std::string::npos ? err : err.substr(at + marker.size());
  }

  // As `key` (a submitter sees its own runs only).
  static nlohmann::json Inspect(const std::string& id, const char* key = kSubmitterKey) {
    return Json(Ctl({"inspect", "--json", id}, key));
  }

  static inline std::string skip_reason_;
  static inline std::string dir_, socket_, cgroup_;
  static inline cgroup::HostInfo host_;
  static inline Child* daemon_ = nullptr;
  static inline std::future<int>* daemon_done_ = nullptr;
};

// ---- a scripted stand-in for the daemon, for what the real one cannot be made to do on cue ----

std::string Sha1(std::string_view data) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  std::string m(data);
  uint64_t bits = static_cast<uint64_t>(data.size()) * 8;
  m.push_back(static_cast<char>(0x80));
  while (m.size() % 64 != 56) m.push_back('\0');
  for (int i = 7; i >= 0; --i) m.push_back(static_cast<char>(bits >> (i * 8)));
  auto rol = [](uint32_t v, int n) { return (v << n) | (v >> (32 - n)); };
  for (size_t off = 0; off < m.size(); off += 64) {
    uint32_t w[80];
    for (int i = 0; i < 16; ++i) {
      w[i] = 0;
      for (int k = 0; k < 4; ++k) w[i] = (w[i] << 8) | static_cast<uint8_t>(m[off + i * 4 + k]);
    }
    for (int i = 16; i < 80; ++i) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d), k = 0x5A827999;
      } else if (i < 40) {
        f = b ^ c ^ d, k = 0x6ED9EBA1;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
      } else {
        f = b ^ c ^ d, k = 0xCA62C1D6;
      }
      uint32_t t = rol(a, 5) + f + e + k + w[i];
      e = d, d = c, c = rol(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  }
  std::string out;
  for (uint32_t v : h) {
    for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>(v >> (i * 8)));
  }
  return out;
}

std::string Base64(std::string_view in) {
  static const char kTable[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<uint8_t>(in[i + 1]) << 8;
    if (i + 2 < in.size()) v |= static_cast<uint8_t>(in[i + 2]);
    out.push_back(kTable[(v >> 18) & 63]);
    out.push_back(kTable[(v >> 12) & 63]);
    out.push_back(i + 1 < in.size() ? kTable[(v >> 6) & 63] : '=');
    out.push_back(i + 2 < in.size() ? kTable[v & 63] : '=');
  }
  return out;
}

// One connection at a time on a Unix socket; every wait is bounded.
class FakeDaemon {
 public:
  explicit FakeDaemon(const std::string& path) {
    fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0);
    EXPECT_EQ(::listen(fd_.get(), 8), 0);
  }

  UniqueFd Accept() {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, 20'000) != 1) return UniqueFd();
    return UniqueFd(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  }

  // The request head (up to the blank line) and its Content-Length body.
  static std::string ReadRequest(int fd) {
    std::string req;
    char c;
    while (req.find("\r\n\r\n") == std::string::npos && ReadByte(fd, &c)) req.push_back(c);
    std::smatch m;
    static const std::regex kLength("[Cc]ontent-[Ll]ength: *([0-9]+)");
    if (std::regex_search(req, m, kLength)) {
      for (long n = std::stol(m[1]); n > 0 && ReadByte(fd, &c); --n) req.push_back(c);
    }
    return req;
  }

  static void Respond(int fd, int status, const std::string& body) {
    std::string r = fmt::format(
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n"
        "Connection: close\r\n\r\n{}",
        status, body.size(), body);
    Send(fd, r);
  }

  // send(2) without SIGPIPE: the client may have hung up already, which is no error here.
  static void Send(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }

  static void AcceptWebSocket(int fd, const std::string& request) {
    std::smatch m;
    static const std::regex kKey("Sec-WebSocket-Key: *([A-Za-z0-9+/=]+)", std::regex::icase);
    ASSERT_TRUE(std::regex_search(request, m, kKey)) << request;
    std::string accept = Base64(Sha1(std::string(m[1]) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"));
    Send(fd,
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\nSec-WebSocket-Accept: " +
             accept + "\r\n\r\n");
  }

  static void SendText(int fd, const nlohmann::json& j) { SendFrame(fd, 0x81, j.dump()); }
  static void SendClose(int fd, uint16_t code) {
    SendFrame(fd, 0x88, std::string{static_cast<char>(code >> 8), static_cast<char>(code & 255)});
  }
  // Reads the client's frames up to its close frame (the server then closes the connection
  // first, as RFC 6455 §7.1.1 has it).
  static void AwaitClose(int fd) {
    for (;;) {
      char b[2];
      if (!ReadByte(fd, &b[0]) || !ReadByte(fd, &b[1])) return;
      uint64_t len = static_cast<uint8_t>(b[1]) & 127;
      int extra = len == 126 ? 2 : len == 127 ? 8 : 0;
      if (extra > 0) len = 0;
      for (int i = 0; i < extra; ++i) {
        char c;
        if (!ReadByte(fd, &c)) return;
        len = (len << 8) | static_cast<uint8_t>(c);
      }
      len += (static_cast<uint8_t>(b[1]) & 128) ? 4 : 0;  // the client's mask
      for (uint64_t i = 0; i < len; ++i) {
        char c;
        if (!ReadByte(fd, &c)) return;
      }
      if ((static_cast<uint8_t>(b[0]) & 15) == 8) return;
    }
  }

 private:
  static bool ReadByte(int fd, char* c) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 20'000) == 1 && ::read(fd, c, 1) == 1;
  }
  static void SendFrame(int fd, uint8_t head, const std::string& payload) {
    std::string f(1, static_cast<char>(head));
    if (payload.size() < 126) {
      f.push_back(static_cast<char>(payload.size()));
    } else {
      f.push_back(126);
      f.push_back(static_cast<char>(payload.size() >> 8));
      f.push_back(static_cast<char>(payload.size() & 255));
    }
    Send(fd, f + payload);
  }

  UniqueFd fd_;
};

TEST(CtlProtocolTest, OverflowNoticeResumesFromTheLastSeqSeen) {
  char dir[] = "/tmp/sbx-ctlproto-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string sock = std::string(dir) + "/api.sock";
  FakeDaemon fake(sock);
  std::vector<std::string> targets;
  auto ev = [](int64_t seq, nlohmann::json j) {
    j["run_id"] = "run_fake";
    j["seq"] = seq;
    j["ts"] = 0;
    return j;
  };
  std::thread server([&] {
    UniqueFd c = fake.Accept();  // POST /v1/runs
    ASSERT_TRUE(c);
    std::string req = FakeDaemon::ReadRequest(c.get());
    targets.push_back(req.substr(0, req.find('\r')));
    FakeDaemon::Respond(c.get(), 201, R"({"id":"run_fake","state":"QUEUED"})");
    c.reset();

    c = fake.Accept();  // the event stream, from the start
    ASSERT_TRUE(c);
    req = FakeDaemon::ReadRequest(c.get());
    targets.push_back(req.substr(0, req.find('\r')));
    FakeDaemon::AcceptWebSocket(c.get(), req);
    FakeDaemon::SendText(c.get(), ev(1, {{"type", "run.status"}, {"state", "RUNNING"}}));
    FakeDaemon::SendText(
        c.get(),
        ev(2, {{"type", "step.log"}, {"step", "main"}, {"stream", "stdout"}, {"data", "one\n"}}));
    FakeDaemon::SendText(c.get(), ev(3, {{"type", "step.log"},
                                         {"step", "main"},
                                         {"stream", "stderr"},
                                         {"data_b64", Base64(std::string("\xff\0two\n", 6))}}));
    // The server's last *written* seq may trail what the client has read.
    FakeDaemon::SendText(c.get(), {{"type", "overflow"}, {"resume_after", 2}});
    FakeDaemon::SendClose(c.get(), 1013);
    c.reset();

    c = fake.Accept();  // the event stream, resumed
    ASSERT_TRUE(c);
    req = FakeDaemon::ReadRequest(c.get());
    targets.push_back(req.substr(0, req.find('\r')));
    FakeDaemon::AcceptWebSocket(c.get(), req);
    // Replays an event the client has (it must not be printed twice), then goes on.
    FakeDaemon::SendText(c.get(), ev(3, {{"type", "step.log"},
                                         {"step", "main"},
                                         {"stream", "stderr"},
                                         {"data_b64", Base64(std::string("\xff\0two\n", 6))}}));
    FakeDaemon::SendText(
        c.get(),
        ev(4, {{"type", "step.log"}, {"step", "main"}, {"stream", "stdout"}, {"data", "three\n"}}));
    FakeDaemon::SendText(c.get(), ev(5, {{"type", "run.completed"},
                                         {"state", "FAILED"},
                                         {"reason", "exited"},
                                         {"exit_code", 7}}));
    FakeDaemon::SendClose(c.get(), 1000);
    FakeDaemon::AwaitClose(c.get());
    c.reset();

    c = fake.Accept();  // GET /v1/runs/run_fake
    ASSERT_TRUE(c);
    req = FakeDaemon::ReadRequest(c.get());
    targets.push_back(req.substr(0, req.find('\r')));
    FakeDaemon::Respond(
        c.get(), 200,
        R"({"id":"run_fake","state":"FAILED","result":{"reason":"exited","exit_code":7}})");
  });
  Child::Options o;
  o.env = {"PATH=/usr/bin:/bin", "SANDBOXD_HOST=unix:" + sock, "SANDBOXD_API_KEY=k"};
  auto ctl = Child::Start({BinDir() + "/sandboxctl", "run", "--", "/bin/true"}, o);
  ASSERT_TRUE(ctl);
  int code = ctl->Finish(60s);
  server.join();
  EXPECT_EQ(code, 7) << ctl->err();
  EXPECT_EQ(ctl->out(), "one\nthree\n");
  EXPECT_EQ(ctl->err(), std::string("\xff\0two\n", 6));
  ASSERT_EQ(targets.size(), 4u);
  EXPECT_EQ(targets[0], "POST /v1/runs HTTP/1.1");
  EXPECT_EQ(targets[1], "GET /v1/runs/run_fake/events?after=0 HTTP/1.1");
  EXPECT_EQ(targets[2], "GET /v1/runs/run_fake/events?after=3 HTTP/1.1");
  EXPECT_EQ(targets[3], "GET /v1/runs/run_fake HTTP/1.1");
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

TEST_F(CtlTest, RunWaitsForReviewThenStreamsAndExitsWithItsStatus) {
  std::string id;
  auto run = StartRun({"--", "/bin/busybox", "sh", "-c", "echo hi; echo oops >&2; exit 3"}, &id);
  ASSERT_TRUE(run);
  // Nothing has run yet: the run waits for a reviewer.
  EXPECT_EQ(Inspect(id)["state"], "AWAITING_REVIEW");
  Approve(id);
  EXPECT_EQ(run->Finish(), 3) << run->err();
  EXPECT_EQ(run->out(), "hi\n");
  EXPECT_EQ(ProgramStderr(run->err(), id), "oops\n") << run->err();
  EXPECT_NE(run->err().find("run " + id + " is waiting for review"), std::string::npos);
  auto j = Inspect(id);
  EXPECT_EQ(j["state"], "FAILED");
  EXPECT_EQ(j["result"]["exit_code"], 3);
}

TEST_F(CtlTest, BinaryAndLargeOutputIsByteExact) {
  // Every byte value on stdout (not UTF-8: it travels as data_b64), UTF-8 text on stderr, and
  // enough lines to span many events and chunks.
  std::string format, expected;
  for (int b = 0; b < 256; ++b) {
    format += fmt::format("\\{:03o}", b);
    expected.push_back(static_cast<char>(b));
  }
  std::string lines;
  for (int i = 1; i <= 30000; ++i) lines += std::to_string(i) + "\n";
  std::string id;
  auto run = StartRun({"--", "/bin/busybox", "sh", "-c",
                       "printf '" + format +
                           "'; printf 'h\\303\\251llo w\\303\\266rld\\n' >&2; "
                           "busybox seq 1 30000"},
                      &id);
  ASSERT_TRUE(run);
  Approve(id);
  EXPECT_EQ(run->Finish(), 0) << run->err();
  EXPECT_EQ(run->out().size(), expected.size() + lines.size());
  EXPECT_TRUE(run->out() == expected + lines) << "stdout differs";
  EXPECT_EQ(ProgramStderr(run->err(), id), "h\xc3\xa9llo w\xc3\xb6rld\n");
}

TEST_F(CtlTest, StalledFollowerGetsEverythingOnceInOrder) {
  // The follower is stopped while the run writes; the server must hold back (or drop the
  // connection, and the client resume from its last seq) without losing or repeating output.
  std::string lines;
  for (int i = 1; i <= 60000; ++i) lines += std::to_string(i) + "\n";
  std::string id;
  auto run = StartRun({"--", "/bin/busybox", "seq", "1", "60000"}, &id);
  ASSERT_TRUE(run);
  run->Signal(SIGSTOP);
  Approve(id);
  // logs -f returns when the run has ended: the event to wait for.
  CtlResult follow = Ctl({"logs", "-f", id}, kSubmitterKey);
  EXPECT_EQ(follow.code, 0) << follow.err;
  EXPECT_TRUE(follow.out == lines) << "logs -f output differs (" << follow.out.size() << " bytes)";
  run->Signal(SIGCONT);
  EXPECT_EQ(run->Finish(), 0) << run->err();
  EXPECT_EQ(run->out().size(), lines.size());
  EXPECT_TRUE(run->out() == lines) << "run output differs";
}

TEST_F(CtlTest, PsInspectAndJson) {
  std::string id =
      Submit({"--label", "team=ctl", "--memory", "128m", "--", "/bin/busybox", "echo", "listed"});
  CtlResult ps = Ctl({"ps"}, kSubmitterKey);
  EXPECT_EQ(ps.code, 0) << ps.err;
  EXPECT_EQ(ps.out.rfind("ID", 0), 0u) << ps.out;
  for (const char* col : {"STATE", "SUBMITTER", "AGE", "COMMAND", "EXIT"}) {
    EXPECT_NE(ps.out.find(col), std::string::npos) << col;
  }
  size_t line = ps.out.find(id);
  ASSERT_NE(line, std::string::npos) << ps.out;
  std::string row = ps.out.substr(line, ps.out.find('\n', line) - line);
  EXPECT_NE(row.find("AWAITING_REVIEW"), std::string::npos) << row;
  EXPECT_NE(row.find("sub"), std::string::npos) << row;
  EXPECT_NE(row.find("/bin/busybox echo listed"), std::string::npos) << row;

  auto list = Json(Ctl({"ps", "--json", "--label", "team=ctl"}, kSubmitterKey));
  bool found = false;
  for (const auto& r : list["runs"]) found = found || r["id"] == id;
  EXPECT_TRUE(found) << list.dump();
  auto other = Json(Ctl({"--json", "ps", "--label", "team=other"}, kSubmitterKey));
  EXPECT_TRUE(other["runs"].empty()) << other.dump();

  auto j = Inspect(id);
  EXPECT_EQ(j["id"], id);
  EXPECT_EQ(j["state"], "AWAITING_REVIEW");
  EXPECT_EQ(j["labels"]["team"], "ctl");
  EXPECT_EQ(j["limits"]["memory"], 128 << 20);
  EXPECT_EQ(j["argv"], nlohmann::json({"/bin/busybox", "echo", "listed"}));
  CtlResult text = Ctl({"inspect", id}, kSubmitterKey);
  EXPECT_EQ(text.code, 0);
  EXPECT_NE(text.out.find("AWAITING_REVIEW"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("memory 128 MiB"), std::string::npos) << text.out;

  // Finished runs show with --all or --state, not by default.
  EXPECT_EQ(Ctl({"reject", id}, kReviewerKey).code, 0);
  EXPECT_EQ(Ctl({"ps"}, kSubmitterKey).out.find(id), std::string::npos);
  EXPECT_NE(Ctl({"ps", "--all"}, kSubmitterKey).out.find(id), std::string::npos);
  CtlResult cancelled = Ctl({"ps", "--state", "cancelled", "--limit", "500"}, kSubmitterKey);
  EXPECT_NE(cancelled.out.find(id), std::string::npos) << cancelled.out;
  EXPECT_EQ(Ctl({"inspect", "run_doesnotexist"}, kSubmitterKey).code, 1);
}

TEST_F(CtlTest, LogsTailStreamAndFollow) {
  std::string id;
  auto run = StartRun(
      {"--", "/bin/busybox", "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; echo err >&2"},
      &id);
  ASSERT_TRUE(run);
  Approve(id);
  ASSERT_EQ(run->Finish(), 0) << run->err();

  CtlResult all = Ctl({"logs", id}, kSubmitterKey);
  EXPECT_EQ(all.code, 0) << all.err;
  EXPECT_NE(all.out.find("line1\nline2\nline3\nline4\nline5\n"), std::string::npos) << all.out;
  EXPECT_NE(all.out.find("err\n"), std::string::npos) << all.out;
  EXPECT_EQ(Ctl({"logs", "--tail", "2", "--stream", "stdout", id}, kSubmitterKey).out,
            "line4\nline5\n");
  EXPECT_EQ(Ctl({"logs", "--stream", "stderr", id}, kSubmitterKey).out, "err\n");
  EXPECT_EQ(Ctl({"logs", "-f", "--stream", "stdout", id}, kSubmitterKey).out,
            "line1\nline2\nline3\nline4\nline5\n");
  EXPECT_EQ(Ctl({"logs", "--stream", "both", id}, kSubmitterKey).code, 2);

  // -f on a run that is still going: output arrives as it is written, not at the end.
  std::string live = Submit({"--", "/bin/busybox", "sh", "-c", "echo started; exec sleep 60"});
  auto follow = StartCtl({"logs", "-f", live}, kSubmitterKey);
  ASSERT_TRUE(follow);
  Approve(live);
  EXPECT_TRUE(follow->WaitFor(1, "started\n")) << follow->err();
  EXPECT_EQ(Inspect(live)["state"], "RUNNING");
  EXPECT_EQ(Ctl({"cancel", live}, kSubmitterKey).code, 0);
  EXPECT_EQ(follow->Finish(), 0) << follow->err();
  EXPECT_EQ(follow->out(), "started\n");
}

TEST_F(CtlTest, RunJsonPrintsEventsAsLines) {
  std::string id;
  auto run = StartRun({"--json", "--", "/bin/busybox", "echo", "hi"}, &id);
  ASSERT_TRUE(run);
  Approve(id);
  EXPECT_EQ(run->Finish(), 0) << run->err();
  std::vector<std::string> types;
  std::string data;
  int64_t last_seq = 0;
  size_t start = 0;
  for (size_t nl; (nl = run->out().find('\n', start)) != std::string::npos; start = nl + 1) {
    auto ev = nlohmann::json::parse(run->out().substr(start, nl - start), nullptr, false);
    ASSERT_FALSE(ev.is_discarded()) << run->out();
    EXPECT_EQ(ev["run_id"], id);
    EXPECT_GT(ev["seq"].get<int64_t>(), last_seq);  // once each, in order
    last_seq = ev["seq"].get<int64_t>();
    types.push_back(ev["type"]);
    if (ev["type"] == "step.log") data += ev["data"].get<std::string>();
  }
  EXPECT_EQ(start, run->out().size());
  EXPECT_EQ(data, "hi\n");
  ASSERT_FALSE(types.empty());
  EXPECT_EQ(types.back(), "run.completed");

  auto submitted =
      Json(Ctl({"run", "--json", "--no-follow", "--", "/bin/busybox", "true"}, kSubmitterKey));
  EXPECT_EQ(submitted["state"], "AWAITING_REVIEW");
  EXPECT_EQ(Ctl({"reject", submitted["id"]}, kReviewerKey).code, 0);
}

TEST_F(CtlTest, RejectedRunExitsNonzero) {
  std::string id;
  auto run = StartRun({"--", "/bin/busybox", "echo", "never"}, &id);
  ASSERT_TRUE(run);
  CtlResult r = Ctl({"reject", "--reason", "not today", id}, kReviewerKey);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("rejected run " + id), std::string::npos) << r.out;
  EXPECT_EQ(run->Finish(), 125);
  EXPECT_EQ(run->out(), "");
  EXPECT_NE(run->err().find("run " + id + " was rejected: not today"), std::string::npos)
      << run->err();
  // Rejecting again: the server says why not.
  CtlResult again = Ctl({"reject", id}, kReviewerKey);
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.err.find("HTTP 409"), std::string::npos) << again.err;
}

TEST_F(CtlTest, CancelKillsARunningSleep) {
  std::string id;
  auto run = StartRun({"--", "/bin/busybox", "sh", "-c", "echo started; exec sleep 60"}, &id);
  ASSERT_TRUE(run);
  Approve(id);
  ASSERT_TRUE(run->WaitFor(1, "started\n")) << run->err();
  auto start = Clock::now();
  CtlResult c = Ctl({"cancel", id}, kSubmitterKey);
  EXPECT_EQ(c.code, 0) << c.err;
  EXPECT_NE(c.out.find("cancel requested for run " + id), std::string::npos) << c.out;
  EXPECT_EQ(run->Finish(30s), 125) << run->err();
  EXPECT_LT(Clock::now() - start, 30s);
  EXPECT_NE(run->err().find("run " + id + " was cancelled"), std::string::npos) << run->err();
  EXPECT_EQ(Inspect(id)["state"], "CANCELLED");
}

TEST_F(CtlTest, ApprovalNeedsAnotherReviewer) {
  std::string id = Submit({"--", "/bin/busybox", "true"});
  CtlResult own = Ctl({"approve", id}, kSubmitterKey);
  EXPECT_EQ(own.code, 1);
  EXPECT_NE(own.err.find("needs reviewer"), std::string::npos) << own.err;
  EXPECT_NE(own.err.find("HTTP 403 permission_denied"), std::string::npos) << own.err;

  std::string mine = Submit({"--", "/bin/busybox", "true"}, kReviewerKey);
  CtlResult self = Ctl({"approve", mine}, kReviewerKey);
  EXPECT_EQ(self.code, 1);
  EXPECT_NE(self.err.find("cannot approve its own run"), std::string::npos) << self.err;
  EXPECT_EQ(Inspect(mine, kReviewerKey)["state"], "AWAITING_REVIEW");
  // Another submitter's run is not there for the submitter.
  CtlResult theirs = Ctl({"inspect", mine}, kSubmitterKey);
  EXPECT_EQ(theirs.code, 1);
  EXPECT_NE(theirs.err.find("HTTP 404 not_found"), std::string::npos) << theirs.err;
  EXPECT_EQ(Ctl({"reject", id, mine}, kAdminKey).code, 0);
}

TEST_F(CtlTest, MissingOrWrongKeyIsExplained) {
  CtlResult none = Ctl({"ps"}, nullptr);
  EXPECT_EQ(none.code, 1);
  EXPECT_NE(none.err.find("needs an API key"), std::string::npos) << none.err;
  EXPECT_NE(none.err.find("HTTP 401"), std::string::npos) << none.err;
  EXPECT_NE(none.err.find("set SANDBOXD_API_KEY or pass --api-key"), std::string::npos) << none.err;
  CtlResult wrong = Ctl({"ps", "--api-key", "not-a-key"}, nullptr);
  EXPECT_EQ(wrong.code, 1);
  EXPECT_NE(wrong.err.find("not valid"), std::string::npos) << wrong.err;
  // --api-key wins over the environment.
  EXPECT_EQ(Ctl({"--api-key", kSubmitterKey, "ps"}, "not-a-key").code, 0);
}

TEST_F(CtlTest, WrongSocketGivesAHint) {
  const std::string missing = dir_ + "/missing.sock";
  CtlResult r = Ctl({"--host", "unix:" + missing, "ps"}, kSubmitterKey);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("unix:" + missing), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("is sandboxd running?"), std::string::npos) << r.err;
  CtlResult run = Ctl({"--host", "unix:" + missing, "run", "--", "/bin/true"}, kSubmitterKey);
  EXPECT_EQ(run.code, 125);
  EXPECT_NE(run.err.find("is sandboxd running?"), std::string::npos) << run.err;
  EXPECT_EQ(Ctl({"--host", "relative.sock", "ps"}, kSubmitterKey).code, 2);
}

TEST_F(CtlTest, AuditListsTheRunsRecords) {
  std::string id = Submit({"--", "/bin/busybox", "true"});
  EXPECT_EQ(Ctl({"reject", "--reason", "audit me", id}, kReviewerKey).code, 0);
  CtlResult text = Ctl({"audit", "--run", id}, kReviewerKey);
  EXPECT_EQ(text.code, 0) << text.err;
  EXPECT_EQ(text.out.rfind("ID", 0), 0u) << text.out;
  EXPECT_NE(text.out.find("run.submitted"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("run.rejected"), std::string::npos) << text.out;
  auto j = Json(Ctl({"audit", "--json", "--run", id}, kAdminKey));
  std::vector<std::string> actions;
  for (const auto& r : j["records"]) {
    EXPECT_EQ(r["run_id"], id);
    actions.push_back(r["action"]);
  }
  EXPECT_NE(std::find(actions.begin(), actions.end(), "run.submitted"), actions.end());
  EXPECT_NE(std::find(actions.begin(), actions.end(), "run.rejected"), actions.end());
  CtlResult denied = Ctl({"audit"}, kSubmitterKey);
  EXPECT_EQ(denied.code, 1);
  EXPECT_NE(denied.err.find("HTTP 403"), std::string::npos) << denied.err;
}

TEST_F(CtlTest, InterruptDetachesOrCancels) {
  std::string id;
  auto run = StartRun({"--", "/bin/busybox", "true"}, &id);
  ASSERT_TRUE(run);
  run->Signal(SIGINT);
  EXPECT_EQ(run->Finish(), 130);
  EXPECT_NE(run->err().find("detached; run " + id + " goes on"), std::string::npos) << run->err();
  EXPECT_NE(run->err().find("sandboxctl logs -f " + id), std::string::npos) << run->err();
  EXPECT_EQ(Inspect(id)["state"], "AWAITING_REVIEW");

  std::string other;
  auto cancelling = StartRun({"--cancel-on-interrupt", "--", "/bin/busybox", "true"}, &other);
  ASSERT_TRUE(cancelling);
  cancelling->Signal(SIGINT);
  EXPECT_EQ(cancelling->Finish(), 125) << cancelling->err();
  EXPECT_NE(cancelling->err().find("run " + other + " was cancelled"), std::string::npos)
      << cancelling->err();
  EXPECT_EQ(Inspect(other)["state"], "CANCELLED");
  EXPECT_EQ(Ctl({"reject", id}, kReviewerKey).code, 0);
}

TEST_F(CtlTest, ArtifactsListAndGet) {
  std::string id;
  auto run = StartRun({"--", "/bin/busybox", "echo", "for the report"}, &id);
  ASSERT_TRUE(run);
  Approve(id);
  ASSERT_EQ(run->Finish(), 0) << run->err();

  CtlResult ls = Ctl({"artifacts", "ls", id}, kSubmitterKey);
  ASSERT_EQ(ls.code, 0) << ls.err;
  EXPECT_EQ(ls.out.rfind("NAME", 0), 0u) << ls.out;
  EXPECT_NE(ls.out.find("report.md"), std::string::npos) << ls.out;
  auto j = Json(Ctl({"artifacts", "ls", "--json", id}, kSubmitterKey));
  std::string report_sha;
  for (const auto& a : j["artifacts"]) {
    if (a["name"] == "report.md") report_sha = a.value("sha256", "");
  }
  EXPECT_EQ(report_sha.size(), 64u) << j.dump();

  CtlResult to_stdout = Ctl({"artifacts", "get", id, "report.md", "-o", "-"}, kSubmitterKey);
  EXPECT_EQ(to_stdout.code, 0) << to_stdout.err;
  EXPECT_NE(to_stdout.out.find(id), std::string::npos) << to_stdout.out;
  EXPECT_EQ(Sha256Hex(to_stdout.out), report_sha);

  const std::string dl = dir_ + "/download-" + id;
  ASSERT_EQ(::mkdir(dl.c_str(), 0755), 0);
  CtlResult here = Ctl({"artifacts", "get", id, "report.md"}, kSubmitterKey, dl);
  EXPECT_EQ(here.code, 0) << here.err;
  auto saved = ReadFile(dl + "/report.md");
  ASSERT_TRUE(saved.ok()) << here.out << here.err;
  EXPECT_EQ(*saved, to_stdout.out);
  CtlResult named = Ctl({"artifacts", "get", id, "report.md", "-o", dl + "/r.md"}, kSubmitterKey);
  EXPECT_EQ(named.code, 0) << named.err;
  auto copy = ReadFile(dl + "/r.md");
  ASSERT_TRUE(copy.ok());
  EXPECT_EQ(*copy, to_stdout.out);

  CtlResult missing = Ctl({"artifacts", "get", id, "files/nope.txt"}, kSubmitterKey, dl);
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.err.find("HTTP 404"), std::string::npos) << missing.err;
  // A failed download leaves nothing behind, not even a partial file.
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dl)) {
    if (e.is_regular_file()) left.push_back(e.path().filename());
  }
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"r.md", "report.md"}));
}

TEST_F(CtlTest, ArtifactsTheProgramLeftInArtifactsDir) {
  std::string id;
  auto run = StartRun({"--", "/bin/busybox", "sh", "-c",
                       "mkdir -p /artifacts/out && printf 'hello artifact' > /artifacts/out/a.txt"},
                      &id);
  ASSERT_TRUE(run);
  Approve(id);
  ASSERT_EQ(run->Finish(), 0) << run->err();
  auto j = Json(Ctl({"artifacts", "ls", "--json", id}, kSubmitterKey));
  bool found = false;
  for (const auto& a : j["artifacts"]) {
    if (a["name"] == "files/out/a.txt") {
      found = true;
      EXPECT_EQ(a["size"], 14);
      EXPECT_EQ(a["sha256"], Sha256Hex("hello artifact"));
    }
  }
  EXPECT_TRUE(found) << j.dump();
  // The name's '/' travels as the separator of percent-encoded segments; without -o the file
  // lands at the same relative path below the current directory.
  const std::string dl = dir_ + "/download-" + id;
  ASSERT_EQ(::mkdir(dl.c_str(), 0755), 0);
  CtlResult here = Ctl({"artifacts", "get", id, "files/out/a.txt"}, kSubmitterKey, dl);
  EXPECT_EQ(here.code, 0) << here.err;
  auto saved = ReadFile(dl + "/files/out/a.txt");
  ASSERT_TRUE(saved.ok()) << here.out << here.err;
  EXPECT_EQ(*saved, "hello artifact");
}

// `changes` shows what a copy-on-write run would write into its host directory; `apply` writes
// it, bound to the diff it showed, by a reviewer only, refusing a host that changed since.
TEST_F(CtlTest, ChangesAndApplyWriteACopyOnWriteRunsChangesAfterReview) {
  // Rewritten in place: the same inode, owner and mode.
  auto Put = [](const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  };
  const std::string proj = dir_ + "/roots/ctl-apply";
  ASSERT_EQ(::mkdir(proj.c_str(), 0755), 0);
  Put(proj + "/a.txt", "one\n");
  ASSERT_EQ(::chown(proj.c_str(), 1234, 1234), 0);
  ASSERT_EQ(::chown((proj + "/a.txt").c_str(), 1234, 1234), 0);
  std::string id;
  auto run = StartRun({"--workspace", proj + ":cow", "--", "/bin/busybox", "sh", "-c",
                       "echo two >> /workspace/a.txt && echo n > /workspace/n.txt"},
                      &id);
  ASSERT_TRUE(run);
  Approve(id);
  ASSERT_EQ(run->Finish(), 0) << run->err();

  CtlResult shown = Ctl({"changes", id}, kSubmitterKey);
  ASSERT_EQ(shown.code, 0) << shown.err;
  EXPECT_NE(shown.out.find("write"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("a.txt"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("n.txt"), std::string::npos) << shown.out;
  auto j = Json(Ctl({"changes", "--json", id}, kSubmitterKey));
  EXPECT_EQ(j["entries"].size(), 2u) << j.dump();

  EXPECT_EQ(Ctl({"apply", id}, kSubmitterKey).code, 1);
  CtlResult wrong = Ctl({"apply", "--diff-sha256", std::string(64, '0'), id}, kReviewerKey);
  EXPECT_EQ(wrong.code, 1);
  EXPECT_NE(wrong.err.find("not the"), std::string::npos) << wrong.err;
  // A host file edited since the run: listed, and nothing written.
  Put(proj + "/a.txt", "edited\n");
  CtlResult conflict = Ctl({"apply", "-q", id}, kReviewerKey);
  EXPECT_EQ(conflict.code, 1);
  EXPECT_NE(conflict.err.find("conflict: a.txt: "), std::string::npos) << conflict.err;
  EXPECT_FALSE(std::filesystem::exists(proj + "/n.txt"));
  Put(proj + "/a.txt", "one\n");

  CtlResult applied = Ctl({"apply", id}, kReviewerKey);
  ASSERT_EQ(applied.code, 0) << applied.err;
  EXPECT_NE(applied.out.find("applied run " + id + ": 2 file(s) written"), std::string::npos)
      << applied.out;
  EXPECT_EQ(*ReadFile(proj + "/a.txt"), "one\ntwo\n");
  EXPECT_EQ(*ReadFile(proj + "/n.txt"), "n\n");
  EXPECT_EQ(Ctl({"apply", id}, kReviewerKey).code, 1);  // once
  EXPECT_NE(Ctl({"changes", id}, kSubmitterKey).out.find("applied by rev"), std::string::npos);
}

// project create/ls, plan PROJECT INTENT, run --plan (through review), job ls, run --job.
TEST_F(CtlTest, ProjectsPlansAndJobs) {
  const std::string proj = dir_ + "/roots/ctl-proj";
  ASSERT_EQ(::mkdir(proj.c_str(), 0755), 0);
  std::ofstream(proj + "/Makefile") << "test:\n\t@echo make says ok\n";
  CtlResult denied = Ctl({"project", "create", "ctl-proj", "--root", proj}, kSubmitterKey);
  EXPECT_EQ(denied.code, 1) << denied.err;
  CtlResult made = Ctl({"project", "create", "ctl-proj", "--root", proj, "--member", "sub",
                        "--timeout", "2m"},
                       kAdminKey);
  ASSERT_EQ(made.code, 0) << made.err;
  EXPECT_NE(Ctl({"project", "ls"}, kSubmitterKey).out.find("ctl-proj"), std::string::npos);
  EXPECT_NE(Ctl({"project", "show", "ctl-proj"}, kSubmitterKey).out.find("timeout_s"),
            std::string::npos);

  CtlResult plan = Ctl({"plan", "ctl-proj", "run", "the", "tests"}, kSubmitterKey);
  ASSERT_EQ(plan.code, 0) << plan.err;
  EXPECT_NE(plan.out.find("make test"), std::string::npos) << plan.out;
  std::smatch m;
  static const std::regex kPlan("run --plan (pln_[A-Za-z0-9]+)");
  ASSERT_TRUE(std::regex_search(plan.out, m, kPlan)) << plan.out;
  const std::string plan_id = m[1];
  EXPECT_EQ(Ctl({"plan", "ctl-proj", "deploy", "it"}, kSubmitterKey).code, 1);
  EXPECT_EQ(Ctl({"run", "--plan", plan_id, "--", "/bin/true"}, kSubmitterKey).code, 2);

  std::string id;
  auto run = StartRun({"--plan", plan_id}, &id);
  ASSERT_TRUE(run);
  Approve(id);
  ASSERT_EQ(run->Finish(), 0) << run->err();
  EXPECT_EQ(run->out(), "make says ok\n");
  EXPECT_EQ(Inspect(id)["labels"]["plan"], plan_id);

  CtlResult jobs = Ctl({"job", "ls"}, kSubmitterKey);
  ASSERT_EQ(jobs.code, 0) << jobs.err;
  EXPECT_NE(jobs.out.find("hello"), std::string::npos) << jobs.out;
  CtlResult hello = Ctl({"run", "--job", "hello", "--param", "name=there"}, kSubmitterKey);
  EXPECT_EQ(hello.code, 0) << hello.err;
  EXPECT_EQ(hello.out, "hi there\n");
  CtlResult bad = Ctl({"run", "--job", "hello", "--param", "name=x;id"}, kSubmitterKey);
  EXPECT_EQ(bad.code, 125);
  EXPECT_NE(bad.err.find("params.name"), std::string::npos) << bad.err;
  EXPECT_EQ(Ctl({"run", "--job", "hello", "--memory", "1g"}, kSubmitterKey).code, 2);
}

TEST_F(CtlTest, NodesAreListedDrainedAndResumedAndRunsAskForLabels) {
  EXPECT_EQ(Ctl({"node", "ls"}, kSubmitterKey).code, 1);
  CtlResult ls = Ctl({"node", "ls"}, kReviewerKey);
  ASSERT_EQ(ls.code, 0) << ls.err;
  EXPECT_NE(ls.out.find("ctl-node *"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("ready"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("zone=here"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("0/2"), std::string::npos) << ls.out;
  EXPECT_EQ(Ctl({"node", "drain", "ctl-node"}, kReviewerKey).code, 1);
  EXPECT_EQ(Ctl({"node", "drain"}, kAdminKey).code, 2);
  CtlResult drained = Ctl({"node", "drain", "ctl-node"}, kAdminKey);
  ASSERT_EQ(drained.code, 0) << drained.err;
  EXPECT_EQ(drained.out, "node ctl-node: draining\n");

  // Approved while the node is drained, the run waits in the queue; resumed, it runs.
  std::string id;
  auto run = StartRun({"--node-selector", "zone=here", "--", "/bin/busybox", "echo", "hi"}, &id);
  ASSERT_TRUE(run);
  Approve(id);
  EXPECT_EQ(Inspect(id)["state"], "QUEUED");
  EXPECT_EQ(Inspect(id)["node_selector"]["zone"], "here");
  CtlResult resumed = Ctl({"node", "resume", "ctl-node"}, kAdminKey);
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  ASSERT_EQ(run->Finish(), 0) << run->err();
  EXPECT_EQ(run->out(), "hi\n");

  CtlResult no_key = Ctl({"run", "--retry-on-node-loss", "--", "/bin/true"}, kSubmitterKey);
  EXPECT_EQ(no_key.code, 125);
  EXPECT_NE(no_key.err.find("idempotency key"), std::string::npos) << no_key.err;
  EXPECT_EQ(Ctl({"run", "--node-selector", "novalue", "--", "/bin/true"}, kSubmitterKey).code, 2);
}

TEST_F(CtlTest, RunnerTokensAreIssuedShownOnceAndRevoked) {
  EXPECT_EQ(Ctl({"runner", "add", "edge-1"}, kReviewerKey).code, 1);
  EXPECT_EQ(Ctl({"runner", "add"}, kAdminKey).code, 2);
  CtlResult added = Ctl({"runner", "add", "edge-1"}, kAdminKey);
  ASSERT_EQ(added.code, 0) << added.err;
  const size_t at = added.out.find("sbxr_");
  ASSERT_NE(at, std::string::npos) << added.out;
  EXPECT_EQ(added.out.substr(at).size(), 5 + 64 + 1) << added.out;  // the token and a newline
  CtlResult shown = Ctl({"runner", "show", "edge-1"}, kAdminKey);
  ASSERT_EQ(shown.code, 0) << shown.err;
  EXPECT_EQ(shown.out.find("sbxr_"), std::string::npos) << "a token is shown once";
  EXPECT_NE(shown.out.find("runner edge-1: active"), std::string::npos) << shown.out;
  CtlResult revoked = Ctl({"runner", "revoke", "edge-1"}, kAdminKey);
  ASSERT_EQ(revoked.code, 0) << revoked.err;
  EXPECT_NE(revoked.out.find("runner edge-1: revoked"), std::string::npos) << revoked.out;
  CtlResult json = Ctl({"--json", "runner", "show", "edge-1"}, kAdminKey);
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_EQ(nlohmann::json::parse(json.out)["revoked"], true);
  EXPECT_EQ(Ctl({"runner", "show", "nobody"}, kAdminKey).code, 1);
  EXPECT_EQ(Ctl({"runner", "add", "../x"}, kAdminKey).code, 1);
}

TEST_F(CtlTest, PolicyTest) {
  auto allow = Json(Ctl({"policy", "test", "--json", "echo hi"}, kSubmitterKey));
  EXPECT_EQ(allow["decision"], "allow") << allow.dump();
  for (const char* k : {"risk", "reasons", "rule"}) EXPECT_TRUE(allow.contains(k)) << k;
  auto deny = Json(Ctl({"policy", "test", "--json", "--", "sudo", "ls"}, kSubmitterKey));
  EXPECT_EQ(deny["decision"], "deny") << deny.dump();
  CtlResult text = Ctl({"policy", "test", "busybox sh"}, kSubmitterKey);
  EXPECT_EQ(text.code, 0) << text.err;
  EXPECT_EQ(text.out.rfind("decision: review\n", 0), 0u) << text.out;
  EXPECT_EQ(Ctl({"policy", "test"}, kSubmitterKey).code, 2);
}

TEST_F(CtlTest, PolicyDecidesAtSubmission) {
  // An allowed command needs no reviewer: no notice, just its output and status.
  CtlResult allowed = Ctl({"run", "--", "echo", "auto"}, kSubmitterKey);
  EXPECT_EQ(allowed.code, 0) << allowed.err;
  EXPECT_EQ(allowed.out, "auto\n");
  EXPECT_EQ(allowed.err, "");
  // A denied one ends at once, and says why.
  CtlResult denied = Ctl({"run", "--", "sudo", "ls"}, kSubmitterKey);
  EXPECT_EQ(denied.code, 125);
  EXPECT_EQ(denied.out, "");
  EXPECT_NE(denied.err.find("was cancelled: policy_denied"), std::string::npos) << denied.err;
}

TEST_F(CtlTest, UsageErrorsAndInfo) {
  EXPECT_EQ(Ctl({}, kSubmitterKey).code, 2);
  EXPECT_EQ(Ctl({"frobnicate"}, kSubmitterKey).code, 2);
  EXPECT_EQ(Ctl({"ps", "--bogus"}, kSubmitterKey).code, 2);
  EXPECT_EQ(Ctl({"run"}, kSubmitterKey).code, 2);
  EXPECT_EQ(Ctl({"run", "--cpus", "lots", "--", "/bin/true"}, kSubmitterKey).code, 2);
  EXPECT_EQ(Ctl({"inspect"}, kSubmitterKey).code, 2);
  CtlResult help = Ctl({"help", "run"}, nullptr);
  EXPECT_EQ(help.code, 0);
  EXPECT_EQ(help.out.rfind("Usage: sandboxctl run", 0), 0u) << help.out;
  CtlResult version = Ctl({"version"}, nullptr);
  EXPECT_EQ(version.code, 0);
  EXPECT_EQ(version.out.rfind("sandboxctl ", 0), 0u);
  CtlResult info = Ctl({"info"}, kSubmitterKey);
  EXPECT_EQ(info.code, 0) << info.err;
  EXPECT_NE(info.out.find("Default limits:"), std::string::npos) << info.out;
  auto j = Json(Ctl({"info", "--json"}, kSubmitterKey));
  EXPECT_TRUE(j.contains("limits")) << j.dump();
  // The server's own validation message comes through.
  CtlResult bad = Ctl({"run", "--memory", "64g", "--", "/bin/true"}, kSubmitterKey);
  EXPECT_EQ(bad.code, 125);
  EXPECT_NE(bad.err.find("HTTP 400"), std::string::npos) << bad.err;
}

TEST_F(CtlTest, StepsAndIdempotency) {
  std::string id;
  auto run = StartRun(
      {"--step", "first=/bin/busybox echo 'one two'", "--step",
       "second=/bin/busybox sh -c \"echo \\\"x\\\"; exit 4\"", "--idempotency-key", "ctl-steps-1"},
      &id);
  ASSERT_TRUE(run);
  // The same request with the same key names the same run; another request with it is refused.
  CtlResult again = Ctl(
      {"run", "--no-follow", "--step", "first=/bin/busybox echo 'one two'", "--step",
       "second=/bin/busybox sh -c \"echo \\\"x\\\"; exit 4\"", "--idempotency-key", "ctl-steps-1"},
      kSubmitterKey);
  EXPECT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(again.out, id + "\n");
  EXPECT_NE(again.err.find("already exists for this idempotency key"), std::string::npos)
      << again.err;
  CtlResult other =
      Ctl({"run", "--no-follow", "--idempotency-key", "ctl-steps-1", "--", "/bin/busybox", "true"},
          kSubmitterKey);
  EXPECT_EQ(other.code, 125);
  EXPECT_NE(other.err.find("HTTP 409"), std::string::npos) << other.err;
  Approve(id);
  EXPECT_EQ(run->Finish(), 4) << run->err();
  EXPECT_EQ(run->out(), "one two\nx\n");
  auto j = Inspect(id);
  ASSERT_EQ(j["steps"].size(), 2u) << j.dump();
  EXPECT_EQ(j["steps"][1]["argv"],
            nlohmann::json({"/bin/busybox", "sh", "-c", "echo \"x\"; exit 4"}));
}

}  // namespace
}  // namespace sbx::testing
