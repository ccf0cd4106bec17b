// ustar/pax/GNU tar headers. POSIX.1-2008 "pax" describes both the ustar header and the
// extended header records ("%d %s=%s\n", the length counting itself); GNU tar's manual
// ("Basic Tar Format") describes the 'L'/'K' long-name entries and base-256 numbers.
#include "supervisor/files/tar_format.h"

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <optional>

namespace sbx::files {

namespace {

constexpr size_t kBlock = 512;

struct RawHeader {
  char name[100];
  char mode[8];
  char uid[8];
  char gid[8];
  char size[12];
  char mtime[12];
  char chksum[8];
  char typeflag;
  char linkname[100];
  char magic[6];
  char version[2];
  char uname[32];
  char gname[32];
  char devmajor[8];
  char devminor[8];
  char prefix[155];
  char pad[12];
};
static_assert(sizeof(RawHeader) == kBlock);

// Octal, zero-padded, NUL-terminated in `width` bytes; false when it does not fit.
bool PutOctal(char* field, size_t width, uint64_t v) {
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%0*llo", static_cast<int>(width - 1),
                        static_cast<unsigned long long>(v));
  if (n < 0 || static_cast<size_t>(n) > width - 1) return false;
  std::memcpy(field, buf, width - 1);
  field[width - 1] = '\0';
  return true;
}

char TypeFlag(TarType t) {
  switch (t) {
    case TarType::kRegular:
      return '0';
    case TarType::kHardLink:
      return '1';
    case TarType::kSymlink:
      return '2';
    case TarType::kCharDevice:
      return '3';
    case TarType::kBlockDevice:
      return '4';
    case TarType::kDirectory:
      return '5';
    case TarType::kFifo:
      return '6';
    case TarType::kOther:
      return '0';
  }
  return '0';
}

std::string PaxRecord(std::string_view key, std::string_view value) {
  // "len key=value\n" where len counts its own digits.
  size_t body = 1 + key.size() + 1 + value.size() + 1;
  size_t len = body + 1;
  while (std::to_string(len).size() + body != len) len = std::to_string(len).size() + body;
  return std::to_string(len) + " " + std::string(key) + "=" + std::string(value) + "\n";
}

void Checksum(RawHeader* h) {
  std::memset(h->chksum, ' ', sizeof h->chksum);
  unsigned sum = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(h);
  for (size_t i = 0; i < kBlock; ++i) sum += p[i];
  std::snprintf(h->chksum, sizeof h->chksum, "%06o", sum);
  h->chksum[7] = ' ';
}

std::string Block(const RawHeader& h) {
  return std::string(reinterpret_cast<const char*>(&h), kBlock);
}

RawHeader BaseHeader(std::string_view name, char typeflag, uint32_t mode, uint64_t size,
                     int64_t mtime) {
  RawHeader h;
  std::memset(&h, 0, sizeof h);
  std::memcpy(h.name, name.data(), std::min(name.size(), sizeof h.name));
  PutOctal(h.mode, sizeof h.mode, mode & 07777);
  PutOctal(h.uid, sizeof h.uid, 0);
  PutOctal(h.gid, sizeof h.gid, 0);
  if (!PutOctal(h.size, sizeof h.size, size)) PutOctal(h.size, sizeof h.size, 0);
  PutOctal(h.mtime, sizeof h.mtime, mtime < 0 ? 0 : static_cast<uint64_t>(mtime));
  h.typeflag = typeflag;
  std::memcpy(h.magic, "ustar", 6);
  std::memcpy(h.version, "00", 2);
  return h;
}

// An octal or GNU base-256 number field.
bool ParseNumber(const char* field, size_t width, uint64_t* out) {
  const auto* u = reinterpret_cast<const unsigned char*>(field);
  if (u[0] & 0x80) {
    if (u[0] != 0x80) return false;  // negative (0xff) or garbage
    uint64_t v = 0;
    for (size_t i = 1; i < width; ++i) {
      if (v >> 56) return false;
      v = (v << 8) | u[i];
    }
    *out = v;
    return true;
  }
  size_t i = 0;
  while (i < width && field[i] == ' ') ++i;
  uint64_t v = 0;
  bool any = false;
  for (; i < width && field[i] >= '0' && field[i] <= '7'; ++i) {
    if (v >> 61) return false;
    v = v * 8 + static_cast<uint64_t>(field[i] - '0');
    any = true;
  }
  for (; i < width; ++i) {
    if (field[i] != ' ' && field[i] != '\0') return false;
  }
  *out = any ? v : 0;
  return true;
}

std::string FieldString(const char* field, size_t width) {
  return std::string(field, strnlen(field, width));
}

Error Damaged(std::string_view what) {
  return MakeError(ErrorCode::kInvalidArgument, "not a valid tar stream: {}", what);
}

}  // namespace

