#include "supervisor/runner/outbox.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <string_view>

#include <spdlog/spdlog.h>

#include "base/fs.h"

namespace sbx::supervisor::runner {
namespace {

std::string EntryLine(int64_t seq, std::string_view entry_json) {
  return fmt::format("{{\"seq\":{},\"entry\":{}}}\n", seq, entry_json);
}

std::string AckLine(int64_t seq) { return fmt::format("{{\"ack\":{}}}\n", seq); }

// Serializes without throwing: nlohmann's dump throws type_error on a string that is not UTF-8.
Result<std::string> Dump(const nlohmann::json& j) {
  if (j.is_discarded()) return MakeError(ErrorCode::kInvalidArgument, "outbox entry is empty");
  try {
    return j.dump();
  } catch (const nlohmann::json::exception& e) {
    return MakeError(ErrorCode::kInvalidArgument, "outbox entry cannot be serialized: {}",
                     e.what());
  }
}

// A positive seq or ack as the file spells it (nlohmann parses non-negative integers unsigned).
std::optional<int64_t> PositiveInt(const nlohmann::json& j) {
  if (!j.is_number_unsigned()) return std::nullopt;
  uint64_t v = j.get<uint64_t>();
  if (v == 0 || v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return std::nullopt;
  }
  return static_cast<int64_t>(v);
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// flock(2) locks belong to the open file description, so a second Outbox on the same file fails
// here even within one process. The lock is on an inode: when a compaction renamed a new file
// over the path between our open and our flock, we locked the old one, so open again.
Result<UniqueFd> OpenLocked(const std::string& path) {
  for (int attempt = 0;; ++attempt) {
    auto fd = OpenAt(AT_FDCWD, path, O_RDWR | O_CREAT | O_APPEND, 0600);
    if (!fd.ok()) return std::move(fd).error();
    if (::flock(fd->get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         "outbox {} is open in another Outbox (this process or another); "
                         "one runner per outbox file",
                         path);
      }
      return ErrnoError("flock {}", path);
    }
    struct stat by_fd, by_path;
    if (::fstat(fd->get(), &by_fd) != 0) return ErrnoError("fstat {}", path);
    if (::stat(path.c_str(), &by_path) == 0 && by_fd.st_dev == by_path.st_dev &&
        by_fd.st_ino == by_path.st_ino) {
      return std::move(fd).value();
    }
    if (attempt == 3) {
      return MakeError(ErrorCode::kAborted, "outbox {} keeps being replaced while opening", path);
    }
  }
}

Status FsyncDir(const std::string& dir) {
  auto fd = OpenAt(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY);
  if (!fd.ok()) return std::move(fd).error();
  if (::fsync(fd->get()) != 0) return ErrnoError("fsync {}", dir);
  return Ok();
}

}  // namespace

Outbox::Outbox(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}

Outbox::~Outbox() = default;

Result<std::unique_ptr<Outbox>> Outbox::Open(std::string path) {
  auto fd = OpenLocked(path);
  if (!fd.ok()) return std::move(fd).error();
  std::unique_ptr<Outbox> outbox(new Outbox(std::move(path), std::move(fd).value()));
  SBX_TRY(outbox->Load());
  return outbox;
}

Status Outbox::Load() {
  std::lock_guard lock(mu_);
  struct stat st;
  if (::fstat(fd_.get(), &st) != 0) return ErrnoError("fstat {}", path_);
  std::string data(static_cast<size_t>(st.st_size), '\0');
  auto got = ReadAllAt(fd_.get(), data.data(), data.size(), 0);
  if (!got.ok()) return WithContext(std::move(got).error(), path_);
  data.resize(*got);

  auto bad = [&](size_t offset, std::string_view why) -> Error {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "outbox {} is damaged: bad record at byte offset {} ({}); move the file "
                     "aside to start afresh (the entries it holds are lost)",
                     path_, offset, why);
  };
  size_t pos = 0;
  while (pos < data.size()) {
    size_t nl = data.find('\n', pos);
    if (nl == std::string::npos) break;  // torn: no final newline
    std::string_view line(data.data() + pos, nl - pos);
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      if (nl + 1 == data.size()) break;  // torn: the last record does not parse
      return bad(pos, "not JSON");
    }
    uint64_t bytes = line.size() + 1;
    if (j.is_object() && j.size() == 1 && j.contains("ack")) {
      auto ack = PositiveInt(j["ack"]);
      if (!ack) return bad(pos, "ack is not a positive integer");
      if (*ack < acked_seq_) return bad(pos, "ack goes backwards");
      acked_seq_ = *ack;
      last_seq_ = std::max(last_seq_, *ack);
      obsolete_bytes_ += bytes;
      DropAckedLocked();
    } else if (j.is_object() && j.size() == 2 && j.contains("seq") && j.contains("entry")) {
      auto seq = PositiveInt(j["seq"]);
      if (!seq) return bad(pos, "seq is not a positive integer");
      if (*seq != last_seq_ + 1) {
        return bad(pos, fmt::format("seq {} follows {}", *seq, last_seq_));
      }
      last_seq_ = *seq;
      queue_.push_back(Pending{*seq, std::move(j["entry"]), bytes});
    } else {
      return bad(pos, "neither {\"seq\",\"entry\"} nor {\"ack\"}");
    }
    pos = nl + 1;
  }
  file_bytes_ = pos;
  if (pos < data.size()) {
    spdlog::warn(
        "outbox {}: dropped a torn last record at byte offset {} ({} bytes; the process "
        "stopped during an append)",
        path_, pos, data.size() - pos);
    if (::ftruncate(fd_.get(), static_cast<off_t>(pos)) != 0) {
      return ErrnoError("truncate {} to {} bytes", path_, pos);
    }
  }
  return Ok();
}

