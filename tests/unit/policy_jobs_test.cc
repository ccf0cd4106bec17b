// jobs.yaml: typed parameters fill argv slots and nothing else; a broken file is refused with
// its line; a caller's extra, missing, mistyped or out-of-pattern parameter is refused naming it.
#include <gtest/gtest.h>

#include "supervisor/policy/jobs.h"

namespace sbx::policy {
namespace {

constexpr char kJobs[] = R"(jobs:
  unit-tests:
    description: The unit tests of one package
    argv: [make, "test-{package}", "JOBS={jobs}", "MODE={mode}", "{{literal}}"]
    params:
      package: {type: string, pattern: "[a-z][a-z0-9-]{0,31}"}
      jobs: {type: integer, min: 1, max: 8, default: 2}
      mode: {type: enum, values: [fast, full], default: fast}
    timeout_s: 600
    limits: {cpus: 2, memory: 1GiB, pids: 512}
    workspace: {path: /srv/work/web, mode: cow}
    keys: [ci-bot]
    review: false
  lint:
    argv: [make, lint]
    project: web
    keys: ["*"]
)";

std::shared_ptr<const JobSet> Load(const std::string& text = kJobs) {
  auto set = JobSet::Parse(text, "jobs.yaml");
  EXPECT_TRUE(set.ok()) << set.error().ToString();
  return set.ok() ? *set : JobSet::Empty();
}

TEST(PolicyJobs, ParsesJobsWithTheirParamsLimitsAndKeys) {
  auto set = Load();
  ASSERT_EQ(set->jobs().size(), 2u);
  const Job* j = set->Find("unit-tests");
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->line, 2);
  EXPECT_EQ(j->params.size(), 3u);
  EXPECT_EQ(j->timeout_s, 600);
  EXPECT_EQ(j->cpus, 2.0);
  EXPECT_EQ(j->memory_bytes, int64_t{1} << 30);
  EXPECT_EQ(j->pids, 512);
  EXPECT_EQ(j->workspace_path, "/srv/work/web");
  EXPECT_EQ(j->workspace_mode, "cow");
  EXPECT_FALSE(j->review);
  EXPECT_TRUE(MayStart(*j, "ci-bot"));
  EXPECT_FALSE(MayStart(*j, "alice"));
  const Job* lint = set->Find("lint");
  ASSERT_NE(lint, nullptr);
  EXPECT_TRUE(lint->review);
  EXPECT_EQ(lint->project, "web");
  EXPECT_TRUE(MayStart(*lint, "anyone"));
  EXPECT_EQ(set->Find("nope"), nullptr);
}

TEST(PolicyJobs, ParamsFillTheirSlotsAndNothingElse) {
  const auto set = Load();
  const Job& j = *set->Find("unit-tests");
  auto argv = InstantiateJob(j, {{"package", "net-io"}, {"jobs", 4}});
  ASSERT_TRUE(argv.ok()) << argv.error().ToString();
  EXPECT_EQ(*argv,
            (std::vector<std::string>{"make", "test-net-io", "JOBS=4", "MODE=fast", "{literal}"}));
  // An integer may come as its decimal text; an enum as one of its values.
  argv = InstantiateJob(j, {{"package", "a"}, {"jobs", "8"}, {"mode", "full"}});
  ASSERT_TRUE(argv.ok());
  EXPECT_EQ((*argv)[2], "JOBS=8");
  EXPECT_EQ((*argv)[3], "MODE=full");
  // A value with spaces or shell syntax stays inside its one argument, when its pattern allows
  // it; these patterns do not.
  const std::pair<nlohmann::json, std::string> refused[] = {
      {{{"jobs", 2}}, "params.package: missing"},
      {{{"package", "a"}, {"argv", {"rm"}}}, "params.argv: job unit-tests has no such parameter"},
      {{{"package", "a; rm -rf /"}}, "params.package: 'a; rm -rf /' does not match"},
      {{{"package", "-rf"}}, "params.package: must not start with '-'"},
      {{{"package", "A"}}, "does not match"},
      {{{"package", std::string("a\0b", 3)}}, "must not contain NUL"},
      {{{"package", 7}}, "params.package: must be a string"},
      {{{"package", "a"}, {"jobs", 9}}, "params.jobs: 9 is outside 1..8"},
      {{{"package", "a"}, {"jobs", 0}}, "outside"},
      {{{"package", "a"}, {"jobs", "2; ls"}}, "params.jobs: must be an integer"},
      {{{"package", "a"}, {"jobs", 2.5}}, "must be an integer"},
      {{{"package", "a"}, {"mode", "slow"}}, "params.mode: must be one of fast, full"},
      {{{"package", std::string(300, 'a')}}, "at most 256"},
  };
  for (const auto& [params, want] : refused) {
    auto r = InstantiateJob(j, params);
    ASSERT_FALSE(r.ok()) << params.dump();
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message.find(want), std::string::npos) << r.error().message;
  }
  EXPECT_FALSE(InstantiateJob(j, nlohmann::json::array()).ok());
}

