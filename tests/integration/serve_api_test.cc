// The /v1 API end to end over a real socket: a real server, run manager, store and sandboxes,
// once on SQLite and once on a PostgreSQL cluster the suite starts; the client is a raw
// HTTP/WebSocket client with bounded reads.
#include <fcntl.h>
#include <unistd.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "api/http/server.h"
#include "api/testing/raw_client.h"
#include "api/v1/run_routes.h"
#include "base/fs.h"
#include "base/sha256.h"
#include "integration/sandbox_harness.h"
#include "seccomp/seccomp.h"
#include "supervisor/policy/command_policy.h"
#include "supervisor/workspace/text.h"
#include "tests/support/store_fixture.h"

namespace sbx::testing {
namespace {

using api::testing::HttpReply;
using api::testing::MakeRequest;
using api::testing::MakeWsUpgrade;
using api::testing::RawConn;
using api::testing::ReadReply;
using api::testing::RoundTrip;
using api::testing::WsReadFrame;

constexpr char kAlice[] = "key-alice-submitter";
constexpr char kBob[] = "key-bob-reviewer";
constexpr char kAdmin[] = "key-ada-admin";
constexpr char kCarol[] = "key-carol-submitter";

class ServeApiTest : public SandboxTest, public ::testing::WithParamInterface<Backend> {
 protected:
  static void TearDownTestSuite() {
    if (cluster_) {
      Status stopped = cluster_->Stop();
      EXPECT_TRUE(stopped.ok()) << stopped.error().ToString();
      cluster_.reset();
    }
    SandboxTest::TearDownTestSuite();
  }
  void SetUp() override {
    SandboxTest::SetUp();
    if (IsSkipped()) return;
    char dir[] = "/tmp/sbx-serve-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    ::chmod(dir, 0711);  // the sandboxes reach their mount points through it
    dir_ = dir;
    config_.data_dir = dir_ + "/data";
    config_.database = "sqlite://" + dir_ + "/db.sqlite";
    if (GetParam() == Backend::kPostgres) {
      if (!cluster_ && pg_error_.empty()) {
        auto c = PgCluster::Start();
        if (c.ok()) {
          cluster_ = std::move(*c);
        } else {
          pg_error_ = c.error().ToString();
        }
      }
      ASSERT_TRUE(cluster_) << "cannot start the test PostgreSQL: " << pg_error_;
      database_ = "sbx_serve_" + std::to_string(::getpid()) + "_" + std::to_string(++db_counter_);
      Status created = cluster_->CreateDatabase(database_);
      ASSERT_TRUE(created.ok()) << created.error().ToString();
      config_.database = cluster_->Url(database_);
    }
    config_.limits.maxima.memory_bytes = 1ll << 30;
    std::filesystem::create_directories(dir_ + "/roots");
    config_.limits.workspace_roots = {dir_ + "/roots"};
    config_.policy_dir = dir_ + "/policies";
    std::filesystem::create_directories(config_.policy_dir);
    config_.seccomp_profiles_dir = dir_ + "/seccomp";
    std::filesystem::create_directories(config_.seccomp_profiles_dir);
    auto s = store::Open(config_.database);
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    store_ = std::move(*s);
    ASSERT_TRUE(store_->Migrate().ok());
    supervisor::RunManagerOptions o;
    o.node = "api-test";
    o.data_dir = config_.data_dir;
    o.limits = config_.limits;
    o.cgroups = driver_.get();
    o.seccomp_profiles_dir = config_.seccomp_profiles_dir;
    auto m = supervisor::RunManager::Start(*store_, o);
    ASSERT_TRUE(m.ok()) << m.error().ToString();
    runs_ = std::move(*m);
    host_ = driver_->host();

    auto auth = api::Authenticator::Create(
        {{"alice", api::Role::kSubmitter, Sha256Hex(kAlice)},
         {"bob", api::Role::kReviewer, Sha256Hex(kBob)},
         {"ada", api::Role::kAdmin, Sha256Hex(kAdmin)},
         {"carol", api::Role::kSubmitter, Sha256Hex(kCarol)}});
    ASSERT_TRUE(auth.ok()) << auth.error().ToString();
    api::Router router;
    ASSERT_TRUE(api::AddRunRoutes(router, {runs_.get(), store_.get(), &config_, &host_}).ok());
    api::ServerOptions so;
    so.listen = {"127.0.0.1:0"};
    auto server = api::Server::Start(so, std::move(router), std::move(*auth));
    ASSERT_TRUE(server.ok()) << server.error().ToString();
    server_ = std::move(*server);
    port_ = server_->addresses()[0].port;
  }
  void TearDown() override {
    if (server_) server_->Stop(std::chrono::seconds(2));
    if (runs_) runs_->Stop();
    server_.reset();
    runs_.reset();
    store_.reset();
    if (!database_.empty() && cluster_) {
      Status dropped = cluster_->DropDatabase(database_);
      EXPECT_TRUE(dropped.ok()) << dropped.error().ToString();
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Reads WebSocket frames until the server closes; the events as JSON.
  std::vector<nlohmann::json> ReadEvents(RawConn& ws, size_t max = 10'000) {
    std::vector<nlohmann::json> out;
    while (out.size() < max) {
      auto f = WsReadFrame(ws);
      if (!f || f->opcode == 8) break;
      out.push_back(nlohmann::json::parse(f->payload));
    }
    return out;
  }
  // Submits and approves `body`; returns the run id.
  std::string SubmitApproved(const std::string& body) {
    auto created = Call("POST", "/v1/runs", kAlice, body);
    EXPECT_EQ(created.status, 201) << created.body;
    std::string id = created.Json().value("id", "");
    EXPECT_EQ(Call("POST", "/v1/runs/" + id + ":approve", kBob).status, 200);
    return id;
  }
  // Follows the run's events until run.completed.
  std::vector<nlohmann::json> Follow(const std::string& id, int64_t after = 0,
                                     const char* key = kAlice) {
    auto ws = RawConn::Tcp(port_);
    EXPECT_TRUE(ws.has_value());
    if (!ws) return {};
    EXPECT_TRUE(ws->Send(MakeWsUpgrade(
        "/v1/runs/" + id + "/events?after=" + std::to_string(after), {{"x-api-key", key}})));
    auto head = api::testing::ReadHead(*ws);
    EXPECT_TRUE(head.has_value() && head->status == 101);
    return ReadEvents(*ws);
  }
  // Opens a WebSocket on `target`; returns the connection (nullopt unless it was upgraded) and
  // the status of the answer in *status.
  std::optional<RawConn> OpenWs(const std::string& target, const char* key, int* status) {
    auto ws = RawConn::Tcp(port_);
    EXPECT_TRUE(ws.has_value());
    if (!ws) return std::nullopt;
    EXPECT_TRUE(ws->Send(MakeWsUpgrade(target, {{"x-api-key", key}})));
    auto head = api::testing::ReadHead(*ws);
    *status = head ? head->status : 0;
    if (*status != 101) return std::nullopt;
    return ws;
  }

  static std::unique_ptr<PgCluster> cluster_;
  static std::string pg_error_;
  static int db_counter_;
  std::string database_;

  HttpReply Call(const std::string& method, const std::string& target, const char* key,
                 const std::string& body = "",
                 std::vector<std::pair<std::string, std::string>> headers = {}) {
    auto c = RawConn::Tcp(port_);
    EXPECT_TRUE(c.has_value());
    if (!c) return {};
    if (key != nullptr) headers.push_back({"x-api-key", key});
    if (!body.empty()) headers.push_back({"Content-Type", "application/json"});
    auto r = RoundTrip(*c, MakeRequest(method, target, headers, body));
    EXPECT_TRUE(r.has_value()) << method << " " << target;
    return r ? *r : HttpReply{};
  }

  std::string dir_;
  supervisor::ServiceConfig config_;
  cgroup::HostInfo host_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<supervisor::RunManager> runs_;
  std::unique_ptr<api::Server> server_;
  uint16_t port_ = 0;
};

TEST_P(ServeApiTest, HealthAndAuth) {
  auto h = Call("GET", "/healthz", nullptr);
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.Json()["ok"], true);
  EXPECT_EQ(Call("GET", "/v1/runs", nullptr).status, 401);
  EXPECT_EQ(Call("GET", "/v1/runs", "wrong-key").status, 401);
  EXPECT_EQ(Call("GET", "/v1/runs", kAlice).status, 200);
  EXPECT_EQ(Call("GET", "/v1/audit", kAlice).status, 403);
  auto info = Call("GET", "/v1/info", kAlice);
  ASSERT_EQ(info.status, 200);
  EXPECT_EQ(info.Json()["limits"]["maxima"]["memory"], 1ll << 30);
  EXPECT_EQ(info.Json()["backends"][0]["name"], "native");
  EXPECT_EQ(info.Json()["backends"][1]["name"], "docker");
  EXPECT_EQ(info.Json()["default_backend"], "native");
}

TEST_P(ServeApiTest, BadRequestsGetClearErrorsAndChangeNothing) {
  struct Case {
    std::string body;
    int status;
    std::string mention;
  } cases[] = {
      {"{not json", 400, "JSON"},
      {"[1,2]", 400, "object"},
      {R"({"argv": "ls"})", 400, "argv"},
      {R"({"argv": ["ls"], "bogus": 1})", 400, "bogus"},
      {R"({"argv": ["ls", 3]})", 400, "argv[1]"},
      {R"({"argv": ["ls"], "limits": {"memory": "lots"}})", 400, "limits.memory"},
      {R"({"argv": ["ls"], "limits": {"memory": "4g"}})", 400, "limits.memory"},
      {R"({"argv": ["ls"], "limits": {"gpus": 1}})", 400, "limits.gpus"},
      {R"({"argv": ["ls"], "env": {"A": 1}})", 400, "env.A"},
      {R"({})", 400, "argv or steps"},
      {R"({"argv": ["ls"], "backend": "podman"})", 400, "backend"},
      {R"({"argv": ["ls"], "backend": "native", "image": "debian:12"})", 400, "image"},
      {R"({"argv": ["ls"], "image": ""})", 400, "image"},
  };
  for (const auto& c : cases) {
    auto r = Call("POST", "/v1/runs", kAlice, c.body);
    EXPECT_EQ(r.status, c.status) << c.body;
    EXPECT_EQ(r.ErrorCode(), "invalid_argument") << c.body << " " << r.body;
    EXPECT_NE(r.body.find(c.mention), std::string::npos) << c.body << " " << r.body;
  }
  EXPECT_EQ(Call("GET", "/v1/runs/run_nosuchrun00000000000", kAlice).status, 404);
  EXPECT_EQ(Call("POST", "/v1/runs/run_nosuchrun00000000000:approve", kBob).status, 404);
  EXPECT_TRUE(Call("GET", "/v1/runs", kAlice).Json()["runs"].empty());
}

TEST_P(ServeApiTest, SubmitReviewRunFollowLogsAndEvents) {
  auto created = Call("POST", "/v1/runs", kAlice,
                      R"({"argv": ["/bin/sh", "-c", "echo hello; echo err >&2"],
                          "labels": {"team": "ci"}})",
                      {{"Idempotency-Key", "abc"}});
  ASSERT_EQ(created.status, 201) << created.body;
  std::string id = created.Json()["id"];
  EXPECT_EQ(created.Json()["state"], "AWAITING_REVIEW");
  // The same idempotency key and body: the same run, not a new one. Another body: 409.
  auto again = Call("POST", "/v1/runs", kAlice,
                    R"({"argv": ["/bin/sh", "-c", "echo hello; echo err >&2"],
                        "labels": {"team": "ci"}})",
                    {{"Idempotency-Key", "abc"}});
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.Json()["id"], id);
  auto other = Call("POST", "/v1/runs", kAlice, R"({"argv": ["/bin/true"]})",
                    {{"Idempotency-Key", "abc"}});
  EXPECT_EQ(other.status, 409) << other.body;
  EXPECT_NE(other.body.find(id), std::string::npos) << other.body;
  EXPECT_EQ(Call("GET", "/v1/runs", kAlice).Json()["runs"].size(), 1u);

  // Reviewing: the submitter's role may not; a reviewer may.
  EXPECT_EQ(Call("POST", "/v1/runs/" + id + ":approve", kAlice).status, 403);
  auto approved = Call("POST", "/v1/runs/" + id + ":approve", kBob);
  ASSERT_EQ(approved.status, 200) << approved.body;
  EXPECT_EQ(approved.Json()["approval"]["approved_by"], "bob");

  // follow=true streams until the run completes: no polling in the test either.
  auto c = RawConn::Tcp(port_);
  ASSERT_TRUE(c.has_value());
  ASSERT_TRUE(c->Send(MakeRequest("GET", "/v1/runs/" + id + "/logs?stream=stdout&follow=true",
                                  {{"x-api-key", kAlice}})));
  auto logs = ReadReply(*c);
  ASSERT_TRUE(logs.has_value());
  EXPECT_EQ(logs->status, 200);
  EXPECT_EQ(logs->body, "hello\n");

  auto run = Call("GET", "/v1/runs/" + id, kAlice).Json();
  EXPECT_EQ(run["state"], "SUCCEEDED");
  EXPECT_EQ(run["result"]["exit_code"], 0);
  EXPECT_EQ(run["labels"]["team"], "ci");
  EXPECT_EQ(Call("GET", "/v1/runs/" + id + "/logs?stream=stderr", kAlice).body, "err\n");
  EXPECT_EQ(Call("GET", "/v1/runs/" + id + "/logs?stream=all&tail=1", kAlice).body.size(), 4u);
  // Terminal now: approving again is a conflict.
  EXPECT_EQ(Call("POST", "/v1/runs/" + id + ":approve", kBob).status, 409);
  // Filter by label and state.
  auto list = Call("GET", "/v1/runs?state=SUCCEEDED&label=team=ci", kAlice).Json();
  ASSERT_EQ(list["runs"].size(), 1u);

  // The events, replayed over a WebSocket from the start: strictly increasing seq, ending with
  // run.completed, after which the server closes.
  auto ws = RawConn::Tcp(port_);
  ASSERT_TRUE(ws.has_value());
  ASSERT_TRUE(ws->Send(MakeWsUpgrade("/v1/runs/" + id + "/events?after=0", {{"x-api-key", kAlice}})));
  auto head = api::testing::ReadHead(*ws);
  ASSERT_TRUE(head.has_value());
  ASSERT_EQ(head->status, 101);
  int64_t last = 0;
  std::string last_type;
  for (int i = 0; i < 100; ++i) {
    auto f = WsReadFrame(*ws);
    ASSERT_TRUE(f.has_value());
    if (f->opcode == 8) break;
    auto j = nlohmann::json::parse(f->payload);
    EXPECT_EQ(j["seq"].get<int64_t>(), last + 1);
    last = j["seq"];
    last_type = j["type"];
    EXPECT_EQ(j["run_id"], id);
  }
  EXPECT_EQ(last_type, "run.completed");
  EXPECT_GE(last, 8);

  // The audit trail, for reviewers.
  auto audit = Call("GET", "/v1/audit?run_id=" + id, kBob);
  ASSERT_EQ(audit.status, 200);
  EXPECT_GE(audit.Json()["records"].size(), 5u);
}

