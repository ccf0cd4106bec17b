#include "supervisor/workspace/run_logs.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "supervisor/workspace/text.h"

namespace sbx::supervisor {

std::string RunDir(const std::string& data_dir, std::string_view run_id) {
  return data_dir + "/runs/" + std::string(run_id);
}

std::string LogFileName(std::string_view stream, int64_t attempt) {
  std::string name(stream);
  if (attempt > 1) name += "." + std::to_string(attempt);
  return name;
}

int64_t LogEventAttempt(const store::EventRecord& e) {
  if (!e.data.is_object()) return 1;
  auto it = e.data.find("attempt");
  return it != e.data.end() && it->is_number_integer() ? it->get<int64_t>() : 1;
}

std::string LogEventBytes(const store::EventRecord& e, const std::string& data_dir) {
  std::string out;
  PutLogEventBytes(e, data_dir, 0, &out);
  return out;
}

std::optional<LogRange> LogEventRange(const store::EventRecord& e, const std::string& data_dir) {
  const nlohmann::json& d = e.data;
  if (!d.is_object() || d.contains("data") || d.contains("data_b64")) return std::nullopt;
  int64_t offset = d.value("offset", int64_t{-1});
  int64_t length = d.value("length", int64_t{-1});
  auto stream = d.find("stream");
  if (offset < 0 || length <= 0 || stream == d.end() || !stream->is_string() ||
      (*stream != "stdout" && *stream != "stderr")) {
    return std::nullopt;
  }
  return LogRange{
      RunDir(data_dir, e.run_id) + "/" + LogFileName(stream->get<std::string>(), LogEventAttempt(e)),
      offset, static_cast<size_t>(length)};
}

void PutLogEventBytes(const store::EventRecord& e, const std::string& data_dir, size_t at,
                      std::string* out) {
  const nlohmann::json& d = e.data;
  if (auto it = d.find("data"); it != d.end() && it->is_string()) {
    out->resize(at);
    out->append(it->get_ref<const std::string&>());
    return;
  }
  if (auto it = d.find("data_b64"); it != d.end() && it->is_string()) {
    out->resize(at);
    out->append(Base64Decode(it->get_ref<const std::string&>()));
    return;
  }
  auto range = LogEventRange(e, data_dir);
  UniqueFd fd;
  if (range) fd.reset(::open(range->path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    out->resize(at);
    return;
  }
  const int64_t offset = range->offset;
  const size_t length = range->length;
  const size_t start = at;
  // Straight to the new size: a shrink costs nothing, and a growth zero-fills only what the
  // buffer never held (resize_and_overwrite, C++23, would skip even that).
  out->resize(start + length);
  auto got = ReadAllAt(fd.get(), out->data() + start, length, static_cast<uint64_t>(offset));
  out->resize(start + (got.ok() ? *got : 0));
}

namespace {

constexpr int kAppendFlags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW;

}  // namespace

Result<LogAppender> LogAppender::Open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), kAppendFlags));
  if (!fd) {
    if (errno == ENOENT) return LogAppender(path, UniqueFd(), 0);
    return ErrnoError("open {}", path);
  }
  struct stat st{};
  if (::fstat(fd.get(), &st) < 0) return ErrnoError("fstat {}", path);
  return LogAppender(path, std::move(fd), st.st_size);
}

LogAppender::LogAppender(std::string path, UniqueFd fd, int64_t offset)
    : path_(std::move(path)), fd_(std::move(fd)), offset_(offset) {}

Status LogAppender::Append(std::string_view data) {
  if (!fd_ && !data.empty()) {
    fd_.reset(::open(path_.c_str(), kAppendFlags | O_CREAT, 0600));
    if (!fd_) return ErrnoError("open {}", path_);
  }
  while (!data.empty()) {
    ssize_t n = ::write(fd_.get(), data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    // A short write before the error (a full disk) still moved the end of the file.
    if (n < 0) return ErrnoError("write");
    offset_ += n;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Ok();
}

}  // namespace sbx::supervisor
