// Milliseconds to turn a Docker-size seccomp profile into BPF: ParseProfile, then Compile, and
// Compile with notify_errors (which compiles twice: the notifying filter and its answers).
//
//   bench_seccomp_compile [PROFILE.json] [iterations]
//
// Default profile: tests/testdata/seccomp/docker-default.json (Docker's own). Prints the median,
// min and max per step and the filter's size. Build with CMAKE_BUILD_TYPE=Release for figures
// worth comparing.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/fs.h"
#include "seccomp/seccomp.h"

namespace {

struct Stats {
  double median, min, max;
};

Stats Summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

template <typename F>
Stats Time(int iterations, F&& f) {
  std::vector<double> ms;
  for (int i = 0; i < iterations; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return Summarize(std::move(ms));
}

}  // namespace

int main(int argc, char** argv) {
  std::string path =
      argc > 1 ? argv[1] : SBX_SOURCE_DIR "/tests/testdata/seccomp/docker-default.json";
  int iterations = argc > 2 ? std::atoi(argv[2]) : 50;
  if (iterations <= 0) iterations = 50;
  auto text = sbx::ReadFile(path, 4 << 20);
  if (!text.ok()) {
    std::fprintf(stderr, "%s\n", text.error().ToString().c_str());
    return 1;
  }
  auto profile = sbx::seccomp::ParseProfile(*text, "bench");
  if (!profile.ok()) {
    std::fprintf(stderr, "%s\n", profile.error().ToString().c_str());
    return 1;
  }
  size_t insns = 0, notify_insns = 0;
  bool failed = false;
  Stats parse = Time(iterations, [&] {
    auto p = sbx::seccomp::ParseProfile(*text, "bench");
    failed |= !p.ok();
  });
  Stats compile = Time(iterations, [&] {
    auto p = sbx::seccomp::Compile(*profile);
    failed |= !p.ok();
    if (p.ok()) insns = p->insns.size();
  });
  sbx::seccomp::CompileOptions notify;
  notify.notify_errors = true;
  Stats compile_notify = Time(iterations, [&] {
    auto p = sbx::seccomp::Compile(*profile, notify);
    failed |= !p.ok();
    if (p.ok()) notify_insns = p->insns.size();
  });
  if (failed) {
    std::fprintf(stderr, "a parse or compile failed\n");
    return 1;
  }
  std::printf("profile: %s (%zu bytes, %zu rules), %s, %d iterations\n", path.c_str(), text->size(),
              profile->syscalls.size(), sbx::seccomp::CompilerVersion().c_str(), iterations);
  auto row = [](const char* what, const Stats& s) {
    std::printf("%-28s median %8.3f ms   min %8.3f ms   max %8.3f ms\n", what, s.median, s.min,
                s.max);
  };
  row("ParseProfile", parse);
  row("Compile", compile);
  row("Compile (notify_errors)", compile_notify);
  std::printf("BPF instructions: %zu (notify_errors: %zu)\n", insns, notify_insns);
  return 0;
}
