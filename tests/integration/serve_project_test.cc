// Projects and plans from intent, against the real daemon: admins manage projects, a submitter
// sees only the projects it is a member of (another key's are not found), an intent in English
// or Chinese becomes a plan of the project's own tooling with a policy decision per step, a plan
// runs through the review gate bound to its hash, and a project's runs inherit its defaults.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "base/sha256.h"
#include "base/unique_fd.h"
#include "integration/server_harness.h"

namespace sbx::testing {
namespace {

constexpr char kAlice[] = "project-test-alice";  // submitter, a member
constexpr char kDave[] = "project-test-dave";    // submitter, not a member
constexpr char kBob[] = "project-test-bob";      // reviewer
constexpr char kRoot[] = "project-test-root";    // admin

class ServeProjectTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    if (IsSkipped()) return;
    SetUpServer("project", "  \"make *\": review\n  \"*\": review\n");
    roots_ = dir_ + "/roots";
    std::filesystem::create_directories(roots_ + "/web");
    std::filesystem::create_directories(roots_ + "/lib");
    std::ofstream(roots_ + "/web/Makefile")
        << "build:\n\t@echo built\n\ntest: build\n\t@echo tests passed\n";
    ASSERT_EQ(::chown((roots_ + "/web").c_str(), 1000, 1000), 0);
    WriteConfig("127.0.0.1:0",
                {{"alice", "submitter", kAlice},
                 {"dave", "submitter", kDave},
                 {"bob", "reviewer", kBob},
                 {"root", "admin", kRoot}},
                "workspace_roots: [\"" + roots_ + "\"]\n" + ExtraConfig());
    StartServerOnLoopback();
  }

  virtual std::string ExtraConfig() { return ""; }

  nlohmann::json MakeProject(const std::string& name, const std::string& root,
                             std::vector<std::string> members) {
    nlohmann::json body = {{"name", name},
                           {"root_path", root},
                           {"default_limits", {{"timeout_s", 90}, {"memory", "256m"}}},
                           {"labels", {{"team", "web"}}},
                           {"members", members}};
    auto r = Call("POST", "/v1/projects", kRoot, body.dump());
    EXPECT_EQ(r.status, 201) << r.body;
    return r.Json();
  }

  std::string roots_;
};

