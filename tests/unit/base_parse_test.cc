#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "base/fs.h"
#include "base/result.h"

namespace sbx {
namespace {

TEST(ParseByteSize, DockerSpellings) {
  EXPECT_EQ(*ParseByteSize("0"), 0u);
  EXPECT_EQ(*ParseByteSize("512"), 512u);
  EXPECT_EQ(*ParseByteSize("1k"), 1024u);
  EXPECT_EQ(*ParseByteSize("256m"), 256ull << 20);
  EXPECT_EQ(*ParseByteSize("256M"), 256ull << 20);
  EXPECT_EQ(*ParseByteSize("2g"), 2ull << 30);
  EXPECT_EQ(*ParseByteSize("1.5k"), 1536u);
  EXPECT_EQ(*ParseByteSize("64MiB"), 64ull << 20);
}

TEST(ParseByteSize, RejectsGarbage) {
  for (const char* bad : {"", "m", "-1m", "12q", "1e3", "abc", "1..2m", "99999999999999999999t"}) {
    auto r = ParseByteSize(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << bad;
    }
  }
}

TEST(ParseDurationMs, Units) {
  EXPECT_EQ(*ParseDurationMs("30s"), 30'000u);
  EXPECT_EQ(*ParseDurationMs("30"), 30'000u);
  EXPECT_EQ(*ParseDurationMs("500ms"), 500u);
  EXPECT_EQ(*ParseDurationMs("1.5s"), 1'500u);
  EXPECT_EQ(*ParseDurationMs("2m"), 120'000u);
  EXPECT_EQ(*ParseDurationMs("1h"), 3'600'000u);
  for (const char* bad : {"", "s", "10x", "-5s", "5 s"}) EXPECT_FALSE(ParseDurationMs(bad).ok()) << bad;
}

TEST(ReadAllAt, ReadsTheRangeOrUpToTheEnd) {
  UniqueFd fd(::memfd_create("read_all_at", MFD_CLOEXEC));
  ASSERT_TRUE(fd);
  std::string content(300000, 'x');
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>('a' + i % 26);
  ASSERT_TRUE(WriteAll(fd.get(), content).ok());
  std::string buf(200000, '\0');
  auto got = ReadAllAt(fd.get(), buf.data(), buf.size(), 1000);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, buf.size());
  EXPECT_EQ(buf, content.substr(1000, buf.size()));
  got = ReadAllAt(fd.get(), buf.data(), buf.size(), 250000);  // past the end: what is there
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, 50000u);
  EXPECT_EQ(buf.substr(0, 50000), content.substr(250000));
  got = ReadAllAt(fd.get(), buf.data(), buf.size(), 400000);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, 0u);
  got = ReadAllAt(-1, buf.data(), 1, 0);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().sys_errno, EBADF);
}

TEST(Error, ToStringCarriesErrnoAndContext) {
  errno = ENOENT;
  Error e = ErrnoError("open {}", "/x");
  e = WithContext(std::move(e), "bind source");
  EXPECT_EQ(e.code, ErrorCode::kNotFound);
  EXPECT_EQ(e.ToString(), "open /x: No such file or directory (bind source)");
}

}  // namespace
}  // namespace sbx
