// The whole host's busy CPU time, for the benches' "CPU per run": what every CPU spent in user,
// nice, system, irq and softirq time since boot (/proc/stat's first line), kernel workers
// included.
#pragma once

#include <unistd.h>

#include <fstream>
#include <string>

namespace sbx::bench {

// Milliseconds of busy CPU time summed over all CPUs; 0 when /proc/stat cannot be read.
inline double HostBusyMs() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  long long user = 0, nice = 0, sys = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
  f >> cpu >> user >> nice >> sys >> idle >> iowait >> irq >> softirq;
  if (!f || cpu != "cpu") return 0;
  return static_cast<double>(user + nice + sys + irq + softirq) * 1000.0 /
         static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace sbx::bench
