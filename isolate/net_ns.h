// Network "none": the sandbox's own network namespace with only a loopback interface, brought up
// through libnl (rtnetlink), never by running `ip`.
#pragma once

#include <sys/types.h>

#include "base/result.h"

namespace sbx::isolate {

// Parent side: enters the network namespace of `pid` and sets "lo" up. Requires CAP_SYS_ADMIN
// over that namespace. IMPORTANT: it moves the CALLING THREAD into the sandbox's network
// namespace for good; run it on a thread that ends afterwards (Sandbox::Create does).
Status BringUpLoopback(pid_t pid);

}  // namespace sbx::isolate
