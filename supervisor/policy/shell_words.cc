// Token recognition follows POSIX XCU 2.3 (and 2.6.7 for quote removal); the bash additions a
// command line may carry (|&, &>, <<<, $'…', <(…)) are recognised so that they are refused or
// judged, never mistaken for plain words.
#include "supervisor/policy/shell_words.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>

namespace sbx::policy {
namespace {

constexpr size_t kMaxLine = 1 << 20;
constexpr int kMaxDepth = 16;

bool IsBlank(char c) { return c == ' ' || c == '\t'; }
bool IsOperatorChar(char c) {
  return c == '|' || c == '&' || c == ';' || c == '<' || c == '>' || c == '(' || c == ')';
}
bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }
bool IsDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

Error SyntaxError(std::string_view what) {
  return MakeError(ErrorCode::kInvalidArgument, "cannot split the command line: {}", what);
}

// Longest first, so "<<-" wins over "<<" and "<".
constexpr std::array<std::string_view, 22> kOperators = {
    "<<<", "<<-", "&>>", ";;&", "&&", "||", ";;", ";&", "<<", ">>", "<&",
    ">&",  "<>",  ">|",  "|&",  "&>", ";",  "&",  "|",  "<",  ">",  "("};

bool IsRedirection(std::string_view op) {
  return op == "<<<" || op == "<<-" || op == "&>>" || op == "<<" || op == ">>" || op == "<&" ||
         op == ">&" || op == "<>" || op == ">|" || op == "&>" || op == "<" || op == ">";
}

struct Word {
  std::string value;
  bool quoted = false;      // any quoting, escape or expansion: not a keyword, not an fd number
  size_t plain_prefix = 0;  // leading value bytes written without quoting, escape or expansion
};

struct PendingHeredoc {
  std::string delimiter;
  bool strip_tabs = false;
  bool quoted = false;  // a quoted delimiter turns expansion in the body off
};

// Shared by a parser and the parsers of the substitutions it meets.
struct Shared {
  ShellParse* out = nullptr;
  int next_pipeline = 0;

  void Feature(std::string f) {
    auto& v = out->shell_features;
    if (std::find(v.begin(), v.end(), f) == v.end()) v.push_back(std::move(f));
  }
};

class Parser {
 public:
  Parser(Shared& sh, std::string_view s, size_t pos, int depth, bool in_subst)
      : sh_(sh), s_(s), pos_(pos), depth_(depth), in_subst_(in_subst) {}

  // Parses a command list up to the end of the text or, inside a substitution, up to its
  // closing ')'. Returns that position (the ')' itself, not consumed).
  Result<size_t> ParseList();

  // Indices of the commands this parser appended at its own depth.
  const std::vector<size_t>& own_commands() const { return own_; }

 private:
  struct Group {
    char kind;     // '(' or '{'
    int function;  // index into functions when this group is a function's body, else -1
  };

  ShellParse& out() { return *sh_.out; }
  bool AtEnd() const { return pos_ >= s_.size(); }
  char Peek(size_t ahead = 0) const { return pos_ + ahead < s_.size() ? s_[pos_ + ahead] : '\0'; }

  void SkipBlanks();
  Status EndCommand(bool piped);
  Status OnWord(Word w);
  Status OnOperator(std::string_view op);
  Status OpenGroup(char kind);
  Status CloseGroup(char kind);
  Status ReadHeredocBodies();

  Result<Word> ReadWord();
  Status ReadDoubleQuoted(Word& w);
  Status ReadDollar(Word& w, bool in_double_quotes);
  Status ReadBackticks(Word& w);
  // Parses the substitution whose text starts at s_[start] and ends at the matching ')';
  // returns the position of that ')'.
  Result<size_t> ParseSubstitution(size_t start);
  Status ParseSubstitutionText(const std::string& text);

  Shared& sh_;
  std::string_view s_;
  size_t pos_;
  int depth_;
  bool in_subst_;

