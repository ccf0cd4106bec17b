// The tar format alone, no file system: a writer of POSIX ustar headers (with pax extended
// headers for long names, long link targets and sizes past 8 GiB) and a streaming reader of
// ustar, pax ('x'; 'g' ignored) and GNU ('L', 'K', base-256 numbers) archives. Written here rather
// than taken from libarchive: the format is small, the bounds (header sizes, name lengths)
// are ours to choose, and the daemon links no compression libraries it would never use.
//
// The reader checks the format only (checksums, numbers, sizes, truncation); what an entry's
// name or type may be is the extractor's decision (tar_transfer.cc).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace sbx::files {

// Pulls up to `n` bytes into `buf`; returns how many, 0 only at the end of the stream.
using ByteSource = std::function<Result<size_t>(char* buf, size_t n)>;
// Takes the next bytes of a stream; an error stops the producer.
using ByteSink = std::function<Status(std::string_view data)>;

enum class TarType {
  kRegular,
  kHardLink,
  kSymlink,
  kDirectory,
  kCharDevice,
  kBlockDevice,
  kFifo,
  kOther,  // sparse, multi-volume, vendor types
};

struct TarEntry {
  std::string name;  // as stored (ustar prefix joined, pax/GNU long names applied)
  TarType type = TarType::kRegular;
  char typeflag = '0';
  uint32_t mode = 0;
  uint64_t size = 0;  // bytes of data that follow (0 but for regular files)
  int64_t mtime = 0;  // seconds
  std::string link_target;
};

// Formats the header blocks of one entry (a pax header first where ustar cannot hold it).
// The caller then writes `size` bytes of data and TarPadding(size) zero bytes.
std::string TarHeader(const TarEntry& entry);
size_t TarPadding(uint64_t size);
// The two zero blocks that end an archive.
std::string TarTrailer();

class TarReader {
 public:
  static constexpr size_t kMaxExtendedHeader = 64 * 1024;  // a pax or GNU long-name record
  static constexpr size_t kMaxName = 4096;

  explicit TarReader(ByteSource source) : source_(std::move(source)) {}

  // The next entry, or false at the archive's end (a zero block, or the end of the stream
  // right at an entry boundary). Skips what is left of the previous entry's data.
  // kInvalidArgument for a damaged or truncated archive, or one past the bounds above.
  Result<bool> Next(TarEntry* entry);
  // Up to n bytes of the current entry's data; 0 at its end.
  Result<size_t> ReadData(char* buf, size_t n);
  uint64_t offset() const { return offset_; }  // bytes consumed from the source

 private:
  Status ReadExact(char* buf, size_t n);
  Status Skip(uint64_t n);

  ByteSource source_;
  uint64_t remaining_ = 0;  // data left in the current entry
  uint64_t padding_ = 0;    // zero bytes after it
  uint64_t offset_ = 0;
  bool ended_ = false;
};

}  // namespace sbx::files
