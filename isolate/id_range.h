// The host ids a sandbox's user namespace maps to, checked against the host's own allotments.
//
// Every sandbox maps its ids [0, 65536) to host ids [base, base + 65536) (SandboxSpec's
// host_id_base). Those host ids must belong to nobody else: /etc/subuid and /etc/subgid hand
// ranges to users for their own rootless containers (useradd gives the first user
// 100000:65536), and a sandbox sharing such a range would own that user's container files.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace sbx::isolate {

inline constexpr uint64_t kSandboxIdCount = 65536;

struct SubIdRange {
  std::string owner;  // a user name or uid, as the file gives it
  uint64_t start = 0;
  uint64_t count = 0;
};

// The lines "OWNER:START:COUNT" of an /etc/subuid or /etc/subgid text; blank lines and lines
// starting with '#' are skipped. A malformed line is an error naming its number.
Result<std::vector<SubIdRange>> ParseSubIds(std::string_view text);

// Ok when [base, base + kSandboxIdCount) is a valid range of host ids (base > 0, below 2^32
// with its count) overlapping none of `ranges`. Otherwise kInvalidArgument or
// kFailedPrecondition naming `what` ("/etc/subuid"), the owner and its range, and the lowest
// free base at or above `base` to configure instead.
Status CheckSandboxIds(uint64_t base, const std::vector<SubIdRange>& ranges,
                       std::string_view what);

// CheckSandboxIds against /etc/subuid and /etc/subgid (a missing file holds no range).
Status CheckSandboxIdsOnHost(uint64_t base);

}  // namespace sbx::isolate
