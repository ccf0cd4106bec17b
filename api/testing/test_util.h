// Small helpers for the api tests: a temporary directory and an event log that tests wait on
// (no sleeps to let things settle). Header-only.
#pragma once

#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

namespace sbx::api::testing {

class TempDir {
 public:
  // <temp dir>/<prefix>.XXXXXX; path() is "" when it could not be made.
  explicit TempDir(const std::string& prefix = "sbx_api") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + ".XXXXXX")).string();
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Thread-safe list of named events with a bounded wait.
class EventLog {
 public:
  void Add(std::string event) {
    {
      std::lock_guard lock(mu_);
      events_.push_back(std::move(event));
    }
    cv_.notify_all();
  }
  bool WaitFor(const std::string& event,
               std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(mu_);
    return WaitForCount(event, 1, timeout, lock);
  }
  // Until `event` has been added `n` times.
  bool WaitForCount(const std::string& event, int n,
                    std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(mu_);
    return WaitForCount(event, n, timeout, lock);
  }
  int Count(const std::string& event) {
    std::lock_guard lock(mu_);
    return CountLocked(event);
  }
  std::vector<std::string> All() {
    std::lock_guard lock(mu_);
    return events_;
  }

 private:
  bool WaitForCount(const std::string& event, int n, std::chrono::milliseconds timeout,
                    std::unique_lock<std::mutex>& lock) {
    return cv_.wait_for(lock, timeout, [&] { return CountLocked(event) >= n; });
  }
  int CountLocked(const std::string& event) {
    int n = 0;
    for (const auto& e : events_) n += e == event;
    return n;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
};

}  // namespace sbx::api::testing
