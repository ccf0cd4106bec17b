// `sandboxd runner`: the daemon with no listener, as an outbound runner (supervisor/runner/). Its
// runs come over one WebSocket it dials to a serve node (--connect wss://HOST/v1/runners), which
// it keeps up: reconnecting with exponential backoff and jitter, and behind a circuit breaker
// that stops it hammering a coordinator that keeps failing.
#pragma once

#include <signal.h>

#include <string>
#include <vector>

#include "base/result.h"
#include "supervisor/runner/uplink.h"

namespace sbx::api {

struct RunnerFlags {
  std::string connect;  // ws:// or wss:// URL of a serve node's /v1/runners
  std::string token;    // the runner's token (POST /v1/runners)
  std::string ca_file;  // wss: the CA bundle to verify the coordinator with; "" = the system's
};
// Takes --connect URL, --token-file PATH and --ca-file PATH out of `flags`, with
// SANDBOXD_RUNNER_CONNECT, SANDBOXD_RUNNER_TOKEN (or SANDBOXD_RUNNER_TOKEN_FILE) and
// SANDBOXD_RUNNER_CA_FILE from the environment for those not given. kInvalidArgument when the
// URL or the token is missing.
Result<RunnerFlags> TakeRunnerFlags(std::vector<std::string>& flags);

// Keeps the link up until one of `stop_signals` arrives; then stops the uplink. Returns the
// signal's number.
int RunRunnerLink(const RunnerFlags& flags, supervisor::runner::Uplink& uplink,
                  const sigset_t& stop_signals);

}  // namespace sbx::api
