// The daemon's one logger. Every line goes through Write(): to the systemd journal (with its
// priority and structured fields RUN_ID, SANDBOX_ID) when the process runs under systemd, as
// plain text on stderr otherwise.
//
// Where lines go (Sink::kAuto):
//   - the journal, through its native protocol (a datagram of KEY=VALUE fields to
//     /run/systemd/journal/socket, as sd_journal_sendv(3) sends it), when $JOURNAL_STREAM names
//     the device and inode of our stderr (systemd.exec(5): "JOURNAL_STREAM"), i.e. stderr is
//     already connected to the journal;
//   - otherwise plain text on stderr: "2026-01-02T03:04:05.678Z warning run 0c1d…: message".
// When the journal socket refuses a datagram (journald restarting) the line falls back to stderr
// with a "<N>" priority prefix (sd-daemon(3)), which journald reads from the stream.
//
// spdlog calls elsewhere in the tree are routed here too (InstallSpdlogSink), so lines written
// through spdlog get the same level filter, priorities and destination.
//
// Thread-safe. Never called from a sandbox's child after clone (it allocates).
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

#include "base/result.h"

namespace sbx::log {

// syslog(3) priorities, from most to least severe.
enum class Level { kError = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };
// "error", "warning", "notice", "info", "debug".
const char* LevelName(Level level);
// Accepts the names above and "warn", "err".
Result<Level> ParseLevel(std::string_view name);

enum class Sink { kAuto, kJournal, kText };

struct Fields {
  std::string_view run_id;      // RUN_ID=
  std::string_view sandbox_id;  // SANDBOX_ID=
};

struct Options {
  Level level = Level::kInfo;
  Sink sink = Sink::kAuto;
  // The journal's native socket; tests point it at a socket of their own.
  std::string journal_socket = "/run/systemd/journal/socket";
  std::string identifier = "sandboxd";  // SYSLOG_IDENTIFIER=
};

// Replaces the configuration (defaults: info, auto). Call early in main; safe at any time.
void Configure(const Options& options);
void SetLevel(Level level);
Level CurrentLevel();
// Whether lines go to the journal (after Configure resolved kAuto).
bool ToJournal();

// Whether $JOURNAL_STREAM ("DEV:INODE") names the file open on `fd`.
bool JournalStreamMatches(int fd, const char* journal_stream_env);

// Encodes one entry in the journal's native datagram format: "KEY=value\n" per field, or, for a
// value with a newline, "KEY\n" + little-endian 64-bit length + value + "\n". Pure; for tests.
std::string EncodeJournalEntry(Level level, const Fields& fields, std::string_view message,
                               std::string_view identifier);

// Writes one line when `level` passes the configured one.
void Write(Level level, const Fields& fields, std::string_view message);

template <typename... Args>
void Error(const Fields& f, fmt::format_string<Args...> format, Args&&... args) {
  if (CurrentLevel() >= Level::kError) {
    Write(Level::kError, f, fmt::format(format, std::forward<Args>(args)...));
  }
}
template <typename... Args>
void Warning(const Fields& f, fmt::format_string<Args...> format, Args&&... args) {
  if (CurrentLevel() >= Level::kWarning) {
    Write(Level::kWarning, f, fmt::format(format, std::forward<Args>(args)...));
  }
}
template <typename... Args>
void Notice(const Fields& f, fmt::format_string<Args...> format, Args&&... args) {
  if (CurrentLevel() >= Level::kNotice) {
    Write(Level::kNotice, f, fmt::format(format, std::forward<Args>(args)...));
  }
}
template <typename... Args>
void Info(const Fields& f, fmt::format_string<Args...> format, Args&&... args) {
  if (CurrentLevel() >= Level::kInfo) {
    Write(Level::kInfo, f, fmt::format(format, std::forward<Args>(args)...));
  }
}
template <typename... Args>
void Debug(const Fields& f, fmt::format_string<Args...> format, Args&&... args) {
  if (CurrentLevel() >= Level::kDebug) {
    Write(Level::kDebug, f, fmt::format(format, std::forward<Args>(args)...));
  }
}

// Makes spdlog's default logger write through Write() (its levels mapped to priorities; a line
// starting "run ID:" gets RUN_ID and SANDBOX_ID). Idempotent.
void InstallSpdlogSink();

}  // namespace sbx::log
