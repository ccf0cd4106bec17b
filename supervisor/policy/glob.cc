#include "supervisor/policy/glob.h"

#include <limits>

namespace sbx::policy {
namespace {

Error GlobError(std::string_view pattern, size_t column, std::string_view what) {
  return MakeError(ErrorCode::kInvalidArgument, "pattern \"{}\", column {}: {}", pattern,
                   column + 1, what);
}

}  // namespace

Result<Glob> Glob::Compile(std::string_view pattern) {
  Glob g;
  g.pattern_ = std::string(pattern);
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\') {
      if (i + 1 == pattern.size()) {
        return GlobError(pattern, i, "trailing '\\' escapes nothing (write \\\\ for a backslash)");
      }
      g.tokens_.push_back({Kind::kLiteral, pattern[++i], 0});
    } else if (c == '*') {
      // Consecutive stars match what one star matches.
      if (g.tokens_.empty() || g.tokens_.back().kind != Kind::kStar) {
        g.tokens_.push_back({Kind::kStar, 0, 0});
      }
    } else if (c == '?') {
      g.tokens_.push_back({Kind::kAnyOne, 0, 0});
    } else if (c == '[') {
      const size_t open = i;
      size_t j = i + 1;
      bool negate = false;
      if (j < pattern.size() && (pattern[j] == '!' || pattern[j] == '^')) {
        negate = true;
        ++j;
      }
      std::bitset<256> set;
      bool first = true;
      bool closed = false;
      for (; j < pattern.size(); ++j) {
        unsigned char m = static_cast<unsigned char>(pattern[j]);
        if (m == ']' && !first) {
          closed = true;
          break;
        }
        first = false;
        if (m == '[' && j + 1 < pattern.size() &&
            (pattern[j + 1] == ':' || pattern[j + 1] == '=' || pattern[j + 1] == '.')) {
          return GlobError(pattern, j,
                           "character classes such as [:alpha:] are not supported (list the "
                           "characters or a range such as a-z)");
        }
        if (m == '\\') {
          if (j + 1 == pattern.size()) break;  // reported as unclosed below
          m = static_cast<unsigned char>(pattern[++j]);
        }
        // A range a-z; a '-' first or last in the set is a member.
        if (j + 2 < pattern.size() && pattern[j + 1] == '-' && pattern[j + 2] != ']') {
          size_t k = j + 2;
          unsigned char hi = static_cast<unsigned char>(pattern[k]);
          if (hi == '\\') {
            if (k + 1 == pattern.size()) break;
            hi = static_cast<unsigned char>(pattern[++k]);
          }
          if (hi < m) {
            return GlobError(pattern, j, "range is reversed (write the smaller character first)");
          }
          for (unsigned v = m; v <= hi; ++v) set.set(v);
          j = k;
          continue;
        }
        set.set(m);
      }
      if (!closed) {
        return GlobError(pattern, open, "unclosed '[' (write \\[ for a literal bracket)");
      }
      if (negate) set.flip();
      if (g.sets_.size() >= std::numeric_limits<uint16_t>::max()) {
        return GlobError(pattern, open, "too many [...] sets");
      }
      g.sets_.push_back(set);
      g.tokens_.push_back({Kind::kSet, 0, static_cast<uint16_t>(g.sets_.size() - 1)});
      i = j;
    } else {
      g.tokens_.push_back({Kind::kLiteral, c, 0});
    }
  }
  const size_t n = g.tokens_.size();
  g.optional_tail_ = n >= 2 && g.tokens_[n - 1].kind == Kind::kStar &&
                     g.tokens_[n - 2].kind == Kind::kLiteral && g.tokens_[n - 2].literal == ' ';
  return g;
}

// The classic single-backtrack wildcard match: on a mismatch, the most recent star takes one
// more character. Correct for '*' that may match any run (no anchoring inside), linear in the
// common case and O(pattern × text) at worst.
bool Glob::MatchTokens(const std::vector<Token>& tokens, size_t count,
                       const std::vector<std::bitset<256>>& sets, std::string_view text) {
  size_t p = 0, t = 0;
  size_t star_p = std::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < count) {
      const Token& tok = tokens[p];
      if (tok.kind == Kind::kStar) {
        star_p = p++;
        star_t = t;
        continue;
      }
      bool one = false;
      switch (tok.kind) {
        case Kind::kLiteral:
          one = tok.literal == text[t];
          break;
        case Kind::kAnyOne:
          one = true;
          break;
        case Kind::kSet:
          one = sets[tok.set].test(static_cast<unsigned char>(text[t]));
          break;
        case Kind::kStar:
          break;
      }
      if (one) {
        ++p;
        ++t;
        continue;
      }
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p + 1;
    t = ++star_t;
  }
  while (p < count && tokens[p].kind == Kind::kStar) ++p;
  return p == count;
}

bool Glob::Matches(std::string_view text) const {
  if (MatchTokens(tokens_, tokens_.size(), sets_, text)) return true;
  return optional_tail_ && MatchTokens(tokens_, tokens_.size() - 2, sets_, text);
}

}  // namespace sbx::policy
