// sandboxd-server: the daemon behind `sandboxd serve` (a binary of its own, so that
// `sandboxd exec` never loads the database client and the HTTP stack).
#include <atomic>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "api/daemon/runner_mode.h"
#include "api/daemon/service_notify.h"
#include "base/random.h"
#include "supervisor/runner/protocol.h"
#include "api/http/server.h"
#include "api/http/static_files.h"
#include "api/mcp/mcp_routes.h"
#include "api/v1/metrics_routes.h"
#include "api/v1/openapi_routes.h"
#include "api/v1/run_routes.h"
#include "api/v1/sandbox_routes.h"
#include "base/fs.h"
#include "base/sha256.h"
#include "isolate/id_range.h"
#include "isolate/spawner.h"
#include "supervisor/observability/log.h"
#include "supervisor/observability/metrics.h"
#include "supervisor/policy/command_policy.h"
#include "supervisor/sandbox/sandbox_service.h"
#include "supervisor/service/config.h"
#include "supervisor/service/run_manager.h"
#include "supervisor/store/store.h"

namespace {

constexpr const char* kUsage = R"(Usage: sandboxd serve [--config FILE] [--listen ADDR]... [--database URL]
                      [--data-dir DIR] [--node NAME] [--log-level LEVEL]
                      [--web-root DIR]
                      [--cgroup-delegation auto|yes|no] [--dev-key]

Runs the sandboxd service: the HTTP/WebSocket API, the review gate and the run workers.

