// Text output shared by sandboxctl's commands.
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "api/sandboxctl/commands.h"
#include "base/clock.h"
#include "base/fs.h"
#include "base/unique_fd.h"

namespace sbx::ctl {
namespace {

size_t CodePoints(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace

int ReportError(const Context& ctx, const Error& error) {
  std::string line = "sandboxctl: " + error.message;
  if (!error.context.empty()) line += " (" + error.context + ")";
  line += "\n";
  if (error.context.rfind("HTTP 401", 0) == 0) {
    line += ctx.api_key_given
                ? "hint: the API key was refused; check SANDBOXD_API_KEY or --api-key\n"
                : "hint: no API key was given; set SANDBOXD_API_KEY or pass --api-key KEY\n";
  }
  (void)WriteOut(2, line);
  return kExitError;
}

int ReportUsage(const Context& ctx, std::string_view message) {
  (void)WriteOut(2, fmt::format("sandboxctl {}: {}\nsee 'sandboxctl help {}'\n", ctx.command,
                                message, ctx.command));
  return kExitUsage;
}

Status WriteOut(int fd, std::string_view bytes) { return WriteAll(fd, bytes); }

void PrintJson(const nlohmann::json& value) {
  (void)WriteOut(1, value.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], CodePoints(row[i]));
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - CodePoints(row[i]) + 2, ' ');
    }
    out += line + "\n";
  }
  (void)WriteOut(1, out);
}

std::string FormatAge(int64_t ms) {
  int64_t s = std::max<int64_t>(0, (NowMs() - ms) / 1000);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m", s / 60);
  if (s < 86400) return fmt::format("{}h", s / 3600);
  return fmt::format("{}d", s / 86400);
}

std::string FormatTime(int64_t ms) {
  if (ms <= 0) return "-";
  time_t t = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  localtime_r(&t, &tm);
  char buf[64];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string FormatBytes(int64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  if (u == 0) return fmt::format("{} B", bytes);
  if (v == static_cast<double>(static_cast<int64_t>(v))) return fmt::format("{} {}", v, kUnits[u]);
  return fmt::format("{:.1f} {}", v, kUnits[u]);
}

std::string Truncate(const std::string& s, size_t max) {
  if (CodePoints(s) <= max) return s;
  std::string out;
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if ((c & 0xC0) != 0x80 && ++n == max) break;
    out.push_back(s[i]);
  }
  return out + "…";
}

std::string Str(const nlohmann::json& j, const char* key, std::string fallback) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return fallback;
  return j[key].get<std::string>();
}

std::optional<std::string> LookupEnv(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

int64_t Int(const nlohmann::json& j, const char* key, int64_t fallback) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return fallback;
  return j[key].get<int64_t>();
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

void PrintFacts(const std::vector<std::pair<std::string, std::string>>& rows) {
  size_t width = 0;
  for (const auto& [k, v] : rows) width = std::max(width, k.size());
  std::string out;
  for (const auto& [k, v] : rows)
    out += k + ":" + std::string(width - k.size() + 2, ' ') + v + "\n";
  (void)WriteOut(1, out);
}

std::string LimitsText(const nlohmann::json& l, const char* memory_key) {
  if (!l.is_object()) return "-";
  std::vector<std::string> parts;
  if (l.contains("cpus") && l["cpus"].is_number()) {
    parts.push_back(fmt::format("cpus {}", l["cpus"].get<double>()));
  }
  if (l.contains(memory_key) && l[memory_key].is_number()) {
    parts.push_back("memory " + FormatBytes(l[memory_key].get<int64_t>()));
  }
  if (l.contains("pids") && l["pids"].is_number()) {
    parts.push_back(fmt::format("pids {}", l["pids"].get<int64_t>()));
  }
  if (l.contains("timeout_s") && l["timeout_s"].is_number()) {
    parts.push_back(fmt::format("timeout {}s", l["timeout_s"].get<int64_t>()));
  }
  if (l.contains("output_bytes") && l["output_bytes"].is_number()) {
    parts.push_back("output " + FormatBytes(l["output_bytes"].get<int64_t>()));
  }
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += ", ";
    out += p;
  }
  return out.empty() ? "-" : out;
}

std::string CommandSummary(const nlohmann::json& run) {
  auto argv_of = [](const nlohmann::json& a) {
    std::vector<std::string> argv;
    if (a.is_array()) {
      for (const auto& w : a) argv.push_back(w.is_string() ? w.get<std::string>() : w.dump());
    }
    return JoinCommand(argv);
  };
  if (run.contains("argv")) return argv_of(run["argv"]);
  std::string out;
  if (run.contains("steps") && run["steps"].is_array()) {
    for (const auto& s : run["steps"]) {
      if (!out.empty()) out += "; ";
      out += Str(s, "name") + ": " + argv_of(s.value("argv", nlohmann::json()));
    }
  }
  return out;
}

std::string ExitSummary(const nlohmann::json& run) {
  if (!run.contains("result") || !run["result"].is_object()) return "-";
  const auto& r = run["result"];
  if (r.contains("exit_code") && r["exit_code"].is_number_integer()) {
    return std::to_string(r["exit_code"].get<int64_t>());
  }
  if (r.contains("signal") && r["signal"].is_string()) return r["signal"].get<std::string>();
  return "-";
}

int SignalNumber(std::string_view name) {
  if (name.rfind("SIG", 0) != 0) return 0;
  std::string rest(name.substr(3));
  for (int sig = 1; sig < 65; ++sig) {
    const char* abbrev = ::sigabbrev_np(sig);
    if (abbrev != nullptr && rest == abbrev) return sig;
  }
  char* end = nullptr;
  long v = std::strtol(rest.c_str(), &end, 10);
  if (!rest.empty() && *end == '\0' && v > 0 && v < 128) return static_cast<int>(v);
  return 0;
}

Result<std::string> ReadInput(const std::string& path, std::string_view what) {
  UniqueFd owned;
  int fd = 0;
  if (path != "-") {
    owned.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!owned) return ErrnoError("{}: cannot open {}", what, path);
    fd = owned.get();
  }
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return ErrnoError("{}: cannot read {}", what, path == "-" ? "standard input" : path);
    }
    if (n == 0) return data;
    data.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace sbx::ctl
