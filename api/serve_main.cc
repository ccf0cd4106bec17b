// sandboxd-server: the daemon behind `sandboxd serve` (a binary of its own, so that
// `sandboxd exec` never loads the database client and the HTTP stack).
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "api/openapi_routes.h"
#include "api/run_routes.h"
#include "api/server.h"
#include "base/fs.h"
#include "supervisor/config.h"
#include "supervisor/policy/command_policy.h"
#include "supervisor/run_manager.h"
#include "base/sha256.h"
#include "supervisor/store/store.h"

namespace {

constexpr const char* kUsage = R"(Usage: sandboxd serve [--config FILE] [--listen ADDR]... [--database URL]
                      [--data-dir DIR] [--node NAME] [--dev-key]

Runs the sandboxd service: the HTTP/WebSocket API, the review gate and the run workers.
  --config FILE    YAML configuration (every setting is documented in the shipped sandboxd.yaml)
  --listen ADDR    HOST:PORT or unix:/PATH (repeatable; replaces the file's list)
  --database URL   sqlite:///ABSOLUTE/PATH or postgresql://...
  --data-dir DIR   where run logs live
  --node NAME      this daemon's name in a shared database (default: the hostname)
  --dev-key        add a development admin key and a reviewer key and print them (for make run)
)";

std::string RandomKey() {
  unsigned char b[24];
  if (::getrandom(b, sizeof b, 0) != static_cast<ssize_t>(sizeof b)) return "";
  static const char kHex[] = "0123456789abcdef";
  std::string s = "sbx_";
  for (unsigned char c : b) {
    s.push_back(kHex[c >> 4]);
    s.push_back(kHex[c & 15]);
  }
  return s;
}

int Fail(const std::string& what, const sbx::Error& e) {
  std::fprintf(stderr, "sandboxd serve: %s: %s\n", what.c_str(), e.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sbx;
  // SIGINT/SIGTERM end the service: blocked before any thread exists (so every thread inherits
  // the mask and none is killed by them), and waited for at the end of main.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);
  ::pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string config_path;
  bool dev_key = false;
  std::vector<std::string> flags;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "-h" || args[i] == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (args[i] == "--config" && i + 1 < args.size()) {
      config_path = args[++i];
    } else if (args[i].rfind("--config=", 0) == 0) {
      config_path = args[i].substr(9);
    } else if (args[i] == "--dev-key") {
      dev_key = true;
    } else {
      flags.push_back(args[i]);
    }
  }
  supervisor::ServiceConfig config;
  if (!config_path.empty()) {
    auto c = supervisor::LoadConfig(config_path);
    if (!c.ok()) return Fail("configuration", c.error());
    config = std::move(*c);
  }
  if (Status st = supervisor::ApplyFlags(flags, config); !st.ok()) {
    return Fail("configuration", st.error());
  }
  std::vector<std::pair<std::string, std::string>> printed;
  if (dev_key) {
    for (auto [name, role] : {std::pair{"dev-admin", supervisor::Role::kAdmin},
                              std::pair{"dev-reviewer", supervisor::Role::kReviewer}}) {
      std::string key = RandomKey();
      config.api_keys.push_back({name, role, Sha256Hex(key)});
      printed.emplace_back(name, key);
    }
  }

  // Storage first: a database that cannot be reached or migrated stops the start.
  if (::mkdir(config.data_dir.c_str(), 0711) < 0 && errno != EEXIST) {
    return Fail("data_dir", ErrnoError("mkdir {}", config.data_dir));
  }
  auto st = store::Open(config.database);
  if (!st.ok()) return Fail("database", st.error());
  auto migrated = (*st)->Migrate();
  if (!migrated.ok()) return Fail("database migration", migrated.error());

  auto host = cgroup::DetectHost();
  if (!host.ok()) return Fail("cgroups", host.error());
  auto driver = cgroup::Driver::Open(cgroup::DriverOptions{config.cgroup_parent}, *host);
  if (!driver.ok()) return Fail("cgroups", driver.error());
  // Sandboxes of a daemon killed with SIGKILL died with it (PDEATHSIG); their cgroups did not.
  auto leftovers = (*driver)->RemoveLeftovers();
  if (!leftovers.ok()) return Fail("removing leftover cgroups", leftovers.error());
  for (const auto& name : *leftovers) {
    spdlog::warn("removed cgroup {}/{} left by an earlier run of the daemon", config.cgroup_parent,
                 name);
  }

  // The command policy: <policy_dir>/commands.yaml, else the shipped default. A broken file
  // stops the start: the daemon never runs with rules other than the administrator's.
  std::shared_ptr<const policy::CommandPolicy> command_policy;
  if (auto loaded = policy::CommandPolicy::LoadDir(config.policy_dir); loaded.ok()) {
    command_policy = std::move(*loaded);
  } else if (loaded.error().code == ErrorCode::kNotFound) {
    command_policy = policy::CommandPolicy::Builtin();
    spdlog::info("no {}/commands.yaml: using the shipped command policy", config.policy_dir);
  } else {
    return Fail("command policy", loaded.error());
  }

  supervisor::RunManagerOptions ro;
  ro.node = config.node;
  ro.data_dir = config.data_dir;
  ro.limits = config.limits;
  ro.cgroups = driver->get();
  ro.command_policy = command_policy;
  auto runs = supervisor::RunManager::Start(**st, ro);
  if (!runs.ok()) return Fail("run manager", runs.error());

  std::vector<api::ApiKeyConfig> keys;
  for (const auto& k : config.api_keys) {
    api::Role role = k.role == supervisor::Role::kAdmin      ? api::Role::kAdmin
                     : k.role == supervisor::Role::kReviewer ? api::Role::kReviewer
                                                             : api::Role::kSubmitter;
    keys.push_back({k.name, role, k.key_sha256});
  }
  auto auth = api::Authenticator::Create(keys);
  if (!auth.ok()) return Fail("api_keys", auth.error());
  api::Router router;
  // The API reads (runs, events for every follower, audit) on a connection of its own, so they
  // never wait behind the run workers' writes (SQLite in WAL mode reads beside one writer).
  auto api_store = store::Open(config.database);
  if (!api_store.ok()) return Fail("database", api_store.error());
  api::RouteContext ctx{runs->get(), api_store->get(), &config, &*host};
  if (Status r = api::AddRunRoutes(router, ctx); !r.ok()) return Fail("routes", r.error());
  if (Status r = api::AddOpenApiRoute(router); !r.ok()) return Fail("openapi", r.error());

  api::ServerOptions so;
  so.listen = config.listen;
  so.max_body_bytes = config.max_body_bytes;
  auto server = api::Server::Start(so, std::move(router), std::move(*auth));
  if (!server.ok()) return Fail("listen", server.error());
  for (const auto& a : (*server)->addresses()) {
    std::printf("sandboxd: listening on %s\n", a.ToString().c_str());
  }
  for (const auto& [name, key] : printed) {
    std::printf("sandboxd: development API key %s: %s\n", name.c_str(), key.c_str());
  }
  std::printf("sandboxd: ready (database %s, node %s)\n",
              config.database.substr(0, config.database.find('@')).c_str(),
              (*runs)->options().node.c_str());
  std::fflush(stdout);

  int sig = 0;
  for (;;) {
    ::sigwait(&stop_signals, &sig);
    if (sig != SIGHUP) break;
    // SIGHUP: reload the policies; a broken file is refused and the rules in force stay.
    Status reloaded = (*runs)->ReloadCommandPolicy(config.policy_dir,
                                                   supervisor::Principal{"SIGHUP", supervisor::Role::kAdmin});
    if (!reloaded.ok()) spdlog::error("SIGHUP: {}", reloaded.error().ToString());
  }
  std::printf("sandboxd: stopping (signal %d)\n", sig);
  (*server)->Stop(std::chrono::seconds(10));
  (*runs)->Stop();
  return 0;
}