       sandboxd runner --connect ws[s]://COORDINATOR/v1/runners --token-file FILE
                       [--ca-file PEM] [--node NAME] [--data-dir DIR] [--config FILE]

Runs an outbound runner: no listener; the runs a serve node (the coordinator) routes to it come
over one WebSocket it dials, and what they record goes back over it. Its own records are kept
in <data_dir>/runner.db and <data_dir>/outbox until the coordinator has them.
  --config FILE    YAML configuration (every setting is documented in the shipped sandboxd.yaml)
  --listen ADDR    HOST:PORT or unix:/PATH (repeatable; replaces the file's list)
  --database URL   sqlite:///ABSOLUTE/PATH or postgresql://...
  --data-dir DIR   where run logs live
  --node NAME      this daemon's name in a shared database (default: the hostname)
  --web-root DIR   the web page's built files, served at / (default /usr/share/sandboxd/web)
  --log-level LEVEL  error, warning, notice, info (default) or debug
  --cgroup-delegation auto|yes|no
                   put the sandboxes below the daemon's own cgroup (systemd Delegate=yes);
                   auto: when started by a systemd service

Under systemd (Type=notify) it reports READY=1, STATUS=, WATCHDOG=1, RELOADING=1 and
STOPPING=1, takes sockets passed by socket activation (LISTEN_FDS) and logs to the journal.
SIGHUP reloads the command policy; SIGTERM stops it (running runs end FAILED).
  --dev-key        add a development admin key and a reviewer key and print them (for make run)
)";

std::string RandomKey() { return "sbx_" + sbx::RandomHex(24); }

// "sandboxd serve", or "sandboxd runner" once main knows it is one.
const char* g_command = "sandboxd serve";

int Fail(const std::string& what, const sbx::Error& e) {
  sbx::log::Error({}, "{}: {}: {}", g_command, what, e.ToString());
  return 1;
}

// The same address, so that a listener systemd passed is not bound a second time.
bool SameAddress(const std::string& spec, const sbx::api::ListenAddress& bound) {
  auto a = sbx::api::ParseListenAddress(spec);
  if (!a.ok() || a->kind != bound.kind) return false;
  if (a->kind == sbx::api::ListenAddress::Kind::kUnix) return a->path == bound.path;
  return a->host == bound.host && a->port == bound.port;
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
  // `sandboxd runner` execs this binary with argv[0] "sandboxd runner"; `sandboxd-server runner`
  // says the same.
  bool runner_mode = argc > 0 && std::string_view(argv[0]).ends_with("runner");
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
    } else if (args[i] == "runner" && flags.empty()) {
      runner_mode = true;
    } else {
      flags.push_back(args[i]);
    }
  }
  // The sandboxes' inits are cloned by a spawner forked now, while this process still has one
  // thread and has read nothing secret (the configuration's database URL, the keys): cloned
  // from the daemon itself, each would share the daemon's memory copy-on-write for its whole
  // life (see isolate/spawner.h). It follows the daemon into its delegated cgroup below.
  // Destroyed last, after every run has ended.
  auto spawner = isolate::Spawner::Start();
  if (!spawner.ok()) return Fail("sandbox spawner", spawner.error());
  // The file (or the defaults), the SANDBOXD_ variables over it, the flags over both.
  supervisor::ServiceConfig config;
  {
    auto c = supervisor::LoadConfig(config_path);
    if (!c.ok()) return Fail("configuration", c.error());
    config = std::move(*c);
  }
  api::RunnerFlags runner_flags;
  if (runner_mode) g_command = "sandboxd runner";
  if (runner_mode) {
    auto rf = api::TakeRunnerFlags(flags);
    if (!rf.ok()) return Fail("options", rf.error());
    runner_flags = std::move(*rf);
  }
  if (Status st = supervisor::ApplyFlags(flags, config); !st.ok()) {
    return Fail("configuration", st.error());
  }
  if (runner_mode) {
    // A runner's store is its own: the runs it was handed and its outbox, never shared.
    config.database = "sqlite://" + config.data_dir + "/runner.db";
    if (config.node.empty()) {
      char name[256] = {};
      ::gethostname(name, sizeof name - 1);
      config.node = name;
    }
    if (Status n = store::CheckRunnerName(config.node); !n.ok()) return Fail("node", n.error());
  }
  // To the journal under systemd, plain text on a terminal; spdlog's lines go the same way.
  log::Options log_options;
  if (auto level = log::ParseLevel(config.log_level); level.ok()) log_options.level = *level;
  log::Configure(log_options);
  log::InstallSpdlogSink();
  const api::ServiceNotifier notifier = api::ServiceNotifier::FromEnvironment();
  // Sockets systemd passed (sandboxd.socket); taken before anything could inherit them.
  auto activated = api::TakeActivatedSockets();
  if (!activated.ok()) return Fail("socket activation", activated.error());
  std::vector<std::pair<std::string, std::string>> printed;
  if (dev_key) {
    for (auto [name, role] : {std::pair{"dev-admin", supervisor::Role::kAdmin},
                              std::pair{"dev-reviewer", supervisor::Role::kReviewer}}) {
      std::string key = RandomKey();
      config.api_keys.push_back({name, role, Sha256Hex(key)});
      printed.emplace_back(name, key);
    }
  }

  // The sandboxes' host ids must be nobody else's (isolate/id_range.h).
  if (Status ids = isolate::CheckSandboxIdsOnHost(config.sandbox_id_base); !ids.ok()) {
    return Fail("sandbox_id_base", ids.error());
  }
  // Storage first: a database that cannot be reached or migrated stops the start.
  if (::mkdir(config.data_dir.c_str(), 0711) < 0 && errno != EEXIST) {
    return Fail("data_dir", ErrnoError("mkdir {}", config.data_dir));
  }
  // On PostgreSQL, a connection silent for node_timeout counts as dead, on both ends
  // (store::OpenOptions): a partition must not leave this node, or the others, waiting on it.
  const store::OpenOptions store_options{
      .peer_timeout = std::chrono::milliseconds(config.node_timeout_ms)};
  auto st = store::Open(config.database, store_options);
  if (!st.ok()) return Fail("database", st.error());
  auto migrated = (*st)->Migrate();
  if (!migrated.ok()) return Fail("database migration", migrated.error());

  auto host = cgroup::DetectHost();
  if (!host.ok()) return Fail("cgroups", host.error());
  // The daemon's own cgroup, when systemd delegated it (Delegate=yes): the sandboxes go below
  // it, so stopping the unit kills all of them; the daemon moves into a leaf of it first.
  cgroup::DriverOptions driver_options{config.cgroup_parent};
  {
    auto self = ReadFile("/proc/self/cgroup");
    if (!self.ok()) return Fail("cgroups", self.error());
    cgroup::OwnCgroups own = cgroup::ParseProcCgroup(*self);
    bool delegated = config.cgroup_delegation == "yes" ||
                     (config.cgroup_delegation == "auto" &&
                      cgroup::LooksDelegatedBySystemd(own, std::getenv("INVOCATION_ID")));
    if (delegated) {
      auto plan = cgroup::PlanDelegation(own, *host, config.cgroup_parent);
      if (!plan.ok()) return Fail("cgroup delegation", plan.error());
      const pid_t spawner_pid = (*spawner)->pid();
      if (Status a = cgroup::ApplyDelegation(*plan, *host, std::span(&spawner_pid, 1)); !a.ok()) {
        return Fail("cgroup delegation", a.error());
      }
      driver_options = plan->driver;
      log::Info({}, "cgroups: delegated subtree {}; the daemon runs in {}, sandboxes below {}",
                plan->own, plan->leaf, "/" + plan->driver.parent);
    }
  }
  auto driver = cgroup::Driver::Open(driver_options, *host);
  // Without usable cgroups the native backend is unavailable; with Docker allowed as the
  // default (docker, auto), the daemon still starts and its runs go to Docker.
  std::string cgroup_error;
  if (!driver.ok()) {
    if (config.default_backend == "native") return Fail("cgroups", driver.error());
    cgroup_error = driver.error().ToString();
    log::Warning({}, "cgroups: {}; the native backend is unavailable", cgroup_error);
  }
  // Sandboxes of a daemon killed with SIGKILL died with it (PDEATHSIG); their cgroups did not.
  if (driver.ok()) {
    auto leftovers = (*driver)->RemoveLeftovers();
    if (!leftovers.ok()) return Fail("removing leftover cgroups", leftovers.error());
    for (const auto& name : *leftovers) {
      log::Warning({name, name}, "run {}: removed its cgroup {}/{} left by an earlier run of the daemon",
                   name, driver_options.parent, name);
    }
  }

  // The command policy: <policy_dir>/commands.yaml, else the shipped default. A broken file
  // stops the start: the daemon never runs with rules other than the administrator's.
  std::shared_ptr<const policy::CommandPolicy> command_policy;
  if (auto loaded = policy::CommandPolicy::LoadDir(config.policy_dir); loaded.ok()) {
    command_policy = std::move(*loaded);
  } else if (loaded.error().code == ErrorCode::kNotFound) {
    command_policy = policy::CommandPolicy::Builtin();
    log::Info({}, "no {}/commands.yaml: using the shipped command policy", config.policy_dir);
  } else {
    return Fail("command policy", loaded.error());
  }

  // The allowlisted jobs: <policy_dir>/jobs.yaml, or none. A broken file stops the start too.
  std::shared_ptr<const policy::JobSet> jobs = policy::JobSet::Empty();
  if (auto loaded = policy::JobSet::LoadDir(config.policy_dir); loaded.ok()) {
    jobs = std::move(*loaded);
    log::Info({}, "{} job(s) from {}", jobs->jobs().size(), jobs->source());
  } else if (loaded.error().code != ErrorCode::kNotFound) {
    return Fail("jobs", loaded.error());
  }

  supervisor::RunManagerOptions ro;
  ro.node = config.node;
  ro.node_labels = config.node_labels;
  ro.node_address = config.node_address;
  ro.node_version = SBX_SERVER_VERSION;
  ro.heartbeat_interval = std::chrono::milliseconds(config.heartbeat_interval_ms);
  ro.node_timeout = std::chrono::milliseconds(config.node_timeout_ms);
  ro.data_dir = config.data_dir;
  ro.limits = config.limits;
  ro.cgroups = driver.ok() ? driver->get() : nullptr;
  ro.engine.spawner = spawner->get();
  // Whether this host can build native sandboxes (root, user namespaces, seccomp, cgroups).
  ro.native = supervisor::MakeNativeBackend(ro.cgroups, ro.engine,
                                            supervisor::ProbeNativeHost(ro.cgroups, cgroup_error));
  ro.command_policy = command_policy;
  ro.jobs = jobs;
  ro.planners = config.planners;
  ro.seccomp_profiles_dir = config.seccomp_profiles_dir;  // reloaded with the command policy
  // Docker: connected lazily, so a daemon that is down makes the backend unavailable (shown in
  // GET /v1/info with the reason), not the start fail.
  ro.default_backend = config.default_backend;
  ro.sandbox_id_base = static_cast<uid_t>(config.sandbox_id_base);
  {
    supervisor::DockerBackendOptions docker;
    docker.host = config.docker_host;
    docker.default_image = config.docker_image;
    docker.allowed_images = config.docker_images;
    docker.identity = config.node;
    if (docker.identity.empty()) {
      char name[256] = {};
      ::gethostname(name, sizeof name - 1);
      docker.identity = name;
    }
    ro.docker = supervisor::MakeDockerBackend(std::move(docker));
  }
  supervisor::Metrics metrics;
  ro.metrics = &metrics;
  auto status_line = [&metrics, &st]() {
    int64_t queued = 0;
    if (auto counts = (*st)->CountByState(); counts.ok()) queued = (*counts)[store::RunState::kQueued];
    return fmt::format("{} running, {} queued", metrics.active_sandboxes(), queued);
  };
  ro.on_policy_reload = [&notifier, &status_line](bool reloading) {
    if (reloading) {
      notifier.Reloading("reloading the command policy");
    } else {
      notifier.Ready(status_line());
    }
  };
  // A runner: every commit about a run its coordinator handed it goes to the outbox.
  std::atomic<supervisor::runner::Uplink*> uplink_hook{nullptr};
  if (runner_mode) {
    ro.on_commit = [&uplink_hook](std::span<const store::Write> writes) {
      if (auto* u = uplink_hook.load()) u->OnCommit(writes);
    };
  }
  auto runs = supervisor::RunManager::Start(**st, ro);
  if (!runs.ok()) return Fail("run manager", runs.error());
  if (runner_mode) {
    auto uplink = supervisor::runner::Uplink::Open(
        {.name = config.node,
         .data_dir = config.data_dir,
         .labels = (*runs)->NodeLabels(),
         .capacity = std::max<int64_t>(1, config.limits.max_concurrent_runs),
         .version = SBX_SERVER_VERSION},
        **st);
    if (!uplink.ok()) return Fail("runner", uplink.error());
    uplink_hook = uplink->get();
    (*uplink)->Attach(runs->get());
    std::printf("sandboxd: ready (runner %s, connecting to %s)\n", config.node.c_str(),
                runner_flags.connect.c_str());
    std::fflush(stdout);
    notifier.Ready("connecting to " + runner_flags.connect);
    const int sig = api::RunRunnerLink(runner_flags, **uplink, stop_signals);
    notifier.Stopping(fmt::format("stopping (signal {})", sig));
    std::printf("sandboxd: stopping (signal %d)\n", sig);
    std::fflush(stdout);
    (*runs)->Stop();
    uplink_hook = nullptr;
    return 0;
  }
  // Long-lived sandboxes: the runs' backends, seccomp profiles, command policy and event bus.
  // Started after the run manager and stopped before it.
  supervisor::SandboxServiceOptions sbo;
  sbo.node = (*runs)->options().node;
  sbo.node_labels = (*runs)->NodeLabels();
  sbo.data_dir = config.data_dir;
  sbo.limits = config.limits;
  sbo.native = (*runs)->native_backend();
  sbo.docker = (*runs)->docker_backend();
  sbo.default_backend = config.default_backend;
  sbo.sandbox_id_base = static_cast<uid_t>(config.sandbox_id_base);
  sbo.seccomp = (*runs)->seccomp_source(/*live=*/true);
  sbo.max_sandboxes = config.sandboxes.max;
  sbo.default_timeout_s = config.sandboxes.default_timeout_s;
  sbo.max_timeout_s = config.sandboxes.max_timeout_s;
  sbo.default_idle_timeout_s = config.sandboxes.default_idle_timeout_s;
  sbo.command_policy = [r = runs->get()] { return r->command_policy(); };
  sbo.metrics = &metrics;
  auto sandboxes = supervisor::SandboxService::Start(**st, (*runs)->events(), std::move(sbo));
  if (!sandboxes.ok()) return Fail("sandbox service", sandboxes.error());

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
  auto api_store = store::Open(config.database, store_options);
  if (!api_store.ok()) return Fail("database", api_store.error());
  api::RouteContext ctx{runs->get(), api_store->get(), &config, &*host};
  if (Status r = api::AddRunRoutes(router, ctx); !r.ok()) return Fail("routes", r.error());
  if (Status r = api::AddSandboxRoutes(router, {sandboxes->get(), &config, ctx});
      !r.ok()) {
    return Fail("sandbox routes", r.error());
  }
  // The MCP server (docs/mcp.md) on the sandboxes and the audit trail.
  api::mcp::McpServer mcp_server({sandboxes->get(), &(*runs)->events(), &config, SBX_SERVER_VERSION});
  if (Status r = api::mcp::AddMcpRoutes(router, {&mcp_server, &config}); !r.ok()) {
    return Fail("mcp routes", r.error());
  }
  if (Status r = api::AddOpenApiRoute(router); !r.ok()) return Fail("openapi", r.error());
  // The web page (api/web/): static files, public; it asks for a key in the browser.
  if (Status r = api::AddStaticSite(router, config.web_root); !r.ok()) {
    return Fail("web page", r.error());
  }
  if (Status r = api::AddMetricsRoute(router, &metrics, config.metrics_require_key,
                                     [ctx] { return api::NodeMetrics(ctx); });
      !r.ok()) {
    return Fail("metrics", r.error());
  }
  // Scrapes read the queue from the API's own database connection.
  metrics.SetQueueCounts([s = api_store->get()]() -> std::optional<supervisor::QueueCounts> {
    auto counts = s->CountByState();
    if (!counts.ok()) return std::nullopt;
    return supervisor::QueueCounts{(*counts)[store::RunState::kQueued],
                                   (*counts)[store::RunState::kAwaitingReview]};
  });

  api::ServerOptions so;
  for (const api::ActivatedSocket& a : *activated) so.listen_fds.push_back(a.fd);
  for (const std::string& spec : config.listen) {
    // A configured address systemd already listens on (sandboxd.socket) comes from it.
    bool passed = false;
    for (const api::ActivatedSocket& a : *activated) {
      auto adopted = api::AdoptListener(::dup(a.fd));
      passed = passed || (adopted.ok() && SameAddress(spec, adopted->address));
    }
    if (!passed) so.listen.push_back(spec);
  }
  so.max_body_bytes = config.max_body_bytes;
  so.max_connections_per_address = config.max_connections_per_address;
  so.max_connections_per_key = config.max_connections_per_key;
  so.ws_queue_budget_bytes = config.ws_queue_budget_bytes;
  // A runner's link carries its commits and file chunks (supervisor/runner/protocol.h).
  so.ws_max_incoming_bytes = supervisor::runner::kMaxMessageBytes + (64 << 10);
  so.on_response = [&metrics](const api::RequestOutcome& o) {
    metrics.ApiRequest(o.method, o.route, o.status, o.latency);
  };
  // WATCHDOG=1 from a timer on the I/O context itself: a stuck event loop stops the pings and
  // systemd restarts the service (WatchdogSec=, Restart=on-failure).
  if (notifier.watchdog_interval().count() > 0) {
    so.tick_interval = notifier.watchdog_interval();
    so.on_tick = [&notifier] { notifier.Watchdog(); };
  }
  auto server = api::Server::Start(so, std::move(router), std::move(*auth));
  if (!server.ok()) return Fail("listen", server.error());
  for (const auto& a : (*server)->addresses()) {
    std::printf("sandboxd: listening on %s\n", a.ToString().c_str());
  }
  // Without node_address, the first TCP listener (the host name for a wildcard address) is
  // where the other nodes forward what only this node has (a run's logs and artifacts).
  if (config.node_address.empty()) {
    for (const auto& a : (*server)->addresses()) {
      if (a.kind != api::ListenAddress::Kind::kTcp) continue;
      std::string host = a.host;
      if (host == "0.0.0.0" || host == "::") {
        char name[256] = {};
        ::gethostname(name, sizeof name - 1);
        host = name;
      } else if (host.find(':') != std::string::npos) {
        host = "[" + host + "]";
      }
      (*runs)->SetNodeAddress(fmt::format("http://{}:{}", host, a.port));
      break;
    }
  }
  // The web page, where it is installed (a browser reaches TCP listeners only).
  if (::access((config.web_root + "/index.html").c_str(), R_OK) == 0) {
    for (const auto& a : (*server)->addresses()) {
      std::string at = a.ToString();
      if (at.rfind("unix:", 0) != 0) std::printf("sandboxd: web page at http://%s/\n", at.c_str());
    }
  }
  for (const auto& [name, key] : printed) {
    std::printf("sandboxd: development API key %s: %s\n", name.c_str(), key.c_str());
  }
  std::printf("sandboxd: ready (database %s, node %s)\n",
              config.database.substr(0, config.database.find('@')).c_str(),
              (*runs)->options().node.c_str());
  std::fflush(stdout);
  // The listeners are bound and crash recovery (RunManager::Start) is done.
  notifier.Ready(status_line());

  int sig = 0;
  for (;;) {
    // STATUS= every few seconds while idle in the signal wait.
    timespec every{5, 0};
    sig = ::sigtimedwait(&stop_signals, nullptr, &every);
    if (sig < 0) {
      notifier.Status(status_line());
      continue;
    }
    if (sig != SIGHUP) break;
    // SIGHUP: reload the policies; a broken file is refused and the rules in force stay.
    Status reloaded = (*runs)->ReloadCommandPolicy(config.policy_dir,
                                                   supervisor::Principal{"SIGHUP", supervisor::Role::kAdmin});
    if (!reloaded.ok()) log::Error({}, "SIGHUP: {}", reloaded.error().ToString());
  }
  notifier.Stopping(fmt::format("stopping (signal {}): ending {} running run(s), {} sandbox(es)",
                                sig, metrics.active_sandboxes(), (*sandboxes)->live_count()));
  std::printf("sandboxd: stopping (signal %d)\n", sig);
  std::fflush(stdout);
  (*server)->Stop(std::chrono::seconds(10));
  (*sandboxes)->Stop();
  (*runs)->Stop();
  return 0;
}
