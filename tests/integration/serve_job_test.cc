// Allowlisted jobs against the real daemon: GET /v1/jobs lists the jobs a key may start with
// their parameters' schema; POST /v1/jobs/{name}/runs starts one with typed parameters filled
// into its argv and nothing else; a key the job does not list, an extra argv, a parameter
// outside its pattern are refused and nothing is stored; a broken jobs.yaml is refused on
// reload with its line and the jobs in force stay.
#include <filesystem>
#include <fstream>
#include <set>

#include "integration/server_harness.h"

namespace sbx::testing {
namespace {

constexpr char kAlice[] = "job-test-alice";  // submitter
constexpr char kDave[] = "job-test-dave";    // submitter
constexpr char kBob[] = "job-test-bob";      // reviewer
constexpr char kRoot[] = "job-test-root";    // admin

constexpr char kJobs[] = R"(jobs:
  greet:
    description: Says hello
    argv: [/bin/echo, "hello {who}"]
    params:
      who: {type: string, pattern: "[a-z]{1,10}"}
    timeout_s: 30
    keys: [alice]
    review: false
  count:
    argv: [/usr/bin/seq, "{n}"]
    params:
      n: {type: integer, min: 1, max: 5, default: 3}
    keys: ["*"]
  web-tests:
    argv: [make, test]
    project: web
    keys: [alice]
    review: false
)";

class ServeJobTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    if (IsSkipped()) return;
    SetUpServer("job", "  \"*\": review\n");
    std::ofstream(dir_ + "/policies/jobs.yaml") << kJobs;
    const std::string web = dir_ + "/roots/web";
    std::filesystem::create_directories(web);
    std::ofstream(web + "/Makefile") << "test:\n\t@echo tests passed in $(CURDIR)\n";
    WriteConfig("127.0.0.1:0",
                {{"alice", "submitter", kAlice},
                 {"dave", "submitter", kDave},
                 {"bob", "reviewer", kBob},
                 {"root", "admin", kRoot}},
                "workspace_roots: [\"" + dir_ + "/roots\"]\n");
    StartServerOnLoopback();
  }

  std::set<std::string> JobNames(const char* key) {
    std::set<std::string> out;
    const nlohmann::json j = Call("GET", "/v1/jobs", key).Json();
    for (const auto& job : j["jobs"]) out.insert(job["name"].get<std::string>());
    return out;
  }
  nlohmann::json Ended(const std::string& id, const char* key = kAlice) {
    EXPECT_FALSE(WaitForEvent(id, "run.completed", key).is_null());
    return Call("GET", "/v1/runs/" + id, key).Json();
  }
};