TEST(PolicyJobs, ABrokenFileIsRefusedWithItsLine) {
  const std::pair<std::string, std::string> broken[] = {
      {"jobs:\n  x:\n    argv: [make]\n", "jobs.yaml:2: keys in job 'x'"},
      {"jobs:\n  x:\n    argv: [make, \"{nope}\"]\n    keys: [a]\n", "names {nope}"},
      {"jobs:\n  x:\n    argv: [make]\n    params:\n      p: {type: string, pattern: \"a\"}\n"
       "    keys: [a]\n",
       "param 'p' in job 'x' is declared but no argument uses it"},
      {"jobs:\n  x:\n    argv: [make, \"{p}\"]\n    params:\n      p: {type: string}\n"
       "    keys: [a]\n",
       "a string needs a pattern"},
      {"jobs:\n  x:\n    argv: [make, \"{p}\"]\n    params:\n      p: {type: string, pattern: "
       "\"(\"}\n    keys: [a]\n",
       "not a regular expression"},
      {"jobs:\n  x:\n    argv: [make, \"{p}\"]\n    params:\n      p: {type: integer, min: 5, "
       "max: 1}\n    keys: [a]\n",
       "min is above max"},
      {"jobs:\n  x:\n    argv: [make, \"{p}\"]\n    params:\n      p: {type: integer, max: 3, "
       "default: 4}\n    keys: [a]\n",
       "the default of param 'p'"},
      {"jobs:\n  x:\n    argv: [\"{p}\"]\n    params:\n      p: {type: enum, values: [a]}\n"
       "    keys: [a]\n",
       "argv[0]"},
      {"jobs:\n  x:\n    argv: [make, \"a{b\"]\n    keys: [a]\n", "'{' without '}'"},
      {"jobs:\n  x:\n    argv: [make]\n    keys: [a]\n    review: maybe\n", "review"},
      {"jobs:\n  x:\n    argv: [make]\n    keys: [a]\n    shell: true\n", "unknown key 'shell'"},
      {"jobs:\n  x:\n    argv: [make]\n    keys: [a]\n    workspace: {path: rel}\n", "workspace"},
      {"jobs:\n  x:\n    argv: [make]\n    keys: [a]\n    limits: {memory: lots}\n", "memory"},
      {"jobs:\n  X:\n    argv: [make]\n    keys: [a]\n", "job name 'X'"},
      {"jobs:\n  x:\n    argv: [make]\n    keys: [a]\n  x:\n    argv: [make]\n    keys: [a]\n",
       "twice"},
      {"jobs: [a, b]\n", "'jobs' is a map"},
      {"jobs:\n  x: {argv: [make], keys: [a]\n", "not valid YAML"},
      {"jobs: {}\n---\njobs: {}\n", "more than one YAML document"},
      // Found by the jobs_yaml fuzz target: an argv byte that is not UTF-8 made GET /v1/jobs
      // throw while writing the job as JSON.
      {"jobs:\n  x:\n    argv: [ma\x95\x9a]\n    keys: [a]\n",
       "jobs.yaml:3: byte 24 is not UTF-8"},
  };
  for (const auto& [text, want] : broken) {
    auto r = JobSet::Parse(text, "jobs.yaml");
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.error().message.find(want), std::string::npos) << r.error().message;
    EXPECT_EQ(r.error().message.rfind("jobs.yaml", 0), 0u) << r.error().message;
  }
  EXPECT_TRUE(JobSet::Parse("", "jobs.yaml").ok());
  EXPECT_TRUE(JobSet::Parse("jobs:\n", "jobs.yaml").ok());
}

TEST(PolicyJobs, TheSchemaShowsEachParameter) {
  const auto set = Load();
  const Job& j = *set->Find("unit-tests");
  auto s = JobToJson(j, "jobs.yaml");
  EXPECT_EQ(s["params"]["required"], nlohmann::json({"package"}));
  EXPECT_EQ(s["params"]["properties"]["jobs"]["default"], 2);
  EXPECT_EQ(s["params"]["properties"]["jobs"]["maximum"], 8);
  EXPECT_EQ(s["params"]["properties"]["mode"]["enum"], nlohmann::json({"fast", "full"}));
  EXPECT_EQ(s["params"]["properties"]["package"]["pattern"], "^(?:[a-z][a-z0-9-]{0,31})$");
  EXPECT_EQ(s["review"], false);
  EXPECT_EQ(s["source"], "jobs.yaml:2");
}

}  // namespace
}  // namespace sbx::policy
