// What this host charges for a process, and for a process in fresh namespaces, with nothing
// else around it: no mounts, no cgroups, no seccomp, no capabilities dropped, no daemon, no
// store, no logs. It is the floor under any sandbox of the same isolation on this host, and
// bench/host_floor.sh puts it next to bwrap, `sandboxd exec` and `sandboxd serve`, each started
// the same way.
//
//   bench_spawn_floor [--namespaces] CLIENTS RUNS PROGRAM [ARG...]
//
// Each of CLIENTS threads starts PROGRAM (clone3 like fork, then execve), waits for it, and
// starts the next, until RUNS have ended in all. --namespaces clones it into new user, pid,
// mount, network, ipc, uts and cgroup namespaces, the set every sandboxd run gets. Prints one
// JSON line: runs per second, the per-run latency (p50, p90: clone to reaped), and the whole
// host's busy CPU time per run from /proc/stat (every CPU, kernel workers included: a network
// namespace is torn down by one). Exits 1 when any run failed to start or did not exit 0.
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench/measure.h"

namespace {

// PROGRAM as execvp would find it, looked up before any thread exists: the cloned child of a
// threaded process only calls execve.
std::string FindProgram(const char* name) {
  if (std::strchr(name, '/') != nullptr) return name;
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  for (size_t start = 0; start <= dirs.size();) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate =
        (end > start ? dirs.substr(start, end - start) : std::string(".")) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return name;  // execve then fails, and the warm-up run says so
}

// One run of argv, the program at `path`, cloned with `flags`, waited for. Returns false when
// the clone or the wait failed, or when the program did not exit 0.
bool Spawn(uint64_t flags, const char* path, char* const* argv) {
  struct clone_args args;
  std::memset(&args, 0, sizeof args);
  args.flags = flags;
  args.exit_signal = SIGCHLD;
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0) return false;
  if (pid == 0) {
    ::execve(path, argv, environ);
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(static_cast<pid_t>(pid), &status, 0) < 0) {
    if (errno != EINTR) return false;
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  const bool namespaces = argc > 1 && !std::strcmp(argv[1], "--namespaces");
  const int first = namespaces ? 2 : 1;  // CLIENTS
  if (argc < first + 3) {
    std::fprintf(stderr, "usage: bench_spawn_floor [--namespaces] CLIENTS RUNS PROGRAM [ARG...]\n");
    return 2;
  }
  const int clients = std::atoi(argv[first]);
  const int runs = std::atoi(argv[first + 1]);
  char* const* program = argv + first + 2;
  const std::string path = FindProgram(program[0]);
  if (clients < 1 || runs < clients) {
    std::fprintf(stderr,
                 "bench_spawn_floor: CLIENTS must be at least 1 and RUNS at least CLIENTS\n");
    return 2;
  }
  const uint64_t flags = namespaces ? CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET |
                                          CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP
                                    : 0;
  if (!Spawn(flags, path.c_str(), program)) {  // also the warm-up: the program in the page cache
    std::fprintf(stderr, "bench_spawn_floor: %s did not start, or did not exit 0\n", program[0]);
    return 1;
  }

  std::atomic<int> next{0}, failed{0};
  std::mutex mu;
  std::vector<double> latencies_ms;
  latencies_ms.reserve(static_cast<size_t>(runs));
  const double busy0 = sbx::bench::HostBusyMs();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      std::vector<double> mine;
      while (next.fetch_add(1) < runs) {
        auto s = std::chrono::steady_clock::now();
        if (!Spawn(flags, path.c_str(), program)) failed.fetch_add(1);
        mine.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s)
                .count());
      }
      std::lock_guard<std::mutex> lk(mu);
      latencies_ms.insert(latencies_ms.end(), mine.begin(), mine.end());
    });
  }
  for (auto& t : threads) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double busy1 = sbx::bench::HostBusyMs();

  const nlohmann::json out = {{"bench", "spawn_floor"},
                              {"program", program[0]},
                              {"namespaces", namespaces},
                              {"clients", clients},
                              {"runs", runs},
                              {"failed", failed.load()},
                              {"runs_per_s", runs / seconds},
                              {"p50_ms", sbx::bench::Percentile(latencies_ms, 0.5)},
                              {"p90_ms", sbx::bench::Percentile(latencies_ms, 0.9)},
                              {"host_cpu_ms_per_run", (busy1 - busy0) / runs},
                              {"cpus", ::sysconf(_SC_NPROCESSORS_ONLN)}};
  std::printf("%s\n", out.dump().c_str());
  return failed.load() == 0 ? 0 : 1;
}
