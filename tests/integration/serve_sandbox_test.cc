// Long-lived sandboxes through the real daemon (sandboxd-server) over real sockets: their
// lifecycle (pause freezes a counter, delete from any state, idle and lifetime expiry), processes
// (wait, the events WebSocket from the start and reattached by tag, signals, a timeout that
// kills a double-forked child, review and denial by the command policy), files (a 5 MiB binary
// file byte for byte, ranges, listings, tar out and in, hostile tars and symlinks that must not
// reach the host), the terminal WebSocket, and bad input.
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "integration/server_harness.h"
#include "supervisor/workspace/text.h"

namespace sbx::testing {
namespace {

using api::testing::HttpReply;
using api::testing::MakeRequest;
using api::testing::MakeWsUpgrade;
using api::testing::RawConn;
using api::testing::ReadReply;
using api::testing::WsFrame;
using api::testing::WsReadFrame;
using api::testing::WsSendFrame;
using nlohmann::json;

constexpr char kAlice[] = "sandbox-test-alice";
constexpr char kBob[] = "sandbox-test-bob";
constexpr char kCarol[] = "sandbox-test-carol";

// Everything runs without review except the commands named below; sandboxes within the bounds
// start at once, longer-lived ones wait for a reviewer.
constexpr char kRules[] =
    "  \"*\": allow\n"
    "  \"/bin/echo needs-review*\": review\n"
    "  \"forbidden-cmd *\": deny\n"
    "sandboxes:\n"
    "  allow_within: {timeout_s: 86400, idle_timeout_s: 86400, workspace: [none, ro, cow],\n"
    "                 backends: [native]}\n"
    "  otherwise: review\n";

constexpr size_t kMaxBody = 8 << 20;

class ServeSandboxTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    if (IsSkipped()) return;
    SetUpServer("sandbox", kRules);
    WriteConfig("127.0.0.1:0",
                {{"alice", "submitter", kAlice},
                 {"bob", "reviewer", kBob},
                 {"carol", "submitter", kCarol}},
                "max_body_bytes: " + std::to_string(kMaxBody) + "\n");
    StartServerOnLoopback();
  }

  // POST /v1/sandboxes; the new sandbox's id (the state is checked by the caller).
  json Create(const std::string& body = "{}", int expect = 201) {
    auto r = Call("POST", "/v1/sandboxes", kAlice, body);
    EXPECT_EQ(r.status, expect) << r.body;
    return r.Json();
  }
  std::string CreateRunning(const std::string& body = "{}") {
    json s = Create(body);
    EXPECT_EQ(s.value("state", ""), "RUNNING") << s.dump();
    return s.value("id", "");
  }
  std::string Sbx(const std::string& id) { return "/v1/sandboxes/" + id; }

  // Starts argv; with wait, the outcome once it ended.
  json Exec(const std::string& id, const json& body, bool wait = true, int expect = 0) {
    auto r = Call("POST", Sbx(id) + "/processes" + (wait ? "?wait=true" : ""), kAlice,
                  body.dump());
    EXPECT_EQ(r.status, expect != 0 ? expect : (wait ? 200 : 201)) << r.body;
    return r.Json();
  }
  json Sh(const std::string& id, const std::string& script) {
    return Exec(id, {{"argv", {"/bin/sh", "-c", script}}});
  }

  // A WebSocket after its 101.
  std::optional<RawConn> OpenWs(const std::string& target, const char* key = kAlice) {
    auto ws = Connect();
    if (!ws) return std::nullopt;
    ws->SetTimeout(std::chrono::seconds(30));
    if (!ws->Send(MakeWsUpgrade(target, {{"x-api-key", key}}))) return std::nullopt;
    auto head = api::testing::ReadHead(*ws);
    EXPECT_TRUE(head && head->status == 101) << target << " " << (head ? head->status : 0);
    if (!head || head->status != 101) return std::nullopt;
    return ws;
  }

  // Every event of the process from `after` until the server closes.
  std::vector<json> Events(const std::string& id, const std::string& pid, int64_t after = 0) {
    std::vector<json> out;
    auto ws = OpenWs(Sbx(id) + "/processes/" + pid + "/events?after=" + std::to_string(after));
    if (!ws) return out;
    for (;;) {
      auto f = WsReadFrame(*ws);
      if (!f || f->opcode == 8) break;
      out.push_back(json::parse(f->payload));
    }
    return out;
  }

  std::string ReadFile(const std::string& id, const std::string& path) {
    auto r = Call("GET", Sbx(id) + "/files?path=" + path, kAlice);
    EXPECT_EQ(r.status, 200) << path << ": " << r.body;
    return r.body;
  }