TEST_F(ServeJobTest, AKeyStartsTheJobsItMayWithTypedParamsAndNothingElse) {
  EXPECT_EQ(JobNames(kAlice), (std::set<std::string>{"greet", "count", "web-tests"}));
  EXPECT_EQ(JobNames(kDave), (std::set<std::string>{"count"}));
  EXPECT_EQ(JobNames(kBob), (std::set<std::string>{"greet", "count", "web-tests"}));
  const nlohmann::json listed = Call("GET", "/v1/jobs", kAlice).Json();
  for (const auto& j : listed["jobs"]) {
    if (j["name"] != "greet") continue;
    EXPECT_EQ(j["params"]["required"], nlohmann::json({"who"}));
    EXPECT_EQ(j["argv"], nlohmann::json({"/bin/echo", "hello {who}"}));
    EXPECT_EQ(j["review"], false);
    EXPECT_FALSE(j.contains("keys")) << j.dump();  // not to a submitter
  }
  const nlohmann::json for_reviewer = Call("GET", "/v1/jobs", kBob).Json();
  EXPECT_EQ(for_reviewer["jobs"][0]["keys"], nlohmann::json({"alice"}));

  // Started without a reviewer, as jobs.yaml says; the parameter stays inside its argument.
  auto r = Call("POST", "/v1/jobs/greet/runs", kAlice, R"({"params": {"who": "world"}})");
  ASSERT_EQ(r.status, 201) << r.body;
  auto run = r.Json();
  EXPECT_EQ(run["argv"], nlohmann::json({"/bin/echo", "hello world"}));
  EXPECT_EQ(run["labels"]["job"], "greet");
  EXPECT_EQ(run["limits"]["timeout_s"], 30);
  EXPECT_EQ(run["policy"]["job"], "greet");
  const std::string id = run["id"];
  auto ended = Ended(id);
  EXPECT_EQ(ended["state"], "SUCCEEDED");
  EXPECT_EQ(ended["approval"]["approved_by"], "policy");
  EXPECT_NE(ended["approval"]["rule"].get<std::string>().find("jobs.yaml:2 job greet"),
            std::string::npos)
      << ended.dump();
  EXPECT_EQ(Call("GET", "/v1/runs/" + id + "/logs?stream=stdout", kAlice).body, "hello world\n");

  // Refused, each with its reason, and nothing stored.
  const size_t before = Call("GET", "/v1/runs", kRoot).Json()["runs"].size();
  const std::tuple<const char*, std::string, std::string, int> refused[] = {
      {kDave, "greet", R"({"params": {"who": "world"}})", 403},
      {kAlice, "greet", R"({"params": {"who": "world; id"}})", 400},
      {kAlice, "greet", R"({"params": {"who": "-n"}})", 400},
      {kAlice, "greet", R"({"params": {}})", 400},
      {kAlice, "greet", R"({"params": {"who": "a", "shell": "sh"}})", 400},
      {kAlice, "greet", R"({"params": {"who": "a"}, "argv": ["/bin/sh"]})", 400},
      {kAlice, "greet", R"({"params": {"who": "a"}, "sha": "0123456789abcdef"})", 400},
      {kAlice, "greet", R"({"params": ["a"]})", 400},
      {kAlice, "count", R"({"params": {"n": 6}})", 400},
      {kAlice, "count", R"({"params": {"n": "3 4"}})", 400},
      {kAlice, "nosuch", R"({})", 404},
  };
  for (const auto& [key, job, body, status] : refused) {
    auto x = Call("POST", "/v1/jobs/" + job + "/runs", key, body);
    EXPECT_EQ(x.status, status) << job << " " << body << " " << x.body;
  }
  EXPECT_EQ(Call("GET", "/v1/runs", kRoot).Json()["runs"].size(), before);

  // A job that needs review waits for one; its default fills in.
  auto counted = Call("POST", "/v1/jobs/count/runs", kDave, "");
  ASSERT_EQ(counted.status, 201) << counted.body;
  const std::string cid = counted.Json()["id"];
  EXPECT_EQ(counted.Json()["state"], "AWAITING_REVIEW");
  EXPECT_EQ(counted.Json()["argv"], nlohmann::json({"/usr/bin/seq", "3"}));
  ASSERT_EQ(Call("POST", "/v1/runs/" + cid + ":approve", kBob).status, 200);
  EXPECT_EQ(Ended(cid, kDave)["state"], "SUCCEEDED");
  EXPECT_EQ(Call("GET", "/v1/runs/" + cid + "/logs?stream=stdout", kDave).body, "1\n2\n3\n");
}

TEST_F(ServeJobTest, AJobOfAProjectRunsInItsDirectory) {
  // Before the project exists the job cannot start, and says why.
  auto early = Call("POST", "/v1/jobs/web-tests/runs", kAlice, "{}");
  EXPECT_EQ(early.status, 404) << early.body;
  auto made = Call("POST", "/v1/projects", kRoot,
                   nlohmann::json{{"name", "web"}, {"root_path", dir_ + "/roots/web"}}.dump());
  ASSERT_EQ(made.status, 201) << made.body;
  auto r = Call("POST", "/v1/jobs/web-tests/runs", kAlice, "{}");
  ASSERT_EQ(r.status, 201) << r.body;
  auto run = r.Json();
  EXPECT_EQ(run["project_id"], made.Json()["id"]);
  EXPECT_EQ(run["workspace"]["path"], dir_ + "/roots/web");
  auto ended = Ended(run["id"]);
  EXPECT_EQ(ended["state"], "SUCCEEDED") << ended.dump();
  EXPECT_EQ(Call("GET", "/v1/runs/" + run["id"].get<std::string>() + "/logs?stream=stdout", kAlice)
                .body,
            "tests passed in /workspace\n");
}

TEST_F(ServeJobTest, ABrokenJobsFileIsRefusedOnReloadAndTheJobsInForceStay) {
  std::ofstream(dir_ + "/policies/jobs.yaml")
      << "jobs:\n  greet:\n    argv: [/bin/echo, \"{who}\"]\n    keys: [alice]\n";
  auto refused = Call("POST", "/v1/policies:reload", kRoot);
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_NE(refused.body.find("jobs.yaml:3"), std::string::npos) << refused.body;
  EXPECT_EQ(Call("POST", "/v1/jobs/greet/runs", kAlice, R"({"params": {"who": "x"}})").status,
            201);
  // A good file replaces them.
  std::ofstream(dir_ + "/policies/jobs.yaml")
      << "jobs:\n  hi:\n    argv: [/bin/echo, hi]\n    keys: [dave]\n";
  ASSERT_EQ(Call("POST", "/v1/policies:reload", kRoot).status, 200);
  EXPECT_EQ(Call("POST", "/v1/jobs/greet/runs", kAlice, R"({"params": {"who": "x"}})").status,
            404);
  EXPECT_EQ(JobNames(kDave), (std::set<std::string>{"hi"}));
  EXPECT_TRUE(JobNames(kAlice).empty());
}

}  // namespace
}  // namespace sbx::testing
