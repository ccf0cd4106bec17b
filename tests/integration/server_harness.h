// Shared fixture for the tests that run the real daemon binary (sandboxd-server): a temporary
// directory of its own (config, policies, database, data dir; 0711, the sandboxes reach their
// mount points through it), a cgroup parent of its own, the daemon started with its stdout on a
// pipe and, optionally, what systemd hands a service (environment, a listening fd, a cgroup, a
// journal stream), and everything removed at the end.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "api/testing/raw_client.h"
#include "base/unique_fd.h"
#include "integration/sandbox_harness.h"

namespace sbx::testing {

struct ServerKey {
  std::string name;
  std::string role;  // submitter, reviewer, admin
  std::string key;   // the secret; the config gets its sha256
};

// How the daemon's process starts, besides `--config DIR/sandboxd.yaml`.
struct ServerEnv {
  std::vector<std::pair<std::string, std::string>> vars;
  bool watchdog_pid = false;         // WATCHDOG_PID=<child pid>
  int listen_fd = -1;                // handed over as fd 3 with LISTEN_FDS=1, LISTEN_PID=<child>
  std::vector<std::string> args;     // more arguments
  std::vector<std::string> cgroups;  // cgroup.procs files to write the child's pid into
  std::string stderr_path;           // stderr to this file, with JOURNAL_STREAM naming it
  int netns_fd = -1;                 // a network namespace to start the daemon in
};

class ServerTest : public SandboxTest {
 protected:
  // `name` names the directory (/tmp/sbx-NAME-XXXXXX), the node (NAME-test) and the cgroup
  // parent (sandboxd-NAME-test-PID); `rules` are policies/commands.yaml's rules, a line each.
  void SetUpServer(const std::string& name, const std::string& rules);
  // A daemon still running gets SIGTERM (it removes its runs' mounts and cgroups), SIGKILL
  // after 30 s; then the cgroup parent and the directory are removed.
  void TearDown() override;

  // DIR/sandboxd.yaml: `listen` ("unix:PATH" or "127.0.0.1:0"), the database (database_, or
  // SQLite in DIR), data dir and policy dir in DIR, the node, the cgroup parent, the keys, then `extra` (YAML lines).
  void WriteConfig(const std::string& listen, const std::vector<ServerKey>& keys,
                   const std::string& extra = "");
  // Forks and execs the daemon; its stdout stays readable on stdout_fd_.
  void StartServer(const ServerEnv& env = {});
  // The daemon's stdout until "sandboxd: ready" (or its end).
  std::string ReadUntilReady();
  // StartServer(), then waits until it is ready on host_ (127.0.0.1 unless set) and sets port_
  // (a failed assertion when it never is); its later output goes to a closed pipe.
  void StartServerOnLoopback(const ServerEnv& env = {});
  // Sends `signal` and waits for the daemon; its wait status.
  int StopServer(int signal);

  // A connection to the API: api_sock_ when set, else host_:port_.
  std::optional<api::testing::RawConn> Connect() const;
  api::testing::HttpReply Call(const std::string& method, const std::string& target,
                               const char* key, const std::string& body = "");
  // The run's first event of `type`, read from its event stream from the start; null when the
  // stream ended first.
  nlohmann::json WaitForEvent(const std::string& id, const std::string& type, const char* key);

  std::string database_;  // the config's database; "" = sqlite in dir_
  std::string dir_;
  std::string node_;
  std::string cgroup_parent_;
  std::string api_sock_;
  std::string host_ = "127.0.0.1";  // the address of its TCP listener
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  UniqueFd stdout_fd_;
};

}  // namespace sbx::testing
