// Glob patterns over a command line, as command policy rules write them.
//
// A pattern is matched against the whole command line (the program and its arguments joined by
// single spaces, see JoinWords() in shell_words.h), case-sensitively, byte by byte:
//
//   *        any run of characters, spaces included: "git *" matches "git status --short"
//   ?        any one character
//   [abc]    one of the characters listed; [a-z] a range; [!a-z] or [^a-z] none of them; a ']'
//            right after '[' (or after '[!') is a member; \c inside a set is the character c
//   \c       the character c itself: \*, \?, \[ and a doubled backslash
//   other    itself
//
// A pattern ending in " *" also matches the line without that last space and star, so "git *"
// matches a bare "git" as well as "git status"; write "git ?*" to require an argument.
// There is no '**' (a '*' already crosses '/' and spaces) and no [:class:] (refused, not ignored).
#pragma once

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace sbx::policy {

class Glob {
 public:
  // Compiles `pattern`. Fails with kInvalidArgument, naming the 1-based column, on an unclosed
  // '[', a set holding a [:class:], or a trailing lone '\'.
  static Result<Glob> Compile(std::string_view pattern);

  // True when the whole of `text` matches. Time is O(pattern × text) at worst; no recursion.
  bool Matches(std::string_view text) const;

  const std::string& pattern() const { return pattern_; }

 private:
  enum class Kind : uint8_t { kLiteral, kAnyOne, kStar, kSet };
  struct Token {
    Kind kind;
    char literal;  // kLiteral
    uint16_t set;  // kSet: index into sets_
  };

  static bool MatchTokens(const std::vector<Token>& tokens, size_t count,
                          const std::vector<std::bitset<256>>& sets, std::string_view text);

  std::string pattern_;
  std::vector<Token> tokens_;
  std::vector<std::bitset<256>> sets_;
  // The pattern ends in an unescaped " *": a line that matches tokens_ minus those two also
  // matches.
  bool optional_tail_ = false;
};

}  // namespace sbx::policy
