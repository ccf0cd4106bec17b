// The project and plan half of the SQL store (store.h, "Projects and plans"). A project's
// variable parts are one JSON document; its members are rows of project_members too, for the
// "projects of this key" query. An update is a compare-and-set on the version column.
#include <algorithm>
#include <array>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "supervisor/store/record_codec.h"
#include "supervisor/store/sql_store.h"

namespace sbx::store::internal {
namespace {

using nlohmann::json;

constexpr std::array<ColumnKind, 6> kProjectKinds = {ColumnKind::kText, ColumnKind::kText,
                                                     ColumnKind::kInt,  ColumnKind::kInt,
                                                     ColumnKind::kText, ColumnKind::kInt};
constexpr char kProjectSelect[] = "SELECT id, name, version, created_at, doc, row_no FROM projects";
constexpr std::array<ColumnKind, 5> kPlanKinds = {
    ColumnKind::kText, ColumnKind::kText, ColumnKind::kInt, ColumnKind::kText, ColumnKind::kInt};
constexpr char kPlanSelect[] = "SELECT id, project_id, created_at, doc, row_no FROM plans";

const std::string& Text(const SqlRow& row, size_t i) { return std::get<std::string>(row[i]); }
int64_t Int(const SqlRow& row, size_t i) { return std::get<int64_t>(row[i]); }

Result<std::string> ProjectDoc(const ProjectRecord& p) {
  return EncodeJson({{"created_by", p.created_by},
                     {"updated_at_ms", p.updated_at_ms},
                     {"root_path", p.root_path},
                     {"repo", p.repo},
                     {"default_limits", p.default_limits},
                     {"default_workspace_mode", p.default_workspace_mode},
                     {"labels", p.labels},
                     {"members", p.members}},
                    "project");
}

Result<ProjectRecord> DecodeProject(const SqlRow& row) {
  ProjectRecord p;
  p.id = Text(row, 0);
  try {
    p.name = Text(row, 1);
    p.version = Int(row, 2);
    p.created_at_ms = Int(row, 3);
    const json doc = json::parse(Text(row, 4));
    p.created_by = doc.at("created_by").get<std::string>();
    p.updated_at_ms = doc.at("updated_at_ms").get<int64_t>();
    p.root_path = doc.value("root_path", "");
    p.repo = doc.value("repo", "");
    p.default_limits = doc.value("default_limits", json::object());
    p.default_workspace_mode = doc.value("default_workspace_mode", "ro");
    p.labels = doc.value("labels", std::map<std::string, std::string>());
    p.members = doc.value("members", std::vector<std::string>());
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "stored project {} is malformed: {}", p.id, e.what());
  }
  return p;
}

Result<PlanRecord> DecodePlan(const SqlRow& row) {
  PlanRecord p;
  p.id = Text(row, 0);
  try {
    p.project_id = Text(row, 1);
    p.created_at_ms = Int(row, 2);
    const json doc = json::parse(Text(row, 3));
    p.created_by = doc.at("created_by").get<std::string>();
    p.sha256 = doc.at("sha256").get<std::string>();
    p.plan = doc.at("plan");
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "stored plan {} is malformed: {}", p.id, e.what());
  }
  return p;
}

Result<std::optional<ProjectRecord>> FirstProject(Result<std::vector<SqlRow>> rows) {
  if (!rows.ok()) return std::move(rows).error();
  if (rows->empty()) return std::optional<ProjectRecord>();
  auto p = DecodeProject(rows->front());
  if (!p.ok()) return std::move(p).error();
  return std::optional<ProjectRecord>(std::move(*p));
}

Error ProjectNotFound(std::string_view id) {
  return MakeError(ErrorCode::kNotFound, "project {} not found", id);
}

// Members sorted and unique.
std::vector<std::string> Normalized(std::vector<std::string> members) {
  std::sort(members.begin(), members.end());
  members.erase(std::unique(members.begin(), members.end()), members.end());
  return members;
}

Status WriteMembers(SqlTx& tx, const ProjectRecord& p) {
  std::array<SqlValue, 1> id = {p.id};
  auto cleared = tx.Exec("DELETE FROM project_members WHERE project_id = $1", id);
  if (!cleared.ok()) return std::move(cleared).error();
  for (const std::string& m : p.members) {
    std::array<SqlValue, 2> row = {p.id, m};
    auto added = tx.Exec("INSERT INTO project_members (project_id, key_name) VALUES ($1, $2)", row);
    if (!added.ok()) return std::move(added).error();
  }
  return Ok();
}

