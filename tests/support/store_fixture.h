// The fixture behind tests/integration/store_contract_test.cc: each test gets a fresh, migrated
// database on the backend it is instantiated for. SQLite: a file in a new /tmp directory.
// PostgreSQL: a new database in a PgCluster that the first PostgreSQL test of the suite starts
// and TearDownTestSuite stops. When the cluster cannot start (no binaries, no `postgres` user),
// every PostgreSQL test fails with that reason; none is skipped.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "supervisor/store/store.h"
#include "tests/support/pg_cluster.h"

// ASSERT_TRUE(r.ok()) for a Result or Status, printing the error.
#define SBX_ASSERT_OK(expr)                                                    \
  do {                                                                         \
    const auto& sbx_assert_ok_r_ = (expr);                                     \
    ASSERT_TRUE(sbx_assert_ok_r_.ok()) << sbx_assert_ok_r_.error().ToString(); \
  } while (0)

namespace sbx::testing {

enum class Backend { kSqlite, kPostgres };
// "Sqlite", "Postgres": the suffix of the parameterized test names.
std::string BackendName(const ::testing::TestParamInfo<Backend>& info);

// The states a run passes through from PENDING to `target` (empty for PENDING).
std::vector<store::RunState> PathTo(store::RunState target);

class StoreBackendTest : public ::testing::TestWithParam<Backend> {
 protected:
  static void TearDownTestSuite();
  void SetUp() override;
  void TearDown() override;

  // Another connection to the test's database, as a second daemon would have.
  std::unique_ptr<store::Store> OpenStore();
  bool IsPostgres() const { return GetParam() == Backend::kPostgres; }
  // A second, empty database on the same backend; its URL.
  std::string ExtraDatabase(const std::string& suffix);

  static store::RunRecord NewRun(std::string submitter = "alice");
  store::RunRecord Create(store::RunRecord r = NewRun());
  // A new run moved along PathTo(target).
  store::RunRecord CreateIn(store::RunState target, store::RunRecord r = NewRun());

  static std::unique_ptr<PgCluster> cluster_;
  static std::string pg_error_;
  static int db_counter_;

  std::string url_;
  std::vector<std::string> databases_;  // PostgreSQL databases to drop at TearDown
  std::string tmp_dir_;
  std::unique_ptr<store::Store> store_;
};

}  // namespace sbx::testing
