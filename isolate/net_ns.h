// Network "none": the sandbox's own network namespace with only a loopback interface, brought up
// through libnl (rtnetlink), never by running `ip`.
#pragma once

#include <sys/types.h>

#include "base/result.h"

namespace sbx::isolate {

// Parent side: enters the network namespace of `pid` on a short-lived thread (setns affects only
// the calling thread) and sets "lo" up. Requires CAP_SYS_ADMIN over that namespace.
Status BringUpLoopback(pid_t pid);

}  // namespace sbx::isolate
