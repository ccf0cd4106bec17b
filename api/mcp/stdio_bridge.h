// `sandboxd mcp`: the MCP server over stdio for assistants that start their servers as
// programs. It reads one JSON-RPC message per line on stdin, forwards each to the daemon's
// /mcp/PROFILE with the key from SANDBOXD_API_KEY, and writes every message that comes back
// (the response, and the progress notifications before it) as one line on stdout. Logs go to
// stderr only. The daemon enforces everything (profile, policy, review, audit); the bridge only
// carries messages and the session id that initialize handed out.
//
// Requests are forwarded side by side (a long process_run does not hold up a ping or a
// notifications/cancelled), so responses may come in another order than their requests, as
// JSON-RPC allows; initialize alone is answered before the next line is read. At the end of
// stdin the bridge waits for the calls under way, then exits 0.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace sbx::api::mcp {

// Runs `sandboxd mcp ARGS` (args without the command word) on stdin and stdout; the exit status.
int RunStdioBridge(const std::vector<std::string>& args);

}  // namespace sbx::api::mcp