TEST_P(ServeApiTest, SubmittersSeeOnlyTheirOwnRunsAndNobodySeesEnvValues) {
  // Alice's run carries a secret in its env and prints it.
  nlohmann::json body = {{"argv", {"/bin/sh", "-c", "echo \"token=$TOKEN\""}},
                         {"env", {{"TOKEN", "s3cret-value"}}}};
  auto created = Call("POST", "/v1/runs", kAlice, body.dump());
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = created.Json()["id"];
  EXPECT_EQ(created.Json()["env"]["TOKEN"], api::kRedacted);
  EXPECT_EQ(created.body.find("s3cret-value"), std::string::npos) << created.body;
  ASSERT_EQ(Call("POST", "/v1/runs/" + id + ":approve", kBob).status, 200);
  Follow(id);
  EXPECT_EQ(Call("GET", "/v1/runs/" + id + "/logs", kAlice).body, "token=s3cret-value\n");
  // Nobody reads the value back through the API, the owner and a reviewer included.
  for (const char* key : {kAlice, kBob, kAdmin}) {
    auto got = Call("GET", "/v1/runs/" + id, key);
    ASSERT_EQ(got.status, 200) << got.body;
    EXPECT_EQ(got.body.find("s3cret-value"), std::string::npos) << got.body;
    EXPECT_EQ(got.Json()["env"]["TOKEN"], api::kRedacted);
    auto listed = Call("GET", "/v1/runs", key);
    EXPECT_EQ(listed.body.find("s3cret-value"), std::string::npos) << listed.body;
  }

  // Carol, another submitter, learns nothing of it: not even that it exists.
  const std::string none = "/v1/runs/run_nosuchrun00000000000";
  for (const std::string suffix : {"", "/logs", "/logs?follow=true", "/artifacts",
                                   "/artifacts/report.md", "/artifacts/audit.json"}) {
    auto theirs = Call("GET", "/v1/runs/" + id + suffix, kCarol);
    EXPECT_EQ(theirs.status, 404) << suffix << " " << theirs.body;
    EXPECT_EQ(theirs.body.find("s3cret"), std::string::npos) << suffix;
    // Answered exactly as a run that does not exist, word for word but for the id.
    auto missing = Call("GET", none + suffix, kCarol);
    EXPECT_EQ(theirs.status, missing.status) << suffix;
    EXPECT_EQ(theirs.ErrorCode(), missing.ErrorCode()) << suffix;
    std::string masked = missing.body;
    for (size_t at; (at = masked.find("run_nosuchrun00000000000")) != std::string::npos;) {
      masked.replace(at, 24, id);
    }
    EXPECT_EQ(theirs.body, masked) << suffix;
  }
  EXPECT_EQ(Call("POST", "/v1/runs/" + id + ":cancel", kCarol).status, 404);
  EXPECT_TRUE(Call("GET", "/v1/runs", kCarol).Json()["runs"].empty());
  EXPECT_TRUE(Call("GET", "/v1/runs?state=SUCCEEDED", kCarol).Json()["runs"].empty());
  int status = 0;
  EXPECT_FALSE(OpenWs("/v1/runs/" + id + "/events?after=0", kCarol, &status));
  EXPECT_EQ(status, 404);

  // Carol's own run: she sees it, and her stream of every run's events carries hers alone.
  auto mine = Call("POST", "/v1/runs", kCarol, R"({"argv": ["/bin/echo", "carol"]})");
  ASSERT_EQ(mine.status, 201) << mine.body;
  const std::string carol_id = mine.Json()["id"];
  ASSERT_EQ(Call("POST", "/v1/runs/" + carol_id + ":approve", kBob).status, 200);
  const size_t carol_events = Follow(carol_id, 0, kCarol).size();
  const size_t alice_events = Follow(id).size();
  ASSERT_GT(carol_events, 3u);
  auto listed = Call("GET", "/v1/runs", kCarol).Json()["runs"];
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["id"], carol_id);
  EXPECT_EQ(Call("GET", "/v1/runs", kAlice).Json()["runs"].size(), 1u);
  EXPECT_EQ(Call("GET", "/v1/runs", kBob).Json()["runs"].size(), 2u);
  auto every = [&](const char* key, size_t count) {
    int st = 0;
    auto ws = OpenWs("/v1/events?after=0", key, &st);
    EXPECT_EQ(st, 101);
    return ws ? ReadEvents(*ws, count) : std::vector<nlohmann::json>{};
  };
  // A reviewer's stream holds both runs, Alice's first: read all of it, so Carol's stream,
  // read after, has had every event it could carry.
  auto reviewer = every(kBob, alice_events + carol_events);
  ASSERT_EQ(reviewer.size(), alice_events + carol_events);
  EXPECT_EQ(reviewer.front()["run_id"], id);
  auto carols = every(kCarol, carol_events);
  ASSERT_EQ(carols.size(), carol_events);
  for (const auto& e : carols) EXPECT_EQ(e["run_id"], carol_id) << e.dump();
  EXPECT_EQ(carols.back()["type"], "run.completed");
  // Live as well: Alice submits first, then Carol; the first event Carol's open stream carries
  // is her own run's.
  int st = 0;
  auto ws = OpenWs("/v1/events?after=" + carols.back()["cursor"].dump(), kCarol, &st);
  ASSERT_TRUE(ws);
  ASSERT_EQ(Call("POST", "/v1/runs", kAlice, R"({"argv": ["/bin/true"]})").status, 201);
  auto next = Call("POST", "/v1/runs", kCarol, R"({"argv": ["/bin/true"]})");
  ASSERT_EQ(next.status, 201);
  auto after = ReadEvents(*ws, 1);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0]["run_id"], next.Json()["id"]);
}