TEST_F(ServeProjectTest, AdminsManageProjectsAndASubmitterSeesOnlyItsOwn) {
  const nlohmann::json good = {{"name", "web"}, {"root_path", roots_ + "/web"}};
  EXPECT_EQ(Call("POST", "/v1/projects", kAlice, good.dump()).status, 403);
  EXPECT_EQ(Call("POST", "/v1/projects", kBob, good.dump()).status, 403);
  auto web = MakeProject("web", roots_ + "/web", {"alice"});
  ASSERT_TRUE(web.contains("id")) << web.dump();
  EXPECT_EQ(web["version"], 1);
  EXPECT_EQ(web["root_path"], roots_ + "/web");
  EXPECT_EQ(web["default_limits"]["memory_bytes"], 256 << 20);

  // Bad input is refused, naming what is wrong, and nothing is stored.
  const std::pair<nlohmann::json, int> bad[] = {
      {good, 409},                                                              // the name is taken
      {{{"name", "Web!"}, {"root_path", roots_ + "/web"}}, 400},                // not a name
      {{{"name", "x"}}, 400},                                                   // no root nor repo
      {{{"name", "x"}, {"root_path", "/etc"}}, 403},                            // outside the roots
      {{{"name", "x"}, {"root_path", roots_ + "/missing"}}, 404},               // no such directory
      {{{"name", "x"}, {"root_path", roots_ + "/web/../lib"}}, 400},            // not canonical
      {{{"name", "x"}, {"root_path", roots_ + "/lib"}, {"members", {"eve"}}}, 400},  // no such key
      {{{"name", "x"}, {"root_path", roots_ + "/lib"}, {"default_limits", {{"pids", 1 << 30}}}},
       400},  // past the maxima
      {{{"name", "x"}, {"root_path", roots_ + "/lib"}, {"default_workspace_mode", "rw"}}, 400},
      {{{"name", "x"}, {"root_path", roots_ + "/lib"}, {"owner", "me"}}, 400},  // unknown field
      {{{"name", "x"}, {"repo", "relative/path"}}, 400},
  };
  for (const auto& [body, status] : bad) {
    auto r = Call("POST", "/v1/projects", kRoot, body.dump());
    EXPECT_EQ(r.status, status) << body.dump() << " " << r.body;
  }
  auto lib = MakeProject("lib", roots_ + "/lib", {});
  ASSERT_EQ(Call("GET", "/v1/projects", kRoot).Json()["projects"].size(), 2u);

  // Alice sees web alone; Dave sees nothing and cannot tell web from a missing project.
  auto alices = Call("GET", "/v1/projects", kAlice).Json()["projects"];
  ASSERT_EQ(alices.size(), 1u);
  EXPECT_EQ(alices[0]["name"], "web");
  EXPECT_TRUE(Call("GET", "/v1/projects", kDave).Json()["projects"].empty());
  auto hidden = Call("GET", "/v1/projects/web", kDave);
  auto missing = Call("GET", "/v1/projects/nosuch", kDave);
  EXPECT_EQ(hidden.status, 404);
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(hidden.Json()["error"]["message"].get<std::string>().find("web") != std::string::npos,
            true);
  EXPECT_EQ(Call("GET", "/v1/projects/" + web["id"].get<std::string>(), kBob).status, 200);

  // Changes: admin only, against the version read; members move with them.
  nlohmann::json add_dave = {{"members", {"alice", "dave"}}, {"version", 1}};
  EXPECT_EQ(Call("PATCH", "/v1/projects/web", kAlice, add_dave.dump()).status, 403);
  auto patched = Call("PATCH", "/v1/projects/web", kRoot, add_dave.dump());
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(patched.Json()["version"], 2);
  EXPECT_EQ(Call("PATCH", "/v1/projects/web", kRoot, add_dave.dump()).status, 409);  // stale
  EXPECT_EQ(Call("GET", "/v1/projects/web", kDave).status, 200);
  EXPECT_EQ(Call("PATCH", "/v1/projects/web", kRoot, R"({"name": "lib"})").status, 409);

  EXPECT_EQ(Call("DELETE", "/v1/projects/lib", kAlice).status, 403);
  EXPECT_EQ(Call("DELETE", "/v1/projects/lib", kRoot).status, 200);
  EXPECT_EQ(Call("GET", "/v1/projects/lib", kRoot).status, 404);
  EXPECT_EQ(Call("DELETE", "/v1/projects/lib", kRoot).status, 404);

  // The audit trail says who did what to which project.
  std::set<std::string> actions;
  const nlohmann::json audit = Call("GET", "/v1/audit", kRoot).Json();
  for (const auto& r : audit["records"]) {
    actions.insert(r["actor"].get<std::string>() + " " + r["action"].get<std::string>());
  }
  EXPECT_TRUE(actions.count("root project.created")) << audit.dump();
  EXPECT_TRUE(actions.count("root project.updated"));
  EXPECT_TRUE(actions.count("root project.deleted"));
}