  ShellCommand cur_;
  std::vector<size_t> cur_nested_;  // commands of substitutions inside cur_'s words
  bool cur_only_assignments_ = true;
  int pipeline_ = -1;
  std::optional<std::string> pending_redirect_;
  std::string io_number_;
  bool expect_operand_ = false;  // after && || | |&
  std::string last_binary_op_;
  bool after_group_ = false;    // a ')' or '}' just closed: an operator may follow
  bool after_newline_ = false;  // a newline ended a command: the next one makes a list
  bool skip_for_header_ = false;
  int pending_function_ = -1;
  std::vector<Group> groups_;
  std::vector<PendingHeredoc> heredocs_;
  std::vector<size_t> own_;
};

void Parser::SkipBlanks() {
  while (!AtEnd()) {
    if (IsBlank(Peek())) {
      ++pos_;
    } else if (Peek() == '\\' && Peek(1) == '\n') {
      pos_ += 2;
    } else {
      break;
    }
  }
}

Status Parser::EndCommand(bool piped) {
  if (pending_redirect_)
    return SyntaxError(fmt::format("'{}' without a target", *pending_redirect_));
  if (!cur_.words.empty() || !cur_.redirections.empty()) {
    if (pending_function_ >= 0) {
      return SyntaxError("a function body must be { …; } or ( … )");
    }
    const size_t index = out().commands.size();
    for (size_t n : cur_nested_) out().commands[n].parent = static_cast<int>(index);
    cur_.pipeline = pipeline_;
    cur_.depth = depth_;
    out().commands.push_back(std::move(cur_));
    own_.push_back(index);
  }
  cur_ = ShellCommand{};
  cur_nested_.clear();
  cur_only_assignments_ = true;
  if (!piped) pipeline_ = sh_.next_pipeline++;
  return Ok();
}

Status Parser::OpenGroup(char kind) {
  if (!cur_.words.empty() || !cur_.redirections.empty()) {
    return SyntaxError(fmt::format("unexpected '{}'", kind));
  }
  if (pending_function_ >= 0) {
    out().functions[pending_function_].first_command = out().commands.size();
  } else {
    sh_.Feature(kind == '(' ? "subshell ( … )" : "command group { …; }");
  }
  groups_.push_back({kind, pending_function_});
  pending_function_ = -1;
  expect_operand_ = false;
  return Ok();
}

Status Parser::CloseGroup(char kind) {
  const char close = kind == '(' ? ')' : '}';
  if (groups_.empty() || groups_.back().kind != kind) {
    return SyntaxError(fmt::format("unbalanced '{}'", close));
  }
  if (expect_operand_) return SyntaxError(fmt::format("nothing after '{}'", last_binary_op_));
  SBX_TRY(EndCommand(false));
  if (groups_.back().function >= 0) {
    out().functions[groups_.back().function].end_command = out().commands.size();
  }
  groups_.pop_back();
  after_group_ = true;
  return Ok();
}

Status Parser::OnWord(Word w) {
  if (after_newline_) {
    sh_.Feature("newline (command list)");
    after_newline_ = false;
  }
  if (pending_redirect_) {
    const std::string op = std::move(*pending_redirect_);
    pending_redirect_.reset();
    const bool dup = op.ends_with("<&") || op.ends_with(">&");
    sh_.Feature(dup && (IsDigits(w.value) || w.value == "-")
                    ? fmt::format("redirection '{}{}'", op, w.value)
                    : fmt::format("redirection '{}'", op));
    if (op.ends_with("<<") || op.ends_with("<<-")) {
      heredocs_.push_back({w.value, op.ends_with("<<-"), w.quoted});
    }
    cur_.redirections.push_back({op, std::move(w.value)});
    return Ok();
  }
  if (skip_for_header_) {
    if (!w.quoted && w.value == "do") skip_for_header_ = false;
    return Ok();
  }
  if (pending_function_ >= 0 && !(!w.quoted && w.value == "{")) {
    return SyntaxError("a function body must be { …; } or ( … )");
  }
  if (cur_.words.empty() && cur_.redirections.empty() && !w.quoted) {
    const std::string& v = w.value;
    if (v == "{") return OpenGroup('{');
    if (v == "}") return CloseGroup('{');
    if (v == "if" || v == "then" || v == "else" || v == "elif" || v == "fi" || v == "while" ||
        v == "until" || v == "do" || v == "done") {
      sh_.Feature("compound command (if/while/until/for)");
      expect_operand_ = false;
      return Ok();
    }
    if (v == "for") {
      sh_.Feature("compound command (if/while/until/for)");
      skip_for_header_ = true;
      return Ok();
    }
    if (v == "!") {
      sh_.Feature("'!' (negated pipeline)");
      return Ok();
    }
    if (v == "case" || v == "select" || v == "function" || v == "coproc") {
      return SyntaxError(
          fmt::format("'{}' is not supported; put the script in a file and run it", v));
    }
  }
  // An fd number written right before a redirection: the 2 of 2>&1.
  if (!w.quoted && IsDigits(w.value) && (Peek() == '<' || Peek() == '>')) {
    io_number_ = std::move(w.value);
    return Ok();
  }
  const size_t eq = w.value.find('=');
  const bool assignment = cur_only_assignments_ && eq != std::string::npos && eq > 0 &&
                          eq < w.plain_prefix && IsNameStart(w.value[0]) &&
                          std::all_of(w.value.begin(), w.value.begin() + eq, IsNameChar);
  if (assignment) {
    sh_.Feature("variable assignment (NAME=value)");
  } else {
    cur_only_assignments_ = false;
  }
  cur_.words.push_back(std::move(w.value));
  expect_operand_ = false;
  after_group_ = false;
  return Ok();
}

Status Parser::ReadHeredocBodies() {
  for (const PendingHeredoc& h : heredocs_) {
    while (!AtEnd()) {
      size_t eol = s_.find('\n', pos_);
      if (eol == std::string_view::npos) eol = s_.size();
      std::string_view line = s_.substr(pos_, eol - pos_);
      pos_ = eol < s_.size() ? eol + 1 : eol;
      if (h.strip_tabs) {
        while (!line.empty() && line.front() == '\t') line.remove_prefix(1);
      }
      if (line == h.delimiter) break;
      if (!h.quoted &&
          (line.find("$(") != std::string_view::npos || line.find('`') != std::string_view::npos)) {
        return SyntaxError(
            "command substitution inside a here-document is not supported; quote the delimiter "
            "(<<'EOF') or put the script in a file");
      }
    }
  }
  heredocs_.clear();
  return Ok();
}

Status Parser::OnOperator(std::string_view op) {
  if (after_newline_ && (IsRedirection(op) || op == "(")) {
    sh_.Feature("newline (command list)");
    after_newline_ = false;
  }
  after_group_ = after_group_ && op != "(";
  if (IsRedirection(op)) {
    if (pending_redirect_) {
      return SyntaxError(fmt::format("'{}' without a target", *pending_redirect_));
    }
    if (skip_for_header_) return SyntaxError("redirection inside a for header");
    pending_redirect_ = io_number_ + std::string(op);
    io_number_.clear();
    if (op == "<<" || op == "<<-") sh_.Feature("here-document <<");
    return Ok();
  }
  if (pending_redirect_) {
    return SyntaxError(fmt::format("'{}' without a target", *pending_redirect_));
  }
  if (op == "(") {
    // NAME ( ) starts a function definition; anything else at a command's start is a subshell.
    size_t k = pos_;
    while (k < s_.size() && IsBlank(s_[k])) ++k;
    if (cur_.words.size() == 1 && cur_.redirections.empty() && k < s_.size() && s_[k] == ')') {
      pos_ = k + 1;
      sh_.Feature("function definition NAME() { …; }");
      out().functions.push_back({std::move(cur_.words[0]), 0, 0});
      cur_.words.clear();
      cur_only_assignments_ = true;
      pending_function_ = static_cast<int>(out().functions.size() - 1);
      return Ok();
    }
    return OpenGroup('(');
  }
  if (op == ";;" || op == ";&" || op == ";;&") {
    return SyntaxError(fmt::format("'{}' belongs to case, which is not supported", op));
  }
  const bool binary = op == "&&" || op == "||" || op == "|" || op == "|&";
  if (expect_operand_) return SyntaxError(fmt::format("nothing after '{}'", last_binary_op_));
  if (binary && cur_.words.empty() && cur_.redirections.empty() && !after_group_) {
    return SyntaxError(fmt::format("nothing before '{}'", op));
  }
  if (op == ";") sh_.Feature("';' (command list)");
  if (op == "&") sh_.Feature("'&' (background)");
  if (op == "&&") sh_.Feature("'&&' (and-list)");
  if (op == "||") sh_.Feature("'||' (or-list)");
  if (op == "|" || op == "|&") sh_.Feature("'|' (pipe)");
  skip_for_header_ = false;
  SBX_TRY(EndCommand(op == "|" || op == "|&"));
  after_group_ = false;
  if (binary) {
    expect_operand_ = true;
    last_binary_op_ = std::string(op);
  }
  return Ok();
}

Result<size_t> Parser::ParseList() {
  pipeline_ = sh_.next_pipeline++;
  for (;;) {
    SkipBlanks();
    if (AtEnd()) break;
    const char c = Peek();
    if (c == '#') {
      sh_.Feature("comment #");
      while (!AtEnd() && Peek() != '\n') ++pos_;
      continue;
    }
    if (c == '\n') {
      ++pos_;
      if (pending_redirect_) {
        return SyntaxError(fmt::format("'{}' without a target", *pending_redirect_));
      }
      skip_for_header_ = false;
      // A newline after && || | continues the list.
      if (!expect_operand_) {
        if (!cur_.words.empty() || !cur_.redirections.empty() || !own_.empty()) {
          after_newline_ = true;
        }
        SBX_TRY(EndCommand(false));
      }
      SBX_TRY(ReadHeredocBodies());
      continue;
    }
    if (c == ')') {
      if (!groups_.empty() && groups_.back().kind == '(') {
        ++pos_;
        SBX_TRY(CloseGroup('('));
        continue;
      }
      if (in_subst_) break;
      return SyntaxError("unbalanced ')'");
    }
    if (IsOperatorChar(c) && !((c == '<' || c == '>') && Peek(1) == '(')) {
      std::string_view op;
      for (std::string_view candidate : kOperators) {
        if (s_.substr(pos_, candidate.size()) == candidate) {
          op = candidate;
          break;
        }
      }
      pos_ += op.size();
      SBX_TRY(OnOperator(op));
      continue;
    }
    auto w = ReadWord();
    if (!w.ok()) return std::move(w).error();
    SBX_TRY(OnWord(std::move(*w)));
  }
  if (in_subst_ && AtEnd()) return SyntaxError("unterminated $( … ) or <( … )");
  if (pending_redirect_)
    return SyntaxError(fmt::format("'{}' without a target", *pending_redirect_));
  if (expect_operand_) return SyntaxError(fmt::format("nothing after '{}'", last_binary_op_));
  if (pending_function_ >= 0) return SyntaxError("a function definition without a body");
  SBX_TRY(EndCommand(false));
  if (!groups_.empty()) {
    return SyntaxError(fmt::format("unclosed '{}'", groups_.back().kind));
  }
  if (!heredocs_.empty()) return SyntaxError("a here-document without a body");
  return pos_;
}

Result<size_t> Parser::ParseSubstitution(size_t start) {
  if (depth_ + 1 > kMaxDepth) return SyntaxError("substitutions nested too deep");
  Parser sub(sh_, s_, start, depth_ + 1, /*in_subst=*/true);
  auto end = sub.ParseList();
  if (!end.ok()) return end;
  for (size_t n : sub.own_commands()) cur_nested_.push_back(n);
  return end;
}

Status Parser::ParseSubstitutionText(const std::string& text) {
  if (depth_ + 1 > kMaxDepth) return SyntaxError("substitutions nested too deep");
  Parser sub(sh_, text, 0, depth_ + 1, /*in_subst=*/false);
  auto end = sub.ParseList();
  if (!end.ok()) return std::move(end).error();
  for (size_t n : sub.own_commands()) cur_nested_.push_back(n);
  return Ok();
}

Status Parser::ReadBackticks(Word& w) {
  const size_t start = pos_;
  std::string inner;
  size_t k = pos_ + 1;
  for (; k < s_.size() && s_[k] != '`'; ++k) {
    if (s_[k] == '\\' && k + 1 < s_.size() &&
        (s_[k + 1] == '$' || s_[k + 1] == '`' || s_[k + 1] == '\\')) {
      ++k;
    }
    inner += s_[k];
  }
  if (k >= s_.size()) return SyntaxError("unterminated ` … `");
  SBX_TRY(ParseSubstitutionText(inner));
  sh_.Feature("command substitution $( … ) or ` … `");
  w.value.append(s_.substr(start, k + 1 - start));
  w.quoted = true;
  pos_ = k + 1;
  return Ok();
}

Status Parser::ReadDollar(Word& w, bool in_double_quotes) {
  const size_t start = pos_;
  const char d = Peek(1);
  if (d == '(' && Peek(2) == '(') {
    int level = 0;
    size_t k = pos_ + 3;
    for (; k < s_.size(); ++k) {
      if (s_[k] == '$' && k + 1 < s_.size() && s_[k + 1] == '(') {
        return SyntaxError("$( … ) inside $(( … )) is not supported");
      }
      if (s_[k] == '`') return SyntaxError("` … ` inside $(( … )) is not supported");
      if (s_[k] == '(') ++level;
      if (s_[k] == ')') {
        if (level == 0 && k + 1 < s_.size() && s_[k + 1] == ')') break;
        --level;
      }
    }
    if (k >= s_.size()) return SyntaxError("unterminated $(( … ))");
    sh_.Feature("arithmetic expansion $(( … ))");
    pos_ = k + 2;
  } else if (d == '(') {
    auto end = ParseSubstitution(pos_ + 2);
    if (!end.ok()) return std::move(end).error();
    sh_.Feature("command substitution $( … ) or ` … `");
    pos_ = *end + 1;
  } else if (d == '{') {
    size_t k = pos_ + 2;
    int level = 1;
    while (k < s_.size() && level > 0) {
      const char ch = s_[k];
      if (ch == '\\') {
        k += 2;
      } else if (ch == '\'' && !in_double_quotes) {
        size_t e = s_.find('\'', k + 1);
        if (e == std::string_view::npos) return SyntaxError("unterminated ' inside ${ … }");
        k = e + 1;
      } else if (ch == '$' && k + 1 < s_.size() && s_[k + 1] == '(') {
        auto end = ParseSubstitution(k + 2);
        if (!end.ok()) return std::move(end).error();
        sh_.Feature("command substitution $( … ) or ` … `");
        k = *end + 1;
      } else if (ch == '$' && k + 1 < s_.size() && s_[k + 1] == '{') {
        ++level;
        k += 2;
      } else if (ch == '`') {
        size_t e = s_.find('`', k + 1);
        if (e == std::string_view::npos) return SyntaxError("unterminated ` … `");
        SBX_TRY(ParseSubstitutionText(std::string(s_.substr(k + 1, e - k - 1))));
        sh_.Feature("command substitution $( … ) or ` … `");
        k = e + 1;
      } else if (ch == '}') {
        --level;
        ++k;
      } else {
        ++k;
      }
    }
    if (level > 0) return SyntaxError("unterminated ${ … }");
    sh_.Feature("variable expansion $NAME ${ … }");
    pos_ = k;
  } else if (d == '\'' && !in_double_quotes) {
    // $'…' (bash): backslash escapes are decoded so the word is judged as the program sees it.
    size_t k = pos_ + 2;
    std::string value;
    for (; k < s_.size() && s_[k] != '\''; ++k) {
      if (s_[k] != '\\' || k + 1 >= s_.size()) {
        value += s_[k];
        continue;
      }
      const char e = s_[++k];
      switch (e) {
        case 'n':
          value += '\n';
          break;
        case 't':
          value += '\t';
          break;
        case 'r':
          value += '\r';
          break;
        case 'a':
          value += '\a';
          break;
        case 'b':
          value += '\b';
          break;
        case 'e':
        case 'E':
          value += '\x1b';
          break;
        case 'f':
          value += '\f';
          break;
        case 'v':
          value += '\v';
          break;
        case 'x': {
          int v = 0, n = 0;
          while (n < 2 && k + 1 < s_.size() &&
                 std::isxdigit(static_cast<unsigned char>(s_[k + 1]))) {
            char h = s_[++k];
            v = v * 16 + (h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
            ++n;
          }
          value += static_cast<char>(v);
          break;
        }
        case '0':
        case '1':
        case '2':
        case '3':
        case '4':
        case '5':
        case '6':
        case '7': {
          int v = e - '0', n = 1;
          while (n < 3 && k + 1 < s_.size() && s_[k + 1] >= '0' && s_[k + 1] <= '7') {
            v = v * 8 + (s_[++k] - '0');
            ++n;
          }
          value += static_cast<char>(v);
          break;
        }
        default:
          value += e;
          break;
      }
    }
    if (k >= s_.size()) return SyntaxError("unterminated $' … '");
    sh_.Feature("ANSI-C quoting $' … '");
    pos_ = k + 1;
    w.value += value;
    w.quoted = true;
    return Ok();
  } else if (d == '"' && !in_double_quotes) {
    sh_.Feature("locale quoting $\" … \"");
    ++pos_;
    return ReadDoubleQuoted(w);
  } else if (IsNameStart(d)) {
    size_t k = pos_ + 1;
    while (k < s_.size() && IsNameChar(s_[k])) ++k;
    sh_.Feature("variable expansion $NAME ${ … }");
    pos_ = k;
  } else if ((d >= '0' && d <= '9') ||
             (d != '\0' && std::string_view("@*#?-$!").find(d) != std::string_view::npos)) {
    sh_.Feature("variable expansion $NAME ${ … }");
    pos_ += 2;
  } else {
    w.value += '$';  // a lone '$' is itself
    ++pos_;
    return Ok();
  }
  w.value.append(s_.substr(start, pos_ - start));
  w.quoted = true;
  return Ok();
}

Status Parser::ReadDoubleQuoted(Word& w) {
  ++pos_;  // the opening "
  w.quoted = true;
  while (!AtEnd()) {
    const char c = Peek();
    if (c == '"') {
      ++pos_;
      return Ok();
    }
    if (c == '\\') {
      const char n = Peek(1);
      if (n == '\n') {
        pos_ += 2;
      } else if (n == '$' || n == '`' || n == '"' || n == '\\') {
        w.value += n;
        pos_ += 2;
      } else {
        w.value += '\\';
        ++pos_;
      }
      continue;
    }
    if (c == '$') {
      SBX_TRY(ReadDollar(w, /*in_double_quotes=*/true));
      continue;
    }
    if (c == '`') {
      SBX_TRY(ReadBackticks(w));
      continue;
    }
    w.value += c;
    ++pos_;
  }
  return SyntaxError("unterminated \" … \"");
}

Result<Word> Parser::ReadWord() {
  Word w;
  const size_t start = pos_;
  int brace_state = 0;  // 1 after '{', 2 after ',' or '..', 3 after '}'
  auto plain = [&] { return !w.quoted; };
  while (!AtEnd()) {
    const char c = Peek();
    if (IsBlank(c) || c == '\n') break;
    if ((c == '<' || c == '>') && Peek(1) == '(' && pos_ == start) {
      auto end = ParseSubstitution(pos_ + 2);
      if (!end.ok()) return std::move(end).error();
      sh_.Feature("process substitution <( … )");
      w.value.append(s_.substr(pos_, *end + 1 - pos_));
      w.quoted = true;
      pos_ = *end + 1;
      continue;
    }
    if (IsOperatorChar(c)) break;
    if (c == '\\') {
      if (Peek(1) == '\0' && pos_ + 1 >= s_.size()) {
        return SyntaxError("trailing '\\' escapes nothing");
      }
      if (Peek(1) == '\n') {
        pos_ += 2;
        continue;
      }
      w.value += Peek(1);
      w.quoted = true;
      pos_ += 2;
      continue;
    }
    if (c == '\'') {
      size_t end = s_.find('\'', pos_ + 1);
      if (end == std::string_view::npos) return SyntaxError("unterminated ' … '");
      w.value.append(s_.substr(pos_ + 1, end - pos_ - 1));
      w.quoted = true;
      pos_ = end + 1;
      continue;
    }
    if (c == '"') {
      SBX_TRY(ReadDoubleQuoted(w));
      continue;
    }
    if (c == '$') {
      SBX_TRY(ReadDollar(w, /*in_double_quotes=*/false));
      continue;
    }
    if (c == '`') {
      SBX_TRY(ReadBackticks(w));
      continue;
    }
    if (c == '*' || c == '?') sh_.Feature("filename expansion * ? [ … ]");
    if (c == '[') {
      for (size_t k = pos_ + 1;
           k < s_.size() && !IsBlank(s_[k]) && s_[k] != '\n' && !IsOperatorChar(s_[k]); ++k) {
        if (s_[k] == ']') {
          sh_.Feature("filename expansion * ? [ … ]");
          break;
        }
      }
    }
    if (c == '~' && pos_ == start) sh_.Feature("tilde expansion ~");
    if (c == '{' && brace_state == 0) brace_state = 1;
    if (brace_state == 1 && (c == ',' || (c == '.' && Peek(1) == '.'))) brace_state = 2;
    if (c == '}' && brace_state == 2) {
      brace_state = 3;
      sh_.Feature("brace expansion {a,b}");
    }
    w.value += c;
    if (plain()) ++w.plain_prefix;
    ++pos_;
  }
  return w;
}

// Words a shell reads as syntax when they come first in a command: written bare in command
// position, 'do' read back as a keyword, not a program (found by fuzzing).
bool IsReservedWord(std::string_view w) {
  static constexpr std::string_view kReserved[] = {
      "if", "then", "else",   "elif",     "fi",     "while", "until", "do", "done", "for",
      "case", "esac", "select", "function", "coproc", "in",   "{",     "}",  "!",    "[[", "]]"};
  for (std::string_view r : kReserved) {
    if (w == r) return true;
  }
  return false;
}

bool NeedsQuoting(std::string_view word, bool command_position) {
  // A '#' that starts a word starts a comment (found by fuzzing: "#s" was written bare, and
  // read back as no word at all).
  if (word.empty() || word[0] == '#' || (command_position && IsReservedWord(word))) return true;
  for (char c : word) {
    if (IsBlank(c) || c == '\n' || c == '\'' || c == '"' || c == '\\' || c == '$' || c == '`' ||
        IsOperatorChar(c)) {
      return true;
    }
  }
  return false;
}

}  // namespace

Result<ShellParse> SplitShell(std::string_view line) {
  if (line.size() > kMaxLine) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "command line is {} bytes, more than the {} allowed; put it in a script file",
                     line.size(), kMaxLine);
  }
  ShellParse parse;
  Shared shared;
  shared.out = &parse;
  Parser parser(shared, line, 0, 0, /*in_subst=*/false);
  auto end = parser.ParseList();
  if (!end.ok()) return std::move(end).error();
  return parse;
}

namespace {

std::string SingleQuoted(std::string_view word) {
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

}  // namespace

std::string QuoteWord(std::string_view word) {
  // Alone, a word is a command: a reserved word is quoted too.
  return NeedsQuoting(word, true) ? SingleQuoted(word) : std::string(word);
}

std::string JoinWords(const std::vector<std::string>& words, size_t first) {
  std::string out;
  for (size_t i = first; i < words.size(); ++i) {
    if (i > first) out += ' ';
    // Reserved words are syntax only as the command's first word.
    out += NeedsQuoting(words[i], i == 0) ? SingleQuoted(words[i]) : words[i];
  }
  return out;
}

}  // namespace sbx::policy