TEST_P(ServeApiTest, WorkspaceRootsPerKeyAndRootOwnedCopyOnWrite) {
  const std::string roots = dir_ + "/roots";
  std::filesystem::create_directories(roots + "/carol/proj");
  std::filesystem::create_directories(roots + "/shared");
  ASSERT_EQ(::chown((roots + "/carol/proj").c_str(), 1234, 1234), 0);
  ASSERT_EQ(::chown((roots + "/shared").c_str(), 1234, 1234), 0);
  // Carol's key may name workspaces under roots/carol only; Alice's anywhere under roots.
  config_.api_keys = {{"carol", supervisor::Role::kSubmitter, "", {roots + "/carol"}}};
  auto submit = [&](const char* key, const std::string& path, const std::string& mode) {
    nlohmann::json b = {{"argv", {"/bin/true"}}, {"workspace", {{"path", path}, {"mode", mode}}}};
    return Call("POST", "/v1/runs", key, b.dump());
  };
  auto outside = submit(kCarol, roots + "/shared", "ro");
  EXPECT_EQ(outside.status, 403) << outside.body;
  EXPECT_NE(outside.body.find("carol"), std::string::npos) << outside.body;
  EXPECT_EQ(submit(kCarol, roots + "/carol/proj", "ro").status, 201);
  EXPECT_EQ(submit(kAlice, roots + "/shared", "ro").status, 201);
  // A directory of root's, copy-on-write: its root-owned files would become the sandbox's.
  std::filesystem::create_directories(roots + "/rootown");
  { std::ofstream(roots + "/rootown/secret") << "root's\n"; }
  ::chmod((roots + "/rootown/secret").c_str(), 0600);
  auto cow = submit(kAlice, roots + "/rootown", "cow");
  EXPECT_EQ(cow.status, 403) << cow.body;
  EXPECT_NE(cow.body.find("owned by root"), std::string::npos) << cow.body;
  EXPECT_EQ(submit(kAlice, roots + "/rootown", "ro").status, 201);
  EXPECT_EQ(submit(kAlice, roots + "/shared", "cow").status, 201);
  // Refused submissions stored nothing.
  EXPECT_EQ(Call("GET", "/v1/runs", kBob).Json()["runs"].size(), 4u);
}

