#include "supervisor/workspace/artifacts.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ctime>

#include "base/fs.h"
#include "base/sha256.h"
#include "supervisor/workspace/run_logs.h"
#include "supervisor/workspace/text.h"
#include "supervisor/workspace/workspace_fs.h"

namespace sbx::supervisor {
namespace {

std::string IsoTime(std::optional<int64_t> ms) {
  if (!ms) return "—";
  time_t secs = static_cast<time_t>(*ms / 1000);
  struct tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[40];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return fmt::format("{}.{:03d} UTC", std::string_view(buf, n), static_cast<int>(*ms % 1000));
}

std::string Quote(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    bool plain = !a.empty() && a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                   "0123456789-_./=:,+@%") == std::string::npos;
    if (plain) {
      out += a;
    } else {
      out += '\'';
      for (char c : a) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
      out += '\'';
    }
  }
  return out;
}

// Log tails go into a fenced block: bytes that are not UTF-8 are shown as U+FFFD, and a fence
// inside the text is broken up so it cannot end the block.
std::string Fenced(std::string_view text) {
  std::string clean;
  for (size_t i = 0; i < text.size();) {
    size_t len = 1;
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0xC0) len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    if (i + len <= text.size() && IsValidUtf8(text.substr(i, len)) &&
        (c >= 0x20 || c == '\n' || c == '\t')) {
      clean.append(text.substr(i, len));
      i += len;
    } else {
      clean += "\xEF\xBF\xBD";
      i += 1;
    }
  }
  size_t pos = 0;
  while ((pos = clean.find("```", pos)) != std::string::npos) clean.replace(pos, 3, "`\u200b``");
  if (!clean.empty() && clean.back() != '\n') clean += '\n';
  return "```\n" + clean + "```\n";
}

std::string Bytes(int64_t n) {
  if (n >= (1ll << 30)) return fmt::format("{:.1f} GiB", static_cast<double>(n) / (1ll << 30));
  if (n >= (1ll << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(n) / (1ll << 20));
  if (n >= (1ll << 10)) return fmt::format("{:.1f} KiB", static_cast<double>(n) / (1ll << 10));
  return fmt::format("{} B", n);
}

std::string Outcome(const store::EndReason& reason, std::optional<int> exit_code,
                    std::optional<int> signal) {
  std::string s = store::RenderEndReason(reason);
  if (exit_code) s += fmt::format(", exit code {}", *exit_code);
  if (signal) s += fmt::format(", signal {}", *signal);
  return s;
}

// Writes `content` to `path` through a temporary file and a rename: readers see the whole file
// or none.
Status ReplaceFile(const std::string& path, std::string_view content) {
  std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return ErrnoError("create {}", tmp);
  SBX_TRY(WriteAll(fd.get(), content));
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) < 0) return ErrnoError("rename {}", tmp);
  return Ok();
}

// j[key] as text: a string as it is, a number printed, anything else (null, missing) "".
std::string Text(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number()) return it->dump();
  return "";
}

}  // namespace

std::string ArtifactDir(const std::string& data_dir, std::string_view run_id) {
  return RunDir(data_dir, run_id) + "/artifacts";
}

Status CheckArtifactName(std::string_view name) {
  if (name.empty()) return MakeError(ErrorCode::kInvalidArgument, "an artifact name is empty");
  if (name.size() > 1024) {
    return MakeError(ErrorCode::kInvalidArgument, "an artifact name is at most 1024 bytes");
  }
  if (name.front() == '/') {
    return MakeError(ErrorCode::kInvalidArgument, "artifact names are relative (no leading '/')");
  }
  if (!IsValidUtf8(name)) {
    return MakeError(ErrorCode::kInvalidArgument, "an artifact name must be UTF-8");
  }
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "an artifact name must not hold NUL or control characters");
    }
  }
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    std::string_view seg = name.substr(start, slash == std::string_view::npos ? slash : slash - start);
    if (seg.empty() || seg == "." || seg == "..") {
      return MakeError(ErrorCode::kInvalidArgument,
                       "artifact name '{}': no empty, '.' or '..' segments", name);
    }
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return Ok();
}

Result<UniqueFd> OpenArtifact(const std::string& data_dir, std::string_view run_id,
                              std::string_view name) {
  SBX_TRY(CheckArtifactName(name));
  std::string dir = ArtifactDir(data_dir, run_id);
  UniqueFd dfd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (!dfd) {
    return MakeError(ErrorCode::kNotFound, "run {} has no artifacts (yet)", run_id);
  }
  std::string rel(name);
  int fd = internal::OpenBeneath(dfd.get(), rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT || errno == ELOOP || errno == EXDEV || errno == ENOTDIR) {
      return MakeError(ErrorCode::kNotFound, "run {} has no artifact '{}'", run_id, name);
    }
    return ErrnoError("open artifact {}", name);
  }
  UniqueFd file(fd);
  struct stat st{};
  if (::fstat(fd, &st) < 0) return ErrnoError("stat artifact {}", name);
  if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kNotFound, "run {} has no artifact '{}' (not a file)", run_id,
                     name);
  }
  return file;
}

