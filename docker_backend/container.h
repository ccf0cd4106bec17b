// One run's container, in one of two shapes:
// - Create(): an idle process under Docker's init, each step exec'd into it (so the steps share
//   its filesystem, as in a native sandbox). For runs of several steps.
// - Prepare(), then Run(): the one process is the container's own (under Docker's init), as
//   `docker run --init` runs it: created, attached, started, waited for. No second runc for an
//   exec, so a one-step run costs what `docker run` costs. Its CPU time and memory peak are the
//   daemon's stats samples (about one a second while it runs): a process shorter than a sample
//   reads 0, and an OOM kill reads at least the limit it hit.
// Either way the container is removed (force) when the run ends. Output arrives as it is
// produced over the hijacked stream, demultiplexed into stdout and stderr.
//
// How a step ends maps onto the native engine's reasons: exit code (exec inspect), 128+N as
// signal N (the daemon reports a signal death that way), an "oom" event of the container or
// State.OOMKilled as oom_killed, the step's deadline as timed_out and Cancel() as cancelled
// (both kill the whole container, as the native engine kills the whole sandbox), and a command
// the daemon could not start (exit 126/127 with the runtime's message) as a start failure.
//
// Every API call has a deadline; a daemon that dies or stops answering mid-step ends the step
// with an Error saying so, never a hang.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "docker_backend/container_plan.h"
#include "docker_backend/engine_client.h"

namespace sbx::docker {

using Clock = std::chrono::steady_clock;

struct ExecRequest {
  ExecSpec exec;
  std::string stdin_data;  // written to the process's stdin, which is then closed
  uint64_t timeout_ms = 0;  // 0: none
  uint64_t output_limit_bytes = 16ull << 20;  // stdout+stderr delivered; past it discarded
};

enum class ExecEnd { kExited, kSignaled, kOomKilled, kTimedOut, kCancelled, kStartFailed };

struct ExecOutcome {
  ExecEnd end = ExecEnd::kExited;
  std::optional<int> exit_code;
  std::optional<int> signal;
  uint64_t wall_ms = 0;
  uint64_t cpu_ms = 0;             // the container's CPU time during the step
  uint64_t memory_peak_bytes = 0;  // the container's peak so far
  uint64_t stdout_bytes = 0;
  uint64_t stderr_bytes = 0;
  bool output_truncated = false;
  std::string start_error;  // kStartFailed: the runtime's message
};

class Container {
 public:
  // stream is 1 (stdout) or 2 (stderr). Called on the thread that called Run().
  using OutputSink = std::function<void(int stream, std::string_view data)>;

  // Creates and starts the container. kNotFound when the image is not in the daemon's store;
  // the daemon's message for anything else it refuses. Nothing is left behind on failure.
  static Result<std::unique_ptr<Container>> Create(std::shared_ptr<const EngineClient> client,
                                                   const ContainerSpec& spec);
  // Checks the spec and that the image is in the daemon's store (kNotFound otherwise); the
  // container itself is created by Run().
  static Result<std::unique_ptr<Container>> Prepare(std::shared_ptr<const EngineClient> client,
                                                    const ContainerSpec& spec);
  ~Container();  // Destroy(), logging a failure

  // One process: a Create()d container execs it (any number of times); a Prepare()d one runs
  // it as its own process (once).
  Result<ExecOutcome> Run(const ExecRequest& request, const OutputSink& sink);
  // Thread-safe, never blocks: the Run() in progress kills the container and returns
  // kCancelled; a later Run() returns kCancelled at once.
  void Cancel();
  // Removes the container (force). Idempotent.
  Status Destroy();

  const std::string& id() const { return id_; }
  const std::string& name() const { return name_; }

 private:
  Container() = default;
  // The object, before anything is asked of the daemon.
  static Result<std::unique_ptr<Container>> Make(std::shared_ptr<const EngineClient> client,
                                                 const ContainerSpec& spec);
  // How a process's stream ended: killed for the deadline or Cancel(), or not.
  enum class Stop { kNone, kTimeout, kCancel };
  struct Pumped {
    Stop stop = Stop::kNone;
    std::optional<Error> transport;  // the stream failed before its end
    std::string held;  // the runtime's start-failure text, held back until the exit is known
    uint64_t delivered = 0;  // output bytes delivered, against the output limit
  };
  Result<ExecOutcome> Exec(const ExecRequest& request, const OutputSink& sink);
  Result<ExecOutcome> RunMain(const ExecRequest& request, const OutputSink& sink);
  // A step killed for its deadline or by Cancel().
  static void EndStopped(Stop stop, ExecOutcome& out);
  // A step that ended with exit status `code`: a start failure (the held words were the
  // runtime's), else its held output delivered and exited N or signaled (128+N). True when
  // SIGKILL ended it, which may have been the OOM killer.
  static bool EndWithStatus(int code, bool start_failed, int held_stream, Pumped& pumped,
                            const ExecRequest& request, const OutputSink& sink,
                            ExecOutcome& out);
  // A step's start, its deadline, and its process with the container's user and stdin.
  struct Begun {
    Clock::time_point start;
    Clock::time_point deadline;
    ExecSpec process;
  };
  Begun Begin(const ExecRequest& request) const;
  // Feeds the process's stdin and delivers its output until the stream ends; kills the
  // container at the deadline or on Cancel(). `held_stream`/`held_prefix`: a first frame on
  // that stream starting so is held back (it may be the runtime saying the exec failed).
  // `stats`, when open, is read along (StatsLines).
  Pumped Pump(HijackedStream& stream, const ExecRequest& request, bool stdin_open,
              Clock::time_point deadline, int held_stream, std::string_view held_prefix,
              const OutputSink& sink, ExecOutcome& out, HijackedStream* stats,
              StatsLines* stats_lines);
  Status Kill();
  bool OomSince(double since_unix_s);

  std::shared_ptr<const EngineClient> client_;
  ContainerSpec spec_;  // Prepare()d: what Run() creates
  bool prepared_ = false;
  bool ran_main_ = false;
  std::string id_;
  std::string name_;
  std::string user_;
  uint64_t memory_limit_ = 0;
  uint64_t cpu_seen_ns_ = 0;
  bool destroyed_ = false;
  std::atomic<bool> cancelled_{false};
  UniqueFd cancel_fd_;  // eventfd written by Cancel()
};

// Force-removes every container labelled io.sandboxd.daemon=`daemon_identity` (what a daemon
// killed mid-run left behind). Returns their names.
Result<std::vector<std::string>> RemoveLeftovers(const EngineClient& client,
                                                 const std::string& daemon_identity);

}  // namespace sbx::docker
