// Tar out and in on temp-directory roots: round trips byte-exact, GNU tar reads ours and we
// read GNU tar's, and hostile archives are refused with nothing changed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "supervisor/files/files.h"
#include "supervisor/files/tar.h"
#include "unit/files_testing.h"

namespace sbx::files {
namespace {

using testing::BinaryBytes;
using testing::Exists;
using testing::Slurp;
using testing::Spit;
using testing::TempDir;
using testing::TreeListing;

ByteSource FromString(const std::string& s, size_t chunk = 777) {
  auto pos = std::make_shared<size_t>(0);
  return [&s, pos, chunk](char* buf, size_t n) -> Result<size_t> {
    size_t k = std::min({n, chunk, s.size() - *pos});
    std::memcpy(buf, s.data() + *pos, k);
    *pos += k;
    return k;
  };
}

std::string Entry(const std::string& name, TarType type, const std::string& data = "",
                  const std::string& link = "", uint32_t mode = 0644) {
  TarEntry e;
  e.name = name;
  e.type = type;
  e.mode = mode;
  e.size = data.size();
  e.mtime = 1700000000;
  e.link_target = link;
  std::string out = TarHeader(e) + data;
  out.append(TarPadding(data.size()), '\0');
  return out;
}

class FilesTar : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::mkdir((tmp_ / "root").c_str(), 0755), 0);
    Spit(tmp_ / "outside", "host file\n");
    Open({});
  }
  void Open(const Limits& limits) {
    auto r = SandboxRoot::OpenDirectory(tmp_ / "root", Owner{::geteuid(), ::getegid()}, limits);
    ASSERT_TRUE(r.ok()) << r.error().ToString();
    root_.emplace(std::move(*r));
  }
  std::string Host(const std::string& rel) { return tmp_ / ("root/" + rel); }
  std::string Pack(std::string_view path) {
    std::string out;
    auto r = WriteTar(*root_, path, [&](std::string_view d) {
      out += d;
      return Ok();
    });
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    return out;
  }
  // Extracting `tar` into /in fails with `code` and changes nothing anywhere.
  void ExpectRefused(const std::string& tar, ErrorCode code) {
    ASSERT_TRUE(root_->MakeDirectories("/in").ok());
    std::string before = TreeListing(tmp_.path());
    auto r = ExtractTar(*root_, "/in", FromString(tar));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, code) << r.error().ToString();
    EXPECT_EQ(TreeListing(tmp_.path()), before);
    EXPECT_EQ(Slurp(tmp_ / "outside"), "host file\n");
  }

  TempDir tmp_;
  std::optional<SandboxRoot> root_;
};

