#include "tests/support/store_fixture.h"

#include <unistd.h>

#include <filesystem>

namespace sbx::testing {

using store::RunRecord;
using store::RunState;

std::unique_ptr<PgCluster> StoreBackendTest::cluster_;
std::string StoreBackendTest::pg_error_;
int StoreBackendTest::db_counter_ = 0;

std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kSqlite ? "Sqlite" : "Postgres";
}

std::vector<RunState> PathTo(RunState target) {
  const std::vector<RunState> happy = {RunState::kPlanned, RunState::kAwaitingReview,
                                       RunState::kQueued, RunState::kRunning};
  std::vector<RunState> path;
  if (target == RunState::kPending) return path;
  for (RunState s : happy) {
    path.push_back(s);
    if (s == target) return path;
  }
  path.push_back(target);  // a terminal state, reached from RUNNING
  return path;
}

void StoreBackendTest::TearDownTestSuite() {
  if (cluster_) {
    Status stopped = cluster_->Stop();
    EXPECT_TRUE(stopped.ok()) << stopped.error().ToString();
    cluster_.reset();
  }
  pg_error_.clear();
}

void StoreBackendTest::SetUp() {
  if (IsPostgres()) {
    // Started on first use, so a run of only the SQLite half needs no PostgreSQL.
    if (!cluster_ && pg_error_.empty()) {
      auto c = PgCluster::Start();
      if (c.ok()) {
        cluster_ = std::move(*c);
      } else {
        pg_error_ = c.error().ToString();
      }
    }
    if (!cluster_) FAIL() << "cannot start the test PostgreSQL: " << pg_error_;
  } else {
    std::string tmpl = "/tmp/sbx-store-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    tmp_dir_ = tmpl;
  }
  url_ = ExtraDatabase("main");
  ASSERT_FALSE(url_.empty());
  store_ = OpenStore();
  ASSERT_NE(store_, nullptr);
  SBX_ASSERT_OK(store_->Migrate());
}

void StoreBackendTest::TearDown() {
  store_.reset();
  for (const auto& db : databases_) {
    Status dropped = cluster_->DropDatabase(db);
    EXPECT_TRUE(dropped.ok()) << dropped.error().ToString();
  }
  if (!tmp_dir_.empty()) std::filesystem::remove_all(tmp_dir_);
}

std::string StoreBackendTest::ExtraDatabase(const std::string& suffix) {
  if (!IsPostgres()) return "sqlite://" + tmp_dir_ + "/" + suffix + ".db";
  std::string name =
      "sbx_test_" + std::to_string(getpid()) + "_" + std::to_string(++db_counter_) + "_" + suffix;
  Status created = cluster_->CreateDatabase(name);
  EXPECT_TRUE(created.ok()) << created.error().ToString();
  if (!created.ok()) return "";
  databases_.push_back(name);
  return cluster_->Url(name);
}

std::unique_ptr<store::Store> StoreBackendTest::OpenStore() {
  auto s = store::Open(url_);
  EXPECT_TRUE(s.ok()) << s.error().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

RunRecord StoreBackendTest::NewRun(std::string submitter) {
  RunRecord r;
  r.submitter = std::move(submitter);
  r.argv = {"/bin/echo", "hi"};
  r.network = "none";
  return r;
}

RunRecord StoreBackendTest::Create(RunRecord r) {
  auto c = store_->CreateRun(r);
  EXPECT_TRUE(c.ok()) << c.error().ToString();
  return c.ok() ? c->run : RunRecord{};
}

RunRecord StoreBackendTest::CreateIn(RunState target, RunRecord r) {
  RunRecord run = Create(std::move(r));
  RunState current = RunState::kPending;
  for (RunState next : PathTo(target)) {
    auto t = store_->Transition(run.id, {current}, next, {});
    EXPECT_TRUE(t.ok()) << t.error().ToString();
    if (!t.ok()) return run;
    run = *t;
    current = next;
  }
  return run;
}

}  // namespace sbx::testing
