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
  mcp       the MCP server on stdin/stdout, forwarding to the service (sandboxd mcp --help)
  runner    an outbound runner: takes runs over a link it dials to a serve node (sandboxd serve --help)
  seccomp   validate, explain, diff and learn seccomp profiles (sandboxd seccomp --help)
)";

// `serve` and `mcp` are binaries of their own (sandboxd-server and sandboxd-mcp, beside this one
// or in ../libexec/sandboxd/), so that `sandboxd exec` never loads the HTTP stack or the database
// client.
int ExecHelper(char** argv, const char* command, const char* binary) {
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    std::fprintf(stderr, "sandboxd %s: /proc/self/exe: %s\n", command, std::strerror(errno));
    return 1;
  }
  self[n] = '\0';
  std::string dir(self);
  dir.resize(dir.rfind('/'));
  const std::string name = std::string("sandboxd ") + command;
  for (std::string candidate :
       {dir + "/" + binary, dir + "/../libexec/sandboxd/" + binary}) {
    argv[1] = const_cast<char*>(name.c_str());
    ::execv(candidate.c_str(), argv + 1);
    if (errno != ENOENT) {
      std::fprintf(stderr, "%s: %s: %s\n", name.c_str(), candidate.c_str(), std::strerror(errno));
      return 1;
    }
  }
  std::fprintf(stderr, "%s: %s is not installed beside %s\n", name.c_str(), binary, self);
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
  if (cmd == "serve") return ExecHelper(argv, "serve", "sandboxd-server");
  if (cmd == "mcp") return ExecHelper(argv, "mcp", "sandboxd-mcp");
  if (cmd == "runner") return ExecHelper(argv, "runner", "sandboxd-server");
  std::fprintf(stderr, "sandboxd: unknown command '%s'\n%s", cmd.c_str(), kUsage);
  return 2;
}
