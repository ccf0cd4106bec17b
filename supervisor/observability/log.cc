#include "supervisor/observability/log.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>

#include "base/unique_fd.h"

namespace sbx::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::atomic<bool> g_journal{false};
std::mutex g_mu;  // guards the options and the socket, and keeps text lines whole
Options g_options;
UniqueFd g_socket;

void AppendField(std::string& out, std::string_view key, std::string_view value) {
  if (value.find('\n') == std::string_view::npos) {
    out.append(key).append("=").append(value).append("\n");
    return;
  }
  out.append(key).append("\n");
  uint64_t n = value.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out.append(value).append("\n");
}

std::string Timestamp() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
            1000;
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03d}Z", buf, static_cast<int>(ms));
}

void WriteStderr(const std::string& line) {
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::write(2, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

// Sends one entry to the journal socket. False when it could not be delivered.
bool SendJournal(const std::string& entry) {
  if (!g_socket) {
    g_socket.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!g_socket) return false;
  }
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  const std::string& path = g_options.journal_socket;
  if (path.size() >= sizeof sun.sun_path) return false;
  std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  ssize_t n = ::sendto(g_socket.get(), entry.data(), entry.size(), MSG_NOSIGNAL,
                       reinterpret_cast<sockaddr*>(&sun), sizeof sun);
  // Entries past the socket's datagram limit would need a memfd (as libsystemd does); log
  // lines here are bounded well below it.
  return n == static_cast<ssize_t>(entry.size());
}

class ForwardingSink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    Level level = Level::kInfo;
    switch (msg.level) {
      case spdlog::level::trace:
      case spdlog::level::debug:
        level = Level::kDebug;
        break;
      case spdlog::level::info:
        level = Level::kInfo;
        break;
      case spdlog::level::warn:
        level = Level::kWarning;
        break;
      default:
        level = Level::kError;
        break;
    }
    if (CurrentLevel() < level) return;
    std::string_view text(msg.payload.data(), msg.payload.size());
    // "run ID: …" names a run; its sandbox has the run's id.
    std::string_view id;
    if (text.starts_with("run ")) {
      size_t colon = text.find(':');
      if (colon != std::string_view::npos && colon > 4 && colon < 80) {
        id = text.substr(4, colon - 4);
        if (id.find(' ') != std::string_view::npos) id = {};
      }
    }
    Write(level, Fields{id, id}, text);
  }
  void flush_() override {}
};

}  // namespace

const char* LevelName(Level level) {
  switch (level) {
    case Level::kError:
      return "error";
    case Level::kWarning:
      return "warning";
    case Level::kNotice:
      return "notice";
    case Level::kInfo:
      return "info";
    case Level::kDebug:
      return "debug";
  }
  return "info";
}

Result<Level> ParseLevel(std::string_view name) {
  if (name == "error" || name == "err") return Level::kError;
  if (name == "warning" || name == "warn") return Level::kWarning;
  if (name == "notice") return Level::kNotice;
  if (name == "info") return Level::kInfo;
  if (name == "debug") return Level::kDebug;
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown log level '{}' (use error, warning, notice, info or debug)", name);
}

bool JournalStreamMatches(int fd, const char* env) {
  if (env == nullptr || *env == '\0') return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(env, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

void Configure(const Options& options) {
  std::lock_guard lock(g_mu);
  g_options = options;
  g_socket.reset();
  g_level.store(static_cast<int>(options.level));
  bool journal = options.sink == Sink::kJournal;
  if (options.sink == Sink::kAuto) journal = JournalStreamMatches(2, std::getenv("JOURNAL_STREAM"));
  g_journal.store(journal);
}

void SetLevel(Level level) { g_level.store(static_cast<int>(level)); }

Level CurrentLevel() { return static_cast<Level>(g_level.load()); }

bool ToJournal() { return g_journal.load(); }

std::string EncodeJournalEntry(Level level, const Fields& fields, std::string_view message,
                               std::string_view identifier) {
  std::string out;
  out.reserve(message.size() + 128);
  AppendField(out, "PRIORITY", std::to_string(static_cast<int>(level)));
  AppendField(out, "SYSLOG_IDENTIFIER", identifier);
  if (!fields.run_id.empty()) AppendField(out, "RUN_ID", fields.run_id);
  if (!fields.sandbox_id.empty()) AppendField(out, "SANDBOX_ID", fields.sandbox_id);
  AppendField(out, "MESSAGE", message);
  return out;
}

void Write(Level level, const Fields& fields, std::string_view message) {
  if (CurrentLevel() < level) return;
  std::lock_guard lock(g_mu);
  if (g_journal.load()) {
    if (SendJournal(EncodeJournalEntry(level, fields, message, g_options.identifier))) return;
    WriteStderr(fmt::format("<{}>{}\n", static_cast<int>(level), message));
    return;
  }
  WriteStderr(fmt::format("{} {} {}\n", Timestamp(), LevelName(level), message));
}

void InstallSpdlogSink() {
  static std::once_flag once;
  std::call_once(once, [] {
    auto logger = std::make_shared<spdlog::logger>("sandboxd", std::make_shared<ForwardingSink>());
    logger->set_level(spdlog::level::trace);  // the filter is ours
    spdlog::set_default_logger(std::move(logger));
  });
}

}  // namespace sbx::log
