#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "supervisor/commands.h"

namespace {

constexpr const char* kUsage = R"(Usage: sandboxd COMMAND [OPTIONS]

Commands:
  exec      run one command in a new sandbox (sandboxd exec --help)
  check     inspect the host's isolation layers (sandboxd check --help)
)";

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
  std::fprintf(stderr, "sandboxd: unknown command '%s'\n%s", cmd.c_str(), kUsage);
  return 2;
}