TEST_F(ServeProjectTest, AnIntentBecomesAPlanThatRunsThroughReviewBoundToItsHash) {
  auto web = MakeProject("web", roots_ + "/web", {"alice"});
  const std::string pid = web["id"];
  auto made = Call("POST", "/v1/projects/web/plans", kAlice,
                   R"({"intent_text": "run the tests and give me a report"})");
  ASSERT_EQ(made.status, 201) << made.body;
  auto plan = made.Json();
  const std::string plan_id = plan["id"];
  ASSERT_EQ(plan["steps"].size(), 1u) << plan.dump();
  EXPECT_EQ(plan["steps"][0]["argv"], nlohmann::json({"make", "test"})) << plan.dump();
  EXPECT_FALSE(plan["steps"][0]["why"].get<std::string>().empty());
  EXPECT_EQ(plan["steps"][0]["decision"]["decision"], "review");
  EXPECT_TRUE(plan["report"].get<bool>());
  EXPECT_EQ(plan["workspace"]["path"], roots_ + "/web");
  EXPECT_EQ(plan["limits"]["timeout_s"], 90);
  EXPECT_EQ(plan["project"]["id"], pid);
  // The hash is over the plan as shown (without the record's own fields).
  nlohmann::json doc = plan;
  for (const char* k : {"id", "project_id", "sha256", "created_by", "created_at_ms"}) doc.erase(k);
  EXPECT_EQ(plan["sha256"], Sha256Hex(doc.dump()));
  EXPECT_EQ(Call("GET", "/v1/plans/" + plan_id, kAlice).Json(), plan);

  // The same in Chinese; intents the planner does not plan are refused with a reason.
  auto zh = Call("POST", "/v1/projects/web/plans", kAlice, R"({"intent_text": "运行测试并生成报告"})");
  ASSERT_EQ(zh.status, 201) << zh.body;
  EXPECT_EQ(zh.Json()["steps"], plan["steps"]);
  for (const char* intent : {"deploy to production", "删除所有文件", "写一首诗"}) {
    auto r = Call("POST", "/v1/projects/web/plans", kAlice,
                  nlohmann::json{{"intent_text", intent}}.dump());
    EXPECT_EQ(r.status, 404) << intent << " " << r.body;
    EXPECT_NE(r.body.find("plan"), std::string::npos) << r.body;
  }
  EXPECT_EQ(Call("POST", "/v1/projects/web/plans", kAlice, R"({"intent_text": ""})").status, 400);
  EXPECT_EQ(Call("POST", "/v1/projects/web/plans", kAlice, R"({"intent": "x"})").status, 400);
  EXPECT_EQ(Call("POST", "/v1/projects/web/plans", kAlice,
                 nlohmann::json{{"intent_text", std::string(5000, 't')}}.dump())
                .status,
            400);
  // A key that is not a member can neither plan nor see the plan.
  EXPECT_EQ(Call("POST", "/v1/projects/web/plans", kDave, R"({"intent_text": "test"})").status,
            404);
  EXPECT_EQ(Call("GET", "/v1/plans/" + plan_id, kDave).status, 404);

  // The plan as a run: its steps, workspace and limits, waiting for a reviewer.
  EXPECT_EQ(Call("POST", "/v1/projects/web/runs", kDave,
                 nlohmann::json{{"plan_id", plan_id}}.dump())
                .status,
            404);
  EXPECT_EQ(Call("POST", "/v1/projects/web/runs", kAlice,
                 nlohmann::json{{"plan_id", plan_id}, {"argv", {"/bin/sh"}}}.dump())
                .status,
            400);  // a caller cannot add to a plan
  auto created = Call("POST", "/v1/projects/web/runs", kAlice,
                      nlohmann::json{{"plan_id", plan_id}}.dump());
  ASSERT_EQ(created.status, 201) << created.body;
  auto run = created.Json();
  const std::string id = run["id"];
  EXPECT_EQ(run["state"], "AWAITING_REVIEW");
  EXPECT_EQ(run["project_id"], pid);
  EXPECT_EQ(run["labels"]["plan"], plan_id);
  EXPECT_EQ(run["labels"]["plan_sha256"], plan["sha256"]);
  EXPECT_EQ(run["steps"][0]["argv"], nlohmann::json({"make", "test"}));
  EXPECT_EQ(run["workspace"]["path"], roots_ + "/web");
  EXPECT_EQ(run["limits"]["timeout_s"], 90);
  auto approved = Call("POST", "/v1/runs/" + id + ":approve", kBob,
                       nlohmann::json{{"plan_sha256", run["plan_sha256"]}}.dump());
  ASSERT_EQ(approved.status, 200) << approved.body;
  ASSERT_FALSE(WaitForEvent(id, "run.completed", kAlice).is_null());
  EXPECT_EQ(Call("GET", "/v1/runs/" + id, kAlice).Json()["state"], "SUCCEEDED")
      << Call("GET", "/v1/runs/" + id, kAlice).body
      << Call("GET", "/v1/runs/" + id + "/logs", kAlice).body;
  EXPECT_EQ(Call("GET", "/v1/runs/" + id + "/logs?stream=stdout", kAlice).body,
            "built\ntests passed\n");

  // The project's runs; another key learns nothing of them.
  auto listed = Call("GET", "/v1/runs?project=web", kBob).Json()["runs"];
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["id"], id);
  EXPECT_EQ(Call("GET", "/v1/runs?project=web", kDave).status, 404);

  // A plan of another project does not run as this one's.
  MakeProject("lib", roots_ + "/lib", {"alice"});
  EXPECT_EQ(Call("POST", "/v1/projects/lib/runs", kAlice,
                 nlohmann::json{{"plan_id", plan_id}}.dump())
                .status,
            400);
}

