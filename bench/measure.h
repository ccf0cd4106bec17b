// What the benches' figures are made of, computed one way for all of them.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace sbx::bench {

// The whole host's busy CPU time, for "CPU per run": milliseconds every CPU spent in user,
// nice, system, irq and softirq time since boot (/proc/stat's first line), kernel workers
// included; 0 when /proc/stat cannot be read.
inline double HostBusyMs() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  long long user = 0, nice = 0, sys = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
  f >> cpu >> user >> nice >> sys >> idle >> iowait >> irq >> softirq;
  if (!f || cpu != "cpu") return 0;
  return static_cast<double>(user + nice + sys + irq + softirq) * 1000.0 /
         static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// The p-quantile (0..1) of v, the nearest rank; 0 for no values.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// A "Field:" of /proc/PID/status in KiB (VmRSS:, VmHWM:); -1 when it cannot be read.
inline int64_t StatusKb(int pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field, 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  return -1;
}

// The proportional set size of a process in KiB (/proc/PID/smaps_rollup): the pages it shares
// with others counted once across their sharers; -1 when it cannot be read.
inline int64_t PssKb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Pss:", 0) == 0) return std::stoll(line.substr(4));
  }
  return -1;
}

}  // namespace sbx::bench
