// Pure planners: Limits -> the cgroup files to write, in order.
#include <algorithm>
#include <cmath>

#include "cgroup/cgroup.h"

namespace sbx::cgroup {

namespace {

// The kernel rejects CFS quotas below 1 ms (kernel/sched/core.c, min_cfs_quota_period).
constexpr uint64_t kMinQuotaUsec = 1000;

Status ValidateLimits(const Limits& limits) {
  if (limits.cpus) {
    double c = *limits.cpus;
    if (!std::isfinite(c) || c < kMinCpus || c > kMaxCpus) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "cpus must be a number between {} and {}, got {}", kMinCpus, kMaxCpus, c);
    }
  }
  if (limits.memory_bytes && *limits.memory_bytes < kMinMemoryBytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "memory limit of {} bytes is below the minimum of 4 MiB ({} bytes); a "
                     "sandbox needs at least that to start a process",
                     *limits.memory_bytes, kMinMemoryBytes);
  }
  if (limits.pids && (*limits.pids < 1 || *limits.pids > kMaxPids)) {
    return MakeError(ErrorCode::kInvalidArgument, "pids limit must be between 1 and {}, got {}",
                     kMaxPids, *limits.pids);
  }
  return Ok();
}

uint64_t QuotaUsec(double cpus) {
  auto q = static_cast<uint64_t>(std::llround(cpus * static_cast<double>(kCpuPeriodUsec)));
  return std::max(q, kMinQuotaUsec);
}

}  // namespace

Result<std::vector<PlannedWrite>> PlanV2Writes(const Limits& limits) {
  SBX_TRY(ValidateLimits(limits));
  std::vector<PlannedWrite> w;
  if (limits.cpus) {
    w.push_back({"", "cpu.max", fmt::format("{} {}", QuotaUsec(*limits.cpus), kCpuPeriodUsec)});
  }
  if (limits.memory_bytes) {
    w.push_back({"", "memory.max", std::to_string(*limits.memory_bytes)});
    // memory.swap.max exists only when the kernel accounts swap (CONFIG_MEMCG_SWAP, not disabled
    // with swapaccount=0); without it there is no swap to limit per cgroup.
    w.push_back({"", "memory.swap.max", "0", /*optional=*/true});
    // Kill the whole sandbox, not one of its processes, when it runs out of memory.
    w.push_back({"", "memory.oom.group", "1"});
  }
  if (limits.pids) w.push_back({"", "pids.max", std::to_string(*limits.pids)});
  return w;
}

Result<std::vector<PlannedWrite>> PlanV1Writes(const Limits& limits) {
  SBX_TRY(ValidateLimits(limits));
  std::vector<PlannedWrite> w;
  if (limits.cpus) {
    w.push_back({"cpu", "cpu.cfs_period_us", std::to_string(kCpuPeriodUsec)});
    w.push_back({"cpu", "cpu.cfs_quota_us", std::to_string(QuotaUsec(*limits.cpus))});
  }
  if (limits.memory_bytes) {
    std::string bytes = std::to_string(*limits.memory_bytes);
    w.push_back({"memory", "memory.limit_in_bytes", bytes});
    // memory + swap; must come after limit_in_bytes, which it may not be below
    // (mem_cgroup_resize_max() returns EINVAL). Present only with swap accounting.
    w.push_back({"memory", "memory.memsw.limit_in_bytes", bytes, /*optional=*/true});
    w.push_back({"memory", "memory.swappiness", "0", /*optional=*/true});
  }
  if (limits.pids) w.push_back({"pids", "pids.max", std::to_string(*limits.pids)});
  return w;
}

}  // namespace sbx::cgroup