Result<ArtifactInfo> DescribeArtifact(const std::string& data_dir, std::string_view run_id,
                                      std::string_view name) {
  auto fd = OpenArtifact(data_dir, run_id, name);
  if (!fd.ok()) return std::move(fd).error();
  ArtifactInfo info{std::string(name), 0, ""};
  Sha256Hasher h;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd->get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("read artifact {}", name);
    if (n == 0) break;
    h.Update(std::string_view(buf, static_cast<size_t>(n)));
    info.size += static_cast<uint64_t>(n);
  }
  info.sha256 = DigestHex(h.Final());
  return info;
}

Result<ArtifactInfo> WriteArtifact(const std::string& data_dir, std::string_view run_id,
                                   std::string_view name, std::string_view content) {
  auto w = ArtifactWriter::Create(data_dir, run_id, name);
  if (!w.ok()) return std::move(w).error();
  SBX_TRY(w->Write(content));
  return w->Finish();
}

struct ArtifactWriter::State {
  std::string name, path, tmp;
  UniqueFd fd;
  Sha256Hasher hash;
  uint64_t size = 0;
};

ArtifactWriter::ArtifactWriter(std::unique_ptr<State> state) : state_(std::move(state)) {}
ArtifactWriter::ArtifactWriter(ArtifactWriter&&) noexcept = default;
ArtifactWriter& ArtifactWriter::operator=(ArtifactWriter&&) noexcept = default;
ArtifactWriter::~ArtifactWriter() = default;

Result<ArtifactWriter> ArtifactWriter::Create(const std::string& data_dir, std::string_view run_id,
                                              std::string_view name) {
  SBX_TRY(CheckArtifactName(name));
  if (name.find('/') != std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "only top-level artifacts are written here");
  }
  std::string dir = ArtifactDir(data_dir, run_id);
  if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) return ErrnoError("mkdir {}", dir);
  auto st = std::make_unique<State>();
  st->name = std::string(name);
  st->path = dir + "/" + st->name;
  st->tmp = st->path + ".tmp";
  st->fd.reset(
      ::open(st->tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!st->fd) return ErrnoError("create {}", st->tmp);
  return ArtifactWriter(std::move(st));
}

Status ArtifactWriter::Write(std::string_view data) {
  if (!state_->fd) return MakeError(ErrorCode::kFailedPrecondition, "{} is finished", state_->name);
  SBX_TRY(WriteAll(state_->fd.get(), data));
  state_->hash.Update(data);
  state_->size += data.size();
  return Ok();
}

Result<ArtifactInfo> ArtifactWriter::Finish() {
  if (!state_->fd) return MakeError(ErrorCode::kFailedPrecondition, "{} is finished", state_->name);
  state_->fd.reset();
  if (::rename(state_->tmp.c_str(), state_->path.c_str()) < 0) {
    return ErrnoError("rename {}", state_->tmp);
  }
  return ArtifactInfo{state_->name, state_->size, DigestHex(state_->hash.Final())};
}

Status WriteManifest(const std::string& data_dir, std::string_view run_id,
                     const std::vector<ArtifactInfo>& artifacts) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& a : artifacts) {
    list.push_back({{"name", a.name}, {"size", a.size}, {"sha256", a.sha256}});
  }
  return ReplaceFile(RunDir(data_dir, run_id) + "/artifacts.json",
                     nlohmann::json{{"artifacts", list}}.dump(2) + "\n");
}

Result<std::vector<ArtifactInfo>> ReadManifest(const std::string& data_dir,
                                               std::string_view run_id) {
  std::string dir = RunDir(data_dir, run_id);
  struct stat st{};
  if (::stat(dir.c_str(), &st) < 0) {
    return MakeError(ErrorCode::kNotFound, "run {} has no artifacts", run_id);
  }
  auto text = ReadFile(dir + "/artifacts.json", 64 << 20);
  if (!text.ok()) {
    if (text.error().sys_errno == ENOENT) return std::vector<ArtifactInfo>{};
    return std::move(text).error();
  }
  std::vector<ArtifactInfo> out;
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.contains("artifacts") || !j["artifacts"].is_array()) {
    return MakeError(ErrorCode::kInternal, "{}/artifacts.json is malformed", dir);
  }
  for (const auto& a : j["artifacts"]) {
    if (!a.is_object() || !a.value("name", nlohmann::json()).is_string()) continue;
    out.push_back({a["name"].get<std::string>(), a.value("size", uint64_t{0}),
                   a.value("sha256", std::string())});
  }
  return out;
}

