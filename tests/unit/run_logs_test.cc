// A run's log files: every chunk appended where its offset says, whatever happens around it.
#include "supervisor/workspace/run_logs.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "api/testing/test_util.h"

namespace sbx::supervisor {
namespace {

class LogAppenderTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.empty()); }

  std::string ReadFile(const std::string& path) {
    std::string out;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    char buf[1 << 16];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    ::close(fd);
    return out;
  }

  sbx::api::testing::TempDir tmp_{"run_logs_test"};
  const std::string dir_ = tmp_.path();
};

// Chunks of uneven sizes: every byte lands where its offset says.
TEST_F(LogAppenderTest, EveryChunkLandsAtItsOffset) {
  const std::string path = dir_ + "/stdout";
  auto log = LogAppender::Open(path);
  ASSERT_TRUE(log.ok()) << log.error().ToString();
  std::string expected;
  std::vector<int64_t> offsets;
  const size_t total = size_t{40} << 20;
  for (size_t i = 0; expected.size() < total; ++i) {
    std::string chunk(1 + (i * 7919) % (3 << 20), static_cast<char>('a' + i % 26));
    offsets.push_back(log->offset());
    ASSERT_EQ(log->offset(), static_cast<int64_t>(expected.size()));
    ASSERT_TRUE(log->Append(chunk).ok());
    expected += chunk;
  }
  EXPECT_EQ(log->offset(), static_cast<int64_t>(expected.size()));
  EXPECT_EQ(ReadFile(path), expected);
}

// Reopened, it goes on at the end rather than over what is there.
TEST_F(LogAppenderTest, ReopenedItAppendsAfterWhatIsThere) {
  const std::string path = dir_ + "/stderr";
  {
    auto log = LogAppender::Open(path);
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE(log->Append("first\n").ok());
  }
  auto log = LogAppender::Open(path);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(log->offset(), 6);
  ASSERT_TRUE(log->Append("second\n").ok());
  EXPECT_EQ(log->offset(), 13);
  EXPECT_EQ(ReadFile(path), "first\nsecond\n");
}

// Nothing written, no file: the first bytes create it, for its owner only.
TEST_F(LogAppenderTest, TheFirstBytesCreateTheFile) {
  const std::string path = dir_ + "/stdout";
  auto log = LogAppender::Open(path);
  ASSERT_TRUE(log.ok()) << log.error().ToString();
  ASSERT_TRUE(log->Append("").ok());
  struct stat st{};
  EXPECT_NE(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(log->offset(), 0);
  ASSERT_TRUE(log->Append("out\n").ok());
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(log->offset(), 4);
  ASSERT_TRUE(log->Append("more\n").ok());
  EXPECT_EQ(ReadFile(path), "out\nmore\n");
}

// A symlink put where the file would be, after Open, is not followed either.
TEST_F(LogAppenderTest, ASymlinkPutThereLaterIsNotFollowed) {
  const std::string target = dir_ + "/target";
  auto log = LogAppender::Open(dir_ + "/stderr");
  ASSERT_TRUE(log.ok());
  ASSERT_EQ(::symlink(target.c_str(), (dir_ + "/stderr").c_str()), 0);
  Status st = log->Append("x");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().sys_errno, ELOOP);
  struct stat sb{};
  EXPECT_NE(::stat(target.c_str(), &sb), 0);
}

TEST_F(LogAppenderTest, ASymlinkIsNotFollowed) {
  ASSERT_EQ(::symlink("/etc/passwd", (dir_ + "/stdout").c_str()), 0);
  auto log = LogAppender::Open(dir_ + "/stdout");
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.error().ToString().find("stdout"), std::string::npos);
}

// A full disk: the error comes back, and the offset stays the file's end.
TEST_F(LogAppenderTest, AFullDiskIsAnErrorAndMovesNothing) {
  auto log = LogAppender::Open("/dev/full");
  ASSERT_TRUE(log.ok()) << log.error().ToString();
  Status st = log->Append("lost");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().sys_errno, ENOSPC);
  EXPECT_EQ(log->offset(), 0);
}

}  // namespace
}  // namespace sbx::supervisor