TEST_P(ServeApiTest, ARunsCgroupNamespaceShowsNoHostPath) {
  // Runs of the default shape start in a warm sandbox, the others in a fresh one: both read "/"
  // for every hierarchy of /proc/self/cgroup.
  for (const char* limits : {"{}", R"({"memory": "300m"})"}) {
    std::string id = SubmitApproved(
        std::string(R"({"argv": ["/bin/cat", "/proc/self/cgroup"], "limits": )") + limits + "}");
    Follow(id);
    auto run = Call("GET", "/v1/runs/" + id, kAlice).Json();
    ASSERT_EQ(run["state"], "SUCCEEDED") << run.dump();
    // The run says which layers its sandbox had, warm or fresh alike.
    const auto& iso = run["result"]["isolation"];
    ASSERT_TRUE(iso.is_object()) << run.dump();
    EXPECT_EQ(iso["namespaces"], nlohmann::json({"user", "pid", "mount", "ipc", "uts", "cgroup",
                                                 "network"}))
        << iso.dump();
    EXPECT_EQ(iso["network"], "none");
    EXPECT_EQ(iso["seccomp_profile"], "default");
    EXPECT_EQ(iso["capabilities"], "none");
    EXPECT_EQ(iso["no_new_privs"], true);
    // ?timeline=true: every phase, in order, each timed.
    EXPECT_FALSE(run["result"].contains("timeline"));
    auto timed = Call("GET", "/v1/runs/" + id + "?timeline=true", kAlice).Json();
    std::vector<std::string> phases;
    int64_t total_us = 0;
    for (const auto& p : timed["result"]["timeline"]) {
      phases.push_back(p["phase"]);
      EXPECT_GE(p["us"].get<int64_t>(), 0) << p.dump();
      total_us += p["us"].get<int64_t>();
    }
    EXPECT_EQ(phases, (std::vector<std::string>{"queued", "start", "dir_and_logs",
                                                "choose_backend", "workspace", "create_sandbox",
                                                "steps", "release_sandbox", "take_outputs",
                                                "settle_cancel"}))
        << timed.dump();
    EXPECT_GT(total_us, 0);
    EXPECT_EQ(Call("GET", "/v1/runs/" + id + "?timeline=yes", kAlice).status, 400);
    std::string out = Call("GET", "/v1/runs/" + id + "/logs?stream=stdout", kAlice).body;
    std::istringstream in(out);
    int lines = 0;
    for (std::string line; std::getline(in, line); ++lines) {
      EXPECT_TRUE(line.ends_with(":/")) << limits << ": " << line << "\n" << out;
    }
    EXPECT_GE(lines, 1) << out;
  }
}

TEST_P(ServeApiTest, CancelAndReject) {
  auto a = Call("POST", "/v1/runs", kAlice, R"({"argv": ["/bin/sleep", "100"]})").Json();
  auto r = Call("POST", "/v1/runs/" + a["id"].get<std::string>() + ":reject", kBob,
                R"({"reason": "too slow"})");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Json()["state"], "CANCELLED");
  EXPECT_EQ(r.Json()["result"]["reason"], "rejected: too slow");
  auto b = Call("POST", "/v1/runs", kAlice, R"({"argv": ["/bin/true"]})").Json();
  auto c = Call("POST", "/v1/runs/" + b["id"].get<std::string>() + ":cancel", kAlice);
  EXPECT_EQ(c.status, 202);
  EXPECT_EQ(c.Json()["state"], "CANCELLED");
}

TEST_P(ServeApiTest, ArtifactsAreListedWithChecksumsAndHostileNamesAreRefused) {
  std::string id = SubmitApproved(R"({"argv": ["/bin/sh", "-c", "echo report-me; exit 3"]})");
  auto events = Follow(id);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["type"], "run.completed");
  // Resuming at or past run.completed of a finished run: the server closes at once.
  for (int64_t past : {events.back()["seq"].get<int64_t>(), int64_t{1000000}}) {
    int st = 0;
    auto ws = OpenWs("/v1/runs/" + id + "/events?after=" + std::to_string(past), kAlice, &st);
    ASSERT_TRUE(ws) << st;
    ws->SetTimeout(std::chrono::seconds(5));
    auto f = api::testing::WsReadFrame(*ws);
    ASSERT_TRUE(f) << "no close within 5 s after=" << past;
    EXPECT_EQ(f->opcode, 8);
  }
  std::set<std::string> announced;
  for (const auto& e : events) {
    if (e["type"] == "artifact.created") announced.insert(e["name"].get<std::string>());
  }
  EXPECT_EQ(announced, (std::set<std::string>{"diff.patch", "report.md", "audit.json"}));

  auto list = Call("GET", "/v1/runs/" + id + "/artifacts", kAlice);
  ASSERT_EQ(list.status, 200) << list.body;
  std::map<std::string, nlohmann::json> by_name;
  const nlohmann::json listed = list.Json();
  for (const auto& a : listed["artifacts"]) by_name[a["name"].get<std::string>()] = a;
  ASSERT_EQ(by_name.size(), 3u) << list.body;
  for (const auto& [name, a] : by_name) {
    auto got = Call("GET", "/v1/runs/" + id + "/artifacts/" + name, kAlice);
    ASSERT_EQ(got.status, 200) << name;
    EXPECT_EQ(got.body.size(), a["size"].get<uint64_t>()) << name;
    EXPECT_EQ(Sha256Hex(got.body), a["sha256"]) << name;
  }
  EXPECT_EQ(by_name["diff.patch"]["size"], 0);
  std::string report = Call("GET", "/v1/runs/" + id + "/artifacts/report.md", kAlice).body;
  EXPECT_NE(report.find("# Run " + id), std::string::npos) << report;
  EXPECT_NE(report.find("**FAILED**"), std::string::npos) << report;
  EXPECT_NE(report.find("exit code 3"), std::string::npos) << report;
  EXPECT_NE(report.find("Approved by `bob`"), std::string::npos) << report;
  EXPECT_NE(report.find("report-me"), std::string::npos) << report;
  auto audit = nlohmann::json::parse(
      Call("GET", "/v1/runs/" + id + "/artifacts/audit.json", kAlice).body);
  EXPECT_EQ(audit["run_id"], id);
  EXPECT_GE(audit["events"].size(), 8u);
  EXPECT_GE(audit["audit"].size(), 4u);

  // Hostile names: 400 before any file is touched, or 404; never a file outside the run.
  for (const char* bad : {"../../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd",
                          "files/../../db.sqlite", "..%2fstdout", "a%00b"}) {
    auto r = Call("GET", "/v1/runs/" + id + "/artifacts/" + bad, kAlice);
    EXPECT_EQ(r.status, 400) << bad << " " << r.body;
    EXPECT_FALSE(r.ErrorCode().empty()) << bad;
  }
  const std::pair<const char*, int> absent[] = {
      {"nope.txt", 404}, {"files/x", 404}, {"report.md/x", 404}, {"%2Fetc%2Fpasswd", 400}};
  for (const auto& [missing, status] : absent) {
    auto r = Call("GET", "/v1/runs/" + id + "/artifacts/" + missing, kAlice);
    EXPECT_EQ(r.status, status) << missing << " " << r.body;
  }
  EXPECT_EQ(Call("GET", "/v1/runs/run_nosuchrun00000000000/artifacts", kAlice).status, 404);
}

