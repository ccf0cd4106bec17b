// Pure planners of the Docker backend: what a container is created with (the same protections
// as a native sandbox), what an exec is created with, and how the daemon's figures read back.
// No I/O; unit-tested.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace sbx::docker {

// Labels every container of sandboxd carries; RemoveLeftovers() finds a crashed daemon's by them.
inline constexpr const char* kLabelManaged = "io.sandboxd.managed";
inline constexpr const char* kLabelDaemon = "io.sandboxd.daemon";
inline constexpr const char* kLabelRunId = "io.sandboxd.run-id";

struct Bind {
  std::string source;  // absolute host path (must exist)
  std::string target;  // absolute path inside the container
  bool writable = false;
};

struct ContainerSpec {
  std::string name;   // the container's name ("sbx-<run id>")
  std::string image;  // required
  std::string daemon_identity;  // io.sandboxd.daemon
  std::string run_id;           // io.sandboxd.run-id
  std::map<std::string, std::string> labels;  // extra labels
  std::string hostname = "sandbox";
  // NetworkDisabled: the container gets its own network namespace with only loopback, as
  // NetworkMode none gives it, without the daemon building a network sandbox for it (about
  // 250 ms less per container here). False only to compare with `docker run --network none`, which
  // cannot say it.
  bool network_disabled = true;

  double cpus = 1.0;              // NanoCpus; 0: unlimited
  uint64_t memory_bytes = 0;      // Memory = MemorySwap (no swap); 0: unlimited
  uint64_t pids = 0;              // PidsLimit; 0: unlimited
  uint64_t tmp_size_bytes = 64ull << 20;  // the /tmp tmpfs
  uint64_t max_open_files = 1024;         // RLIMIT_NOFILE

  // The seccomp profile (Docker/OCI JSON text), passed as SecurityOpt seccomp=<text>.
  // IMPORTANT: empty means seccomp=unconfined (weakens isolation); callers always pass one.
  std::string seccomp_json;
  // Numeric "uid:gid" (never a name: the image's /etc/passwd is not trusted). Never 0.
  std::string user = "65534:65534";
  std::vector<Bind> binds;
  // The idle process the container holds while steps are exec'd into it (under Docker's init,
  // which reaps orphans and forwards signals).
  std::vector<std::string> idle_command = {"sleep", "2147483647"};
};

// Whether a run may use `image`: it matches one of `allowed` (fnmatch(3) patterns such as
// "busybox:*" or "registry.example/team/*"), or, with no pattern configured, it is
// `default_image`. kPermissionDenied naming the image and what is allowed otherwise.
Status CheckImageAllowed(const std::string& image, const std::vector<std::string>& allowed,
                         const std::string& default_image);

// Checks the spec (image, user not root, absolute bind paths) and returns the body of
// POST /containers/create: NetworkMode none, NanoCpus, Memory = MemorySwap, PidsLimit,
// CapDrop ALL, no-new-privileges, seccomp, ReadonlyRootfs, a /tmp tmpfs, the binds, Init, labels,
// no restart, no logging of the idle process.
Result<nlohmann::json> CreateBody(const ContainerSpec& spec);

struct ExecSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=VALUE", after the defaults
  std::string cwd = "/";
  std::string user;  // as the container's
  bool attach_stdin = false;
};
// The defaults every process gets unless its env sets them, as the native engine's.
std::vector<std::string> DefaultEnv();
// The body of POST /containers/{id}/exec.
nlohmann::json ExecBody(const ExecSpec& spec);
// The body of POST /containers/create for a container whose own process is `main` (under
// Docker's init, as `docker run --init` does): CreateBody(spec) with the process's argv, env,
// working directory and user in place of the idle command, its output attached, and its stdin
// open for one attach when main.attach_stdin.
Result<nlohmann::json> CreateBodyFor(const ContainerSpec& spec, const ExecSpec& main);

// From GET /containers/{id}/stats?stream=false&one-shot=true (cgroup v1 or v2 layouts).
struct StatsFigures {
  uint64_t cpu_total_ns = 0;
  uint64_t memory_peak_bytes = 0;  // max_usage (v1), else peak, else usage
};
StatsFigures ParseStats(const nlohmann::json& stats);

// A stream of JSON documents, one per line, as it arrives (stats?stream=true, events): `each`
// is called for every complete line that is a JSON object; other lines are skipped, and a
// partial line waits for its end (up to 1 MiB).
class JsonLines {
 public:
  void Feed(std::string_view bytes, const std::function<void(const nlohmann::json&)>& each);

 private:
  std::string partial_;
};

// GET /containers/{id}/stats?stream=true as it arrives: one JSON document per line, a sample
// about once a second while the container runs. Keeps the highest CPU total and memory peak seen;
// lines that are not JSON are skipped, a partial line waits for its end.
class StatsLines {
 public:
  void Feed(std::string_view bytes);
  const StatsFigures& figures() const { return figures_; }
  int samples() const { return samples_; }

 private:
  JsonLines lines_;
  StatsFigures figures_;
  int samples_ = 0;
};

// GET /events filtered to a container's exec_die events, as it arrives: the exit code of one
// exec, from the first exec_die whose execID is `exec_id` (the daemon reports it as the
// attribute exitCode, a decimal string, since Docker 19.03).
class ExecDieLines {
 public:
  explicit ExecDieLines(std::string exec_id) : exec_id_(std::move(exec_id)) {}
  // The exit code once its event has been fed.
  std::optional<int> Feed(std::string_view bytes);

 private:
  JsonLines lines_;
  std::string exec_id_;
  std::optional<int> exit_code_;
};

// The filters= query value of GET /containers/json listing one daemon's containers.
std::string DaemonLabelFilter(const std::string& daemon_identity);

// The daemon's answer to an exec that could not start (the binary is missing or not
// executable) arrives as ordinary stdout text with exit code 126 or 127.
bool IsExecStartFailure(std::string_view first_stdout, int exit_code);
// The same for a container's own process: Docker's init (tini) could not exec it and said so
// on stderr ("[FATAL tini (7)] exec /x failed: No such file or directory"), exit 126 or 127.
inline constexpr std::string_view kInitExecFailurePrefix = "[FATAL tini";
bool IsInitExecFailure(std::string_view first_stderr, int exit_code);

}  // namespace sbx::docker