std::string TarHeader(const TarEntry& e) {
  std::string out;
  std::string pax;
  std::string name = e.name;
  if (e.type == TarType::kDirectory && (name.empty() || name.back() != '/')) name += '/';
  if (name.size() > 99) pax += PaxRecord("path", name);
  if (e.link_target.size() > 99) pax += PaxRecord("linkpath", e.link_target);
  if (e.size > 077777777777ull) pax += PaxRecord("size", std::to_string(e.size));
  if (!pax.empty()) {
    RawHeader x = BaseHeader("././@PaxHeader", 'x', 0644, pax.size(), e.mtime);
    Checksum(&x);
    out += Block(x);
    out += pax;
    out.append(TarPadding(pax.size()), '\0');
  }
  char flag = TypeFlag(e.type);
  uint64_t size = (e.type == TarType::kRegular) ? e.size : 0;
  RawHeader h = BaseHeader(name.substr(0, 100), flag, e.mode, size, e.mtime);
  std::memcpy(h.linkname, e.link_target.data(), std::min(e.link_target.size(), sizeof h.linkname));
  Checksum(&h);
  out += Block(h);
  return out;
}

size_t TarPadding(uint64_t size) { return static_cast<size_t>((kBlock - size % kBlock) % kBlock); }

std::string TarTrailer() { return std::string(2 * kBlock, '\0'); }

Status TarReader::ReadExact(char* buf, size_t n) {
  while (n > 0) {
    auto r = source_(buf, n);
    if (!r.ok()) return std::move(r).error();
    if (*r == 0) return Damaged("the stream ends inside an entry");
    buf += *r;
    n -= *r;
    offset_ += *r;
  }
  return Ok();
}

Status TarReader::Skip(uint64_t n) {
  char buf[8192];
  while (n > 0) {
    size_t k = static_cast<size_t>(std::min<uint64_t>(n, sizeof buf));
    SBX_TRY(ReadExact(buf, k));
    n -= k;
  }
  return Ok();
}

Result<size_t> TarReader::ReadData(char* buf, size_t n) {
  n = static_cast<size_t>(std::min<uint64_t>(n, remaining_));
  if (n == 0) return size_t{0};
  SBX_TRY(ReadExact(buf, n));
  remaining_ -= n;
  return n;
}

