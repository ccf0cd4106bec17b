// Splits a command line into words by POSIX shell rules (XCU 2.3 token recognition, 2.6.7 quote
// removal) without running a shell, and lists everything in it that only a shell would give
// meaning to.
//
// What it understands: blanks; '…' and "…" quoting; backslash escapes and line continuations;
// the control operators ; & && || | |& and newline; ( ) subshells and { …; } groups; redirections
// (< > >> >| <> <& >& &> &>> << <<- <<<, with an optional file descriptor number such as 2>&1);
// $VAR, ${…}, $(…), `…`, $((…)), $'…', <(…) and >(…); unquoted * ? […] (filename expansion),
// a word-initial ~ (tilde expansion), {a,b} (brace expansion), NAME=value before a command, '#'
// comments, if/then/else/elif/fi/while/until/for/do/done/! (their keywords are dropped; the
// commands between them are kept), NAME() { …; } function definitions and here-documents.
//
// Nothing is expanded: a word keeps "$HOME", "$(date)" or "*.txt" as written (quotes removed).
// Commands inside $(…), `…`, <(…) and >(…) are parsed and listed too, marked with their depth and
// the command that holds them, because a shell would run them.
//
// Refused with kInvalidArgument (the caller should deny): unterminated quotes or substitutions,
// a trailing backslash, unbalanced ( ) or { }, a redirection without a target, an operator with
// nothing after it, case/select/function-keyword syntax, $(…) inside $((…)) or an unquoted
// here-document, nesting deeper than 16 levels.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace sbx::policy {

struct Redirection {
  std::string op;  // as written, with its descriptor number: ">", ">>", "2>", "<", "<<<", "&>"…
  std::string target;  // the word after it, quotes removed ("1" for 2>&1; the delimiter for <<)
};

// One simple command: what a shell would exec (or run as a builtin).
struct ShellCommand {
  std::vector<std::string> words;  // quotes removed, nothing expanded; NAME=value words included
  std::vector<Redirection> redirections;
  int pipeline = 0;  // commands joined by | or |& share this number; their order is the pipe's
  int depth = 0;     // 0 at top level; n inside n levels of $(…), `…`, <(…), >(…)
  int parent = -1;   // for depth > 0: index in ShellParse::commands of the command holding it
};

// NAME() body: the body's commands are commands[first_command, end_command).
struct FunctionDefinition {
  std::string name;
  size_t first_command = 0;
  size_t end_command = 0;
};

struct ShellParse {
  // In the order their text ends: a substitution's commands come before the command holding it.
  std::vector<ShellCommand> commands;
  // Distinct, in first-seen order, for messages: "';' (command list)", "command substitution"…
  // Empty when the line is a single plain command that can be run as an argv without a shell.
  std::vector<std::string> shell_features;
  std::vector<FunctionDefinition> functions;

  bool NeedsShell() const { return !shell_features.empty(); }
};

// Never throws. Input longer than 1 MiB is refused.
Result<ShellParse> SplitShell(std::string_view line);

// Writes `word` so a POSIX shell would read it back as one word: as is when it holds none of
// blank, quote, backslash, newline and | & ; < > ( ) $ `, does not start with '#' and is not
// a reserved word (do, done, if, {, !, …: alone, a word is in command position), else in single
// quotes ('it'\''s').
std::string QuoteWord(std::string_view word);

// The command line policy patterns see: the words, each through QuoteWord(), joined by single
// spaces; a reserved word is quoted only as words[0], where a shell would read it as syntax.
std::string JoinWords(const std::vector<std::string>& words, size_t first = 0);

}  // namespace sbx::policy
