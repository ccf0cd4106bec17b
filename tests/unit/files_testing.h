// Helpers for the files tests: a temp directory removed with everything in it, small file
// utilities that use host paths (the test's own view, never the library's).
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace sbx::files::testing {

class TempDir {
 public:
  explicit TempDir(const char* prefix = "sbx-files-test-") {
    std::string tmpl = std::string("/tmp/") + prefix + std::to_string(::getpid()) + "-XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    if (p != nullptr) path_ = p;
    ::chmod(path_.c_str(), 0755);
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void Spit(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

inline bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// All 256 byte values, `rounds` times, in a scrambled order.
inline std::string BinaryBytes(size_t rounds = 4) {
  std::string s;
  for (size_t r = 0; r < rounds; ++r) {
    for (int i = 0; i < 256; ++i) s += static_cast<char>((i * 167 + r * 13) & 0xff);
  }
  return s;
}

// Every name below `dir` (relative, sorted), following no symlink: a fingerprint of a tree.
inline std::string TreeListing(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::string rel = it->path().string().substr(dir.size());
    struct stat st;
    ::lstat(it->path().c_str(), &st);
    std::string kind = S_ISDIR(st.st_mode) ? "d" : S_ISLNK(st.st_mode) ? "l" : "f";
    if (S_ISREG(st.st_mode)) kind += std::to_string(st.st_size);
    names.push_back(rel + " " + kind);
  }
  std::sort(names.begin(), names.end());
  std::string out;
  for (auto& n : names) out += n + "\n";
  return out;
}

}  // namespace sbx::files::testing
