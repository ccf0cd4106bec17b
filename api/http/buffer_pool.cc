#include "api/http/buffer_pool.h"

#include <mutex>
#include <vector>

namespace sbx::api {
namespace {

std::mutex g_mu;
std::vector<std::string>& Buffers() {
  static auto* kept = new std::vector<std::string>();  // never destroyed: used until exit
  return *kept;
}

}  // namespace

std::string BufferPool::Take() {
  std::lock_guard<std::mutex> lk(g_mu);
  auto& kept = Buffers();
  if (kept.empty()) return {};
  std::string s = std::move(kept.back());
  kept.pop_back();
  return s;
}

void BufferPool::Give(std::string&& buffer) {
  if (buffer.capacity() < kMinCapacity || buffer.capacity() > kMaxCapacity) return;
  std::lock_guard<std::mutex> lk(g_mu);
  auto& kept = Buffers();
  if (kept.size() < kMaxBuffers) kept.push_back(std::move(buffer));
}

size_t BufferPool::Kept() {
  std::lock_guard<std::mutex> lk(g_mu);
  return Buffers().size();
}

}  // namespace sbx::api