// kAlreadyExists naming the name, for a unique violation on insert or update.
Error NameTaken(Error e, const std::string& name) {
  if (e.code == ErrorCode::kAlreadyExists) {
    return MakeError(ErrorCode::kAlreadyExists, "a project named '{}' exists already", name);
  }
  return e;
}

}  // namespace

Result<ProjectRecord> SqlProjects::CreateProject(const ProjectRecord& input) {
  ProjectRecord p = input;
  if (p.name.empty()) return MakeError(ErrorCode::kInvalidArgument, "a project needs a name");
  if (p.id.empty()) p.id = NewProjectId();
  SBX_TRY(CheckId(p.id, "project"));
  p.created_at_ms = NowMs();
  p.updated_at_ms = p.created_at_ms;
  p.version = 1;
  p.members = Normalized(std::move(p.members));
  auto doc = ProjectDoc(p);
  if (!doc.ok()) return std::move(doc).error();
  auto name_ok = EncodeJson(json(p.name), "project name");
  if (!name_ok.ok()) return std::move(name_ok).error();
  SBX_TRY(conn_.Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
    std::array<SqlValue, 5> row = {p.id, p.name, p.version, p.created_at_ms, *doc};
    auto inserted = tx.Exec(
        "INSERT INTO projects (id, name, version, created_at, doc) VALUES ($1, $2, $3, $4, $5)",
        row);
    if (!inserted.ok()) return NameTaken(std::move(inserted).error(), p.name);
    return WriteMembers(tx, p);
  }));
  return p;
}

Result<ProjectRecord> SqlProjects::GetProject(std::string_view id_or_name) {
  std::optional<ProjectRecord> found;
  SBX_TRY(conn_.Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
    std::array<SqlValue, 1> key = {std::string(id_or_name)};
    auto p = FirstProject(
        tx.Query(std::string(kProjectSelect) + " WHERE id = $1 OR name = $1", key, kProjectKinds));
    if (!p.ok()) return std::move(p).error();
    found = std::move(*p);
    return Ok();
  }));
  if (!found) return ProjectNotFound(id_or_name);
  return std::move(*found);
}

Result<ProjectPage> SqlProjects::ListProjects(const ProjectFilter& filter) {
  SBX_TRY(CheckLimit(filter.limit, "project list"));
  Params p;
  std::string sql = std::string(kProjectSelect) + " WHERE 1 = 1";
  if (!filter.cursor.empty()) {
    auto row_no = ParseCursor(filter.cursor);
    if (!row_no.ok()) return std::move(row_no).error();
    sql += " AND row_no > " + p.Add(*row_no);
  }
  if (filter.member) {
    sql += " AND id IN (SELECT project_id FROM project_members WHERE key_name = " +
           p.Add(*filter.member) + ")";
  }
  sql += " ORDER BY row_no LIMIT " + p.Add(int64_t{filter.limit} + 1);
  ProjectPage page;
  SBX_TRY(conn_.Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
    auto rows = tx.Query(sql, p.values(), kProjectKinds);
    if (!rows.ok()) return std::move(rows).error();
    int64_t last = 0;
    for (const SqlRow& row : *rows) {
      if (page.projects.size() == static_cast<size_t>(filter.limit)) {
        page.next_cursor = std::to_string(last);
        break;
      }
      auto project = DecodeProject(row);
      if (!project.ok()) return std::move(project).error();
      page.projects.push_back(std::move(*project));
      last = Int(row, 5);
    }
    return Ok();
  }));
  return page;
}