// An artifact larger than a MiB is streamed (no Content-Length, chunked) and arrives whole: the
// daemon never holds it in memory, and there is no size past which it refuses to send one.
TEST_P(ServeApiTest, LargeArtifactsAreStreamedWhole) {
  std::string id = SubmitApproved(
      R"({"argv": ["/bin/sh", "-c", "head -c 3000000 /dev/urandom > /artifacts/big.bin"]})");
  Follow(id);
  auto list = Call("GET", "/v1/runs/" + id + "/artifacts", kAlice);
  ASSERT_EQ(list.status, 200) << list.body;
  nlohmann::json big;
  const nlohmann::json listed = list.Json();
  for (const auto& a : listed["artifacts"]) {
    if (a["name"] == "files/big.bin") big = a;
  }
  ASSERT_TRUE(big.is_object()) << list.body;
  EXPECT_EQ(big["size"], 3000000);
  auto got = Call("GET", "/v1/runs/" + id + "/artifacts/files/big.bin", kAlice);
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.Header("Content-Length"), "");
  EXPECT_EQ(got.body.size(), 3000000u);
  EXPECT_EQ(Sha256Hex(got.body), big["sha256"]);
  // A small one keeps its Content-Length.
  auto report = Call("GET", "/v1/runs/" + id + "/artifacts/report.md", kAlice);
  EXPECT_EQ(report.Header("Content-Length"), std::to_string(report.body.size()));
}

TEST_P(ServeApiTest, EveryRunsEventsReplayFromACursor) {
  std::string a = SubmitApproved(R"({"argv": ["/bin/echo", "one"]})");
  Follow(a);
  std::string b = SubmitApproved(R"({"argv": ["/bin/echo", "two"]})");
  Follow(b);
  auto read_all = [&](int64_t after, size_t count) {
    auto ws = RawConn::Tcp(port_);
    EXPECT_TRUE(ws.has_value());
    EXPECT_TRUE(ws->Send(MakeWsUpgrade("/v1/events?after=" + std::to_string(after),
                                       {{"x-api-key", kAlice}})));
    auto head = api::testing::ReadHead(*ws);
    EXPECT_TRUE(head.has_value() && head->status == 101);
    return ReadEvents(*ws, count);  // the stream stays open: read what is known
  };
  auto total_a = Follow(a).size(), total_b = Follow(b).size();
  auto all = read_all(0, total_a + total_b);
  ASSERT_EQ(all.size(), total_a + total_b);
  int64_t last = 0;
  for (const auto& e : all) {
    EXPECT_GT(e["cursor"].get<int64_t>(), last);
    last = e["cursor"];
  }
  EXPECT_EQ(all.front()["run_id"], a);
  EXPECT_EQ(all.back()["run_id"], b);
  EXPECT_EQ(all.back()["type"], "run.completed");
  // A client that reconnects after the 5th event gets exactly the rest.
  int64_t resume = all[4]["cursor"];
  auto rest = read_all(resume, all.size() - 5);
  ASSERT_EQ(rest.size(), all.size() - 5);
  for (size_t i = 0; i < rest.size(); ++i) EXPECT_EQ(rest[i], all[i + 5]);

  // "From now": the list and the info name the cursor they were read at (the last event so
  // far), and a stream from there carries none of the history, only what comes next.
  auto listed = Call("GET", "/v1/runs", kAlice);
  ASSERT_EQ(listed.status, 200);
  EXPECT_EQ(listed.Json()["events_after"], last);
  EXPECT_EQ(Call("GET", "/v1/info", kAlice).Json()["events_after"], last);
  auto ws = RawConn::Tcp(port_);
  ASSERT_TRUE(ws.has_value());
  ASSERT_TRUE(ws->Send(MakeWsUpgrade(
      "/v1/events?after=" + listed.Json()["events_after"].dump(), {{"x-api-key", kAlice}})));
  auto head = api::testing::ReadHead(*ws);
  ASSERT_TRUE(head.has_value() && head->status == 101);
  std::string c = SubmitApproved(R"({"argv": ["/bin/echo", "three"]})");
  auto next = ReadEvents(*ws, 1);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0]["run_id"], c);
  EXPECT_GT(next[0]["cursor"].get<int64_t>(), last);
}

TEST_P(ServeApiTest, LogsAreBinarySafeAndTimestamped) {
  std::string id = SubmitApproved(
      R"({"argv": ["/bin/sh", "-c", "printf 'a\\377b\\n'; echo line2; echo oops >&2"]})");
  auto events = Follow(id);
  std::string from_events;
  for (const auto& e : events) {
    if (e["type"] != "step.log" || e["stream"] != "stdout") continue;
    EXPECT_GT(e["ts"].get<int64_t>(), 0);
    if (e.contains("data")) {
      from_events += e["data"].get<std::string>();
    } else {
      ASSERT_TRUE(e.contains("data_b64")) << e.dump();
      from_events += supervisor::Base64Decode(e["data_b64"].get<std::string>());
    }
  }
  EXPECT_EQ(from_events, "a\xff" "b\nline2\n");
  EXPECT_EQ(Call("GET", "/v1/runs/" + id + "/logs?stream=stdout", kAlice).body,
            "a\xff" "b\nline2\n");
  auto ts = Call("GET", "/v1/runs/" + id + "/logs?stream=all&timestamps=true", kAlice).body;
  // Every line starts with an RFC 3339 UTC timestamp.
  size_t lines = 0;
  for (size_t pos = 0; pos < ts.size(); ++lines) {
    std::string_view line(ts.data() + pos, std::min(ts.find('\n', pos), ts.size()) - pos);
    ASSERT_GE(line.size(), 25u) << ts;
    EXPECT_EQ(line[4], '-');
    EXPECT_EQ(line[10], 'T');
    EXPECT_EQ(line.substr(23, 2), "Z ") << line;
    pos += line.size() + 1;
  }
  EXPECT_EQ(lines, 3u) << ts;
  EXPECT_EQ(Call("GET", "/v1/runs/" + id + "/logs?timestamps=maybe", kAlice).status, 400);
}

