#include "tests/support/raw_sql.h"

#include <sqlite3.h>

#include <exception>
#include <memory>
#include <pqxx/pqxx>

namespace sbx::testing {
namespace {

struct SqliteCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};

bool IsSqlite(std::string_view url) { return url.starts_with("sqlite://"); }

Result<std::unique_ptr<sqlite3, SqliteCloser>> OpenSqlite(std::string_view url) {
  std::string path(url.substr(std::string_view("sqlite://").size()));
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr);
  std::unique_ptr<sqlite3, SqliteCloser> db(raw);
  if (rc != SQLITE_OK) {
    return MakeError(ErrorCode::kUnavailable, "sqlite open {}: {}", path, sqlite3_errstr(rc));
  }
  sqlite3_busy_timeout(raw, 10'000);
  return db;
}

}  // namespace

Status ExecRawSql(std::string_view url, std::string_view sql) {
  if (IsSqlite(url)) {
    auto db = OpenSqlite(url);
    if (!db.ok()) return std::move(db).error();
    std::string text(sql);
    if (sqlite3_exec(db->get(), text.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
      return MakeError(ErrorCode::kInternal, "sqlite: {}: {}", sql, sqlite3_errmsg(db->get()));
    }
    return Ok();
  }
  try {
    pqxx::connection conn{std::string(url)};
    pqxx::nontransaction tx(conn);
    tx.exec(std::string(sql));
    tx.commit();
    return Ok();
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "postgresql: {}: {}", sql, e.what());
  }
}

Result<std::string> QueryRawScalar(std::string_view url, std::string_view sql) {
  if (IsSqlite(url)) {
    auto db = OpenSqlite(url);
    if (!db.ok()) return std::move(db).error();
    sqlite3_stmt* stmt = nullptr;
    std::string text(sql);
    if (sqlite3_prepare_v2(db->get(), text.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      return MakeError(ErrorCode::kInternal, "sqlite: {}: {}", sql, sqlite3_errmsg(db->get()));
    }
    std::string out;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
      return MakeError(ErrorCode::kInternal, "sqlite: {}: {}", sql, sqlite3_errmsg(db->get()));
    }
    return out;
  }
  try {
    pqxx::connection conn{std::string(url)};
    pqxx::nontransaction tx(conn);
    pqxx::result r = tx.exec(std::string(sql));
    if (r.empty() || r[0][0].is_null()) return std::string();
    return std::string(r[0][0].c_str());
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "postgresql: {}: {}", sql, e.what());
  }
}

}  // namespace sbx::testing
