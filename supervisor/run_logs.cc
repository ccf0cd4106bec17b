#include "supervisor/run_logs.h"

#include <fcntl.h>
#include <unistd.h>

#include "base/unique_fd.h"
#include "supervisor/text.h"

namespace sbx::supervisor {

std::string RunDir(const std::string& data_dir, std::string_view run_id) {
  return data_dir + "/runs/" + std::string(run_id);
}

std::string LogEventBytes(const store::EventRecord& e, const std::string& data_dir) {
  std::string out;
  AppendLogEventBytes(e, data_dir, &out);
  return out;
}

void AppendLogEventBytes(const store::EventRecord& e, const std::string& data_dir,
                         std::string* out) {
  const nlohmann::json& d = e.data;
  if (auto it = d.find("data"); it != d.end() && it->is_string()) {
    out->append(it->get_ref<const std::string&>());
    return;
  }
  if (auto it = d.find("data_b64"); it != d.end() && it->is_string()) {
    out->append(Base64Decode(it->get_ref<const std::string&>()));
    return;
  }
  int64_t offset = d.value("offset", int64_t{-1});
  int64_t length = d.value("length", int64_t{-1});
  auto stream = d.find("stream");
  if (offset < 0 || length <= 0 || stream == d.end() || !stream->is_string()) return;
  const std::string& name = stream->get_ref<const std::string&>();
  if (name != "stdout" && name != "stderr") return;
  std::string path = RunDir(data_dir, e.run_id) + "/" + name;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return;
  const size_t start = out->size();
  // resize_and_overwrite would skip the zero fill; the read overwrites it either way.
  out->resize(start + static_cast<size_t>(length));
  size_t got = 0;
  while (got < static_cast<size_t>(length)) {
    ssize_t n = ::pread(fd.get(), out->data() + start + got, static_cast<size_t>(length) - got,
                        static_cast<off_t>(offset) + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  out->resize(start + got);
}

}  // namespace sbx::supervisor
