// Client paths: what SplitPath accepts and refuses.
#include <gtest/gtest.h>

#include "supervisor/files/internal.h"

namespace sbx::files {
namespace {

using internal::JoinPath;
using internal::SplitPath;

std::vector<std::string> Split(std::string_view p) {
  auto r = SplitPath(p, 4096);
  EXPECT_TRUE(r.ok()) << r.error().ToString();
  return r.ok() ? *r : std::vector<std::string>{};
}

ErrorCode SplitError(std::string_view p, size_t max = 4096) {
  auto r = SplitPath(p, max);
  EXPECT_FALSE(r.ok()) << p;
  return r.ok() ? ErrorCode::kInternal : r.error().code;
}

TEST(FilesPath, Components) {
  EXPECT_EQ(Split("/a/b"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(Split("a//b/./c/"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(Split("/"), std::vector<std::string>{});
  EXPECT_EQ(Split("./."), std::vector<std::string>{});
  EXPECT_EQ(Split("/...x/..a"), (std::vector<std::string>{"...x", "..a"}));
  EXPECT_EQ(JoinPath({"a", "b", "c"}), "a/b/c");
  EXPECT_EQ(JoinPath({"a", "b", "c"}, 0, 2), "a/b");
  EXPECT_EQ(JoinPath({}), ".");
  EXPECT_EQ(JoinPath({"a"}, 0, 0), ".");
}

TEST(FilesPath, Refused) {
  EXPECT_EQ(SplitError(""), ErrorCode::kInvalidArgument);
  EXPECT_EQ(SplitError(std::string_view("/a\0b", 4)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(SplitError("/a/../b"), ErrorCode::kInvalidArgument);
  EXPECT_EQ(SplitError(".."), ErrorCode::kInvalidArgument);
  EXPECT_EQ(SplitError("/a/.."), ErrorCode::kInvalidArgument);
  EXPECT_EQ(SplitError("/" + std::string(256, 'x')), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(SplitPath("/" + std::string(255, 'x'), 4096).ok());
  EXPECT_EQ(SplitError("/abcdef", 6), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(SplitPath("/abcde", 6).ok());
}

}  // namespace
}  // namespace sbx::files
