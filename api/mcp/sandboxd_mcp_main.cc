// sandboxd-mcp, run by `sandboxd mcp` (stdio_bridge.h).
#include <signal.h>

#include <string>
#include <vector>

#include "api/mcp/stdio_bridge.h"

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  return sbx::api::mcp::RunStdioBridge(std::vector<std::string>(argv + 1, argv + argc));
}
