// The store contract for projects and plans (store.h, project_records.h), run against SQLite and
// a real PostgreSQL server that the suite starts: round trips, unique names, members as a
// filter, updates as a compare-and-set on the version, deletion taking the plans along, and a
// run's project as a filter of the run list.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "supervisor/store/store.h"
#include "tests/support/sandbox_store_fixture.h"

namespace sbx::store {
namespace {

using nlohmann::json;
using testing::Backend;
using testing::BackendName;
using testing::ExpectFailedWith;

class ProjectContractTest : public testing::StoreBackendTest {
 protected:
  static ProjectRecord NewProject(std::string name) {
    ProjectRecord p;
    p.name = std::move(name);
    p.created_by = "admin";
    p.root_path = "/srv/work/" + p.name;
    p.default_limits = {{"timeout_s", 60}, {"memory_bytes", 1 << 28}};
    p.default_workspace_mode = "cow";
    p.labels = {{"team", "ci"}};
    p.members = {"carol", "alice", "alice"};
    return p;
  }
};

TEST_P(ProjectContractTest, ProjectsRoundTripWithUniqueNames) {
  auto made = store_->CreateProject(NewProject("web"));
  ASSERT_TRUE(made.ok()) << made.error().ToString();
  EXPECT_EQ(made->id.rfind("prj_", 0), 0u);
  EXPECT_EQ(made->version, 1);
  EXPECT_GT(made->created_at_ms, 0);
  EXPECT_EQ(made->members, (std::vector<std::string>{"alice", "carol"}));
  auto by_id = store_->GetProject(made->id);
  ASSERT_TRUE(by_id.ok());
  EXPECT_EQ(*by_id, *made);
  auto by_name = store_->GetProject("web");
  ASSERT_TRUE(by_name.ok());
  EXPECT_EQ(*by_name, *made);
  ExpectFailedWith(store_->CreateProject(NewProject("web")), ErrorCode::kAlreadyExists);
  ExpectFailedWith(store_->GetProject("nope"), ErrorCode::kNotFound);
  ProjectRecord bad = NewProject("bad");
  bad.labels["k"] = std::string("\xff\xfe");
  ExpectFailedWith(store_->CreateProject(bad), ErrorCode::kInvalidArgument);
  ExpectFailedWith(store_->GetProject("bad"), ErrorCode::kNotFound);
}

TEST_P(ProjectContractTest, MembersFilterAndPages) {
  for (const char* name : {"a", "b", "c", "d"}) {
    ProjectRecord p = NewProject(name);
    p.members = {std::string(name) == "c" ? "bob" : "alice"};
    ASSERT_TRUE(store_->CreateProject(p).ok());
  }
  auto alices = store_->ListProjects({.member = "alice", .limit = 2});
  ASSERT_TRUE(alices.ok());
  ASSERT_EQ(alices->projects.size(), 2u);
  EXPECT_EQ(alices->projects[0].name, "a");
  EXPECT_EQ(alices->projects[1].name, "b");
  ASSERT_FALSE(alices->next_cursor.empty());
  auto rest = store_->ListProjects({.member = "alice", .cursor = alices->next_cursor, .limit = 2});
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->projects.size(), 1u);
  EXPECT_EQ(rest->projects[0].name, "d");
  EXPECT_TRUE(rest->next_cursor.empty());
  auto all = store_->ListProjects({});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->projects.size(), 4u);
  EXPECT_TRUE(store_->ListProjects({.member = "mallory"})->projects.empty());
  ExpectFailedWith(store_->ListProjects({.limit = 0}), ErrorCode::kInvalidArgument);
}

TEST_P(ProjectContractTest, UpdatesAreACompareAndSetOnTheVersion) {
  auto made = store_->CreateProject(NewProject("api"));
  ASSERT_TRUE(made.ok());
  ASSERT_TRUE(store_->CreateProject(NewProject("other")).ok());
  ProjectRecord next = *made;
  next.members = {"bob"};
  next.default_workspace_mode = "ro";
  auto updated = store_->UpdateProject(made->id, 1, next);
  ASSERT_TRUE(updated.ok()) << updated.error().ToString();
  EXPECT_EQ(updated->version, 2);
  EXPECT_EQ(updated->created_at_ms, made->created_at_ms);
  EXPECT_EQ(updated->default_workspace_mode, "ro");
  EXPECT_EQ(*store_->GetProject(made->id), *updated);
  // A writer that read version 1 loses, and changes nothing.
  next.default_workspace_mode = "cow";
  ExpectFailedWith(store_->UpdateProject(made->id, 1, next), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(store_->GetProject(made->id)->default_workspace_mode, "ro");
  // Members move with the update: the old member's filter no longer finds it.
  EXPECT_TRUE(store_->ListProjects({.member = "carol"})->projects.size() == 1);  // "other"
  EXPECT_EQ(store_->ListProjects({.member = "bob"})->projects.size(), 1u);
  next.name = "other";
  ExpectFailedWith(store_->UpdateProject(made->id, 0, next), ErrorCode::kAlreadyExists);
  ExpectFailedWith(store_->UpdateProject("prj_nope", 0, next), ErrorCode::kNotFound);
}

TEST_P(ProjectContractTest, PlansBelongToTheirProjectAndGoWithIt) {
  auto made = store_->CreateProject(NewProject("svc"));
  ASSERT_TRUE(made.ok());
  PlanRecord plan;
  plan.project_id = made->id;
  plan.created_by = "alice";
  plan.sha256 = std::string(64, 'a');
  plan.plan = {{"steps", {{{"name", "test"}, {"argv", {"make", "test"}}}}}, {"intent", "测试"}};
  auto first = store_->CreatePlan(plan);
  ASSERT_TRUE(first.ok()) << first.error().ToString();
  EXPECT_EQ(first->id.rfind("pln_", 0), 0u);
  auto second = store_->CreatePlan(plan);
  ASSERT_TRUE(second.ok());
  auto got = store_->GetPlan(first->id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, *first);
  auto listed = store_->ListPlans(made->id, 10);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].id, second->id);  // newest first
  plan.project_id = "prj_nope";
  ExpectFailedWith(store_->CreatePlan(plan), ErrorCode::kNotFound);

  ASSERT_TRUE(store_->DeleteProject(made->id).ok());
  ExpectFailedWith(store_->GetPlan(first->id), ErrorCode::kNotFound);
  ExpectFailedWith(store_->GetProject(made->id), ErrorCode::kNotFound);
  EXPECT_EQ(store_->DeleteProject(made->id).error().code, ErrorCode::kNotFound);
}

TEST_P(ProjectContractTest, ARunsProjectIsKeptAndFilters) {
  RunRecord in;
  in.submitter = "alice";
  in.argv = {"/bin/true"};
  in.project_id = "prj_abc";
  auto a = store_->CreateRun(in);
  ASSERT_TRUE(a.ok()) << a.error().ToString();
  EXPECT_EQ(store_->GetRun(a->run.id)->project_id, "prj_abc");
  in.project_id.clear();
  auto b = store_->CreateRun(in);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(store_->GetRun(b->run.id)->project_id, "");
  auto only = store_->ListRuns({.project_id = "prj_abc"});
  ASSERT_TRUE(only.ok());
  ASSERT_EQ(only->runs.size(), 1u);
  EXPECT_EQ(only->runs[0].id, a->run.id);
  EXPECT_EQ(store_->ListRuns({})->runs.size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Backends, ProjectContractTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres), BackendName);

}  // namespace
}  // namespace sbx::store
