#include "supervisor/plan/intent.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <map>

#include "supervisor/plan/text.h"

namespace sbx::supervisor::plan {
namespace {

constexpr std::array<std::string_view, 5> kGoalOrder = {"test", "lint", "build", "typecheck",
                                                        "report"};

enum class Role { kNeutral, kGoal, kNegation, kRefusal, kBoundary };

struct Meaning {
  Role role = Role::kNeutral;
  std::string_view goal;  // for kGoal
};

struct Token {
  bool boundary = false;  // punctuation that ends a clause
  std::string text;       // a lowercased English word or a Chinese lexicon entry or character
};

// Chinese entries, matched longest first at each character. Neutral entries are words that
// contain a negation character without negating ("不同", "特别", "是不是").
struct LexEntry {
  std::string_view text;
  Meaning meaning;
};
constexpr Meaning Goal(std::string_view g) { return {Role::kGoal, g}; }
constexpr Meaning kNegation{Role::kNegation, {}};
constexpr Meaning kRefusal{Role::kRefusal, {}};
constexpr Meaning kBoundaryWord{Role::kBoundary, {}};
constexpr Meaning kNeutral{Role::kNeutral, {}};

constexpr LexEntry kChinese[] = {
    {"测试", Goal("test")},     {"代码检查", Goal("lint")}, {"静态检查", Goal("lint")},
    {"静态分析", Goal("lint")}, {"代码风格", Goal("lint")}, {"风格检查", Goal("lint")},
    {"构建", Goal("build")},    {"编译", Goal("build")},    {"类型检查", Goal("typecheck")},
    {"报告", Goal("report")},   {"总结", Goal("report")},   {"汇总", Goal("report")},
    {"摘要", Goal("report")},   {"不要", kNegation},        {"不用", kNegation},
    {"不需要", kNegation},      {"无需", kNegation},        {"不必", kNegation},
    {"跳过", kNegation},        {"别", kNegation},          {"勿", kNegation},
    {"不", kNegation},          {"不同", kNeutral},         {"不错", kNeutral},
    {"不仅", kNeutral},         {"不只", kNeutral},         {"不管", kNeutral},
    {"不论", kNeutral},         {"不断", kNeutral},         {"不少", kNeutral},
    {"是不是", kNeutral},       {"能不能", kNeutral},       {"会不会", kNeutral},
    {"行不行", kNeutral},       {"可不可以", kNeutral},     {"特别", kNeutral},
    {"区别", kNeutral},         {"分别", kNeutral},         {"类别", kNeutral},
    {"级别", kNeutral},         {"识别", kNeutral},         {"别的", kNeutral},
    {"别人", kNeutral},         {"部署", kRefusal},         {"发布", kRefusal},
    {"推送", kRefusal},         {"删除", kRefusal},         {"删掉", kRefusal},
    {"清空", kRefusal},         {"清除", kRefusal},         {"上传", kRefusal},
    {"卸载", kRefusal},         {"销毁", kRefusal},         {"只", kBoundaryWord},
    {"仅", kBoundaryWord},      {"但", kBoundaryWord},      {"然后", kBoundaryWord},
    {"而是", kBoundaryWord},    {"就", kBoundaryWord},
};

const std::map<std::string_view, Meaning>& EnglishWords() {
  static const auto* words = new std::map<std::string_view, Meaning>{
      {"test", Goal("test")},
      {"tests", Goal("test")},
      {"testing", Goal("test")},
      {"tested", Goal("test")},
      {"unittest", Goal("test")},
      {"unittests", Goal("test")},
      {"pytest", Goal("test")},
      {"ctest", Goal("test")},
      {"lint", Goal("lint")},
      {"lints", Goal("lint")},
      {"linter", Goal("lint")},
      {"linters", Goal("lint")},
      {"linting", Goal("lint")},
      {"style", Goal("lint")},
      {"ruff", Goal("lint")},
      {"flake8", Goal("lint")},
      {"pylint", Goal("lint")},
      {"clippy", Goal("lint")},
      {"eslint", Goal("lint")},
      {"vet", Goal("lint")},
      {"build", Goal("build")},
      {"builds", Goal("build")},
      {"building", Goal("build")},
      {"compile", Goal("build")},
      {"compiles", Goal("build")},
      {"compiling", Goal("build")},
      {"compilation", Goal("build")},
      {"typecheck", Goal("typecheck")},
      {"typechecks", Goal("typecheck")},
      {"typechecking", Goal("typecheck")},
      {"typechecker", Goal("typecheck")},
      {"types", Goal("typecheck")},
      {"typing", Goal("typecheck")},
      {"mypy", Goal("typecheck")},
      {"tsc", Goal("typecheck")},
      {"pyright", Goal("typecheck")},
      {"report", Goal("report")},
      {"reports", Goal("report")},
      {"summary", Goal("report")},
      {"summaries", Goal("report")},
      {"summarize", Goal("report")},
      {"summarise", Goal("report")},
      {"summarized", Goal("report")},
      {"summarised", Goal("report")},
      {"don't", kNegation},
      {"dont", kNegation},
      {"no", kNegation},
      {"not", kNegation},
      {"nor", kNegation},
      {"never", kNegation},
      {"without", kNegation},
      {"skip", kNegation},
      {"skipping", kNegation},
      {"except", kNegation},
      {"excluding", kNegation},
      {"but", kBoundaryWord},
      {"just", kBoundaryWord},
      {"only", kBoundaryWord},
      {"then", kBoundaryWord},
      {"instead", kBoundaryWord},
      {"rather", kBoundaryWord},
      {"however", kBoundaryWord},
      {"also", kBoundaryWord},
      {"deploy", kRefusal},
      {"deploys", kRefusal},
      {"deploying", kRefusal},
      {"deployment", kRefusal},
      {"push", kRefusal},
      {"pushing", kRefusal},
      {"publish", kRefusal},
      {"publishing", kRefusal},
      {"release", kRefusal},
      {"releasing", kRefusal},
      {"delete", kRefusal},
      {"deleting", kRefusal},
      {"remove", kRefusal},
      {"removing", kRefusal},
      {"rm", kRefusal},
      {"drop", kRefusal},
      {"dropping", kRefusal},
      {"destroy", kRefusal},
      {"wipe", kRefusal},
      {"erase", kRefusal},
      {"uninstall", kRefusal},
      {"upload", kRefusal},
  };
  return *words;
}

// The byte length of the UTF-8 character starting at s[i] (s is valid UTF-8).
size_t CharLen(std::string_view s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  if (c < 0xE0) return 2;
  if (c < 0xF0) return 3;
  return 4;
}

bool IsWordByte(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '\'';
}

std::vector<Token> Tokenize(std::string_view s) {
  std::vector<Token> out;
  std::string word;
  auto flush = [&] {
    // Quotes around a word are not part of it: 'tests' -> tests.
    size_t b = word.find_first_not_of('\'');
    size_t e = word.find_last_not_of('\'');
    if (b != std::string::npos) out.push_back({false, word.substr(b, e - b + 1)});
    word.clear();
  };
  auto boundary = [&] {
    flush();
    if (out.empty() || !out.back().boundary) out.push_back({true, {}});
  };
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (IsWordByte(c)) {
      word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      ++i;
      continue;
    }
    if (static_cast<unsigned char>(c) < 0x80) {
      if (c == ',' || c == '.' || c == ';' || c == '!' || c == '?' || c == ':' || c == '\n' ||
          c == '(' || c == ')') {
        boundary();
      } else {
        flush();
      }
      ++i;
      continue;
    }
    std::string_view rest = s.substr(i);
    if (rest.starts_with("\u2019")) {  // a typographic apostrophe: don’t
      word += '\'';
      i += 3;
      continue;
    }
    flush();
    static constexpr std::string_view kFullWidthBoundaries[] = {"，", "。", "；", "！",
                                                                "？", "：", "（", "）"};
    bool is_boundary = false;
    for (std::string_view b : kFullWidthBoundaries) {
      if (rest.starts_with(b)) {
        boundary();
        i += b.size();
        is_boundary = true;
        break;
      }
    }
    if (is_boundary) continue;
    size_t best = 0;
    for (const LexEntry& e : kChinese) {
      if (e.text.size() > best && rest.starts_with(e.text)) best = e.text.size();
    }
    if (best == 0) best = CharLen(s, i);
    out.push_back({false, std::string(rest.substr(0, best))});
    i += best;
  }
  flush();
  return out;
}

Meaning Lookup(const std::string& word) {
  for (const LexEntry& e : kChinese) {
    if (e.text == word) return e.meaning;
  }
  const auto& english = EnglishWords();
  if (auto it = english.find(word); it != english.end()) return it->second;
  return kNeutral;
}

bool OneOf(std::string_view w, std::initializer_list<std::string_view> set) {
  return std::find(set.begin(), set.end(), w) != set.end();
}

// The intent, quoted for a message: at most 120 bytes.
std::string Quote(std::string_view text) {
  std::string_view cut = internal::TruncateUtf8(text, 120);
  return fmt::format("\"{}{}\"", cut, cut.size() < text.size() ? "…" : "");
}

std::vector<std::string> Ordered(const std::vector<std::string_view>& goals) {
  std::vector<std::string> out;
  for (std::string_view g : kGoalOrder) {
    if (std::find(goals.begin(), goals.end(), g) != goals.end()) out.emplace_back(g);
  }
  return out;
}

}  // namespace

