#include "supervisor/workspace/diff.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <unordered_map>

namespace sbx::supervisor {
namespace {

using Kind = LineEdit::Kind;

// Myers' greedy forward search over interned lines. Returns false when no script of cost
// <= max_cost exists, or when `*work` (steps: diagonals tried plus lines compared) runs out;
// `out` then holds nothing. Indices in `out` are relative to a and b.
bool Myers(const std::vector<int>& a, const std::vector<int>& b, size_t max_cost, uint64_t* work,
           std::vector<LineEdit>& out) {
  const long n = static_cast<long>(a.size());
  const long m = static_cast<long>(b.size());
  if (n + m > INT32_MAX / 2) return false;  // the trace stores positions as int32_t
  const long limit = std::min<long>(n + m, static_cast<long>(max_cost));
  // v[k] = the furthest x reached on diagonal k (k = x - y), for k in [-limit-1, limit+1].
  std::vector<long> v(static_cast<size_t>(2 * limit + 3), 0);
  const long off = limit + 1;
  // trace[d] is v before round d, restricted to the diagonals round d reads: [-d-1, d+1].
  std::vector<std::vector<int32_t>> trace;
  long found = -1;
  uint64_t steps = 0;
  const uint64_t max_steps = work != nullptr ? *work : UINT64_MAX;
  for (long d = 0; d <= limit && found < 0; ++d) {
    trace.emplace_back(v.begin() + (off - d - 1), v.begin() + (off + d + 2));
    for (long k = -d; k <= d; k += 2) {
      long x = (k == -d || (k != d && v[off + k - 1] < v[off + k + 1])) ? v[off + k + 1]
                                                                        : v[off + k - 1] + 1;
      long y = x - k;
      long start = x;
      while (x < n && y < m && a[x] == b[y]) {
        ++x;
        ++y;
      }
      steps += 1 + static_cast<uint64_t>(x - start);
      v[off + k] = x;
      if (x >= n && y >= m) {
        found = d;
        break;
      }
    }
    if (steps > max_steps) break;
  }
  if (work != nullptr) *work = steps >= *work ? 0 : *work - steps;
  if (found < 0) return false;

  long x = n;
  long y = m;
  for (long d = found; d >= 0; --d) {
    const std::vector<int32_t>& t = trace[static_cast<size_t>(d)];
    auto at = [&](long k) { return static_cast<long>(t[static_cast<size_t>(k + d + 1)]); };
    long k = x - y;
    long prev_k = (k == -d || (k != d && at(k - 1) < at(k + 1))) ? k + 1 : k - 1;
    long prev_x = at(prev_k);
    long prev_y = prev_x - prev_k;
    while (x > prev_x && y > prev_y) {
      out.push_back({Kind::kEqual, static_cast<size_t>(x - 1), static_cast<size_t>(y - 1)});
      --x;
      --y;
    }
    if (d > 0) {
      if (x == prev_x) {
        out.push_back({Kind::kInsert, static_cast<size_t>(x), static_cast<size_t>(y - 1)});
      } else {
        out.push_back({Kind::kDelete, static_cast<size_t>(x - 1), static_cast<size_t>(y)});
      }
    }
    x = prev_x;
    y = prev_y;
  }
  std::reverse(out.begin(), out.end());
  return true;
}

// "l,n" as unified diffs write a range: ",1" is left out, and an empty range names the line
// before it (0 for the start of the file).
std::string FormatRange(size_t start, size_t count) {
  if (count == 0) return fmt::format("{},0", start);
  if (count == 1) return fmt::format("{}", start + 1);
  return fmt::format("{},{}", start + 1, count);
}

void AppendLine(std::string& out, char prefix, std::string_view line) {
  out += prefix;
  out += line;
  if (line.empty() || line.back() != '\n') out += "\n\\ No newline at end of file\n";
}

}  // namespace

std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = text.find('\n', i);
    size_t end = j == std::string_view::npos ? text.size() : j + 1;
    lines.push_back(text.substr(i, end - i));
    i = end;
  }
  return lines;
}

