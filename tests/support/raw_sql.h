// SQL run straight against the database behind a store URL, bypassing the Store: for tests that
// inspect or tamper with rows, and for creating test databases.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace sbx::testing {

// Runs `sql` (one or more statements) outside a transaction block. url is a store URL:
// sqlite:///abs/path.db or postgresql://…
Status ExecRawSql(std::string_view url, std::string_view sql);
// The first column of the first row as text ("" for NULL or no row).
Result<std::string> QueryRawScalar(std::string_view url, std::string_view sql);

}  // namespace sbx::testing