Result<bool> TarReader::Next(TarEntry* entry) {
  if (ended_) return false;
  SBX_TRY(Skip(remaining_ + padding_));
  remaining_ = padding_ = 0;
  std::string long_name, long_link;
  std::optional<uint64_t> pax_size;
  bool have_long_name = false, have_long_link = false;
  for (;;) {
    RawHeader h;
    // The end of the stream right at a boundary is accepted as the end of the archive.
    size_t got = 0;
    while (got < kBlock) {
      auto r = source_(reinterpret_cast<char*>(&h) + got, kBlock - got);
      if (!r.ok()) return std::move(r).error();
      if (*r == 0) break;
      got += *r;
      offset_ += *r;
    }
    if (got == 0 && !have_long_name && !have_long_link && !pax_size) {
      ended_ = true;
      return false;
    }
    if (got < kBlock) return Damaged("the stream ends inside a header");
    const auto* bytes = reinterpret_cast<const unsigned char*>(&h);
    if (std::all_of(bytes, bytes + kBlock, [](unsigned char c) { return c == 0; })) {
      ended_ = true;
      return false;
    }
    uint64_t stored = 0;
    if (!ParseNumber(h.chksum, sizeof h.chksum, &stored)) return Damaged("a bad checksum field");
    unsigned usum = 0;
    int ssum = 0;
    for (size_t i = 0; i < kBlock; ++i) {
      bool in_chk = i >= offsetof(RawHeader, chksum) && i < offsetof(RawHeader, chksum) + 8;
      usum += in_chk ? ' ' : bytes[i];
      ssum += in_chk ? ' ' : static_cast<signed char>(bytes[i]);
    }
    if (stored != usum && static_cast<int64_t>(stored) != ssum) {
      return Damaged("a header's checksum does not match");
    }
    uint64_t size = 0, mode = 0, mtime = 0;
    if (!ParseNumber(h.size, sizeof h.size, &size) || !ParseNumber(h.mode, sizeof h.mode, &mode) ||
        !ParseNumber(h.mtime, sizeof h.mtime, &mtime)) {
      return Damaged("a bad number in a header");
    }
    char flag = h.typeflag;
    if (flag == 'x' || flag == 'g' || flag == 'L' || flag == 'K') {
      if (size > kMaxExtendedHeader) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "a tar extended header of {} bytes; at most {} are accepted", size,
                         kMaxExtendedHeader);
      }
      std::string data(size, '\0');
      SBX_TRY(ReadExact(data.data(), data.size()));
      SBX_TRY(Skip(TarPadding(size)));
      if (flag == 'L' || flag == 'K') {
        std::string v(data.c_str());  // NUL-terminated
        if (v.size() > kMaxName) return Damaged("a long name past 4096 bytes");
        (flag == 'L' ? long_name : long_link) = v;
        (flag == 'L' ? have_long_name : have_long_link) = true;
        continue;
      }
      if (flag == 'g') continue;  // global defaults: nothing we use
      // Records: "%d %s=%s\n".
      std::string_view rest = data;
      while (!rest.empty()) {
        size_t sp = rest.find(' ');
        if (sp == std::string_view::npos || sp == 0 || sp > 10) return Damaged("a bad pax record");
        uint64_t len = 0;
        for (char c : rest.substr(0, sp)) {
          if (c < '0' || c > '9') return Damaged("a bad pax record length");
          len = len * 10 + static_cast<uint64_t>(c - '0');
        }
        if (len <= sp + 1 || len > rest.size() || rest[len - 1] != '\n') {
          return Damaged("a bad pax record length");
        }
        std::string_view rec = rest.substr(sp + 1, len - sp - 2);
        rest.remove_prefix(len);
        size_t eq = rec.find('=');
        if (eq == std::string_view::npos) return Damaged("a pax record without '='");
        std::string_view key = rec.substr(0, eq), value = rec.substr(eq + 1);
        if (key == "path" || key == "linkpath") {
          if (value.size() > kMaxName) return Damaged("a pax path past 4096 bytes");
          (key == "path" ? long_name : long_link) = std::string(value);
          (key == "path" ? have_long_name : have_long_link) = true;
        } else if (key == "size") {
          uint64_t v = 0;
          if (value.empty() || value.size() > 19) return Damaged("a bad pax size");
          for (char c : value) {
            if (c < '0' || c > '9') return Damaged("a bad pax size");
            v = v * 10 + static_cast<uint64_t>(c - '0');
          }
          pax_size = v;
        }
      }
      continue;
    }
    TarEntry e;
    if (have_long_name) {
      e.name = long_name;
    } else {
      e.name = FieldString(h.name, sizeof h.name);
      // POSIX ustar (not the old GNU "ustar  " magic, which reuses the prefix field).
      if (std::memcmp(h.magic, "ustar", 6) == 0 && h.prefix[0] != '\0') {
        e.name = FieldString(h.prefix, sizeof h.prefix) + "/" + e.name;
      }
    }
    e.link_target = have_long_link ? long_link : FieldString(h.linkname, sizeof h.linkname);
    e.typeflag = flag;
    e.mode = static_cast<uint32_t>(mode & 07777);
    e.mtime = static_cast<int64_t>(mtime);
    if (pax_size) size = *pax_size;
    switch (flag) {
      case '0':
      case '\0':
      case '7':
        e.type = TarType::kRegular;
        break;
      case '1':
        e.type = TarType::kHardLink;
        break;
      case '2':
        e.type = TarType::kSymlink;
        break;
      case '3':
        e.type = TarType::kCharDevice;
        break;
      case '4':
        e.type = TarType::kBlockDevice;
        break;
      case '5':
        e.type = TarType::kDirectory;
        break;
      case '6':
        e.type = TarType::kFifo;
        break;
      default:
        e.type = TarType::kOther;
        break;
    }
    // Old archives mark directories by a trailing slash on a regular entry.
    if (e.type == TarType::kRegular && flag == '\0' && !e.name.empty() && e.name.back() == '/') {
      e.type = TarType::kDirectory;
    }
    // Only regular files carry data we hand out; other types' data (there should be none)
    // is skipped with the next Next().
    e.size = e.type == TarType::kRegular ? size : 0;
    remaining_ = e.type == TarType::kRegular ? size : 0;
    padding_ = e.type == TarType::kRegular ? TarPadding(size) : size + TarPadding(size);
    *entry = std::move(e);
    return true;
  }
}

}  // namespace sbx::files