// /logs without follow is what there is now, streamed: a log of many chunks arrives whole, its
// tail is its last lines (none for tail=0, also without a final newline), and a run still
// going gives its output so far rather than a response that waits for the run to end.
TEST_P(ServeApiTest, LogsOfManyChunksAreStreamedAndTailed) {
  std::string id =
      SubmitApproved(R"({"argv": ["/bin/sh", "-c", "seq 1 300000; printf no-newline >&2"],)"
                     R"( "limits": {"output_bytes": 4000000}})");
  Follow(id);
  std::string expected;
  for (int i = 1; i <= 300000; ++i) expected += std::to_string(i) + "\n";
  auto whole = Call("GET", "/v1/runs/" + id + "/logs?stream=stdout", kAlice);
  ASSERT_EQ(whole.status, 200);
  EXPECT_TRUE(whole.body == expected) << whole.body.size() << " bytes";
  EXPECT_EQ(Call("GET", "/v1/runs/" + id + "/logs?stream=stdout&tail=3", kAlice).body,
            "299998\n299999\n300000\n");
  EXPECT_EQ(Call("GET", "/v1/runs/" + id + "/logs?stream=stdout&tail=0", kAlice).body, "");
  EXPECT_EQ(Call("GET", "/v1/runs/" + id + "/logs?stream=stderr&tail=0", kAlice).body, "");
  EXPECT_EQ(Call("GET", "/v1/runs/" + id + "/logs?stream=stderr&tail=1", kAlice).body,
            "no-newline");
  auto all = Call("GET", "/v1/runs/" + id + "/logs?stream=all", kAlice).body;
  EXPECT_EQ(all.size(), expected.size() + 10);

  std::string running = SubmitApproved(R"({"argv": ["/bin/sh", "-c", "echo first; sleep 100"]})");
  auto ws = RawConn::Tcp(port_);
  ASSERT_TRUE(ws.has_value());
  ASSERT_TRUE(ws->Send(MakeWsUpgrade("/v1/runs/" + running + "/events", {{"x-api-key", kAlice}})));
  ASSERT_TRUE(api::testing::ReadHead(*ws).has_value());
  for (;;) {
    auto f = WsReadFrame(*ws);
    ASSERT_TRUE(f.has_value());
    if (nlohmann::json::parse(f->payload)["type"] == "step.log") break;
  }
  EXPECT_EQ(Call("GET", "/v1/runs/" + running + "/logs", kAlice).body, "first\n");
  EXPECT_EQ(Call("GET", "/v1/runs/" + running + "/logs?tail=5", kAlice).body, "first\n");
  EXPECT_EQ(Call("POST", "/v1/runs/" + running + ":cancel", kAlice).status, 202);
}

// ?format=binary: step.log events arrive as binary messages (header line, newline, the bytes as
// written), bigger than the default pipe's 64 KiB, in order, and complete; the rest stays JSON.
TEST_P(ServeApiTest, BinaryEventFormatCarriesLogBytesVerbatim) {
  std::string id = SubmitApproved(
      R"({"argv": ["/bin/sh", "-c", "head -c 3000000 /dev/urandom; echo done >&2"],)"
      R"( "limits": {"output_bytes": 4000000}})");
  auto bad = RawConn::Tcp(port_);
  ASSERT_TRUE(bad.has_value());
  ASSERT_TRUE(bad->Send(MakeWsUpgrade("/v1/runs/" + id + "/events?format=xml",
                                      {{"x-api-key", kAlice}})));
  auto bad_head = api::testing::ReadHead(*bad);
  ASSERT_TRUE(bad_head.has_value());
  EXPECT_EQ(bad_head->status, 400);

  auto ws = RawConn::Tcp(port_);
  ASSERT_TRUE(ws.has_value());
  ASSERT_TRUE(ws->Send(MakeWsUpgrade("/v1/runs/" + id + "/events?after=0&format=binary",
                                     {{"x-api-key", kAlice}})));
  auto head = api::testing::ReadHead(*ws);
  ASSERT_TRUE(head.has_value() && head->status == 101);
  std::string out, err;
  int64_t last_seq = 0, binary_messages = 0;
  bool completed = false;
  for (;;) {
    auto f = WsReadFrame(*ws);
    if (!f || f->opcode == 8) break;
    nlohmann::json e;
    if (f->opcode == 2) {
      ++binary_messages;
      size_t nl = f->payload.find('\n');
      ASSERT_NE(nl, std::string::npos);
      e = nlohmann::json::parse(f->payload.substr(0, nl));
      EXPECT_EQ(e["type"], "step.log");
      EXPECT_FALSE(e.contains("data") || e.contains("data_b64")) << e.dump();
      EXPECT_EQ(e["length"].get<size_t>(), f->payload.size() - nl - 1);
      (e["stream"] == "stdout" ? out : err) += f->payload.substr(nl + 1);
    } else {
      ASSERT_EQ(f->opcode, 1);
      e = nlohmann::json::parse(f->payload);
      EXPECT_NE(e["type"], "step.log");
      if (e["type"] == "run.completed") completed = true;
    }
    EXPECT_GT(e["seq"].get<int64_t>(), last_seq);
    last_seq = e["seq"].get<int64_t>();
  }
  EXPECT_TRUE(completed);
  EXPECT_GE(binary_messages, 2);
  EXPECT_EQ(out.size(), 3000000u);
  EXPECT_EQ(out, Call("GET", "/v1/runs/" + id + "/logs?stream=stdout", kAlice).body);
  EXPECT_EQ(err, "done\n");
}

TEST_P(ServeApiTest, PolicyEvaluateAnswersWithoutRunningAnything) {
  auto p = policy::CommandPolicy::LoadText("rules:\n  \"*\": review\n  \"git *\": allow\n",
                                           "api-test.yaml");
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  runs_->SetCommandPolicy(*p);
  auto allow = Call("POST", "/v1/policy:evaluate", kAlice, R"({"argv": ["git", "status"]})");
  ASSERT_EQ(allow.status, 200) << allow.body;
  EXPECT_EQ(allow.Json()["decision"], "allow");
  EXPECT_EQ(allow.Json()["rule"]["line"], 3);
  EXPECT_EQ(allow.Json()["rule"]["pattern"], "git *");
  auto deny = Call("POST", "/v1/policy:evaluate", kAlice, R"({"command": "ls; rm -rf /"})");
  ASSERT_EQ(deny.status, 200) << deny.body;
  EXPECT_EQ(deny.Json()["decision"], "deny");
  EXPECT_EQ(deny.Json()["risk"], "high");
  auto review = Call("POST", "/v1/policy:evaluate", kAlice, R"({"argv": ["make"]})");
  EXPECT_EQ(review.Json()["decision"], "review");
  EXPECT_EQ(Call("POST", "/v1/policy:evaluate", kAlice, R"({"argv": "git"})").status, 400);
  EXPECT_EQ(Call("POST", "/v1/policy:evaluate", kAlice, R"({})").status, 400);
  EXPECT_EQ(Call("POST", "/v1/policy:evaluate", kAlice, R"({"argv": ["ls"], "x": 1})").status, 400);
  EXPECT_EQ(Call("POST", "/v1/policy:evaluate", nullptr, R"({"argv": ["ls"]})").status, 401);
  // Nothing was submitted.
  EXPECT_TRUE(Call("GET", "/v1/runs", kAlice).Json()["runs"].empty());
}