Result<Intent> ParseIntent(std::string_view text) {
  if (text.size() > kMaxIntentBytes) {
    return MakeError(ErrorCode::kInvalidArgument, "intent: {} bytes, over the {}-byte limit",
                     text.size(), kMaxIntentBytes);
  }
  if (!internal::IsValidUtf8(text)) {
    return MakeError(ErrorCode::kInvalidArgument, "intent: not valid UTF-8");
  }
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') {
      return MakeError(ErrorCode::kInvalidArgument,
                       "intent: contains the control character 0x{:02x}",
                       static_cast<unsigned char>(c));
    }
  }
  std::vector<Token> tokens = Tokenize(text);
  if (std::none_of(tokens.begin(), tokens.end(), [](const Token& t) { return !t.boundary; })) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "intent: empty; say what to do, e.g. \"run the tests and give me a report\"");
  }

  std::vector<std::string_view> asked, declined;
  std::vector<std::string> refused;
  bool negated = false;
  auto add_goal = [&](std::string_view goal) { (negated ? declined : asked).push_back(goal); };
  for (size_t i = 0; i < tokens.size(); ++i) {
    const Token& t = tokens[i];
    if (t.boundary) {
      negated = false;
      continue;
    }
    std::string_view next = i + 1 < tokens.size() ? std::string_view(tokens[i + 1].text) : "";
    // Two-word phrases first.
    // "instead of building", "rather than lint", "other than the tests": what follows is not
    // wanted.
    if ((t.text == "instead" && next == "of") || (t.text == "rather" && next == "than") ||
        (t.text == "other" && next == "than")) {
      negated = true;
      ++i;
      continue;
    }
    if (t.text == "do" && next == "not") {
      negated = true;
      ++i;
      continue;
    }
    if (t.text == "type" && OneOf(next, {"check", "checks", "checking", "checker", "checked"})) {
      add_goal("typecheck");
      ++i;
      continue;
    }
    if (t.text == "static" && OneOf(next, {"analysis", "check", "checks", "checking"})) {
      add_goal("lint");
      ++i;
      continue;
    }
    // "check (that) it works", "make sure everything works", "verify it still works".
    if (OneOf(t.text, {"works", "work", "working"})) {
      for (size_t back = 1; back <= 4 && back <= i; ++back) {
        const Token& p = tokens[i - back];
        if (p.boundary) break;
        if (OneOf(p.text, {"check", "verify", "ensure", "sure", "see", "confirm"})) {
          add_goal("test");
          break;
        }
      }
      continue;
    }
    Meaning m = Lookup(t.text);
    switch (m.role) {
      case Role::kGoal:
        add_goal(m.goal);
        break;
      case Role::kNegation:
        negated = true;
        break;
      case Role::kBoundary:
        negated = false;
        break;
      case Role::kRefusal:
        if (std::find(refused.begin(), refused.end(), t.text) == refused.end()) {
          refused.push_back(t.text);
        }
        break;
      case Role::kNeutral:
        break;
    }
  }

  if (!refused.empty()) {
    return MakeError(ErrorCode::kNotFound,
                     "no plan for this intent: {} is not something the built-in planner does; it "
                     "only plans tests, lint, build, typecheck and a report (rephrase without it, "
                     "or use an external planner)",
                     fmt::format("'{}'", fmt::join(refused, "', '")));
  }
  Intent intent;
  intent.declined = Ordered(declined);
  for (std::string& g : Ordered(asked)) {
    if (std::find(intent.declined.begin(), intent.declined.end(), g) == intent.declined.end()) {
      intent.goals.push_back(std::move(g));
    }
  }
  if (intent.goals.empty() && !intent.declined.empty()) {
    return MakeError(ErrorCode::kNotFound,
                     "no plan for this intent: every goal it names is negated ({}); ask for tests, "
                     "lint, build or typecheck",
                     fmt::join(intent.declined, ", "));
  }
  if (intent.goals.empty()) {
    return MakeError(ErrorCode::kNotFound,
                     "no plan for this intent: no goal recognised in {}; the built-in planner "
                     "plans tests, lint, build, typecheck and a report (e.g. \"run the tests and "
                     "give me a report\", \"运行测试并生成报告\")",
                     Quote(text));
  }
  if (intent.goals == std::vector<std::string>{"report"}) {
    return MakeError(ErrorCode::kNotFound,
                     "no plan for this intent: a report alone has nothing to report on; ask for "
                     "tests, lint, build or typecheck with it");
  }
  return intent;
}

}  // namespace sbx::supervisor::plan