void Outbox::DropAckedLocked() {
  while (!queue_.empty() && queue_.front().seq <= acked_seq_) {
    obsolete_bytes_ += queue_.front().bytes;
    queue_.pop_front();
  }
}

Status Outbox::AppendLineLocked(const std::string& line) {
  if (broken_) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "outbox {} ends in a partial record that could not be removed; reopen it",
                     path_);
  }
  Status written = WriteAll(fd_.get(), line);
  if (!written.ok()) {
    // Cut off whatever part of the record reached the file, so the next record does not follow
    // garbage (which would read as damage in the middle at the next Open).
    if (::ftruncate(fd_.get(), static_cast<off_t>(file_bytes_)) != 0) broken_ = true;
    return WithContext(std::move(written).error(), path_);
  }
  file_bytes_ += line.size();
  return Ok();
}

Result<int64_t> Outbox::Append(nlohmann::json entry) {
  auto dumped = Dump(entry);
  if (!dumped.ok()) return std::move(dumped).error();
  std::function<void()> notify;
  int64_t seq;
  {
    std::lock_guard lock(mu_);
    seq = last_seq_ + 1;
    std::string line = EntryLine(seq, *dumped);
    SBX_TRY(AppendLineLocked(line));
    last_seq_ = seq;
    queue_.push_back(Pending{seq, std::move(entry), line.size()});
    notify = notify_;
  }
  if (notify) notify();
  return seq;
}

Status Outbox::Ack(int64_t seq) {
  std::lock_guard lock(mu_);
  if (seq > last_seq_) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "ack of seq {} past the last entry {} of outbox {}", seq, last_seq_, path_);
  }
  if (seq <= acked_seq_) return Ok();
  std::string line = AckLine(seq);
  SBX_TRY(AppendLineLocked(line));
  obsolete_bytes_ += line.size();
  acked_seq_ = seq;
  DropAckedLocked();
  if (ShouldCompactLocked()) {
    Status compacted = CompactLocked();
    if (!compacted.ok()) {
      spdlog::warn("outbox {}: compaction failed, will retry at the next ack: {}", path_,
                   compacted.error().ToString());
    }
  }
  return Ok();
}

bool Outbox::ShouldCompactLocked() const {
  if (queue_.empty()) return file_bytes_ > kCompactMinBytes;
  return obsolete_bytes_ > kCompactMinBytes && obsolete_bytes_ * 2 > file_bytes_;
}

// Writes the last ack and the pending entries to path_.tmp, fsyncs it, renames it over path_ and
// fsyncs the directory (rename(2) is atomic; the directory fsync makes it durable). A crash at
// any point leaves either the old file or the new one at path_, both complete.
Status Outbox::CompactLocked() {
  const std::string tmp = path_ + ".tmp";
  auto fd = OpenAt(AT_FDCWD, tmp, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_NOFOLLOW, 0600);
  if (!fd.ok()) return std::move(fd).error();
  auto fail = [&](Error e) -> Error {
    ::unlink(tmp.c_str());
    return e;
  };
  if (::flock(fd->get(), LOCK_EX | LOCK_NB) != 0) return fail(ErrnoError("flock {}", tmp));

  constexpr size_t kChunk = 256 << 10;
  std::string buf = acked_seq_ > 0 ? AckLine(acked_seq_) : std::string();
  const uint64_t ack_bytes = buf.size();
  uint64_t total = 0;
  std::vector<uint64_t> sizes;
  sizes.reserve(queue_.size());
  for (const Pending& p : queue_) {
    auto dumped = Dump(p.entry);
    if (!dumped.ok()) return fail(std::move(dumped).error());
    std::string line = EntryLine(p.seq, *dumped);
    sizes.push_back(line.size());
    buf += line;
    if (buf.size() >= kChunk) {
      Status w = WriteAll(fd->get(), buf);
      if (!w.ok()) return fail(WithContext(std::move(w).error(), tmp));
      total += buf.size();
      buf.clear();
    }
  }
  Status w = WriteAll(fd->get(), buf);
  if (!w.ok()) return fail(WithContext(std::move(w).error(), tmp));
  total += buf.size();
  if (::fsync(fd->get()) != 0) return fail(ErrnoError("fsync {}", tmp));
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    return fail(ErrnoError("rename {} to {}", tmp, path_));
  }

  fd_ = std::move(fd).value();
  file_bytes_ = total;
  obsolete_bytes_ = ack_bytes;
  for (size_t i = 0; i < queue_.size(); ++i) queue_[i].bytes = sizes[i];
  return FsyncDir(DirName(path_));
}

std::vector<std::pair<int64_t, nlohmann::json>> Outbox::After(int64_t after, size_t max) const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<int64_t, nlohmann::json>> out;
  if (queue_.empty() || max == 0) return out;
  // The queue holds consecutive seqs, so the first one wanted is found by subtraction.
  size_t start = 0;
  if (after >= queue_.front().seq) start = static_cast<size_t>(after - queue_.front().seq + 1);
  for (size_t i = start; i < queue_.size() && out.size() < max; ++i) {
    out.emplace_back(queue_[i].seq, queue_[i].entry);
  }
  return out;
}

int64_t Outbox::last_seq() const {
  std::lock_guard lock(mu_);
  return last_seq_;
}

int64_t Outbox::acked_seq() const {
  std::lock_guard lock(mu_);
  return acked_seq_;
}

size_t Outbox::pending() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void Outbox::SetNotify(std::function<void()> notify) {
  std::lock_guard lock(mu_);
  notify_ = std::move(notify);
}

}  // namespace sbx::supervisor::runner
