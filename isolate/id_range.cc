#include "isolate/id_range.h"

#include <algorithm>
#include <charconv>

#include "base/fs.h"

namespace sbx::isolate {
namespace {

constexpr uint64_t kMaxId = 0xFFFFFFFEull;  // (uid_t)-1 is "no id"

bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

bool Overlaps(uint64_t base, const SubIdRange& r) {
  return base < r.start + r.count && r.start < base + kSandboxIdCount;
}

}  // namespace

Result<std::vector<SubIdRange>> ParseSubIds(std::string_view text) {
  std::vector<SubIdRange> out;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    if (line.empty() || line[0] == '#') continue;
    size_t a = line.find(':');
    size_t b = a == std::string_view::npos ? a : line.find(':', a + 1);
    SubIdRange r;
    if (b == std::string_view::npos || a == 0 ||
        !ParseU64(line.substr(a + 1, b - a - 1), &r.start) ||
        !ParseU64(line.substr(b + 1), &r.count)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "line {}: '{}' is not OWNER:START:COUNT", line_no, line);
    }
    r.owner = std::string(line.substr(0, a));
    out.push_back(std::move(r));
  }
  return out;
}

Status CheckSandboxIds(uint64_t base, const std::vector<SubIdRange>& ranges,
                       std::string_view what) {
  if (base == 0 || base + kSandboxIdCount - 1 > kMaxId) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "sandbox_id_base {}: the sandboxes' host ids [base, base + {}) must lie in "
                     "[1, {}]",
                     base, kSandboxIdCount, kMaxId);
  }
  auto clash = std::find_if(ranges.begin(), ranges.end(),
                            [&](const SubIdRange& r) { return Overlaps(base, r); });
  if (clash == ranges.end()) return Ok();
  // The lowest base at or above the asked one, in steps of the range's size, that is free.
  uint64_t free = base;
  for (bool moved = true; moved && free + kSandboxIdCount - 1 <= kMaxId;) {
    moved = false;
    for (const SubIdRange& r : ranges) {
      if (!Overlaps(free, r)) continue;
      const uint64_t end = r.start + r.count;
      free = base + (end - base + kSandboxIdCount - 1) / kSandboxIdCount * kSandboxIdCount;
      moved = true;
    }
  }
  const std::string hint = free + kSandboxIdCount - 1 <= kMaxId
                               ? fmt::format("; set sandbox_id_base: {} (free)", free)
                               : std::string("; no free range is left above it");
  return MakeError(ErrorCode::kFailedPrecondition,
                   "the sandboxes' host ids [{}, {}) overlap {}'s range {}:{} in {}: a sandbox "
                   "would own that user's container files{}",
                   base, base + kSandboxIdCount, clash->owner, clash->start, clash->count, what,
                   hint);
}

Status CheckSandboxIdsOnHost(uint64_t base) {
  for (const char* path : {"/etc/subuid", "/etc/subgid"}) {
    auto text = ReadFile(path, 16 << 20);
    if (!text.ok()) {
      if (text.error().sys_errno == ENOENT) continue;
      return std::move(text).error();
    }
    auto ranges = ParseSubIds(*text);
    if (!ranges.ok()) return WithContext(std::move(ranges).error(), path);
    SBX_TRY(CheckSandboxIds(base, *ranges, path));
  }
  return CheckSandboxIds(base, {}, "");
}

}  // namespace sbx::isolate
