// Host detection: which cgroup hierarchies are mounted where, and which layout that makes.
#include <algorithm>
#include <array>
#include <string_view>

#include "base/fs.h"
#include "cgroup/cgroup.h"

namespace sbx::cgroup {

namespace {

// The v1 controllers a `cgroup` mount's options can name (Documentation/admin-guide/cgroup-v1/).
// Everything else in the options ("rw", "relatime", "name=systemd", "xattr", ...) is not one.
constexpr std::array<std::string_view, 14> kV1Controllers = {
    "blkio",  "cpu",  "cpuacct", "cpuset",   "devices",    "freezer", "hugetlb",
    "memory", "misc", "net_cls", "net_prio", "perf_event", "pids",    "rdma"};

// The v1 controllers the hybrid driver uses; any of them mounted makes a host hybrid.
constexpr std::array<std::string_view, 4> kLimitingV1 = {"cpu", "cpuacct", "memory", "pids"};

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    size_t i = s.find(sep);
    std::string_view part = s.substr(0, i);
    if (!part.empty()) out.push_back(part);
    if (i == std::string_view::npos) break;
    s.remove_prefix(i + 1);
  }
  return out;
}

// /proc/self/mounts escapes space, tab, newline and backslash as \ooo (fs/proc_namespace.c,
// mangle()).
std::string UnescapeMountField(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      auto octal = [](char c) { return c >= '0' && c <= '7'; };
      if (octal(s[i + 1]) && octal(s[i + 2]) && octal(s[i + 3])) {
        out.push_back(
            static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

bool Contains(const std::vector<std::string>& v, std::string_view x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

const char* LayoutName(Layout l) {
  switch (l) {
    case Layout::kV2:
      return "v2";
    case Layout::kHybrid:
      return "hybrid";
    case Layout::kV1Only:
      return "v1";
    case Layout::kNone:
      return "none";
  }
  return "none";
}

HostInfo ParseMountTable(std::string_view mounts_text) {
  HostInfo host;
  for (std::string_view line : Split(mounts_text, '\n')) {
    // "<source> <mount point> <fstype> <options> <dump> <pass>"
    std::vector<std::string_view> f = Split(line, ' ');
    if (f.size() < 4) continue;
    if (f[2] == "cgroup2") {
      if (host.unified_mount.empty()) host.unified_mount = UnescapeMountField(f[1]);
      continue;
    }
    if (f[2] != "cgroup") continue;
    for (std::string_view opt : Split(f[3], ',')) {
      if (std::find(kV1Controllers.begin(), kV1Controllers.end(), opt) == kV1Controllers.end()) {
        continue;
      }
      // A controller can be attached to one hierarchy only; a second line for it is a bind
      // mount of the same hierarchy. Keep the first.
      host.v1_mounts.emplace(std::string(opt), UnescapeMountField(f[1]));
    }
  }
  return host;
}

Layout ClassifyLayout(const HostInfo& host) {
  bool v1_limiting = std::any_of(kLimitingV1.begin(), kLimitingV1.end(), [&](std::string_view c) {
    return host.v1_mounts.count(std::string(c)) != 0;
  });
  if (!host.unified_mount.empty()) {
    const auto& c = host.v2_controllers;
    bool v2_complete = Contains(c, "cpu") && Contains(c, "memory") && Contains(c, "pids");
    if (v2_complete || !v1_limiting) return Layout::kV2;
    return Layout::kHybrid;
  }
  if (!host.v1_mounts.empty()) return Layout::kV1Only;
  return Layout::kNone;
}

Result<HostInfo> DetectHost(const std::string& mounts_text, const std::string& fs_prefix) {
  HostInfo host = ParseMountTable(mounts_text);
  if (!host.unified_mount.empty()) {
    std::string path = fs_prefix + host.unified_mount + "/cgroup.controllers";
    auto text = ReadFile(path);
    if (!text.ok()) {
      return WithContext(std::move(text).error(), "reading the cgroup2 root's controllers");
    }
    for (std::string_view line : Split(*text, '\n')) {
      for (std::string_view c : Split(line, ' ')) host.v2_controllers.emplace_back(c);
    }
  }
  host.layout = ClassifyLayout(host);
  return host;
}

Result<HostInfo> DetectHost(const std::string& mounts_text) { return DetectHost(mounts_text, ""); }

Result<HostInfo> DetectHost() {
  auto text = ReadFile("/proc/self/mounts");
  if (!text.ok()) return std::move(text).error();
  return DetectHost(*text, "");
}

}  // namespace sbx::cgroup