  // Until GET shows `state` (the expiry timers have no event of their own to wait on).
  json WaitForState(const std::string& id, const std::string& state,
                    std::chrono::seconds limit = std::chrono::seconds(30)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    json s;
    while (std::chrono::steady_clock::now() < deadline) {
      s = Call("GET", Sbx(id), kAlice).Json();
      if (s.value("state", "") == state) return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << id << " never reached " << state << ": " << s.dump();
    return s;
  }

  // A file's content once it has some (a background writer has started).
  std::string WaitForContent(const std::string& id, const std::string& path) {
    for (int i = 0; i < 200; ++i) {
      auto r = Call("GET", Sbx(id) + "/files?path=" + path, kAlice);
      if (r.status == 200 && !r.body.empty() && r.body.back() == '\n') return r.body;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << path << " stayed empty";
    return "";
  }
};

// A ustar archive of regular files, names as given (hostile ones included).
std::string MakeTar(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string out;
  for (const auto& [name, data] : files) {
    std::string h(512, '\0');
    std::memcpy(h.data(), name.data(), std::min<size_t>(name.size(), 99));
    std::snprintf(h.data() + 100, 8, "%07o", 0644);
    std::snprintf(h.data() + 108, 8, "%07o", 0);
    std::snprintf(h.data() + 116, 8, "%07o", 0);
    std::snprintf(h.data() + 124, 12, "%011lo", static_cast<unsigned long>(data.size()));
    std::snprintf(h.data() + 136, 12, "%011o", 0);
    std::memset(h.data() + 148, ' ', 8);
    h[156] = '0';
    std::memcpy(h.data() + 257, "ustar", 6);
    std::memcpy(h.data() + 263, "00", 2);
    unsigned sum = 0;
    for (unsigned char ch : h) sum += ch;
    std::snprintf(h.data() + 148, 8, "%06o", sum);
    out += h;
    out += data;
    out.append((512 - data.size() % 512) % 512, '\0');
  }
  out.append(1024, '\0');
  return out;
}

TEST_F(ServeSandboxTest, LifecyclePauseFreezesAndDeleteIsIdempotent) {
  std::string id = CreateRunning();
  ASSERT_FALSE(id.empty());
  // Another submitter's sandbox does not exist for it.
  EXPECT_EQ(Call("GET", Sbx(id), kCarol).status, 404);
  EXPECT_EQ(Call("DELETE", Sbx(id), kCarol).status, 404);
  EXPECT_EQ(Call("GET", Sbx(id), kBob).status, 200);  // a reviewer sees every sandbox
  auto list = Call("GET", "/v1/sandboxes", kCarol).Json();
  for (const auto& s : list["sandboxes"]) EXPECT_NE(s["id"], id);

  const std::string count = "i=0; while :; do i=$((i+1)); echo $i > /tmp/c; sleep 0.05; done";
  json counter =
      Exec(id, {{"argv", {"/bin/sh", "-c", count}}, {"tag", "counter"}}, /*wait=*/false);
  EXPECT_EQ(counter["state"], "RUNNING");
  WaitForContent(id, "/tmp/c");

  auto paused = Call("POST", Sbx(id) + ":pause", kAlice);
  ASSERT_EQ(paused.status, 200) << paused.body;
  EXPECT_EQ(paused.Json()["state"], "PAUSED");
  std::string first = ReadFile(id, "/tmp/c");
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // eight ticks of the counter
  EXPECT_EQ(ReadFile(id, "/tmp/c"), first) << "the counter ran while the sandbox was paused";

  auto resumed = Call("POST", Sbx(id) + ":resume", kAlice);
  ASSERT_EQ(resumed.status, 200) << resumed.body;
  EXPECT_EQ(resumed.Json()["state"], "RUNNING");
  std::string later;
  for (int i = 0; i < 100 && (later.empty() || later == first); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    later = ReadFile(id, "/tmp/c");
  }
  EXPECT_GT(std::stoll(later), std::stoll(first));
  EXPECT_EQ(Call("POST", Sbx(id) + ":touch", kAlice).status, 200);

  auto deleted = Call("DELETE", Sbx(id), kAlice);
  ASSERT_EQ(deleted.status, 200) << deleted.body;
  EXPECT_EQ(deleted.Json()["state"], "STOPPED");
  EXPECT_EQ(deleted.Json()["reason"], "deleted");
  auto again = Call("DELETE", Sbx(id), kAlice);
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.Json()["state"], "STOPPED");
  // The counter's record stays, ended with its sandbox.
  auto proc = Call("GET", Sbx(id) + "/processes/counter", kAlice).Json();
  EXPECT_EQ(proc["state"], "FINISHED") << proc.dump();
  // Files of a stopped sandbox are gone with it.
  EXPECT_EQ(Call("GET", Sbx(id) + "/files?path=/tmp/c", kAlice).status, 409);
}

TEST_F(ServeSandboxTest, ReviewAndDeleteBeforeAndAfter) {
  // Longer-lived than the policy allows on its own: a reviewer decides.
  json waiting = Create(R"({"limits": {"timeout_s": 172800}})");
  EXPECT_EQ(waiting["state"], "AWAITING_REVIEW");
  std::string w = waiting["id"];
  EXPECT_EQ(Call("POST", Sbx(w) + ":approve", kAlice).status, 403);  // not the submitter
  auto del = Call("DELETE", Sbx(w), kAlice);
  EXPECT_EQ(del.status, 200);
  EXPECT_EQ(del.Json()["state"], "STOPPED");

  json second = Create(R"({"limits": {"timeout_s": 172800}})");
  std::string s = second["id"];
  auto approved = Call("POST", Sbx(s) + ":approve", kBob);
  ASSERT_EQ(approved.status, 200) << approved.body;
  EXPECT_EQ(approved.Json()["state"], "RUNNING");
  EXPECT_EQ(approved.Json()["approval"]["approved_by"], "bob");
  EXPECT_EQ(Call("DELETE", Sbx(s), kAlice).Json()["state"], "STOPPED");

  json third = Create(R"({"limits": {"timeout_s": 172800}})");
  auto rejected = Call("POST", Sbx(third["id"]) + ":reject", kBob, R"({"reason": "too long"})");
  ASSERT_EQ(rejected.status, 200) << rejected.body;
  EXPECT_EQ(rejected.Json()["state"], "FAILED");
  EXPECT_EQ(rejected.Json()["reason"], "rejected: too long");

  // An idempotency key gives the same sandbox back.
  json a = Create(R"({"idempotency_key": "k1"})");
  json b = Create(R"({"idempotency_key": "k1"})", 200);
  EXPECT_EQ(a["id"], b["id"]);
}

TEST_F(ServeSandboxTest, IdleAndLifetimeExpiry) {
  std::string idle = CreateRunning(R"({"idle_timeout_s": 1})");
  std::string old = CreateRunning(R"({"limits": {"timeout_s": 2}, "idle_timeout_s": 600})");
  // The second keeps a process running, so only its lifetime can end it.
  Exec(old, {{"argv", {"/bin/sleep", "600"}}}, false);
  EXPECT_EQ(WaitForState(idle, "FAILED")["reason"], "idle");
  EXPECT_EQ(WaitForState(old, "FAILED")["reason"], "expired");
}

TEST_F(ServeSandboxTest, ProcessesWaitEventsReattachSignalAndTimeout) {
  std::string id = CreateRunning();
  json out = Sh(id, "echo out; echo err >&2; exit 3");
  EXPECT_EQ(out["state"], "FINISHED");
  EXPECT_EQ(out["result"]["exit_code"], 3);
  EXPECT_EQ(out["stdout"], "out\n");
  EXPECT_EQ(out["stderr"], "err\n");

  // Every byte once, in order, from the start; then reattached by tag from the middle.
  json bg = Exec(id, {{"argv", {"/bin/sh", "-c", "seq 1 20000"}}, {"tag", "numbers"}}, false);
  std::string pid = std::to_string(bg["id"].get<int64_t>());
  std::vector<json> events = Events(id, pid);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front()["type"], "process.started");
  EXPECT_EQ(events.back()["type"], "process.finished");
  std::string all;
  int64_t seq = 0, offset = 0;
  for (const auto& e : events) {
    EXPECT_EQ(e["seq"], ++seq);
    EXPECT_EQ(e["sandbox_id"], id);
    if (e["type"] != "process.log") continue;
    EXPECT_EQ(e["offset"], offset);
    all += e["data"].get<std::string>();
    offset += e["length"].get<int64_t>();
  }
  std::string expected;
  for (int i = 1; i <= 20000; ++i) expected += std::to_string(i) + "\n";
  EXPECT_TRUE(all == expected) << all.size() << " bytes against " << expected.size();
  int64_t middle = static_cast<int64_t>(events.size() / 2);
  std::vector<json> rest = Events(id, "numbers", middle);
  ASSERT_FALSE(rest.empty());
  EXPECT_EQ(rest.front()["seq"], middle + 1);
  EXPECT_EQ(rest.size(), events.size() - static_cast<size_t>(middle));
  // Resuming at or past the end of a finished process: nothing more, and the server closes
  // at once (a close frame, not a read that times out).
  for (int64_t past : {static_cast<int64_t>(events.size()), int64_t{100000}}) {
    auto ws = OpenWs(Sbx(id) + "/processes/numbers/events?after=" + std::to_string(past));
    ASSERT_TRUE(ws);
    ws->SetTimeout(std::chrono::seconds(5));
    auto f = WsReadFrame(*ws);
    ASSERT_TRUE(f) << "no close within 5 s after=" << past;
    EXPECT_EQ(f->opcode, 8);
  }
  auto logs = Call("GET", Sbx(id) + "/processes/numbers/logs?offset=5", kAlice);
  EXPECT_EQ(logs.body, expected.substr(5));