std::vector<LineEdit> DiffLines(const std::vector<std::string_view>& old_lines,
                                const std::vector<std::string_view>& new_lines,
                                size_t max_edit_cost, uint64_t* work) {
  const size_t n = old_lines.size();
  const size_t m = new_lines.size();
  size_t prefix = 0;
  while (prefix < n && prefix < m && old_lines[prefix] == new_lines[prefix]) ++prefix;
  size_t suffix = 0;
  while (suffix < n - prefix && suffix < m - prefix &&
         old_lines[n - 1 - suffix] == new_lines[m - 1 - suffix]) {
    ++suffix;
  }

  std::vector<LineEdit> edits;
  edits.reserve(std::max(n, m));
  for (size_t i = 0; i < prefix; ++i) edits.push_back({Kind::kEqual, i, i});

  // Intern the middle lines so that the search compares integers.
  std::unordered_map<std::string_view, int> ids;
  auto intern = [&](size_t from, size_t to, const std::vector<std::string_view>& lines) {
    std::vector<int> out;
    out.reserve(to - from);
    for (size_t i = from; i < to; ++i) {
      out.push_back(ids.emplace(lines[i], static_cast<int>(ids.size())).first->second);
    }
    return out;
  };
  std::vector<int> a = intern(prefix, n - suffix, old_lines);
  std::vector<int> b = intern(prefix, m - suffix, new_lines);
  std::vector<LineEdit> middle;
  if (Myers(a, b, max_edit_cost, work, middle)) {
    for (LineEdit e : middle) {
      e.old_line += prefix;
      e.new_line += prefix;
      edits.push_back(e);
    }
  } else {
    for (size_t i = 0; i < a.size(); ++i) {
      edits.push_back({Kind::kDelete, prefix + i, prefix});
    }
    for (size_t j = 0; j < b.size(); ++j) {
      edits.push_back({Kind::kInsert, n - suffix, prefix + j});
    }
  }
  for (size_t i = 0; i < suffix; ++i) {
    edits.push_back({Kind::kEqual, n - suffix + i, m - suffix + i});
  }
  return edits;
}

std::string UnifiedHunks(std::string_view old_text, std::string_view new_text, int context,
                         uint64_t* work) {
  if (old_text == new_text) return "";
  const size_t ctx = context < 0 ? 0 : static_cast<size_t>(context);
  std::vector<std::string_view> old_lines = SplitLines(old_text);
  std::vector<std::string_view> new_lines = SplitLines(new_text);
  std::vector<LineEdit> edits = DiffLines(old_lines, new_lines, kDefaultMaxEditCost, work);

  // Where each edit starts in the old and the new text.
  const size_t count = edits.size();
  std::vector<size_t> old_pos(count + 1, 0);
  std::vector<size_t> new_pos(count + 1, 0);
  for (size_t i = 0; i < count; ++i) {
    old_pos[i + 1] = old_pos[i] + (edits[i].kind != Kind::kInsert ? 1 : 0);
    new_pos[i + 1] = new_pos[i] + (edits[i].kind != Kind::kDelete ? 1 : 0);
  }

  std::string out;
  size_t i = 0;
  while (i < count) {
    if (edits[i].kind == Kind::kEqual) {
      ++i;
      continue;
    }
    // A hunk: `ctx` lines before the first change, every change whose gap to the previous one
    // is at most 2*ctx equal lines, `ctx` lines after the last.
    size_t begin = i > ctx ? i - ctx : 0;
    size_t last_change = i;
    size_t j = i + 1;
    for (; j < count; ++j) {
      if (edits[j].kind != Kind::kEqual) {
        last_change = j;
      } else if (j - last_change > 2 * ctx) {
        break;
      }
    }
    size_t end = std::min(count, last_change + ctx + 1);
    out +=
        fmt::format("@@ -{} +{} @@\n", FormatRange(old_pos[begin], old_pos[end] - old_pos[begin]),
                    FormatRange(new_pos[begin], new_pos[end] - new_pos[begin]));
    for (size_t e = begin; e < end; ++e) {
      switch (edits[e].kind) {
        case Kind::kEqual:
          AppendLine(out, ' ', old_lines[edits[e].old_line]);
          break;
        case Kind::kDelete:
          AppendLine(out, '-', old_lines[edits[e].old_line]);
          break;
        case Kind::kInsert:
          AppendLine(out, '+', new_lines[edits[e].new_line]);
          break;
      }
    }
    i = end;
  }
  return out;
}

