// `sandboxctl sandbox …`, the real binary, against a stand-in daemon: the generic HTTP server
// (api/http) with routes that answer as docs/sandboxes.md says, from memory. What the real daemon
// does is tested by tests/integration/ctl_sandbox_test.cc; this checks the client's side of the
// protocol without privileges: request bodies and transfer encodings, exit statuses, output byte
// for byte, following events through review, pagination, tar round trips, the pty stream.
#include "unit/sandboxctl_fake_daemon.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api/http/server.h"
#include "base/fs.h"
#include "base/sha256.h"
#include "base/unique_fd.h"
#include "tests/support/child_process.h"

namespace sbx::api {
namespace {

namespace fs = std::filesystem;
using sbx::testing::Child;
using sbx::testing::Collect;
using sbx::testing::CtlResult;
using sbx::testing::SandboxctlPath;
using testing::Fake;
using testing::FakeRoutes;

constexpr char kKey[] = "fake-daemon-key";

class SandboxctlFake : public ::testing::Test {
 protected:
  void SetUp() override {
    ::umask(022);  // sandboxctl, a child, makes files with the modes it was given less this
    std::string t = (fs::temp_directory_path() / "sandboxctl-fake-XXXXXX").string();
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    dir_ = t;
    ServerOptions o;
    o.listen = {"unix:" + dir_ + "/api.sock"};
    o.max_body_bytes = 64 << 20;
    auto auth = Authenticator::Create({{"sam", Role::kSubmitter, Sha256Hex(kKey)}});
    ASSERT_TRUE(auth.ok());
    auto s = Server::Start(std::move(o), FakeRoutes(&fake_), std::move(*auth));
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    server_ = std::move(*s);
  }
  void TearDown() override {
    {
      std::lock_guard lock(fake_.mu);
      fake_.held.clear();
    }
    if (server_) server_->Stop(std::chrono::milliseconds(2000));
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Starts sandboxctl ARGS with `stdin_fd` (or /dev/null) as its stdin, in the test's directory.
  std::unique_ptr<Child> Start(std::vector<std::string> args, int stdin_fd = -1) {
    args.insert(args.begin(), SandboxctlPath());
    Child::Options o;
    o.env = {"SANDBOXD_HOST=unix:" + dir_ + "/api.sock", std::string("SANDBOXD_API_KEY=") + kKey,
             "PATH=/usr/bin:/bin", "TMPDIR=" + dir_};
    o.cwd = dir_;
    o.stdin_fd = stdin_fd;
    o.death_signal = SIGKILL;
    auto c = Child::Start(args, o);
    EXPECT_NE(c, nullptr);
    return c;
  }

  CtlResult Ctl(std::vector<std::string> args, int stdin_fd = -1) {
    return Collect(Start(std::move(args), stdin_fd).get(), std::chrono::seconds(30));
  }

  std::string Create(std::vector<std::string> args = {}) {
    args.insert(args.begin(), {"sandbox", "create"});
    CtlResult r = Ctl(args);
    EXPECT_EQ(r.code, 0) << r.err;
    return r.out.substr(0, r.out.find('\n'));
  }

  nlohmann::json LastRequest(const std::string& method, const std::string& target_prefix) {
    std::lock_guard lock(fake_.mu);
    for (auto it = fake_.requests.rbegin(); it != fake_.requests.rend(); ++it) {
      if ((*it)["method"] == method &&
          (*it)["target"].get<std::string>().rfind(target_prefix, 0) == 0) {
        return *it;
      }
    }
    return nullptr;
  }

  std::string dir_;
  Fake fake_;
  std::unique_ptr<Server> server_;
};

std::string ReadFile(const std::string& path) {
  auto r = ::sbx::ReadFile(path, 64 << 20);
  EXPECT_TRUE(r.ok()) << path;
  return r.ok() ? *r : "";
}

void WriteFile(const std::string& path, const std::string& data, mode_t mode = 0644) {
  UniqueFd f(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  ASSERT_TRUE(f.valid()) << path;
  ASSERT_TRUE(WriteAll(f.get(), data).ok());
  ASSERT_EQ(::fchmod(f.get(), mode), 0);
}

TEST_F(SandboxctlFake, CreateLsInspectPauseRm) {
  const std::string id = Create({"--memory", "256m", "--cpus", "1", "-l", "team=infra"});
  ASSERT_EQ(id, "sbx_fake1");
  auto req = nlohmann::json::parse(LastRequest("POST", "/v1/sandboxes")["body"].get<std::string>());
  EXPECT_EQ(req, nlohmann::json::parse(
                     R"({"limits": {"cpus": 1.0, "memory_bytes": 268435456},
                         "labels": {"team": "infra"}})"));

  // Larger than the policy allows: the id on stdout, the state and the reasons on stderr.
  CtlResult big = Ctl({"sandbox", "create", "--memory", "1g"});
  EXPECT_EQ(big.code, 0) << big.err;
  EXPECT_EQ(big.out, "sbx_fake2\n");
  EXPECT_NE(big.err.find("sandbox sbx_fake2 is waiting for review (review: memory 1 GiB above "
                         "allow_within.memory 512 MiB); a reviewer approves it with:\n"
                         "  sandboxctl sandbox approve sbx_fake2\n"),
            std::string::npos)
      << big.err;
  Create();

  // Three sandboxes over two pages.
  CtlResult ls = Ctl({"sandbox", "ls", "--json", "--state", "running", "-l", "team=infra"});
  ASSERT_EQ(ls.code, 0) << ls.err;
  auto list = nlohmann::json::parse(ls.out)["sandboxes"];
  ASSERT_EQ(list.size(), 3u) << ls.out;
  EXPECT_EQ(list[0]["id"], "sbx_fake3");
  EXPECT_EQ(list[2]["id"], "sbx_fake1");
  EXPECT_NE(LastRequest("GET", "/v1/sandboxes?")["target"].get<std::string>().find(
                "&state=RUNNING&label=team%3Dinfra&cursor=2"),
            std::string::npos);
  CtlResult table = Ctl({"sandbox", "ls"});
  ASSERT_EQ(table.code, 0) << table.err;
  const std::string head = table.out.substr(0, table.out.find('\n'));
  EXPECT_EQ(head.rfind("ID ", 0), 0u) << table.out;
  for (const char* col : {" STATE ", " AGE ", " LABELS"}) {
    EXPECT_NE(head.find(col), std::string::npos) << table.out;
  }
  EXPECT_NE(table.out.find("sbx_fake1  RUNNING"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("team=infra"), std::string::npos) << table.out;

  CtlResult inspect = Ctl({"sandbox", "inspect", id});
  ASSERT_EQ(inspect.code, 0) << inspect.err;
  for (const char* want :
       {"ID:", "sbx_fake1", "State:", "RUNNING", "Limits:", "cpus 1, memory 256 MiB", "Labels:",
        "team=infra", "CPU time:", "1.500s", "Memory:", "1 MiB (peak 2 MiB)", "Policy:", "allow"}) {
    EXPECT_NE(inspect.out.find(want), std::string::npos) << want << " in:\n" << inspect.out;
  }
  EXPECT_EQ(nlohmann::json::parse(Ctl({"sandbox", "inspect", "--json", id}).out)["id"], id);

  CtlResult pause = Ctl({"sandbox", "pause", id});
  EXPECT_EQ(pause.out, "paused sandbox sbx_fake1 (PAUSED)\n") << pause.err;
  CtlResult resume = Ctl({"sandbox", "resume", id});
  EXPECT_EQ(resume.out, "resumed sandbox sbx_fake1 (RUNNING)\n") << resume.err;
  CtlResult rm = Ctl({"sandbox", "rm", id, "sbx_nope"});
  EXPECT_EQ(rm.code, 1);
  EXPECT_EQ(rm.out, "removed sandbox sbx_fake1 (STOPPED)\n");
  EXPECT_NE(rm.err.find("no such sandbox (HTTP 404 not_found)"), std::string::npos) << rm.err;
}

TEST_F(SandboxctlFake, ExecPrintsTheOutputAndExitsWithTheStatus) {
  const std::string id = Create();
  CtlResult r = Ctl({"sandbox", "exec", id, "--tag", "t1", "-e", "K=V", "--", "echo-exit", "3",
                     "hello", "world"});
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_EQ(r.out, "hello world\n");
  EXPECT_EQ(r.err, "err\n");
  auto req = LastRequest("POST", "/v1/sandboxes/" + id + "/processes");
  EXPECT_EQ(req["target"], "/v1/sandboxes/" + id + "/processes?wait=true");
  EXPECT_EQ(nlohmann::json::parse(req["body"].get<std::string>()),
            nlohmann::json::parse(R"({"argv": ["echo-exit", "3", "hello", "world"],
                                      "env": {"K": "V"}, "tag": "t1"})"));

  // Bytes that are not UTF-8 come as stdout_b64 and go out as they were.
  r = Ctl({"sandbox", "exec", id, "--", "binary"});
  EXPECT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(r.out.size(), 256u);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(static_cast<unsigned char>(r.out[i]), i);

  // Cut short in the answer: the rest comes from the stored log, nothing twice.
  r = Ctl({"sandbox", "exec", id, "--", "big"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, std::string(3000, 'a') + std::string(3000, 'b'));

  r = Ctl({"sandbox", "exec", id, "--", "killed"});
  EXPECT_EQ(r.code, 137);
  EXPECT_NE(r.err.find("was killed by SIGKILL"), std::string::npos) << r.err;

  // stdin: text as it is, other bytes as base64.
  WriteFile(dir_ + "/in.txt", "line\n");
  r = Ctl({"sandbox", "exec", id, "--stdin", dir_ + "/in.txt", "--", "stdin"});
  EXPECT_EQ(r.out, "line\n") << r.err;
  WriteFile(dir_ + "/in.bin", std::string("\xff\x00", 2));
  r = Ctl({"sandbox", "exec", id, "--stdin", dir_ + "/in.bin", "--", "stdin"});
  EXPECT_EQ(r.out, "b64:/wA=") << r.err;

  // --detach: the process id, at once.
  r = Ctl({"sandbox", "exec", "-d", id, "--", "echo-exit", "0"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "7\n");
  EXPECT_EQ(LastRequest("POST", "/v1/sandboxes/" + id + "/processes")["target"],
            "/v1/sandboxes/" + id + "/processes");

  // --json: the process with its output.
  r = Ctl({"sandbox", "exec", "--json", id, "--", "echo-exit", "4", "x"});
  EXPECT_EQ(r.code, 4);
  EXPECT_EQ(nlohmann::json::parse(r.out)["stdout"], "x\n");

  r = Ctl({"sandbox", "exec", "sbx_nope", "--", "echo-exit", "0"});
  EXPECT_EQ(r.code, 125);
}

TEST_F(SandboxctlFake, ExecWaitsThroughReview) {
  const std::string id = Create();
  CtlResult r = Ctl({"sandbox", "exec", id, "--", "review"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "approved output\n");
  EXPECT_NE(r.err.find("process 1 in sandbox " + id +
                       " is waiting for review (review: who "
                       "knows)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("a reviewer approves it with:\n  sandboxctl sandbox approve " + id +
                       " --process 1\n"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("process 1 was approved"), std::string::npos) << r.err;
}

TEST_F(SandboxctlFake, ApproveAndRejectSandboxesAndProcesses) {
  // Two sandboxes waiting for review: one approved, one rejected with a reason.
  const std::string first = Create({"--memory", "1g"});
  const std::string second = Create({"--memory", "1g"});
  CtlResult approved = Ctl({"sandbox", "approve", first});
  EXPECT_EQ(approved.code, 0) << approved.err;
  EXPECT_EQ(approved.out, "approved sandbox " + first + " (RUNNING)\n");
  EXPECT_EQ(LastRequest("POST", "/v1/sandboxes/" + first)["target"],
            "/v1/sandboxes/" + first + ":approve");
  CtlResult rejected = Ctl({"sandbox", "reject", "--json", "--reason", "too big", second});
  EXPECT_EQ(rejected.code, 0) << rejected.err;
  auto j = nlohmann::json::parse(rejected.out);
  EXPECT_EQ(j["state"], "FAILED");
  EXPECT_EQ(j["reason"], "rejected: too big");
  auto req = LastRequest("POST", "/v1/sandboxes/" + second);
  EXPECT_EQ(req["target"], "/v1/sandboxes/" + second + ":reject");
  EXPECT_EQ(nlohmann::json::parse(req["body"].get<std::string>()),
            nlohmann::json::parse(R"({"reason": "too big"})"));
  // Not waiting any more: the server's conflict, exit status 1.
  CtlResult again = Ctl({"sandbox", "approve", first});
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.err.find("not waiting for review (HTTP 409 failed_precondition)"),
            std::string::npos)
      << again.err;

  // A process waiting for review, by id and by tag.
  CtlResult started = Ctl({"sandbox", "exec", "-d", "--tag", "rev", first, "--", "review"});
  ASSERT_EQ(started.code, 0) << started.err;
  EXPECT_EQ(started.out, "1\n");
  CtlResult p_ok = Ctl({"sandbox", "approve", first, "--process", "1"});
  EXPECT_EQ(p_ok.code, 0) << p_ok.err;
  EXPECT_EQ(p_ok.out, "approved process 1 in sandbox " + first + " (RUNNING)\n");
  EXPECT_EQ(LastRequest("POST", "/v1/sandboxes/" + first + "/processes/")["target"],
            "/v1/sandboxes/" + first + "/processes/1:approve");
  CtlResult p_no = Ctl({"sandbox", "reject", "-p", "rev", "--reason", "no", first, "--json"});
  EXPECT_EQ(p_no.code, 0) << p_no.err;
  EXPECT_EQ(nlohmann::json::parse(p_no.out)["state"], "REJECTED");
  req = LastRequest("POST", "/v1/sandboxes/" + first + "/processes/");
  EXPECT_EQ(req["target"], "/v1/sandboxes/" + first + "/processes/rev:reject");
  EXPECT_EQ(nlohmann::json::parse(req["body"].get<std::string>()),
            nlohmann::json::parse(R"({"reason": "no"})"));
  EXPECT_EQ(Ctl({"sandbox", "approve", first, "--process", "9"}).code, 1);

  // Usage errors: no ID; --process with more than one sandbox.
  EXPECT_EQ(Ctl({"sandbox", "approve"}).code, 2);
  CtlResult two = Ctl({"sandbox", "reject", first, second, "--process", "1"});
  EXPECT_EQ(two.code, 2);
  EXPECT_NE(two.err.find("--process needs exactly one sandbox ID"), std::string::npos) << two.err;
}

TEST_F(SandboxctlFake, LogsStoredAndFollowed) {
  const std::string id = Create();
  ASSERT_EQ(Ctl({"sandbox", "exec", id, "--tag", "t", "--", "echo-exit", "0", "out"}).code, 0);
  CtlResult r = Ctl({"sandbox", "logs", id, "t"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  r = Ctl({"sandbox", "logs", "--stream", "stderr", id, "1"});
  EXPECT_EQ(r.out, "err\n");
  EXPECT_EQ(r.err, "");
  r = Ctl({"sandbox", "logs", "--json", id, "1"});
  EXPECT_EQ(nlohmann::json::parse(r.out),
            nlohmann::json::parse(R"({"sandbox_id": ")" + id +
                                  R"(", "process": "1", "stdout": "out\n", "stderr": "err\n"})"));
  // Following: the stored bytes, then the events past them; nothing twice.
  r = Ctl({"sandbox", "logs", "-f", id, "1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  r = Ctl({"sandbox", "logs", "-f", "--json", id, "1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 5) << r.out;
}

TEST_F(SandboxctlFake, CpFilesAndTreesByteForByte) {
  const std::string id = Create();
  std::string binary;
  for (int i = 0; i < (3 << 20); ++i) binary.push_back(static_cast<char>((i * 2654435761u) >> 24));
  WriteFile(dir_ + "/bin.dat", binary, 0750);

  CtlResult r = Ctl({"sandbox", "cp", dir_ + "/bin.dat", id + ":/workspace/bin.dat"});
  ASSERT_EQ(r.code, 0) << r.err;
  {
    std::lock_guard lock(fake_.mu);
    EXPECT_TRUE(fake_.files[id + ":/workspace/bin.dat"] == binary);
    EXPECT_EQ(fake_.modes[id + ":/workspace/bin.dat"], "0750");
  }
  auto put = LastRequest("PUT", "/v1/sandboxes/" + id + "/files?");
  EXPECT_EQ(put["length"], std::to_string(binary.size()));
  EXPECT_EQ(put["chunked"], false);

  ASSERT_EQ(::mkdir((dir_ + "/out").c_str(), 0755), 0);
  r = Ctl({"sandbox", "cp", id + ":/workspace/bin.dat", dir_ + "/out"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(ReadFile(dir_ + "/out/bin.dat") == binary);
  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/out/bin.dat").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u & ~0022u & 0777u);  // the stat's mode, less the umask
  r = Ctl({"sandbox", "cp", id + ":/workspace/bin.dat", "-"});
  EXPECT_TRUE(r.out == binary);

  // From our stdin: chunked, no length known.
  WriteFile(dir_ + "/small", "from stdin");
  UniqueFd in(::open((dir_ + "/small").c_str(), O_RDONLY | O_CLOEXEC));
  r = Ctl({"sandbox", "cp", "-", id + ":/workspace/s.txt"}, in.get());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(LastRequest("PUT", "/v1/sandboxes/" + id + "/files?")["chunked"], true);
  {
    std::lock_guard lock(fake_.mu);
    EXPECT_EQ(fake_.files[id + ":/workspace/s.txt"], "from stdin");
  }

  // A directory needs -r; with it, a tar stream each way, and the tree comes back the same.
  ASSERT_EQ(::mkdir((dir_ + "/tree").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir_ + "/tree/sub").c_str(), 0700), 0);
  WriteFile(dir_ + "/tree/sub/bin", binary.substr(0, 100000), 0600);
  WriteFile(dir_ + "/tree/a.txt", "a\n");
  ASSERT_EQ(::symlink("sub/bin", (dir_ + "/tree/link").c_str()), 0);
  r = Ctl({"sandbox", "cp", dir_ + "/tree", id + ":/workspace/tree"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("copy it with -r"), std::string::npos) << r.err;
  r = Ctl({"sandbox", "cp", "-r", dir_ + "/tree", id + ":/workspace/tree"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(LastRequest("POST", "/v1/sandboxes/" + id + "/files:mkdir")
                .dump()
                .find("path=%2Fworkspace%2Ftree"),
            std::string::npos);
  EXPECT_EQ(LastRequest("PUT", "/v1/sandboxes/" + id + "/files:tar")["chunked"], true);
  r = Ctl({"sandbox", "cp", "-r", id + ":/workspace/tree", dir_ + "/back"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(ReadFile(dir_ + "/back/sub/bin") == binary.substr(0, 100000));
  EXPECT_EQ(ReadFile(dir_ + "/back/a.txt"), "a\n");
  EXPECT_EQ(fs::read_symlink(dir_ + "/back/link"), "sub/bin");

  r = Ctl({"sandbox", "cp", id + ":/workspace/none", dir_ + "/x"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no such file or directory"), std::string::npos) << r.err;
  r = Ctl({"sandbox", "cp", "sbx_nope:/a", dir_ + "/x"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no such sandbox"), std::string::npos) << r.err;
  r = Ctl({"sandbox", "cp", dir_ + "/a", dir_ + "/b"});
  EXPECT_EQ(r.code, 2);
}

TEST_F(SandboxctlFake, ShellJoinsThePtyStream) {
  const std::string id = Create();
  // Our stdin is a pipe kept open: the session ends when the server closes it.
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd read_end(p[0]), write_end(p[1]);
  CtlResult r = Ctl({"sandbox", "shell", id}, read_end.get());
  EXPECT_EQ(r.code, 7) << r.err;  // the program's status
  EXPECT_EQ(r.out, std::string("pty says hi\r\n\x1b[0m\xff", 18));
  auto req = nlohmann::json::parse(
      LastRequest("POST", "/v1/sandboxes/" + id + "/processes")["body"].get<std::string>());
  EXPECT_EQ(req,
            nlohmann::json::parse(R"({"argv": ["/bin/sh"], "pty": {"cols": 80, "rows": 24}})"));
}

// A terminal of our own (a pty): raw mode while the session runs, the window size asked for,
// and the settings put back when it ends, also when a signal ends it.
TEST_F(SandboxctlFake, ShellPutsTheTerminalBackOnEveryWayOut) {
  const std::string id = Create();
  UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  ASSERT_TRUE(master.valid());
  ASSERT_EQ(::grantpt(master.get()), 0);
  ASSERT_EQ(::unlockpt(master.get()), 0);
  UniqueFd slave(::open(::ptsname(master.get()), O_RDWR | O_NOCTTY | O_CLOEXEC));
  ASSERT_TRUE(slave.valid());
  winsize size{};
  size.ws_col = 100;
  size.ws_row = 40;
  ASSERT_EQ(::ioctl(master.get(), TIOCSWINSZ, &size), 0);
  termios before{};
  ASSERT_EQ(::tcgetattr(slave.get(), &before), 0);
  ASSERT_NE(before.c_lflag & ICANON, 0u);
  ASSERT_NE(before.c_lflag & ECHO, 0u);

  // The server ends the session: the program's status, the terminal as it was.
  CtlResult r = Ctl({"sandbox", "shell", id}, slave.get());
  EXPECT_EQ(r.code, 7) << r.err;
  EXPECT_EQ(r.out, std::string("pty says hi\r\n\x1b[0m\xff", 18));
  termios after{};
  ASSERT_EQ(::tcgetattr(slave.get(), &after), 0);
  EXPECT_EQ(after.c_lflag, before.c_lflag);
  EXPECT_EQ(after.c_iflag, before.c_iflag);
  EXPECT_EQ(after.c_oflag, before.c_oflag);
  auto req = nlohmann::json::parse(
      LastRequest("POST", "/v1/sandboxes/" + id + "/processes")["body"].get<std::string>());
  EXPECT_EQ(req["pty"], nlohmann::json::parse(R"({"cols": 100, "rows": 40})"));

  // SIGTERM while the session is open: raw mode was on, and is off again after.
  for (int sig : {SIGTERM, SIGHUP}) {
    auto running = Start({"sandbox", "shell", "--cmd", "hold", id}, slave.get());
    ASSERT_NE(running, nullptr);
    ASSERT_TRUE(running->WaitFor(1, "ready\r\n", std::chrono::seconds(30))) << sig;
    termios raw{};
    ASSERT_EQ(::tcgetattr(slave.get(), &raw), 0);
    EXPECT_EQ(raw.c_lflag & (ICANON | ECHO | ISIG), 0u) << sig;
    running->Signal(sig);
    CtlResult ended = Collect(running.get(), std::chrono::seconds(30));
    EXPECT_EQ(ended.code, 128 + sig) << ended.err;
    ASSERT_EQ(::tcgetattr(slave.get(), &after), 0);
    EXPECT_EQ(after.c_lflag, before.c_lflag) << sig;
    EXPECT_EQ(after.c_iflag, before.c_iflag) << sig;
  }
}

TEST_F(SandboxctlFake, WatchPrintsALinePerEvent) {
  const std::string id = Create();
  CtlResult r = Ctl({"sandbox", "watch", id, "/workspace"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "created /workspace/a.txt\nmoved /workspace/a.txt -> /workspace/b.txt\n");
}

}  // namespace
}  // namespace sbx::api
