#include <gtest/gtest.h>

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

TEST(Error, ToStringCarriesErrnoAndContext) {
  errno = ENOENT;
  Error e = ErrnoError("open {}", "/x");
  e = WithContext(std::move(e), "bind source");
  EXPECT_EQ(e.code, ErrorCode::kNotFound);
  EXPECT_EQ(e.ToString(), "open /x: No such file or directory (bind source)");
}

}  // namespace
}  // namespace sbx
