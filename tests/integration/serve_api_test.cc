// The /v1 API end to end over a real socket: a real server, run manager, SQLite store and
// sandboxes; the client is a raw HTTP/WebSocket client with bounded reads.
#include <filesystem>

#include "api/run_routes.h"
#include "api/server.h"
#include "api/testing/raw_client.h"
#include "integration/sandbox_harness.h"
#include "base/sha256.h"

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

class ServeApiTest : public SandboxTest {
 protected:
  void SetUp() override {
    SandboxTest::SetUp();
    if (IsSkipped()) return;
    char dir[] = "/tmp/sbx-serve-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    config_.data_dir = dir_ + "/data";
    config_.database = "sqlite://" + dir_ + "/db.sqlite";
    config_.limits.maxima.memory_bytes = 1ll << 30;
    auto s = store::Open(config_.database);
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    store_ = std::move(*s);
    ASSERT_TRUE(store_->Migrate().ok());
    supervisor::RunManagerOptions o;
    o.node = "api-test";
    o.data_dir = config_.data_dir;
    o.limits = config_.limits;
    o.cgroups = driver_.get();
    auto m = supervisor::RunManager::Start(*store_, o);
    ASSERT_TRUE(m.ok()) << m.error().ToString();
    runs_ = std::move(*m);
    host_ = driver_->host();

    auto auth = api::Authenticator::Create(
        {{"alice", api::Role::kSubmitter, Sha256Hex(kAlice)},
         {"bob", api::Role::kReviewer, Sha256Hex(kBob)}});
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
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

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

TEST_F(ServeApiTest, HealthAndAuth) {
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
  EXPECT_EQ(info.Json()["backends"][0], "native");
}

TEST_F(ServeApiTest, BadRequestsGetClearErrorsAndChangeNothing) {
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

TEST_F(ServeApiTest, SubmitReviewRunFollowLogsAndEvents) {
  auto created = Call("POST", "/v1/runs", kAlice,
                      R"({"argv": ["/bin/sh", "-c", "echo hello; echo err >&2"],
                          "labels": {"team": "ci"}})",
                      {{"Idempotency-Key", "abc"}});
  ASSERT_EQ(created.status, 201) << created.body;
  std::string id = created.Json()["id"];
  EXPECT_EQ(created.Json()["state"], "AWAITING_REVIEW");
  // The same idempotency key: the same run, not a new one.
  auto again = Call("POST", "/v1/runs", kAlice, R"({"argv": ["/bin/true"]})",
                    {{"Idempotency-Key", "abc"}});
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.Json()["id"], id);

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

TEST_F(ServeApiTest, CancelAndReject) {
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

}  // namespace
}  // namespace sbx::testing
