// The message buffer pool keeps a bounded number of large buffers, with their capacity, and
// nothing else.
#include <gtest/gtest.h>

#include "api/http/buffer_pool.h"

namespace sbx::api {
namespace {

void Drain() {
  while (BufferPool::Kept() > 0) (void)BufferPool::Take();
}

TEST(BufferPoolTest, AGivenBufferComesBackWithItsCapacityAndSize) {
  Drain();
  std::string big(1 << 20, 'x');
  big.resize(1000);  // a smaller message in a buffer that once held a larger one
  const size_t cap = big.capacity();
  BufferPool::Give(std::move(big));
  EXPECT_EQ(BufferPool::Kept(), 1u);
  std::string again = BufferPool::Take();
  EXPECT_EQ(again.size(), 1000u);
  EXPECT_EQ(again.capacity(), cap);
  EXPECT_EQ(BufferPool::Kept(), 0u);
  EXPECT_TRUE(BufferPool::Take().empty());  // none kept: a plain empty string
}

TEST(BufferPoolTest, SmallAndHugeBuffersAreNotKept) {
  Drain();
  BufferPool::Give(std::string(100, 'x'));
  BufferPool::Give(std::string(BufferPool::kMaxCapacity + 1, 'x'));
  EXPECT_EQ(BufferPool::Kept(), 0u);
}

TEST(BufferPoolTest, NoMoreThanTheBoundIsKept) {
  Drain();
  for (size_t i = 0; i < BufferPool::kMaxBuffers * 3; ++i) {
    BufferPool::Give(std::string(BufferPool::kMinCapacity, 'x'));
  }
  EXPECT_EQ(BufferPool::Kept(), BufferPool::kMaxBuffers);
  Drain();
}

}  // namespace
}  // namespace sbx::api