  // SIGINT by name to a shell that traps it.
  json trap = Exec(id,
                   {{"argv", {"/bin/sh", "-c",
                              "trap 'echo got; exit 0' INT; echo ready; while :; do sleep 0.1; "
                              "done"}},
                    {"tag", "trap"}},
                   false);
  {
    auto ws = OpenWs(Sbx(id) + "/processes/trap/events");
    ASSERT_TRUE(ws);
    std::string seen;
    bool signalled = false, finished = false;
    while (!finished) {
      auto f = WsReadFrame(*ws);
      ASSERT_TRUE(f && f->opcode != 8) << seen;
      json e = json::parse(f->payload);
      if (e["type"] == "process.log") seen += e.value("data", "");
      if (!signalled && seen.find("ready") != std::string::npos) {
        auto r = Call("POST", Sbx(id) + "/processes/trap:signal", kAlice, R"({"signal": "INT"})");
        EXPECT_EQ(r.status, 202) << r.body;
        signalled = true;
      }
      if (e["type"] == "process.finished") {
        finished = true;
        EXPECT_EQ(e["result"]["exit_code"], 0) << e.dump();
      }
    }
    EXPECT_NE(seen.find("got"), std::string::npos) << seen;
  }
  EXPECT_EQ(Call("POST", Sbx(id) + "/processes/trap:signal", kAlice, R"({"signal": "SIGNOPE"})")
                .status,
            400);