Result<ProjectRecord> SqlProjects::UpdateProject(std::string_view id, int64_t expected_version,
                                                 const ProjectRecord& input) {
  if (input.name.empty()) return MakeError(ErrorCode::kInvalidArgument, "a project needs a name");
  std::optional<ProjectRecord> out;
  SBX_TRY(conn_.Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
    std::array<SqlValue, 1> key = {std::string(id)};
    auto current = FirstProject(tx.Query(
        std::string(kProjectSelect) + " WHERE id = $1 " + std::string(conn_.RowLockClause()), key,
        kProjectKinds));
    if (!current.ok()) return std::move(current).error();
    if (!*current) return ProjectNotFound(id);
    if (expected_version != 0 && (*current)->version != expected_version) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "project {} is at version {}, not {}; read it again", id,
                       (*current)->version, expected_version);
    }
    ProjectRecord p = input;
    p.id = (*current)->id;
    p.created_by = (*current)->created_by;
    p.created_at_ms = (*current)->created_at_ms;
    p.version = (*current)->version + 1;
    p.updated_at_ms = std::max(NowMs(), (*current)->updated_at_ms);
    p.members = Normalized(std::move(p.members));
    auto doc = ProjectDoc(p);
    if (!doc.ok()) return std::move(doc).error();
    auto name_ok = EncodeJson(json(p.name), "project name");
    if (!name_ok.ok()) return std::move(name_ok).error();
    std::array<SqlValue, 4> row = {p.name, p.version, *doc, p.id};
    auto updated =
        tx.Exec("UPDATE projects SET name = $1, version = $2, doc = $3 WHERE id = $4", row);
    if (!updated.ok()) return NameTaken(std::move(updated).error(), p.name);
    SBX_TRY(WriteMembers(tx, p));
    out = std::move(p);
    return Ok();
  }));
  return std::move(*out);
}

Status SqlProjects::DeleteProject(std::string_view id) {
  return conn_.Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
    std::array<SqlValue, 1> key = {std::string(id)};
    // The plans and members go with it (ON DELETE CASCADE; SQLite runs with foreign keys on).
    auto deleted = tx.Exec("DELETE FROM projects WHERE id = $1", key);
    if (!deleted.ok()) return std::move(deleted).error();
    if (*deleted == 0) return ProjectNotFound(id);
    return Ok();
  });
}

Result<PlanRecord> SqlProjects::CreatePlan(const PlanRecord& input) {
  PlanRecord p = input;
  if (p.id.empty()) p.id = NewPlanId();
  SBX_TRY(CheckId(p.id, "plan"));
  p.created_at_ms = NowMs();
  auto doc =
      EncodeJson({{"created_by", p.created_by}, {"sha256", p.sha256}, {"plan", p.plan}}, "plan");
  if (!doc.ok()) return std::move(doc).error();
  SBX_TRY(conn_.Transact(TxMode::kWrite, [&](SqlTx& tx) -> Status {
    std::array<SqlValue, 1> key = {p.project_id};
    auto exists = tx.Query("SELECT id FROM projects WHERE id = $1", key,
                           std::array<ColumnKind, 1>{ColumnKind::kText});
    if (!exists.ok()) return std::move(exists).error();
    if (exists->empty()) return ProjectNotFound(p.project_id);
    std::array<SqlValue, 4> row = {p.id, p.project_id, p.created_at_ms, *doc};
    auto inserted =
        tx.Exec("INSERT INTO plans (id, project_id, created_at, doc) VALUES ($1, $2, $3, $4)", row);
    if (!inserted.ok()) return std::move(inserted).error();
    return Ok();
  }));
  return p;
}

Result<PlanRecord> SqlProjects::GetPlan(std::string_view plan_id) {
  std::optional<PlanRecord> found;
  SBX_TRY(conn_.Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
    std::array<SqlValue, 1> key = {std::string(plan_id)};
    auto rows = tx.Query(std::string(kPlanSelect) + " WHERE id = $1", key, kPlanKinds);
    if (!rows.ok()) return std::move(rows).error();
    if (rows->empty()) return Ok();
    auto p = DecodePlan(rows->front());
    if (!p.ok()) return std::move(p).error();
    found = std::move(*p);
    return Ok();
  }));
  if (!found) return MakeError(ErrorCode::kNotFound, "plan {} not found", plan_id);
  return std::move(*found);
}

Result<std::vector<PlanRecord>> SqlProjects::ListPlans(std::string_view project_id, int limit) {
  SBX_TRY(CheckLimit(limit, "plan list"));
  std::vector<PlanRecord> out;
  SBX_TRY(conn_.Transact(TxMode::kRead, [&](SqlTx& tx) -> Status {
    std::array<SqlValue, 2> key = {std::string(project_id), int64_t{limit}};
    auto rows =
        tx.Query(std::string(kPlanSelect) + " WHERE project_id = $1 ORDER BY row_no DESC LIMIT $2",
                 key, kPlanKinds);
    if (!rows.ok()) return std::move(rows).error();
    for (const SqlRow& row : *rows) {
      auto p = DecodePlan(row);
      if (!p.ok()) return std::move(p).error();
      out.push_back(std::move(*p));
    }
    return Ok();
  }));
  return out;
}

}  // namespace sbx::store::internal
