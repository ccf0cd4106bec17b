#include <gtest/gtest.h>

#include <string>

#include "base/sha256.h"

namespace sbx {
namespace {

// FIPS 180-2 appendix B vectors, and lengths around the padding boundaries (55 bytes fit one
// block with the length, 56..63 need a second one), checked against Python's hashlib.
TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklm"
                      "nopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(Sha256Test, PaddingBoundaries) {
  const std::pair<size_t, const char*> cases[] = {
      {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
      {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
      {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
      {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
      {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
      {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
      {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
      {128, "6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e"},
  };
  for (const auto& [n, want] : cases) EXPECT_EQ(Sha256Hex(std::string(n, 'a')), want) << n;
}

TEST(Sha256Test, MillionAsInUnevenChunks) {
  Sha256Hasher h;
  const std::string chunk(997, 'a');  // prime, so chunks straddle block boundaries
  size_t left = 1'000'000;
  while (left > 0) {
    size_t n = std::min(left, chunk.size());
    h.Update(std::string_view(chunk).substr(0, n));
    left -= n;
  }
  EXPECT_EQ(DigestHex(h.Final()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, IncrementalEqualsOneShot) {
  std::string data;
  for (int i = 0; i < 300; ++i) data.push_back(static_cast<char>(i * 7));
  const std::string want = Sha256Hex(data);
  for (size_t split = 0; split <= data.size(); split += 13) {
    Sha256Hasher h;
    h.Update(std::string_view(data).substr(0, split));
    h.Update(std::string_view(data).substr(split));
    EXPECT_EQ(DigestHex(h.Final()), want) << "split at " << split;
  }
}

TEST(Sha256Test, ParseDigestHex) {
  std::string hex = Sha256Hex("x");
  ASSERT_TRUE(ParseDigestHex(hex).has_value());
  EXPECT_EQ(DigestHex(*ParseDigestHex(hex)), hex);
  std::string upper = hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  EXPECT_EQ(ParseDigestHex(upper), ParseDigestHex(hex));
  EXPECT_FALSE(ParseDigestHex(hex.substr(1)).has_value());
  EXPECT_FALSE(ParseDigestHex(hex + "0").has_value());
  EXPECT_FALSE(ParseDigestHex(std::string(64, 'g')).has_value());
}

}  // namespace
}  // namespace sbx