std::string LogTail(const std::string& path, size_t max_lines, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return "";
  struct stat st{};
  if (::fstat(fd.get(), &st) < 0 || st.st_size == 0) return "";
  size_t want = std::min<size_t>(static_cast<size_t>(st.st_size), max_bytes);
  std::string buf(want, '\0');
  ssize_t n = ::pread(fd.get(), buf.data(), want, st.st_size - static_cast<off_t>(want));
  if (n <= 0) return "";
  buf.resize(static_cast<size_t>(n));
  size_t pos = buf.size();
  if (pos > 0 && buf[pos - 1] == '\n') --pos;
  for (size_t i = 0; i < max_lines; ++i) {
    size_t nl = pos == 0 ? std::string::npos : buf.rfind('\n', pos - 1);
    if (nl == std::string::npos) return buf;
    pos = nl;
  }
  return buf.substr(pos + 1);
}

std::string RenderReport(const store::RunRecord& run, std::string_view stdout_tail,
                         std::string_view stderr_tail) {
  std::string r = fmt::format("# Run {}\n\n", run.id);
  const char* state = store::RunStateName(run.state);
  if (run.result) {
    r += fmt::format("**{}** — {}\n\n", state,
                     Outcome(run.result->reason, run.result->exit_code, run.result->signal));
  } else {
    r += fmt::format("**{}**\n\n", state);
  }
  r += "## What ran\n\n";
  r += fmt::format("- Submitted by `{}` at {}\n", run.submitter, IsoTime(run.created_at_ms));
  if (run.steps.empty()) {
    r += fmt::format("- Command: `{}`\n", Quote(run.argv));
  } else {
    r += "- Steps, one after another in one sandbox:\n";
    for (size_t i = 0; i < run.steps.size(); ++i) {
      r += fmt::format("  {}. `{}`: `{}`\n", i + 1, run.steps[i].name, Quote(run.steps[i].argv));
    }
  }
  r += fmt::format("- Network: {}; seccomp profile: {}\n", run.network.empty() ? "none" : run.network,
                   run.seccomp_profile.empty() ? "default" : run.seccomp_profile);
  if (run.result && !run.result->seccomp_denials.empty()) {
    r += "- Seccomp denied:";
    for (const auto& d : run.result->seccomp_denials) {
      r += fmt::format(" `{}` {} time{};", d.syscall, d.count, d.count == 1 ? "" : "s");
    }
    r.back() = '\n';
  }
  if (run.workspace) {
    if (!run.workspace->sha.empty()) {
      r += fmt::format("- Checkout: `{}` at `{}` ({})\n", run.workspace->repo, run.workspace->sha,
                       run.workspace->mode == "cow" ? "copy-on-write" : "read-only");
    } else {
      r += fmt::format("- Workspace: `{}` ({})\n", run.workspace->path,
                       run.workspace->mode == "cow" ? "copy-on-write" : "read-only");
    }
  }
  if (!run.labels.empty()) {
    r += "- Labels:";
    for (const auto& [k, v] : run.labels) r += fmt::format(" `{}={}`", k, v);
    r += "\n";
  }
  if (run.node) r += fmt::format("- Node: {}\n", *run.node);

  r += "\n## Policy and review\n\n";
  if (run.policy.is_object()) {
    r += fmt::format("- Policy decision: **{}**", Text(run.policy, "decision"));
    if (std::string risk = Text(run.policy, "risk"); !risk.empty()) {
      r += fmt::format(" (risk {})", risk);
    }
    r += "\n";
    if (auto it = run.policy.find("reasons"); it != run.policy.end() && it->is_array()) {
      for (const auto& reason : *it) {
        if (reason.is_string()) r += fmt::format("  - {}\n", reason.get<std::string>());
        if (reason.is_object()) r += fmt::format("  - {}\n", Text(reason, "message"));
      }
    }
    if (std::string note = Text(run.policy, "note"); !note.empty()) {
      r += fmt::format("  - {}\n", note);
    }
    if (auto it = run.policy.find("rule"); it != run.policy.end() && it->is_object()) {
      r += fmt::format("  - Rule: `{}` ({}:{})\n", Text(*it, "pattern"), Text(*it, "file"),
                       Text(*it, "line"));
    }
    if (std::string p = Text(run.policy, "protection"); !p.empty()) {
      r += fmt::format("  - Protection: {}\n", p);
    }
  } else {
    r += "- Policy decision: none recorded\n";
  }
  if (run.approval) {
    r += fmt::format("- Approved by `{}` at {} ({})\n", run.approval->approved_by,
                     IsoTime(run.approval->approved_at_ms), run.approval->rule);
  } else {
    r += "- Not approved\n";
  }

  r += "\n## Timings\n\n| created | queued | started | finished |\n|---|---|---|---|\n";
  r += fmt::format("| {} | {} | {} | {} |\n", IsoTime(run.created_at_ms), IsoTime(run.queued_at_ms),
                   IsoTime(run.started_at_ms), IsoTime(run.finished_at_ms));

  r += "\n## Resources\n\n";
  r += fmt::format("- Limits: cpus {}, memory {}, pids {}, timeout {} s, output {}\n",
                   run.limits.cpus.value_or(0), Bytes(run.limits.memory_bytes.value_or(0)),
                   run.limits.pids.value_or(0), run.limits.timeout_s.value_or(0),
                   Bytes(run.limits.output_bytes.value_or(0)));
  if (run.result) {
    const auto& res = *run.result;
    r += fmt::format("- Wall {} ms, CPU {} ms, memory peak {}\n", res.wall_ms, res.cpu_ms,
                     Bytes(res.memory_peak_bytes));
    if (res.output_truncated) r += "- Output was truncated at the output limit\n";
    if (!res.steps.empty()) {
      r += "\n| step | ended | wall ms | cpu ms | memory peak |\n|---|---|---|---|---|\n";
      for (const auto& s : res.steps) {
        r += fmt::format("| {} | {} | {} | {} | {} |\n", s.name,
                         Outcome(s.reason, s.exit_code, s.signal), s.wall_ms, s.cpu_ms,
                         Bytes(s.memory_peak_bytes));
      }
    }
  }
  r += "\n## Output (last lines)\n\n### stdout\n\n";
  r += stdout_tail.empty() ? std::string("(empty)\n") : Fenced(stdout_tail);
  r += "\n### stderr\n\n";
  r += stderr_tail.empty() ? std::string("(empty)\n") : Fenced(stderr_tail);
  return r;
}

