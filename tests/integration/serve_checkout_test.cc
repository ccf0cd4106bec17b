// Pinned checkouts against the real daemon, with repositories made by the test (the `git`
// binary here only): a run at a SHA sees exactly that commit's tree and no .git; a run (or a
// job) that changes a read-only checkout fails checkout_dirty naming the paths; a copy-on-write
// checkout's diff.patch applies to that commit; a commit that is not there fails the run's setup;
// a URL is checked out only through a project; nothing is left in the data directory.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "base/fs.h"
#include "integration/server_harness.h"

namespace sbx::testing {
namespace {

constexpr char kAlice[] = "checkout-test-alice";  // submitter
constexpr char kRoot[] = "checkout-test-root";    // admin

class ServeCheckoutTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    if (IsSkipped()) return;
    if (std::system("git --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no git binary";
    SetUpServer("checkout", "  \"*\": allow\n");
    const std::string roots = dir_ + "/roots";
    repo_ = roots + "/repo";
    std::filesystem::create_directories(repo_);
    std::filesystem::create_directories(roots + "/code");
    Git("init -q");
    Put("f", "one\n");
    Put("sub/s.txt", "s\n");
    Git("add -A");
    Git("commit -q -m one");
    sha1_ = Head();
    Put("f", "two\n");
    Put("g", "new\n");
    Git("add -A");
    Git("commit -q -m two");
    sha2_ = Head();
    std::ofstream(dir_ + "/policies/jobs.yaml")
        << "jobs:\n  writer:\n    argv: [/bin/sh, -c, \"echo x > /workspace/f\"]\n"
           "    project: code\n    keys: [alice]\n    review: false\n";
    WriteConfig("127.0.0.1:0", {{"alice", "submitter", kAlice}, {"root", "admin", kRoot}},
                "workspace_roots: [\"" + roots + "\"]\n");
    StartServerOnLoopback();
    auto made = Call("POST", "/v1/projects", kRoot,
                     nlohmann::json{{"name", "code"},
                                    {"root_path", roots + "/code"},
                                    {"repo", repo_},
                                    {"members", {"alice"}}}
                         .dump());
    ASSERT_EQ(made.status, 201) << made.body;
  }

  void Git(const std::string& args, const std::string& dir = "") {
    const std::string cmd = "git -C '" + (dir.empty() ? repo_ : dir) +
                            "' -c user.email=t@example.org -c user.name=t " + args;
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  std::string Head() {
    const std::string out = dir_ + "/head";
    Git("rev-parse HEAD > '" + out + "'");
    std::string sha = *ReadFile(out);
    return sha.substr(0, 40);
  }
  void Put(const std::string& rel, const std::string& text) {
    std::filesystem::create_directories(std::filesystem::path(repo_ + "/" + rel).parent_path());
    std::ofstream(repo_ + "/" + rel) << text;
  }
  // A run of `script` on `checkout`, ended.
  nlohmann::json Run(const std::string& script, const nlohmann::json& checkout) {
    auto r =
        Call("POST", "/v1/runs", kAlice,
             nlohmann::json{{"argv", {"/bin/sh", "-c", script}}, {"checkout", checkout}}.dump());
    EXPECT_EQ(r.status, 201) << r.body;
    const std::string id = r.Json().value("id", "");
    EXPECT_FALSE(WaitForEvent(id, "run.completed", kAlice).is_null());
    return Call("GET", "/v1/runs/" + id, kAlice).Json();
  }
  std::string Stdout(const nlohmann::json& run) {
    return Call("GET", "/v1/runs/" + run["id"].get<std::string>() + "/logs?stream=stdout", kAlice)
        .body;
  }
  bool Left(const nlohmann::json& run) {
    return std::filesystem::exists(dir_ + "/data/runs/" + run["id"].get<std::string>() +
                                   "/checkout");
  }

  std::string repo_, sha1_, sha2_;
};

TEST_F(ServeCheckoutTest, ARunSeesExactlyThatCommitsTreeReadOnly) {
  auto one = Run("cat /workspace/f; ls -A /workspace", {{"project", "code"}, {"sha", sha1_}});
  ASSERT_EQ(one["state"], "SUCCEEDED") << one.dump();
  EXPECT_EQ(Stdout(one), "one\nf\nsub\n");  // no .git, no g
  EXPECT_TRUE(one["workspace"].is_null());
  EXPECT_EQ(one["checkout"]["sha"], sha1_);
  EXPECT_EQ(one["checkout"]["repo"], repo_);
  EXPECT_EQ(one["checkout"]["mode"], "ro");
  EXPECT_FALSE(Left(one));
  auto two = Run("cat /workspace/f /workspace/g", {{"project", "code"}, {"sha", sha2_}});
  ASSERT_EQ(two["state"], "SUCCEEDED") << two.dump();
  EXPECT_EQ(Stdout(two), "two\nnew\n");

  // A change fails the run, naming what changed; the next run sees the commit again.
  auto dirty =
      Run("echo x >> /workspace/f; rm /workspace/sub/s.txt; mkdir /workspace/build; "
          "touch /workspace/build/o",
          {{"project", "code"}, {"sha", sha1_}});
  EXPECT_EQ(dirty["state"], "FAILED");
  EXPECT_EQ(dirty["result"]["reason"],
            "checkout_dirty: modified f; deleted sub/s.txt; untracked build/")
      << dirty.dump();
  EXPECT_FALSE(Left(dirty));
  EXPECT_EQ(Stdout(Run("cat /workspace/f", {{"project", "code"}, {"sha", sha1_}})), "one\n");

  // So does a job's.
  auto job = Call("POST", "/v1/jobs/writer/runs", kAlice, nlohmann::json{{"sha", sha1_}}.dump());
  ASSERT_EQ(job.status, 201) << job.body;
  const std::string jid = job.Json()["id"];
  ASSERT_FALSE(WaitForEvent(jid, "run.completed", kAlice).is_null());
  EXPECT_EQ(Call("GET", "/v1/runs/" + jid, kAlice).Json()["result"]["reason"],
            "checkout_dirty: modified f");
}

TEST_F(ServeCheckoutTest, ACopyOnWriteCheckoutsDiffAppliesToThatCommit) {
  auto run = Run("echo three >> /workspace/f && echo h > /workspace/h",
                 {{"project", "code"}, {"sha", sha1_}, {"mode", "cow"}});
  ASSERT_EQ(run["state"], "SUCCEEDED") << run.dump();
  const std::string diff =
      Call("GET", "/v1/runs/" + run["id"].get<std::string>() + "/artifacts/diff.patch", kAlice)
          .body;
  EXPECT_NE(diff.find("+three"), std::string::npos) << diff;
  const std::string clone = dir_ + "/clone";
  Git("clone -q '" + repo_ + "' '" + clone + "'", dir_);
  Git("checkout -q " + sha1_, clone);
  std::ofstream(dir_ + "/run.patch") << diff;
  Git("apply --check '" + dir_ + "/run.patch'", clone);
  EXPECT_FALSE(Left(run));
  // Its changes are for the repository: there is no host directory to apply them to.
  EXPECT_EQ(Call("GET", "/v1/runs/" + run["id"].get<std::string>() + "/changes", kAlice).status,
            404);
  const std::string report =
      Call("GET", "/v1/runs/" + run["id"].get<std::string>() + "/artifacts/report.md", kAlice).body;
  EXPECT_NE(report.find("Checkout: `" + repo_ + "` at `" + sha1_ + "`"), std::string::npos)
      << report;
}

TEST_F(ServeCheckoutTest, BadCheckoutsAreRefused) {
  // Not there: the run's setup fails, saying so.
  auto missing = Run("true", {{"project", "code"}, {"sha", std::string(40, 'a')}});
  EXPECT_EQ(missing["state"], "FAILED");
  EXPECT_EQ(missing["result"]["reason"].get<std::string>().rfind("setup_failed: checkout:", 0), 0u)
      << missing.dump();
  EXPECT_FALSE(Left(missing));
  // Refused at submission, nothing stored.
  const std::pair<nlohmann::json, int> refused[] = {
      {{{"project", "code"}, {"sha", "abc"}}, 400},
      {{{"project", "code"}, {"sha", sha1_}, {"mode", "rw"}}, 400},
      {{{"sha", sha1_}}, 400},
      {{{"repo", "https://example.invalid/x.git"}, {"sha", sha1_}}, 403},
      {{{"repo", "/etc"}, {"sha", sha1_}}, 403},
      {{{"project", "code"}, {"repo", "/elsewhere"}, {"sha", sha1_}}, 400},
      {{{"project", "nosuch"}, {"sha", sha1_}}, 404},
  };
  for (const auto& [checkout, status] : refused) {
    auto r = Call("POST", "/v1/runs", kAlice,
                  nlohmann::json{{"argv", {"/bin/true"}}, {"checkout", checkout}}.dump());
    EXPECT_EQ(r.status, status) << checkout.dump() << " " << r.body;
  }
  auto both = Call("POST", "/v1/runs", kAlice,
                   nlohmann::json{{"argv", {"/bin/true"}},
                                  {"workspace", dir_ + "/roots/code"},
                                  {"checkout", {{"project", "code"}, {"sha", sha1_}}}}
                       .dump());
  EXPECT_EQ(both.status, 400) << both.body;
  // A local repository under the workspace roots may be named directly.
  auto direct = Run("cat /workspace/f", {{"repo", repo_}, {"sha", sha2_}});
  EXPECT_EQ(direct["state"], "SUCCEEDED") << direct.dump();
  EXPECT_EQ(Stdout(direct), "two\n");
}

}  // namespace
}  // namespace sbx::testing
