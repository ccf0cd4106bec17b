// A throwaway PostgreSQL cluster for tests: initdb into a fresh directory under /tmp, a server on
// a free loopback port (its unix socket in that directory too), trust authentication, fsync off.
// Stopped and removed by Stop() or the destructor.
//
// initdb refuses to run as root, so as root the server tools run as the `postgres` user (which
// Debian's postgresql package creates) and the directory is handed to that user.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace sbx::testing {

// The directory holding initdb and pg_ctl: $SBX_PG_BINDIR when set, else the newest
// /usr/lib/postgresql/<version>/bin that has them. kUnavailable, saying how to install them,
// when there is none.
Result<std::string> FindPgBinDir();

struct PgOptions {
  // Besides 127.0.0.1: more addresses to listen on, comma-separated (listen_addresses).
  std::string also_listen;
  // A network (CIDR) whose clients are trusted like loopback's, e.g. "10.77.0.0/24".
  std::string trusted_network;
};

class PgCluster {
 public:
  // Takes at most about a minute (initdb, then pg_ctl start -w with a 30 s limit). The server
  // runs in the calling thread's network namespace.
  static Result<std::unique_ptr<PgCluster>> Start(const PgOptions& options = {});
  ~PgCluster();
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  // Stops the server (fast shutdown, immediate if that fails) and removes the directory.
  Status Stop();

  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  // postgresql://postgres@<host>:<port>/<database>
  std::string Url(std::string_view database, std::string_view host = "127.0.0.1") const;
  Status CreateDatabase(std::string_view name);
  // Drops it even while connections remain (WITH (FORCE)).
  Status DropDatabase(std::string_view name);

 private:
  PgCluster() = default;
  // Runs a server tool (as `postgres` when we are root), its output appended to tools.log;
  // fails with the log's tail when it exits non-zero or outlives `timeout_s`.
  Status RunTool(const std::string& tool, std::vector<std::string> args, int timeout_s);

  std::string bin_dir_;
  std::string dir_;
  int port_ = 0;
  bool running_ = false;
  bool drop_privileges_ = false;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
};

}  // namespace sbx::testing