TEST_F(FilesTar, RoundTripByteExact) {
  std::string bin = BinaryBytes(300);
  std::string longname(150, 'n');
  ASSERT_TRUE(root_->MakeDirectories("/src/a/b").ok());
  ASSERT_TRUE(root_->Write("/src/a/b/bin", bin, {.mode = 0600}).ok());
  ASSERT_TRUE(root_->Write("/src/empty", "").ok());
  ASSERT_TRUE(root_->Write("/src/a/" + longname, "long").ok());
  ASSERT_EQ(::symlink("a/b/bin", Host("src/link").c_str()), 0);
  ASSERT_EQ(::mkfifo(Host("src/fifo").c_str(), 0644), 0);
  std::string tar;
  auto stats = WriteTar(*root_, "/src", [&](std::string_view d) {
    tar += d;
    return Ok();
  });
  ASSERT_TRUE(stats.ok()) << stats.error().ToString();
  EXPECT_EQ(stats->entries, 6u);  // a, a/b, a/b/bin, a/nnn…, empty, link
  EXPECT_EQ(stats->bytes, bin.size() + 4);
  ASSERT_EQ(stats->skipped.size(), 1u);
  EXPECT_NE(stats->skipped[0].find("fifo"), std::string::npos);
  EXPECT_EQ(tar.size() % 512, 0u);

  auto in = ExtractTar(*root_, "/dst", FromString(tar), {.make_dir = true});
  ASSERT_TRUE(in.ok()) << in.error().ToString();
  EXPECT_EQ(in->entries, 6u);
  EXPECT_EQ(Slurp(Host("dst/a/b/bin")), bin);
  EXPECT_EQ(Slurp(Host("dst/a/" + longname)), "long");
  EXPECT_EQ(Slurp(Host("dst/empty")), "");
  char buf[64] = {};
  ASSERT_GT(::readlink(Host("dst/link").c_str(), buf, sizeof buf), 0);
  EXPECT_EQ(std::string(buf), "a/b/bin");
  struct stat st;
  ASSERT_EQ(::stat(Host("dst/a/b/bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  struct stat src;
  ASSERT_EQ(::stat(Host("src/a/b/bin").c_str(), &src), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, src.st_mtim.tv_sec);
  EXPECT_FALSE(Exists(Host("dst/fifo")));
  // The same tree, name for name and size for size (without the fifo).
  ::unlink(Host("src/fifo").c_str());
  EXPECT_EQ(TreeListing(Host("dst")), TreeListing(Host("src")));
}

TEST_F(FilesTar, GnuTarReadsOursAndWeReadGnuTars) {
  if (::system("tar --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no tar(1) on this host";
  std::string bin = BinaryBytes(10);
  std::string deep = std::string(120, 'd') + "/" + std::string(120, 'e');
  ASSERT_TRUE(root_->MakeDirectories("/src/" + deep).ok());
  ASSERT_TRUE(root_->Write("/src/" + deep + "/f", bin).ok());
  Spit(tmp_ / "ours.tar", Pack("/src"));
  ASSERT_EQ(::mkdir((tmp_ / "x").c_str(), 0755), 0);
  std::string cmd = "tar -xf " + (tmp_ / "ours.tar") + " -C " + (tmp_ / "x");
  ASSERT_EQ(::system(cmd.c_str()), 0);
  EXPECT_EQ(Slurp(tmp_ / ("x/" + deep + "/f")), bin);

  for (const char* format : {"gnu", "pax", "ustar", "v7"}) {
    SCOPED_TRACE(format);
    std::string name = std::string("g-") + format + ".tar";
    std::string dir = std::string(format) == "gnu" || std::string(format) == "pax"
                          ? "x"  // long names
                          : "y";
    if (dir == "y" && !Exists(tmp_ / "y")) {
      ASSERT_EQ(::mkdir((tmp_ / "y").c_str(), 0755), 0);
      Spit(tmp_ / "y/short", bin);
    }
    cmd = "tar --format=" + std::string(format) + " -cf " + (tmp_ / name) + " -C " + (tmp_ / dir) +
          " .";
    ASSERT_EQ(::system(cmd.c_str()), 0);
    std::string tar = Slurp(tmp_ / name);
    std::string to = std::string("/from-") + format;
    auto r = ExtractTar(*root_, to, FromString(tar, 4096), {.make_dir = true});
    ASSERT_TRUE(r.ok()) << r.error().ToString();
    if (dir == "x") {
      EXPECT_EQ(Slurp(Host(to.substr(1) + "/" + deep + "/f")), bin);
    } else {
      EXPECT_EQ(Slurp(Host(to.substr(1) + "/short")), bin);
    }
  }
}

TEST_F(FilesTar, SingleFileAndBounds) {
  ASSERT_TRUE(root_->Write("/one", "1").ok());
  std::string tar = Pack("/one");
  ASSERT_TRUE(ExtractTar(*root_, "/copy", FromString(tar), {.make_dir = true}).ok());
  EXPECT_EQ(Slurp(Host("copy/one")), "1");

  Limits l;
  l.max_tar_entries = 3;
  l.max_tar_bytes = 100;
  Open(l);
  ASSERT_TRUE(root_->MakeDirectories("/many").ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(root_->Write("/many/" + std::to_string(i), "").ok());
  auto r = WriteTar(*root_, "/many", [](std::string_view) { return Ok(); });
  EXPECT_EQ(r.error().code, ErrorCode::kResourceExhausted);
  ASSERT_TRUE(root_->Write("/big", std::string(101, 'b')).ok());
  r = WriteTar(*root_, "/big", [](std::string_view) { return Ok(); });
  EXPECT_EQ(r.error().code, ErrorCode::kResourceExhausted);
  // And in: four entries, or 101 bytes.
  std::string four;
  for (int i = 0; i < 4; ++i) four += Entry("f" + std::to_string(i), TarType::kRegular, "x");
  ExpectRefused(four + TarTrailer(), ErrorCode::kResourceExhausted);
  ExpectRefused(Entry("big", TarType::kRegular, std::string(101, 'b')) + TarTrailer(),
                ErrorCode::kResourceExhausted);
}

TEST_F(FilesTar, HostileArchivesChangeNothing) {
  ASSERT_TRUE(root_->MakeDirectories("/etc").ok());
  ASSERT_TRUE(root_->Write("/etc/passwd", "sandbox's own\n").ok());
  std::string ok_first = Entry("fine.txt", TarType::kRegular, "fine");  // refused with the rest
  const std::string end = TarTrailer();
  ExpectRefused(ok_first + Entry("../escape", TarType::kRegular, "x") + end,
                ErrorCode::kInvalidArgument);
  ExpectRefused(ok_first + Entry("a/../../escape", TarType::kRegular, "x") + end,
                ErrorCode::kInvalidArgument);
  ExpectRefused(ok_first + Entry("/etc/passwd", TarType::kRegular, "x") + end,
                ErrorCode::kInvalidArgument);
  ExpectRefused(ok_first + Entry(tmp_ / "outside", TarType::kRegular, "x") + end,
                ErrorCode::kInvalidArgument);
  // A symlink out, then a file through it.
  ExpectRefused(ok_first + Entry("l", TarType::kSymlink, "", "/etc") +
                    Entry("l/passwd", TarType::kRegular, "owned") + end,
                ErrorCode::kPermissionDenied);
  ExpectRefused(ok_first + Entry("l", TarType::kSymlink, "", "../../..") + end,
                ErrorCode::kPermissionDenied);
  // Even a harmless-looking link is no way in for a later entry.
  ExpectRefused(ok_first + Entry("d", TarType::kDirectory) +
                    Entry("l", TarType::kSymlink, "", "d") + Entry("l/f", TarType::kRegular, "x") +
                    end,
                ErrorCode::kPermissionDenied);
  // Hard links to anything but a file of the same archive.
  ExpectRefused(ok_first + Entry("h", TarType::kHardLink, "", "../outside") + end,
                ErrorCode::kPermissionDenied);
  ExpectRefused(ok_first + Entry("h", TarType::kHardLink, "", "/etc/passwd") + end,
                ErrorCode::kPermissionDenied);
  ExpectRefused(ok_first + Entry("h", TarType::kHardLink, "", "../etc/passwd") + end,
                ErrorCode::kPermissionDenied);
  ExpectRefused(ok_first + Entry("dev", TarType::kCharDevice) + end, ErrorCode::kPermissionDenied);
  ExpectRefused(ok_first + Entry("blk", TarType::kBlockDevice) + end, ErrorCode::kPermissionDenied);
  ExpectRefused(ok_first + Entry("fifo", TarType::kFifo) + end, ErrorCode::kPermissionDenied);
  // Damaged streams.
  std::string good = ok_first + end;
  ExpectRefused(good.substr(0, 700), ErrorCode::kInvalidArgument);  // cut inside the data
  std::string bad = good;
  bad[10] ^= 1;  // the name, so the checksum no longer matches
  ExpectRefused(bad, ErrorCode::kInvalidArgument);
  ExpectRefused(std::string(1000, 'z'), ErrorCode::kInvalidArgument);
  EXPECT_EQ(Slurp(Host("etc/passwd")), "sandbox's own\n");
  // A link inside the archive's tree, and a hard link to an earlier file, are fine.
  auto r = ExtractTar(*root_, "/in",
                      FromString(ok_first + Entry("sub/l", TarType::kSymlink, "", "../fine.txt") +
                                 Entry("h", TarType::kHardLink, "", "fine.txt") + end));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(Slurp(Host("in/sub/l")), "fine");
  EXPECT_EQ(Slurp(Host("in/h")), "fine");
}

TEST_F(FilesTar, PlantedSymlinkInTheTargetIsNotFollowed) {
  // The sandbox put a symlink where the archive expects a directory.
  ASSERT_TRUE(root_->MakeDirectories("/in").ok());
  ASSERT_TRUE(root_->MakeDirectories("/elsewhere").ok());
  ASSERT_EQ(::symlink("/elsewhere", Host("in/sub").c_str()), 0);
  auto r =
      ExtractTar(*root_, "/in", FromString(Entry("sub/f", TarType::kRegular, "x") + TarTrailer()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kPermissionDenied);
  EXPECT_FALSE(Exists(Host("elsewhere/f")));
}

}  // namespace
}  // namespace sbx::files