  // A timeout kills the process's whole tree, a double-forked session leader included.
  json timed = Exec(id, {{"argv", {"/bin/sh", "-c",
                                    "setsid /bin/sh -c 'echo $$ > /tmp/child.pid; exec sleep 1000' "
                                    "& sleep 1000"}},
                         {"timeout_s", 1}});
  EXPECT_EQ(timed["result"]["reason"], "timed_out") << timed.dump();
  std::string child = ReadFile(id, "/tmp/child.pid");
  ASSERT_FALSE(child.empty());
  json check = Sh(id, "if kill -0 $(cat /tmp/child.pid) 2>/dev/null; then echo alive; else echo "
                      "gone; fi");
  EXPECT_EQ(check["stdout"], "gone\n") << "pid " << child;
}

TEST_F(ServeSandboxTest, CommandPolicyReviewsAndDeniesProcesses) {
  std::string id = CreateRunning();
  json waiting = Exec(id, {{"argv", {"/bin/echo", "needs-review", "now"}}, {"tag", "rev"}}, true,
                      201);
  EXPECT_EQ(waiting["state"], "AWAITING_REVIEW");
  EXPECT_EQ(Call("POST", Sbx(id) + "/processes/rev:approve", kAlice).status, 403);
  auto approved = Call("POST", Sbx(id) + "/processes/rev:approve", kBob);
  ASSERT_EQ(approved.status, 200) << approved.body;
  std::vector<json> events = Events(id, "rev");
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["type"], "process.finished");
  EXPECT_EQ(Call("GET", Sbx(id) + "/processes/rev/logs", kAlice).body, "needs-review now\n");

  auto denied = Call("POST", Sbx(id) + "/processes", kAlice, R"({"argv": ["forbidden-cmd", "x"]})");
  EXPECT_EQ(denied.status, 403) << denied.body;
  EXPECT_EQ(denied.ErrorCode(), "permission_denied");
}