TEST_P(ServeApiTest, WorkspacesCopyOnWriteReadOnlyAndArtifactsFromTheSandbox) {
  const std::string proj = dir_ + "/roots/proj";
  std::filesystem::create_directories(proj);
  {
    std::ofstream(proj + "/a.txt") << "one\n";
    std::ofstream(proj + "/gone.txt") << "bye\n";
  }
  ASSERT_EQ(::chown(proj.c_str(), 1234, 1234), 0);
  ASSERT_EQ(::chown((proj + "/a.txt").c_str(), 1234, 1234), 0);
  ASSERT_EQ(::chown((proj + "/gone.txt").c_str(), 1234, 1234), 0);

  nlohmann::json body = {
      {"argv", {"/bin/sh", "-c",
                "echo two >> /workspace/a.txt && echo new > /workspace/b.txt && "
                "rm /workspace/gone.txt && echo art > /artifacts/out.txt && "
                "mkdir /artifacts/sub && echo deep > /artifacts/sub/x && "
                "ln -s /etc/shadow /artifacts/link"}},
      {"workspace", {{"path", proj}, {"mode", "cow"}}}};
  std::string id = SubmitApproved(body.dump());
  auto events = Follow(id);
  auto run = Call("GET", "/v1/runs/" + id, kAlice).Json();
  ASSERT_EQ(run["state"], "SUCCEEDED") << run.dump();
  EXPECT_EQ(run["workspace"]["mode"], "cow");
  // The host directory never changed.
  EXPECT_EQ(*ReadFile(proj + "/a.txt"), "one\n");
  EXPECT_TRUE(std::filesystem::exists(proj + "/gone.txt"));
  EXPECT_FALSE(std::filesystem::exists(proj + "/b.txt"));
  // The diff says what the run changed.
  std::string diff = Call("GET", "/v1/runs/" + id + "/artifacts/diff.patch", kAlice).body;
  EXPECT_NE(diff.find("diff --git a/a.txt b/a.txt"), std::string::npos) << diff;
  EXPECT_NE(diff.find("+two"), std::string::npos) << diff;
  EXPECT_NE(diff.find("new file mode"), std::string::npos) << diff;
  EXPECT_NE(diff.find("deleted file mode"), std::string::npos) << diff;
  // Files from /artifacts, with checksums; the symlink was not followed nor kept.
  auto listed = Call("GET", "/v1/runs/" + id + "/artifacts", kAlice).Json();
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& a : listed["artifacts"]) by_name[a["name"].get<std::string>()] = a;
  ASSERT_TRUE(by_name.count("files/out.txt")) << listed.dump();
  EXPECT_EQ(by_name["files/out.txt"]["sha256"], Sha256Hex("art\n"));
  EXPECT_EQ(Call("GET", "/v1/runs/" + id + "/artifacts/files/sub/x", kAlice).body, "deep\n");
  EXPECT_FALSE(by_name.count("files/link"));
  EXPECT_EQ(Call("GET", "/v1/runs/" + id + "/artifacts/files/link", kAlice).status, 404);

  // Read-only: the same writes fail, and the host is untouched.
  nlohmann::json ro = {{"argv", {"/bin/sh", "-c", "cat /workspace/a.txt; echo x >> /workspace/a.txt"}},
                       {"workspace", proj}};
  std::string ro_id = SubmitApproved(ro.dump());
  Follow(ro_id);
  auto ro_run = Call("GET", "/v1/runs/" + ro_id, kAlice).Json();
  EXPECT_EQ(ro_run["state"], "FAILED");
  EXPECT_EQ(Call("GET", "/v1/runs/" + ro_id + "/logs?stream=stdout", kAlice).body, "one\n");
  EXPECT_EQ(*ReadFile(proj + "/a.txt"), "one\n");

  // Hostile or unknown paths are refused at submission and nothing is stored.
  std::filesystem::create_symlink("/etc", dir_ + "/roots/etc-link");
  // Each with its own answer: a malformed path 400, one outside the roots or through a link
  // 403, a missing directory 404.
  const std::pair<std::string, int> hostile[] = {
      {dir_ + "/roots/../roots/proj", 400}, {"/etc", 403},           {dir_ + "/roots/etc-link", 403},
      {dir_ + "/roots/missing", 404},       {"relative/path", 400}, {dir_ + "/roots2", 403}};
  for (const auto& [bad, status] : hostile) {
    nlohmann::json b = {{"argv", {"/bin/true"}}, {"workspace", bad}};
    auto r = Call("POST", "/v1/runs", kAlice, b.dump());
    EXPECT_EQ(r.status, status) << bad << " " << r.body;
  }
  auto mode = Call("POST", "/v1/runs", kAlice,
                   nlohmann::json{{"argv", {"/bin/true"}},
                                  {"workspace", {{"path", proj}, {"mode", "rw"}}}}
                       .dump());
  EXPECT_EQ(mode.status, 400);
  EXPECT_EQ(Call("GET", "/v1/runs", kAlice).Json()["runs"].size(), 2u);
  // No run's mount is left (the warm sandboxes waiting under data/warm have theirs).
  std::ifstream mounts("/proc/self/mountinfo");
  for (std::string line; std::getline(mounts, line);) {
    EXPECT_EQ(line.find(dir_ + "/data/runs/"), std::string::npos) << line;
  }
}

// Two reviewers for this policy: each approval carries a comment and the plan it saw; the run
// shows what it still needs, and queues on the second.
TEST_P(ServeApiTest, ApprovalsNeedDistinctReviewersCommentsAndThePlanSeen) {
  std::ofstream(config_.policy_dir + "/commands.yaml")
      << "rules:\n  \"*\": review\nreview:\n  approvals: {low: 2, medium: 2, high: 2}\n"
         "  expire_after_s: 3600\n";
  ASSERT_EQ(Call("POST", "/v1/policies:reload", kAdmin).status, 200);
  auto created = Call("POST", "/v1/runs", kAlice, R"({"argv": ["/bin/echo", "two"]})");
  ASSERT_EQ(created.status, 201) << created.body;
  auto run = created.Json();
  const std::string id = run["id"];
  const std::string plan = run["plan_sha256"];
  EXPECT_EQ(plan.size(), 64u);
  EXPECT_EQ(run["review"]["approvals_required"], 2);
  EXPECT_EQ(run["review"]["approvals"], nlohmann::json::array());
  EXPECT_GT(run["review"]["expires_at_ms"].get<int64_t>(), run["created_at_ms"].get<int64_t>());
  EXPECT_TRUE(run["approval"].is_null());

  // Malformed approvals change nothing.
  EXPECT_EQ(Call("POST", "/v1/runs/" + id + ":approve", kBob, R"({"comment": 7})").status, 400);
  EXPECT_EQ(Call("POST", "/v1/runs/" + id + ":approve", kBob, R"({"vote": "yes"})").status, 400);
  EXPECT_EQ(Call("POST", "/v1/runs/" + id + ":approve", kBob, "[1]").status, 400);
  auto other_plan = Call("POST", "/v1/runs/" + id + ":approve", kBob,
                         nlohmann::json{{"plan_sha256", std::string(64, 'a')}}.dump());
  EXPECT_EQ(other_plan.status, 409) << other_plan.body;
  EXPECT_TRUE(Call("GET", "/v1/runs/" + id, kAlice).Json()["review"]["approvals"].empty());

  auto first = Call("POST", "/v1/runs/" + id + ":approve", kBob,
                    nlohmann::json{{"comment", "read it"}, {"plan_sha256", plan}}.dump());
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.Json()["state"], "AWAITING_REVIEW");
  EXPECT_TRUE(first.Json()["approval"].is_null());
  ASSERT_EQ(first.Json()["review"]["approvals"].size(), 1u);
  EXPECT_EQ(first.Json()["review"]["approvals"][0]["by"], "bob");
  EXPECT_EQ(first.Json()["review"]["approvals"][0]["comment"], "read it");
  auto twice = Call("POST", "/v1/runs/" + id + ":approve", kBob);
  EXPECT_EQ(twice.status, 409) << twice.body;
  EXPECT_NE(twice.body.find("1 more"), std::string::npos) << twice.body;

  auto second = Call("POST", "/v1/runs/" + id + ":approve", kAdmin,
                     nlohmann::json{{"comment", "fine"}}.dump());
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_EQ(second.Json()["approval"]["approved_by"], "ada");
  EXPECT_EQ(second.Json()["review"]["approvals"].size(), 2u);
  auto events = Follow(id);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["type"], "run.completed");
  EXPECT_EQ(Call("GET", "/v1/runs/" + id, kAlice).Json()["state"], "SUCCEEDED");
  // The vote shows in the run's events: approvals 1 of 2 while it waited.
  bool vote_seen = false;
  for (const auto& e : events) {
    if (e["type"] == "run.status" && e.value("approvals", 0) == 1) {
      vote_seen = e["approvals_required"] == 2 && e["state"] == "AWAITING_REVIEW";
    }
  }
  EXPECT_TRUE(vote_seen);
}

