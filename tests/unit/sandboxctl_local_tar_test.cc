// `sandbox cp -r`'s local side: a tree written as tar and extracted again byte for byte, and
// archives from a hostile sandbox that must not write outside the destination.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "api/sandboxctl/local_tar.h"
#include "base/fs.h"
#include "base/unique_fd.h"
#include "supervisor/files/tar_format.h"

namespace sbx::ctl {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "sandboxctl-tar-XXXXXX").string();
    EXPECT_NE(::mkdtemp(t.data()), nullptr);
    path_ = t;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  UniqueFd Open(const std::string& sub = "") const {
    return UniqueFd(::open((sub.empty() ? path_ : path_ + "/" + sub).c_str(),
                           O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }

 private:
  std::string path_;
};

void Write(const std::string& path, const std::string& data, mode_t mode = 0644) {
  UniqueFd f(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  ASSERT_TRUE(f.valid()) << path;
  ASSERT_TRUE(WriteAll(f.get(), data).ok());
  ASSERT_EQ(::fchmod(f.get(), mode), 0);
}

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Every entry below `root`: "d dir", "f name <bytes> <mode>", "l name -> target".
std::map<std::string, std::string> Tree(const std::string& root) {
  std::map<std::string, std::string> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    const std::string rel = fs::relative(it->path(), root).string();
    struct stat st {};
    ::lstat(it->path().c_str(), &st);
    if (S_ISLNK(st.st_mode)) {
      out[rel] = "l -> " + fs::read_symlink(it->path()).string();
    } else if (S_ISDIR(st.st_mode)) {
      out[rel] = "d";
    } else if (!S_ISREG(st.st_mode)) {
      out[rel] = "other";  // never opened: a fifo would block
    } else {
      out[rel] = fmt::format("f {:o} {}", st.st_mode & 0777, Read(it->path()));
    }
  }
  return out;
}

// An unlinked temporary file holding `bytes`, for ExtractLocalTar.
UniqueFd ArchiveFile(const std::string& bytes) {
  std::string t = (fs::temp_directory_path() / "sandboxctl-archive-XXXXXX").string();
  UniqueFd fd(::mkostemp(t.data(), O_CLOEXEC));
  EXPECT_TRUE(fd.valid());
  ::unlink(t.c_str());
  EXPECT_TRUE(WriteAll(fd.get(), bytes).ok());
  return fd;
}

std::string Entry(files::TarType type, const std::string& name, const std::string& data = "",
                  const std::string& link = "") {
  files::TarEntry e;
  e.type = type;
  e.name = name;
  e.mode = type == files::TarType::kDirectory ? 0755 : 0644;
  e.size = data.size();
  e.link_target = link;
  return files::TarHeader(e) + data + std::string(files::TarPadding(data.size()), '\0');
}

TEST(SandboxctlLocalTar, TreeRoundTripsByteForByte) {
  ::umask(022);  // the modes compared below are the stored ones less the umask
  TempDir src, dst;
  std::string binary;
  for (int i = 0; i < 200000; ++i) binary.push_back(static_cast<char>((i * 7919) & 0xff));
  Write(src.path() + "/bin.dat", binary, 0755);
  Write(src.path() + "/empty", "");
  ASSERT_EQ(::mkdir((src.path() + "/sub").c_str(), 0750), 0);
  ASSERT_EQ(::mkdir((src.path() + "/sub/deeper").c_str(), 0700), 0);
  Write(src.path() + "/sub/deeper/x.txt", "hello\n", 0600);
  const std::string long_name(150, 'n');
  Write(src.path() + "/sub/" + long_name, "a long name needs a pax header");
  ASSERT_EQ(::symlink("deeper/x.txt", (src.path() + "/sub/link").c_str()), 0);
  ASSERT_EQ(::symlink("/etc/passwd", (src.path() + "/abs-link").c_str()), 0);
  ASSERT_EQ(::mkfifo((src.path() + "/fifo").c_str(), 0600), 0);

  std::string archive;
  auto src_fd = src.Open();
  auto written = WriteLocalTar(src_fd.get(), [&](std::string_view piece) -> Status {
    archive.append(piece);
    return Ok();
  });
  ASSERT_TRUE(written.ok()) << written.error().ToString();
  EXPECT_EQ(written->entries, 8u);  // everything but the fifo
  EXPECT_EQ(written->bytes, binary.size() + 6 + 30);
  ASSERT_EQ(written->skipped.size(), 1u);
  EXPECT_EQ(written->skipped[0].rfind("fifo:", 0), 0u) << written->skipped[0];

  // Names relative to the directory, each directory before what it holds, bytewise order.
  std::vector<std::string> names;
  files::TarReader reader([&, at = size_t{0}](char* buf, size_t n) mutable -> Result<size_t> {
    n = std::min(n, archive.size() - at);
    std::memcpy(buf, archive.data() + at, n);
    at += n;
    return n;
  });
  files::TarEntry e;
  for (;;) {
    auto more = reader.Next(&e);
    ASSERT_TRUE(more.ok()) << more.error().message;
    if (!*more) break;
    names.push_back(e.name);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"abs-link", "bin.dat", "empty", "sub/", "sub/deeper/",
                                             "sub/deeper/x.txt", "sub/link", "sub/" + long_name}));

  auto archive_fd = ArchiveFile(archive);
  auto dst_fd = dst.Open();
  auto extracted = ExtractLocalTar(archive_fd.get(), dst_fd.get());
  ASSERT_TRUE(extracted.ok()) << extracted.error().ToString();
  EXPECT_TRUE(extracted->skipped.empty());
  auto want = Tree(src.path());
  want.erase("fifo");
  EXPECT_EQ(Tree(dst.path()), want);
}

