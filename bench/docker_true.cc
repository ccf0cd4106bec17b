// One Docker-backed run of a command, end to end through the backend the daemon uses
// (supervisor::Backend "docker"): container created with every protection (no network, limits,
// no capabilities, no-new-privileges, the builtin seccomp profile, read-only root, /tmp tmpfs,
// a non-root user, init), the command as the container's own process (a one-step run, as the
// run manager makes it) with its output attached and streamed, the container removed.
// bench/docker.sh times it against `docker run --rm` with the same flags.
//   bench_docker_true [--host unix:///PATH] --image IMAGE [--] COMMAND [ARG...]
#include <cstdio>
#include <cstring>
#include <string>
#include <unistd.h>

#include "seccomp/seccomp.h"
#include "supervisor/backend/backend.h"

int main(int argc, char** argv) {
  std::string host, image;
  bool network_disabled = true;
  int i = 1;
  for (; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--network-like-docker-run")) {
      network_disabled = false;  // NetworkMode none with a network sandbox, as the CLI makes it
    } else if (!std::strcmp(argv[i], "--host") && i + 1 < argc) {
      host = argv[++i];
    } else if (!std::strcmp(argv[i], "--image") && i + 1 < argc) {
      image = argv[++i];
    } else if (!std::strcmp(argv[i], "--")) {
      ++i;
      break;
    } else {
      break;
    }
  }
  if (image.empty() || i >= argc) {
    std::fprintf(stderr, "usage: bench_docker_true [--host unix:///PATH] [--network-like-docker-run] --image IMAGE [--] CMD...\n");
    return 2;
  }
  sbx::supervisor::DockerBackendOptions o;
  o.host = host;
  o.identity = "bench";
  o.network_disabled = network_disabled;
  auto backend = sbx::supervisor::MakeDockerBackend(o);
  sbx::supervisor::SandboxRequest req;
  req.spec.id = "bench-" + std::to_string(::getpid());
  req.spec.limits.cpus = 1.0;
  req.spec.limits.memory_bytes = 512ull << 20;
  req.spec.limits.pids = 256;
  req.seccomp_json = std::string(sbx::seccomp::DefaultProfileJson());
  req.image = image;
  req.processes = 1;
  auto sb = backend->Create(req);
  if (!sb.ok()) {
    std::fprintf(stderr, "bench_docker_true: %s\n", sb.error().ToString().c_str());
    return 125;
  }
  sbx::isolate::ProcessSpec p;
  p.argv.assign(argv + i, argv + argc);
  auto r = (*sb)->Run(p, [](int stream, std::string_view data) {
    std::fwrite(data.data(), 1, data.size(), stream == 1 ? stdout : stderr);
  });
  auto destroyed = (*sb)->Destroy();
  if (!r.ok()) {
    std::fprintf(stderr, "bench_docker_true: %s\n", r.error().ToString().c_str());
    return 125;
  }
  if (!destroyed.ok()) {
    std::fprintf(stderr, "bench_docker_true: %s\n", destroyed.error().ToString().c_str());
    return 125;
  }
  return r->ShellExitCode();
}