TEST_F(ServeSandboxTest, FilesRoundTripRangesTarAndListing) {
  std::string id = CreateRunning();
  std::string bytes(5 << 20, '\0');
  std::mt19937 rng(7);
  for (char& c : bytes) c = static_cast<char>(rng());
  auto put = Call("PUT", Sbx(id) + "/files?path=/tmp/data/blob.bin&mode=0600&parents=true",
                  kAlice, bytes);
  ASSERT_EQ(put.status, 200) << put.body;
  auto got = Call("GET", Sbx(id) + "/files?path=/tmp/data/blob.bin", kAlice);
  EXPECT_EQ(got.status, 200);
  EXPECT_TRUE(got.body == bytes) << got.body.size();
  auto stat = Call("GET", Sbx(id) + "/files:stat?path=/tmp/data/blob.bin", kAlice).Json();
  EXPECT_EQ(stat["size"], bytes.size());
  EXPECT_EQ(stat["mode"], "0600");
  EXPECT_EQ(stat["type"], "file");

  {
    auto c = Connect();
    ASSERT_TRUE(c);
    auto r = api::testing::RoundTrip(
        *c, MakeRequest("GET", Sbx(id) + "/files?path=/tmp/data/blob.bin",
                        {{"x-api-key", kAlice}, {"Range", "bytes=1000-1999"}}));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 206);
    EXPECT_EQ(r->Header("Content-Range"), "bytes 1000-1999/" + std::to_string(bytes.size()));
    EXPECT_TRUE(r->body == bytes.substr(1000, 1000));
    r = api::testing::RoundTrip(
        *c, MakeRequest("GET", Sbx(id) + "/files?path=/tmp/data/blob.bin",
                        {{"x-api-key", kAlice}, {"Range", "bytes=99999999-"}}));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 416);
  }

  ASSERT_EQ(Call("POST", Sbx(id) + "/files:mkdir?path=/tmp/t/a/b", kAlice).status, 200);
  ASSERT_EQ(Call("PUT", Sbx(id) + "/files?path=/tmp/t/a/one.txt", kAlice, "one\n").status, 200);
  ASSERT_EQ(Call("PUT", Sbx(id) + "/files?path=/tmp/t/a/b/two.txt", kAlice, "two\n").status, 200);
  auto listing = Call("GET", Sbx(id) + "/files?path=/tmp/t/a", kAlice).Json();
  ASSERT_EQ(listing["entries"].size(), 2u) << listing.dump();
  EXPECT_EQ(listing["entries"][0]["name"], "b");
  EXPECT_EQ(listing["entries"][0]["type"], "directory");
  EXPECT_EQ(listing["entries"][1]["name"], "one.txt");
  EXPECT_EQ(listing["truncated"], false);
  auto moved = Call("POST", Sbx(id) + "/files:move", kAlice,
                    R"({"from": "/tmp/t/a/one.txt", "to": "/tmp/t/a/b/one.txt"})");
  ASSERT_EQ(moved.status, 200) << moved.body;
  EXPECT_EQ(ReadFile(id, "/tmp/t/a/b/one.txt"), "one\n");
  EXPECT_EQ(Call("GET", Sbx(id) + "/files:stat?path=/tmp/t/a/one.txt", kAlice).status, 404);

  // Out as a tar and back in elsewhere.
  auto tar = Call("GET", Sbx(id) + "/files:tar?path=/tmp/t", kAlice);
  ASSERT_EQ(tar.status, 200);
  ASSERT_GE(tar.body.size(), 1024u);
  auto in = Call("PUT", Sbx(id) + "/files:tar?path=/tmp/copy&parents=true", kAlice, tar.body);
  ASSERT_EQ(in.status, 200) << in.body;
  EXPECT_EQ(ReadFile(id, "/tmp/copy/a/b/two.txt"), "two\n");
  EXPECT_EQ(ReadFile(id, "/tmp/copy/a/b/one.txt"), "one\n");

  // A tar with a "../" entry is refused whole: not even its harmless entry is written.
  std::string evil = MakeTar({{"fine.txt", "fine\n"}, {"../escaped.txt", "out\n"}});
  auto refused = Call("PUT", Sbx(id) + "/files:tar?path=/tmp/t", kAlice, evil);
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_EQ(Call("GET", Sbx(id) + "/files:stat?path=/tmp/t/fine.txt", kAlice).status, 404);
  EXPECT_EQ(Call("GET", Sbx(id) + "/files:stat?path=/tmp/escaped.txt", kAlice).status, 404);

  auto removed = Call("DELETE", Sbx(id) + "/files?path=/tmp/t&recursive=true", kAlice);
  EXPECT_EQ(removed.status, 200) << removed.body;
  EXPECT_EQ(Call("GET", Sbx(id) + "/files:stat?path=/tmp/t", kAlice).status, 404);
  EXPECT_EQ(Call("DELETE", Sbx(id) + "/files?path=/tmp/copy", kAlice).status, 409);  // not empty
}