nlohmann::json AuditEventJson(const store::EventRecord& e) {
  nlohmann::json j = e.data.is_object() ? e.data : nlohmann::json{{"data", e.data}};
  j["type"] = store::EventTypeName(e.type);
  j["seq"] = e.seq;
  j["ts"] = e.ts_ms;
  return j;
}

nlohmann::json AuditRecordJson(const store::AuditRecord& a) {
  return {{"id", a.id},         {"ts_ms", a.ts_ms},     {"actor", a.actor},
          {"action", a.action}, {"details", a.details}, {"prev_hash", a.prev_hash},
          {"hash", a.hash}};
}

namespace {

// Writes `key: [items]` as a member of the top-level object in dump(2)'s layout: items at an
// indent of 4, each one's own lines indented to match (a dump has no raw newline inside a
// string, so every '\n' in it starts a line).
template <class Record, class Pager, class Position, class ToJson>
Status WriteMemberArray(ArtifactWriter& out, std::string_view key, const Pager& pager,
                        Position position, ToJson to_json) {
  SBX_TRY(out.Write(fmt::format("  \"{}\": [", key)));
  bool first = true;
  int64_t after = 0;
  std::string text;
  for (;;) {
    Result<std::vector<Record>> page = pager(after);
    if (!page.ok()) return std::move(page).error();
    if (page->empty()) break;
    text.clear();
    for (const Record& r : *page) {
      text += first ? "\n    " : ",\n    ";
      first = false;
      std::string item = to_json(r).dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
      for (char c : item) {
        text.push_back(c);
        if (c == '\n') text.append("    ");
      }
    }
    after = position(page->back());
    SBX_TRY(out.Write(text));
  }
  return out.Write(first ? "]" : "\n  ]");
}

}  // namespace

Status WriteAuditDocument(ArtifactWriter& out, std::string_view run_id, const AuditPager& audit,
                          const EventPager& events) {
  SBX_TRY(out.Write("{\n"));
  SBX_TRY(WriteMemberArray<store::AuditRecord>(
      out, "audit", audit, [](const store::AuditRecord& a) { return a.id; }, AuditRecordJson));
  SBX_TRY(out.Write(",\n"));
  SBX_TRY(WriteMemberArray<store::EventRecord>(
      out, "events", events, [](const store::EventRecord& e) { return e.seq; }, AuditEventJson));
  return out.Write(fmt::format(",\n  \"run_id\": {}\n}}\n", nlohmann::json(run_id).dump()));
}

}  // namespace sbx::supervisor