TEST_P(ServeApiTest, PoliciesReloadAtomicallyAndABrokenFileChangesNothing) {
  const std::string file = config_.policy_dir + "/commands.yaml";
  std::ofstream(file) << "rules:\n  \"*\": review\n  \"/bin/true\": allow\n";
  EXPECT_EQ(Call("POST", "/v1/policies:reload", kBob).status, 403);
  auto r = Call("POST", "/v1/policies:reload", kAdmin);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json()["source"], file);
  auto auto_run = Call("POST", "/v1/runs", kAlice, R"({"argv": ["/bin/true"]})").Json();
  EXPECT_EQ(auto_run["approval"]["approved_by"], "policy");

  // A broken file: refused with file and line, and the rules in force stay.
  std::ofstream(file, std::ios::trunc) << "rules:\n  \"*\": review\n  \"/bin/true\": maybe\n";
  auto broken = Call("POST", "/v1/policies:reload", kAdmin);
  EXPECT_EQ(broken.status, 400) << broken.body;
  EXPECT_NE(broken.body.find("commands.yaml:3"), std::string::npos) << broken.body;
  auto still = Call("POST", "/v1/runs", kAlice, R"({"argv": ["/bin/true"]})").Json();
  EXPECT_EQ(still["approval"]["approved_by"], "policy");
  auto listed = Call("GET", "/v1/policies", kAlice).Json();
  EXPECT_EQ(listed["command_policy"]["source"], file);
  EXPECT_EQ(listed["command_policy"]["protections"]["destructive"], true);

  // Both outcomes are in the audit trail.
  auto audit = Call("GET", "/v1/audit", kBob).Json();
  std::set<std::string> actions;
  for (const auto& a : audit["records"]) actions.insert(a["action"].get<std::string>());
  EXPECT_TRUE(actions.count("policy.reloaded"));
  EXPECT_TRUE(actions.count("policy.reload_refused"));
}

TEST_P(ServeApiTest, SeccompProfilesReloadWithThePolicyAndDenialsAreNamed) {
  const std::string dir = config_.seccomp_profiles_dir;
  auto names = [&] {
    std::set<std::string> out;
    auto listed = Call("GET", "/v1/seccomp/profiles", kAlice).Json();
    for (const auto& p : listed["profiles"]) {
      out.insert(p["name"].get<std::string>());
    }
    return out;
  };
  auto first = Call("GET", "/v1/seccomp/profiles", kAlice);
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(names(), (std::set<std::string>{"default"})) << first.body;

  std::ofstream(dir + "/strict.json") << seccomp::DefaultProfileJson();
  auto r = Call("POST", "/v1/policies:reload", kAdmin);
  ASSERT_EQ(r.status, 200) << r.body;
  auto listed = Call("GET", "/v1/seccomp/profiles", kAlice).Json();
  EXPECT_EQ(listed["source"], dir);
  bool found = false;
  for (const auto& p : listed["profiles"]) {
    if (p["name"] != "strict") continue;
    found = true;
    EXPECT_EQ(p["source"], dir + "/strict.json");
    EXPECT_EQ(p["default_action"], "SCMP_ACT_ERRNO");
    EXPECT_GT(p["instructions"].get<int>(), 100);
    EXPECT_EQ(p["sha256"], Sha256Hex(seccomp::DefaultProfileJson()));
  }
  EXPECT_TRUE(found) << listed.dump();
  auto one = Call("GET", "/v1/seccomp/profiles/strict", kAlice);
  ASSERT_EQ(one.status, 200);
  EXPECT_EQ(one.Json()["defaultAction"], "SCMP_ACT_ERRNO");
  EXPECT_EQ(Call("GET", "/v1/seccomp/profiles/nosuch", kAlice).status, 404);

  // A broken profile: refused with its file and JSON path; what is in force stays.
  std::ofstream(dir + "/broken.json")
      << R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOPE"}]})";
  auto broken = Call("POST", "/v1/policies:reload", kAdmin);
  EXPECT_EQ(broken.status, 400) << broken.body;
  EXPECT_NE(broken.body.find("broken.json"), std::string::npos) << broken.body;
  EXPECT_NE(broken.body.find("syscalls[0].action"), std::string::npos) << broken.body;
  EXPECT_EQ(names(), (std::set<std::string>{"default", "strict"}));
  std::filesystem::remove(dir + "/broken.json");

  // Permissive: refused unless its file name accepts it.
  const std::string loose = R"({"defaultAction": "SCMP_ACT_ALLOW"})";
  std::ofstream(dir + "/loose.json") << loose;
  auto permissive = Call("POST", "/v1/policies:reload", kAdmin);
  EXPECT_EQ(permissive.status, 400) << permissive.body;
  EXPECT_NE(permissive.body.find("loose.permissive.json"), std::string::npos) << permissive.body;
  std::filesystem::rename(dir + "/loose.json", dir + "/loose.permissive.json");
  ASSERT_EQ(Call("POST", "/v1/policies:reload", kAdmin).status, 200);
  EXPECT_EQ(names(), (std::set<std::string>{"default", "loose", "strict"}));
  // Only a key allowed to may name it; a refused submission stores nothing.
  const size_t runs_before = Call("GET", "/v1/runs", kBob).Json()["runs"].size();
  auto refused = Call("POST", "/v1/runs", kAlice,
                      R"({"argv": ["/bin/true"], "seccomp_profile": "loose"})");
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_NE(refused.body.find("permissive"), std::string::npos) << refused.body;
  EXPECT_EQ(Call("GET", "/v1/runs", kBob).Json()["runs"].size(), runs_before);
  config_.api_keys = {{"alice", supervisor::Role::kSubmitter, "", {}, true}};
  EXPECT_EQ(Call("POST", "/v1/runs", kAlice,
                 R"({"argv": ["/bin/true"], "seccomp_profile": "loose"})")
                .status,
            201);
  config_.api_keys.clear();

  // A run under the reloaded profile: its denial is named, per step and on the run.
  std::string id = SubmitApproved(
      R"({"argv": ["/usr/bin/unshare", "-U", "true"], "seccomp_profile": "strict"})");
  Follow(id);
  auto run = Call("GET", "/v1/runs/" + id, kAlice).Json();
  ASSERT_TRUE(run["result"].is_object()) << run.dump();
  auto has_unshare = [](const nlohmann::json& denials) {
    for (const auto& d : denials) {
      if (d["syscall"] == "unshare" && d["count"].get<int>() >= 1) return true;
    }
    return false;
  };
  EXPECT_TRUE(has_unshare(run["result"]["seccomp_denials"])) << run.dump();
  EXPECT_TRUE(has_unshare(run["result"]["steps"][0]["seccomp_denials"])) << run.dump();

  auto audit = Call("GET", "/v1/audit", kBob).Json();
  std::set<std::string> actions;
  bool run_denials = false;
  for (const auto& a : audit["records"]) {
    actions.insert(a["action"].get<std::string>());
    if (a["action"] == "run.seccomp_denials" && a["run_id"] == id) {
      run_denials = a["details"]["summary"].get<std::string>().find("unshare denied") !=
                    std::string::npos;
    }
  }
  EXPECT_TRUE(actions.count("seccomp.reloaded"));
  EXPECT_TRUE(actions.count("seccomp.reload_refused"));
  EXPECT_TRUE(run_denials) << audit.dump();
}

std::unique_ptr<PgCluster> ServeApiTest::cluster_;
std::string ServeApiTest::pg_error_;
int ServeApiTest::db_counter_ = 0;

INSTANTIATE_TEST_SUITE_P(Backends, ServeApiTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres), BackendName);

}  // namespace
}  // namespace sbx::testing