TEST_F(ServeProjectTest, AProjectsRunsInheritItsDefaults) {
  MakeProject("web", roots_ + "/web", {"alice"});
  auto r = Call("POST", "/v1/runs", kAlice,
                R"({"argv": ["/bin/ls", "/workspace"], "project": "web", "labels": {"x": "1"}})");
  ASSERT_EQ(r.status, 201) << r.body;
  auto run = r.Json();
  EXPECT_EQ(run["workspace"]["path"], roots_ + "/web");
  EXPECT_EQ(run["workspace"]["mode"], "ro");
  EXPECT_EQ(run["limits"]["timeout_s"], 90);
  EXPECT_EQ(run["limits"]["memory"], 256 << 20);
  EXPECT_EQ(run["labels"]["team"], "web");
  EXPECT_EQ(run["labels"]["x"], "1");
  // Its own limits win over the project's.
  auto own = Call("POST", "/v1/projects/web/runs", kAlice,
                  R"({"argv": ["/bin/true"], "limits": {"timeout_s": 5}})");
  ASSERT_EQ(own.status, 201) << own.body;
  EXPECT_EQ(own.Json()["limits"]["timeout_s"], 5);
  // Not a member: refused as if there were no such project.
  EXPECT_EQ(Call("POST", "/v1/runs", kDave, R"({"argv": ["/bin/true"], "project": "web"})").status,
            404);
  EXPECT_EQ(Call("POST", "/v1/runs", kAlice, R"({"argv": ["/bin/true"], "project": 7})").status,
            400);
}

// Pluggable planners: an HTTP endpoint and commands run as runs of the project (no network, the
// project read-only), each answer validated like client input and policy-checked.
class ServeExternalPlannerTest : public ServeProjectTest {
 protected:
  void SetUp() override {
    // The HTTP planner: a socket of the test's, answering one request with a plan.
    listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(listener_);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener_.get(), 4), 0);
    socklen_t len = sizeof addr;
    ASSERT_EQ(::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
    http_port_ = ntohs(addr.sin_port);
    ServeProjectTest::SetUp();
  }
  void TearDown() override {
    if (server_.joinable()) server_.join();
    ServeProjectTest::TearDown();
  }
  std::string ExtraConfig() override {
    // JSON is YAML: each command is written as a JSON array.
    auto sh = [](const std::string& script) {
      return nlohmann::json({"/bin/sh", "-c", script}).dump();
    };
    const std::string plan =
        R"({"steps": [{"name": "t", "argv": ["make", "test"], "why": "the tests"}]})";
    return "planners:\n"
           "  - {name: scripted, timeout_s: 20, command: " +
           sh("grep -q tests && test -f /workspace/Makefile && printf '%s' '" + plan + "'") +
           "}\n"
           "  - {name: garbage, timeout_s: 20, command: " + sh("echo not a plan") + "}\n"
           "  - {name: huge, timeout_s: 20, command: " +
           sh("head -c 300000 /dev/zero | tr '\\0' a") + "}\n"
           "  - {name: destroyer, timeout_s: 20, command: " +
           sh(R"(echo '{"steps": [{"name": "x", "argv": ["rm", "-rf", "/"]}]}')") + "}\n"
           "  - {name: fails, timeout_s: 20, command: [/bin/false]}\n"
           "  - {name: remote, timeout_s: 20, url: 'http://127.0.0.1:" +
           std::to_string(http_port_) + "/plan'}\n";
  }
  // Answers the next request on the listener with `body`; what it received comes back.
  void ServeOnce(std::string body) {
    server_ = std::thread([this, body] {
      UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) return;
      std::string req;
      char buf[65536];
      for (;;) {
        ssize_t n = ::read(c.get(), buf, sizeof buf);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
        const size_t head = req.find("\r\n\r\n");
        if (head == std::string::npos) continue;
        const size_t cl = req.find("Content-Length: ");
        if (cl != std::string::npos &&
            req.size() >= head + 4 + std::stoul(req.substr(cl + 16))) {
          break;
        }
      }
      received_ = req;
      const std::string reply = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                "Content-Length: " + std::to_string(body.size()) +
                                "\r\nConnection: close\r\n\r\n" + body;
      (void)::write(c.get(), reply.data(), reply.size());
    });
  }

  UniqueFd listener_;
  uint16_t http_port_ = 0;
  std::thread server_;
  std::string received_;
};

