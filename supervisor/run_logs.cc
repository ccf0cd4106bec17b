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
  const nlohmann::json& d = e.data;
  if (auto it = d.find("data"); it != d.end() && it->is_string()) return it->get<std::string>();
  if (auto it = d.find("data_b64"); it != d.end() && it->is_string()) {
    return Base64Decode(it->get<std::string>());
  }
  int64_t offset = d.value("offset", int64_t{-1});
  int64_t length = d.value("length", int64_t{-1});
  std::string stream = d.value("stream", "");
  if (offset < 0 || length <= 0 || (stream != "stdout" && stream != "stderr")) return "";
  std::string path = RunDir(data_dir, e.run_id) + "/" + stream;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return "";
  std::string out(static_cast<size_t>(length), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::pread(fd.get(), out.data() + got, out.size() - got,
                        static_cast<off_t>(offset) + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

}  // namespace sbx::supervisor