std::string UnifiedDiff(std::string_view path, std::string_view old_text,
                        std::string_view new_text) {
  if (old_text == new_text) return "";
  std::string a = QuoteGitPath("a/", path);
  std::string b = QuoteGitPath("b/", path);
  return fmt::format("diff --git {0} {1}\n--- {0}\n+++ {1}\n", a, b) +
         UnifiedHunks(old_text, new_text);
}

std::string GitFileDiff(std::string_view path, const std::optional<DiffSide>& old_side,
                        const std::optional<DiffSide>& new_side, uint64_t* work) {
  if (!old_side && !new_side) return "";
  if (old_side && new_side && (old_side->mode & S_IFMT) != (new_side->mode & S_IFMT)) {
    // A type change (file <-> symlink) is a deletion and an addition, as git shows it.
    return GitFileDiff(path, old_side, std::nullopt, work) +
           GitFileDiff(path, std::nullopt, new_side, work);
  }
  const std::string a = QuoteGitPath("a/", path);
  const std::string b = QuoteGitPath("b/", path);
  auto binary = [](const DiffSide& s) { return s.too_large || LooksBinary(s.content); };
  std::string out = fmt::format("diff --git {} {}\n", a, b);

  if (!old_side) {
    out += fmt::format("new file mode {:06o}\n", new_side->mode);
    if (new_side->content.empty() && !new_side->too_large) return out;
    if (binary(*new_side)) return out + fmt::format("Binary files /dev/null and {} differ\n", b);
    return out + fmt::format("--- /dev/null\n+++ {}\n", b) +
           UnifiedHunks("", new_side->content, 3, work);
  }
  if (!new_side) {
    out += fmt::format("deleted file mode {:06o}\n", old_side->mode);
    if (old_side->content.empty() && !old_side->too_large) return out;
    if (binary(*old_side)) return out + fmt::format("Binary files {} and /dev/null differ\n", a);
    return out + fmt::format("--- {}\n+++ /dev/null\n", a) +
           UnifiedHunks(old_side->content, "", 3, work);
  }

  const bool large = old_side->too_large || new_side->too_large;
  const bool content_changed = large || old_side->content != new_side->content;
  if (!content_changed && old_side->mode == new_side->mode) return "";
  if (old_side->mode != new_side->mode) {
    out += fmt::format("old mode {:06o}\nnew mode {:06o}\n", old_side->mode, new_side->mode);
  }
  if (!content_changed) return out;
  if (binary(*old_side) || binary(*new_side)) {
    return out + fmt::format("Binary files {} and {} differ\n", a, b);
  }
  return out + fmt::format("--- {}\n+++ {}\n", a, b) +
         UnifiedHunks(old_side->content, new_side->content, 3, work);
}

uint32_t GitMode(uint32_t st_mode) {
  if (S_ISLNK(st_mode)) return 0120000;
  return (st_mode & S_IXUSR) ? 0100755 : 0100644;
}

bool LooksBinary(std::string_view content) {
  return std::memchr(content.data(), '\0', content.size()) != nullptr;
}

std::string QuoteGitPath(std::string_view prefix, std::string_view path) {
  std::string full = std::string(prefix) + std::string(path);
  bool quote = false;
  for (char ch : full) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      quote = true;
      break;
    }
  }
  if (!quote) return full;
  std::string out = "\"";
  for (char ch : full) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '\a':
        out += "\\a";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\v':
        out += "\\v";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\r':
        out += "\\r";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          out += fmt::format("\\{:03o}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace sbx::supervisor