TEST_F(ServeExternalPlannerTest, AnswersAreValidatedAndPolicyCheckedLikeClientInput) {
  MakeProject("web", roots_ + "/web", {"alice"});
  auto plan = [&](const std::string& planner) {
    return Call("POST", "/v1/projects/web/plans", kAlice,
                nlohmann::json{{"intent_text", "run the tests"}, {"planner", planner}}.dump());
  };
  // A command planner: it read the intent on stdin and the project at /workspace.
  auto ok = plan("scripted");
  ASSERT_EQ(ok.status, 201) << ok.body;
  EXPECT_EQ(ok.Json()["planner"], "external:scripted");
  EXPECT_EQ(ok.Json()["steps"][0]["argv"], nlohmann::json({"make", "test"}));
  EXPECT_EQ(ok.Json()["steps"][0]["decision"]["decision"], "review");
  // It ran as a run of the project, with no network, recorded like any run.
  const nlohmann::json runs = Call("GET", "/v1/runs?label=planner=scripted", kAlice).Json();
  ASSERT_EQ(runs["runs"].size(), 1u) << runs.dump();
  EXPECT_EQ(runs["runs"][0]["network"], "none");
  EXPECT_EQ(runs["runs"][0]["workspace"]["mode"], "ro");

  // Garbage, too much, a denied command, a planner that fails: refused, each saying why.
  const std::pair<std::string, std::string> refused[] = {
      {"garbage", "not a plan"},
      {"huge", "not a plan"},
      {"destroyer", "denies"},
      {"fails", "ended FAILED"},
  };
  for (const auto& [name, why] : refused) {
    auto r = plan(name);
    EXPECT_EQ(r.status, 409) << name << " " << r.body;
    EXPECT_NE(r.body.find(why), std::string::npos) << name << " " << r.body;
  }
  EXPECT_EQ(plan("nosuch").status, 404);
  EXPECT_EQ(Call("GET", "/v1/projects/web/plans", kAlice).Json()["plans"].size(), 1u);

  // The HTTP planner gets the intent and the project's summary, and its answer is checked too.
  ServeOnce(R"({"steps": [{"name": "build", "argv": ["make", "build"], "why": "build it"}]})");
  auto remote = plan("remote");
  server_.join();
  ASSERT_EQ(remote.status, 201) << remote.body;
  EXPECT_EQ(remote.Json()["steps"][0]["argv"], nlohmann::json({"make", "build"}));
  EXPECT_NE(received_.find("POST /plan HTTP/1.1"), std::string::npos) << received_;
  EXPECT_NE(received_.find("\"intent_text\":\"run the tests\""), std::string::npos) << received_;
  EXPECT_NE(received_.find("\"summary\""), std::string::npos) << received_;
  ServeOnce(R"({"steps": [{"name": "x", "argv": ["make"], "why": "w", "extra": 1}]})");
  auto extra = plan("remote");
  server_.join();
  EXPECT_EQ(extra.status, 409) << extra.body;
}

}  // namespace
}  // namespace sbx::testing
