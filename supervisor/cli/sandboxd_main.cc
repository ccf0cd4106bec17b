#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "supervisor/cli/commands.h"

namespace {

constexpr const char* kUsage = R"(Usage: sandboxd COMMAND [OPTIONS]

Commands:
  exec      run one command in a new sandbox (sandboxd exec --help)
  check     inspect the host's isolation layers (sandboxd check --help)
  serve     run the service: API, review gate, run workers (sandboxd serve --help)
  seccomp   validate, explain, diff and learn seccomp profiles (sandboxd seccomp --help)
)";

// `serve` is a binary of its own (sandboxd-server, beside this one or in
// ../libexec/sandboxd/), so that `sandboxd exec` never loads the HTTP stack or the database
// client.
int Serve(char** argv) {
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    std::perror("sandboxd serve: /proc/self/exe");
    return 1;
  }
  self[n] = '\0';
  std::string dir(self);
  dir.resize(dir.rfind('/'));
  for (std::string candidate : {dir + "/sandboxd-server", dir + "/../libexec/sandboxd/sandboxd-server"}) {
    argv[1] = const_cast<char*>("sandboxd serve");
    ::execv(candidate.c_str(), argv + 1);
    if (errno != ENOENT) {
      std::fprintf(stderr, "sandboxd serve: %s: %s\n", candidate.c_str(), std::strerror(errno));
      return 1;
    }
  }
  std::fprintf(stderr, "sandboxd serve: sandboxd-server is not installed beside %s\n", self);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (cmd == "exec") return sbx::supervisor::ExecCommand(args);
  if (cmd == "check") return sbx::supervisor::CheckCommand(args);
  if (cmd == "seccomp") return sbx::supervisor::SeccompCommand(args);
  if (cmd == "serve") return Serve(argv);
  std::fprintf(stderr, "sandboxd: unknown command '%s'\n%s", cmd.c_str(), kUsage);
  return 2;
}