TEST(SandboxctlLocalTar, ExtractingIntoAnExistingTreeReplacesFilesAndLinks) {
  TempDir dst, outside;
  Write(dst.path() + "/a", "old");
  // A link where the archive has a file: the link is replaced, its target left alone.
  Write(outside.path() + "/victim", "untouched");
  ASSERT_EQ(::symlink((outside.path() + "/victim").c_str(), (dst.path() + "/b").c_str()), 0);
  const std::string archive = Entry(files::TarType::kRegular, "a", "new") +
                              Entry(files::TarType::kRegular, "b", "file now") +
                              files::TarTrailer();
  auto fd = ArchiveFile(archive);
  auto dst_fd = dst.Open();
  auto r = ExtractLocalTar(fd.get(), dst_fd.get());
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(Read(dst.path() + "/a"), "new");
  EXPECT_EQ(Read(dst.path() + "/b"), "file now");
  EXPECT_FALSE(fs::is_symlink(dst.path() + "/b"));
  EXPECT_EQ(Read(outside.path() + "/victim"), "untouched");
}

TEST(SandboxctlLocalTar, HostileArchivesWriteNothingOutside) {
  TempDir outside;
  Write(outside.path() + "/victim", "untouched");
  struct Case {
    const char* what;
    std::string archive;
    ErrorCode code;
    bool writes_nothing;  // refused by the first pass
  };
  const std::vector<Case> cases = {
      {"absolute name",
       Entry(files::TarType::kRegular, outside.path() + "/victim", "pwned") + files::TarTrailer(),
       ErrorCode::kInvalidArgument, true},
      {"dot-dot",
       Entry(files::TarType::kRegular, "ok") +
           Entry(files::TarType::kRegular, "a/../../victim", "pwned") + files::TarTrailer(),
       ErrorCode::kInvalidArgument, true},
      // A link the archive makes, then an entry below it.
      {"through a link",
       Entry(files::TarType::kSymlink, "l", "", outside.path()) +
           Entry(files::TarType::kRegular, "l/victim", "pwned") + files::TarTrailer(),
       ErrorCode::kPermissionDenied, false},
      // The header promises 4 KiB; the stream ends after 1,000 bytes.
      {"truncated",
       Entry(files::TarType::kRegular, "ok") +
           Entry(files::TarType::kRegular, "x", std::string(4096, 'd')).substr(0, 1000),
       ErrorCode::kInvalidArgument, true},
  };
  for (const Case& c : cases) {
    TempDir dst;
    auto fd = ArchiveFile(c.archive);
    auto dst_fd = dst.Open();
    auto r = ExtractLocalTar(fd.get(), dst_fd.get());
    ASSERT_FALSE(r.ok()) << c.what;
    EXPECT_EQ(r.error().code, c.code) << c.what << ": " << r.error().message;
    EXPECT_EQ(Read(outside.path() + "/victim"), "untouched") << c.what;
    if (c.writes_nothing) {
      EXPECT_TRUE(fs::is_empty(dst.path())) << c.what;
    }
  }
}

TEST(SandboxctlLocalTar, DevicesAndHardLinksAreLeftOut) {
  TempDir dst;
  files::TarEntry dev;
  dev.type = files::TarType::kCharDevice;
  dev.name = "null";
  files::TarEntry hard;
  hard.type = files::TarType::kHardLink;
  hard.name = "h";
  hard.link_target = "f";
  const std::string archive = Entry(files::TarType::kRegular, "f", "x") + files::TarHeader(dev) +
                              files::TarHeader(hard) + files::TarTrailer();
  auto fd = ArchiveFile(archive);
  auto dst_fd = dst.Open();
  auto r = ExtractLocalTar(fd.get(), dst_fd.get());
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->entries, 1u);
  EXPECT_EQ(r->skipped.size(), 2u);
  EXPECT_EQ(Tree(dst.path()), (std::map<std::string, std::string>{{"f", "f 644 x"}}));
}

}  // namespace
}  // namespace sbx::ctl