// A program inside the sandbox plants symlinks to the host's secrets; reading and writing
// through them stays inside the sandbox's root, as the sandbox user.
TEST_F(ServeSandboxTest, HostileSymlinksNeverReachTheHost) {
  struct stat before {};
  ASSERT_EQ(::stat("/etc/shadow", &before), 0);
  std::ifstream in("/etc/shadow", std::ios::binary);
  std::string shadow((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

  std::string id = CreateRunning();
  json planted = Sh(id,
                    "ln -s /etc/shadow /tmp/shadow && ln -s ../../../../../etc/shadow /tmp/up && "
                    "ln -s / /tmp/root && ln -s /proc/1/root /tmp/magic && echo planted");
  ASSERT_EQ(planted["stdout"], "planted\n") << planted.dump();
  for (const char* path : {"/tmp/shadow", "/tmp/up", "/tmp/root/etc/shadow",
                           "/tmp/magic/etc/shadow", "/../../../etc/shadow"}) {
    SCOPED_TRACE(path);
    auto r = Call("GET", Sbx(id) + "/files?path=" + std::string(path), kAlice);
    EXPECT_NE(r.status, 200) << "read " << r.body.size() << " bytes";
    if (!shadow.empty()) {
      EXPECT_EQ(r.body.find(shadow), std::string::npos);
    }
    auto w = Call("PUT", Sbx(id) + "/files?path=" + std::string(path), kAlice, "owned\n");
    if (w.status == 200) {
      // Only a symlink itself may be replaced (a file in the sandbox's /tmp); never followed.
      EXPECT_TRUE(std::string(path).rfind("/tmp/", 0) == 0 &&
                  std::string(path).find('/', 5) == std::string::npos)
          << w.body;
    }
  }
  struct stat after {};
  ASSERT_EQ(::stat("/etc/shadow", &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_EQ(after.st_size, before.st_size);
  EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
  EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
  std::ifstream again("/etc/shadow", std::ios::binary);
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>()),
            shadow);
}

// Reads binary messages until their bytes contain `text`.
bool ReadUntil(RawConn& ws, const std::string& text, std::string* seen) {
  while (seen->find(text) == std::string::npos) {
    auto f = WsReadFrame(ws);
    if (!f || f->opcode == 8) return false;
    if (f->opcode == 2) *seen += f->payload;
  }
  return true;
}

TEST_F(ServeSandboxTest, TerminalSizeResizeAndScrollback) {
  std::string id = CreateRunning();
  json term = Exec(id, {{"argv", {"/bin/sh"}}, {"pty", {{"cols", 80}, {"rows", 24}}},
                        {"tag", "term"}},
                   false);
  ASSERT_EQ(term["state"], "RUNNING");
  {
    auto ws = OpenWs(Sbx(id) + "/processes/term/pty");
    ASSERT_TRUE(ws);
    ASSERT_TRUE(WsSendFrame(*ws, 1, "stty size\n"));
    std::string seen;
    EXPECT_TRUE(ReadUntil(*ws, "24 80", &seen)) << seen;
    ASSERT_TRUE(WsSendFrame(*ws, 1, R"({"type": "resize", "cols": 100, "rows": 30})"));
    ASSERT_TRUE(WsSendFrame(*ws, 2, "stty size\n"));
    EXPECT_TRUE(ReadUntil(*ws, "30 100", &seen)) << seen;
    WsSendFrame(*ws, 8, api::testing::WsClosePayload(1000));
  }
  {
    // Reconnected: the scrollback first shows what was there.
    auto ws = OpenWs(Sbx(id) + "/processes/term/pty");
    ASSERT_TRUE(ws);
    auto first = WsReadFrame(*ws);
    ASSERT_TRUE(first.has_value());
    EXPECT_EQ(first->opcode, 2);
    EXPECT_NE(first->payload.find("30 100"), std::string::npos) << first->payload;
    ASSERT_TRUE(WsSendFrame(*ws, 1, "exit\n"));
    for (;;) {  // the session closes when the shell has ended
      auto f = WsReadFrame(*ws);
      ASSERT_TRUE(f.has_value());
      if (f->opcode == 8) break;
    }
  }
  // A process without a terminal has none to open.
  json plain = Exec(id, {{"argv", {"/bin/sleep", "30"}}}, false);
  auto ws = Connect();
  ASSERT_TRUE(ws);
  auto r = api::testing::RoundTrip(
      *ws, MakeWsUpgrade(Sbx(id) + "/processes/" + std::to_string(plain["id"].get<int64_t>()) +
                             "/pty",
                         {{"x-api-key", kAlice}}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 409);
}

TEST_F(ServeSandboxTest, BadInputChangesNothing) {
  EXPECT_EQ(Call("GET", "/v1/sandboxes/sbx_aaaaaaaaaaaaaaaaaaaa", kAlice).status, 404);
  EXPECT_EQ(Call("POST", "/v1/sandboxes", kAlice, "{bad").status, 400);
  EXPECT_EQ(Call("POST", "/v1/sandboxes", kAlice, R"({"limits": {"cpus": -1}})").status, 400);
  EXPECT_EQ(Call("POST", "/v1/sandboxes", kAlice, R"({"shell": true})").status, 400);
  auto list = Call("GET", "/v1/sandboxes", kAlice).Json();
  EXPECT_TRUE(list["sandboxes"].empty()) << list.dump();

  std::string id = CreateRunning();
  EXPECT_EQ(Call("GET", Sbx(id) + "/processes/999", kAlice).status, 404);
  EXPECT_EQ(Call("GET", Sbx(id) + "/processes/no-such-tag", kAlice).status, 404);
  EXPECT_EQ(Call("POST", Sbx(id) + "/processes", kAlice, "{").status, 400);
  EXPECT_EQ(Call("POST", Sbx(id) + "/processes", kAlice, R"({"argv": []})").status, 400);
  EXPECT_EQ(Call("POST", Sbx(id) + "/processes", kAlice, R"({"argv": ["x"], "tag": "42"})").status,
            400);
  EXPECT_EQ(Call("GET", Sbx(id) + "/processes", kAlice).Json()["processes"].size(), 0u);
  EXPECT_EQ(Call("PUT", Sbx(id) + "/files?path=/tmp/x&mode=0999", kAlice, "x").status, 400);
  EXPECT_EQ(Call("GET", Sbx(id) + "/files:stat?path=/tmp/x", kAlice).status, 404);

  // An upload over max_body_bytes is refused before its body is read; nothing is written.
  {
    auto c = Connect();
    ASSERT_TRUE(c);
    std::string head = "PUT " + Sbx(id) + "/files?path=/tmp/big HTTP/1.1\r\nHost: test\r\n" +
                       "x-api-key: " + kAlice + "\r\nContent-Length: " +
                       std::to_string(kMaxBody + 1) + "\r\n\r\n";
    ASSERT_TRUE(c->Send(head));
    auto r = ReadReply(*c);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413);
  }
  EXPECT_EQ(Call("GET", Sbx(id) + "/files:stat?path=/tmp/big", kAlice).status, 404);
}

TEST_F(ServeSandboxTest, StdinIsWrittenAndClosedOverTheEventsWebSocket) {
  std::string id = CreateRunning();
  json p = Exec(id, {{"argv", {"/bin/cat"}}, {"stdin_open", true}, {"tag", "cat"}}, false);
  ASSERT_EQ(p["state"], "RUNNING");
  auto ws = OpenWs(Sbx(id) + "/processes/cat/events?after=0");
  ASSERT_TRUE(ws);
  // A malformed message is answered with an error, and changes nothing.
  ASSERT_TRUE(WsSendFrame(*ws, 1, R"({"type": "stdin", "close": "yes"})"));
  std::string out;
  json finished;
  bool told = false;
  auto take = [&](const json& e) {
    if (e["type"] == "process.log") {
      out += e.contains("data") ? e["data"].get<std::string>()
                                : supervisor::Base64Decode(e["data_b64"].get<std::string>());
    } else if (e["type"] == "process.finished") {
      finished = e;
    } else if (e["type"] == "error") {
      told = true;
    }
  };
  while (!told) {
    auto f = WsReadFrame(*ws);
    ASSERT_TRUE(f && f->opcode != 8) << "no error for a malformed message";
    take(json::parse(f->payload));
  }
  ASSERT_TRUE(WsSendFrame(*ws, 2, std::string("bin\0ary\n", 8)));
  ASSERT_TRUE(WsSendFrame(*ws, 1, R"({"type": "stdin", "data_b64": "dGV4dA==", "close": true})"));
  for (;;) {
    auto f = WsReadFrame(*ws);
    if (!f || f->opcode == 8) break;
    take(json::parse(f->payload));
  }
  // cat saw the bytes in order and the end of its input: it exited 0.
  EXPECT_EQ(out, std::string("bin\0ary\ntext", 12));
  ASSERT_FALSE(finished.is_null());
  EXPECT_EQ(finished["result"]["exit_code"], 0);
}

// A program inside swaps a directory for a symlink to a host path, over and over, while the API
// writes and reads through it: every operation lands inside the sandbox or is refused, and the
// host directory the symlink names stays empty.
TEST_F(ServeSandboxTest, ADirectorySwappedForASymlinkWhileTheApiWritesThroughItStaysInside) {
  char host_dir[] = "/tmp/sbx-escape-XXXXXX";
  ASSERT_NE(::mkdtemp(host_dir), nullptr);
  ::chmod(host_dir, 0777);  // writable by anyone: an escape would succeed if it happened
  std::string id = CreateRunning();
  const std::string swap =
      std::string("mkdir -p /tmp/d; i=0; while [ $i -lt 100000 ]; do i=$((i+1)); "
                  "mv /tmp/d /tmp/d.real 2>/dev/null; ln -sfn ") +
      host_dir + " /tmp/d; rm -f /tmp/d; mv /tmp/d.real /tmp/d 2>/dev/null; done; echo swapped";
  json swapper = Exec(id, {{"argv", {"/bin/sh", "-c", swap}}, {"tag", "swap"}}, false);
  ASSERT_EQ(swapper["state"], "RUNNING");
  int written = 0, refused = 0;
  for (int i = 0; i < 300; ++i) {
    const std::string path = "/tmp/d/f" + std::to_string(i);
    auto w = Call("PUT", Sbx(id) + "/files?path=" + path + "&parents=true", kAlice, "data");
    (w.status == 200 ? written : refused)++;
    EXPECT_TRUE(w.status == 200 || w.status == 404 || w.status == 403 || w.status == 409 ||
                w.status == 400)
        << w.status << " " << w.body;
    auto m = Call("POST", Sbx(id) + "/files:mkdir?path=/tmp/d/sub" + std::to_string(i), kAlice);
    EXPECT_NE(m.status, 500) << m.body;
  }
  EXPECT_EQ(written + refused, 300);
  // The swapper was still at it when the last request went (else nothing was raced).
  auto sw = Call("GET", Sbx(id) + "/processes/swap", kAlice);
  EXPECT_EQ(sw.Json()["state"], "RUNNING") << "the swap loop ended before the requests did";
  std::cerr << written << " writes landed inside, " << refused << " refused\n";
  // Nothing reached the host directory the symlink named.
  std::vector<std::string> leaked;
  for (const auto& e : std::filesystem::directory_iterator(host_dir)) {
    leaked.push_back(e.path().string());
  }
  EXPECT_TRUE(leaked.empty()) << leaked.size() << " entries, e.g. "
                              << (leaked.empty() ? "" : leaked.front());
  std::filesystem::remove_all(host_dir);
}

// A full-screen program (top, with the terminal's size and TERM) draws in the terminal, and a
// key ends it.
TEST_F(ServeSandboxTest, AFullScreenProgramRunsInTheTerminal) {
  if (::access("/usr/bin/top", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/top on this host";
  std::string id = CreateRunning();
  json top = Exec(id, {{"argv", {"/usr/bin/top", "-d", "0.2"}},
                       {"pty", {{"cols", 100}, {"rows", 30}}},
                       {"tag", "top"}},
                  false);
  ASSERT_EQ(top["state"], "RUNNING") << top.dump();
  auto ws = OpenWs(Sbx(id) + "/processes/top/pty");
  ASSERT_TRUE(ws);
  std::string seen;
  // Its header and a cursor-addressed screen (ESC [ row ; col H, or clear and home).
  EXPECT_TRUE(ReadUntil(*ws, "PID", &seen)) << seen.substr(0, 400);
  EXPECT_NE(seen.find("\x1b["), std::string::npos);
  ASSERT_TRUE(WsSendFrame(*ws, 2, "q"));
  for (;;) {
    auto f = WsReadFrame(*ws);
    ASSERT_TRUE(f.has_value());
    if (f->opcode == 8) break;
  }
  auto r = Call("GET", Sbx(id) + "/processes/top", kAlice);
  EXPECT_EQ(r.Json()["state"], "FINISHED");
  EXPECT_EQ(r.Json()["result"]["exit_code"], 0) << r.body;
}

TEST_F(ServeSandboxTest, TheChangeFeedShowsOnesOwnSandboxesLiveAndAReviewerEveryones) {
  auto alice = OpenWs("/v1/events/sandboxes", kAlice);
  auto carol = OpenWs("/v1/events/sandboxes", kCarol);
  auto bob = OpenWs("/v1/events/sandboxes", kBob);
  ASSERT_TRUE(alice && carol && bob);
  // Reads messages until one satisfies `until` (or the connection ends).
  auto read_until = [](RawConn& ws, const std::function<bool(const json&)>& until) {
    std::vector<json> seen;
    for (;;) {
      auto f = WsReadFrame(ws);
      if (!f || f->opcode != 1) return seen;
      seen.push_back(json::parse(f->payload));
      if (until(seen.back())) return seen;
    }
  };
  std::string id = CreateRunning();
  json done = Sh(id, "true");
  const int64_t pid = done["id"].get<int64_t>();
  auto finished = [&](const json& m) {
    return m["type"] == "process.state" && m["sandbox_id"] == id && m["state"] == "FINISHED";
  };
  for (RawConn* ws : {&*alice, &*bob}) {
    auto seen = read_until(*ws, finished);
    ASSERT_FALSE(seen.empty());
    EXPECT_TRUE(finished(seen.back()));
    EXPECT_EQ(seen.back()["process_id"], pid);
    EXPECT_EQ(seen.back()["reason"], "exited");
    std::vector<std::string> states;
    for (const auto& m : seen) {
      if (m["type"] == "sandbox.state" && m["sandbox_id"] == id) states.push_back(m["state"]);
    }
    ASSERT_FALSE(states.empty());
    EXPECT_EQ(states.back(), "RUNNING");
  }
  // Carol sees nothing of Alice's: the first message she gets is about her own sandbox.
  auto r = Call("POST", "/v1/sandboxes", kCarol, "{}");
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string carols = json::parse(r.body)["id"];
  auto seen = read_until(*carol, [](const json&) { return true; });
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0]["sandbox_id"], carols);
  EXPECT_EQ(seen[0]["submitter"], "carol");
  EXPECT_EQ(Call("DELETE", Sbx(carols), kCarol).status, 200);
}

}  // namespace
}  // namespace sbx::testing
