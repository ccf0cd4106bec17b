#include <gtest/gtest.h>

#include <string>

#include "supervisor/policy/glob.h"

namespace sbx::policy {
namespace {

bool M(std::string_view pattern, std::string_view text) {
  auto g = Glob::Compile(pattern);
  EXPECT_TRUE(g.ok()) << pattern << ": " << g.error().ToString();
  return g.ok() && g->Matches(text);
}

std::string CompileError(std::string_view pattern) {
  auto g = Glob::Compile(pattern);
  EXPECT_FALSE(g.ok()) << pattern << " compiled";
  return g.ok() ? "" : g.error().message;
}

TEST(PolicyGlob, StarCrossesWordsAndSlashes) {
  EXPECT_TRUE(M("git *", "git status --short"));
  EXPECT_TRUE(M("git *", "git log -- a/b/c"));
  EXPECT_TRUE(M("*", ""));
  EXPECT_TRUE(M("*", "anything at all"));
  EXPECT_TRUE(M("*rm*-rf*/", "sudo rm -rf /"));
  EXPECT_FALSE(M("git *", "gitk --all"));
  EXPECT_FALSE(M("git *", "git-lfs pull"));
  EXPECT_FALSE(M("git *", "tig git status"));
}

TEST(PolicyGlob, TrailingSpaceStarAlsoMatchesTheBareProgram) {
  EXPECT_TRUE(M("git *", "git"));
  EXPECT_TRUE(M("ls *", "ls"));
  EXPECT_FALSE(M("git ?*", "git"));
  EXPECT_TRUE(M("git ?*", "git status"));
  // Only an unescaped trailing " *" is optional.
  EXPECT_FALSE(M("git \\*", "git"));
  EXPECT_TRUE(M("git \\*", "git *"));
  EXPECT_FALSE(M("git push *", "git"));
}

TEST(PolicyGlob, QuestionMarkIsOneCharacter) {
  EXPECT_TRUE(M("l?", "ls"));
  EXPECT_FALSE(M("l?", "l"));
  EXPECT_FALSE(M("l?", "lsx"));
}

TEST(PolicyGlob, Sets) {
  EXPECT_TRUE(M("python[23] *", "python3 x.py"));
  EXPECT_FALSE(M("python[23] *", "python4 x.py"));
  EXPECT_TRUE(M("v[0-9]", "v7"));
  EXPECT_FALSE(M("v[0-9]", "vx"));
  EXPECT_TRUE(M("v[!0-9]", "vx"));
  EXPECT_TRUE(M("v[^0-9]", "vx"));
  EXPECT_FALSE(M("v[!0-9]", "v7"));
  EXPECT_TRUE(M("[]]", "]"));
  EXPECT_TRUE(M("[!]]", "x"));
  EXPECT_FALSE(M("[!]]", "]"));
  EXPECT_TRUE(M("[a-]", "-"));
  EXPECT_TRUE(M("[\\]x]", "]"));
}

TEST(PolicyGlob, EscapesAreLiteral) {
  EXPECT_TRUE(M("a\\*b", "a*b"));
  EXPECT_FALSE(M("a\\*b", "axb"));
  EXPECT_TRUE(M("a\\?", "a?"));
  EXPECT_FALSE(M("a\\?", "ab"));
  EXPECT_TRUE(M("\\[x]", "[x]"));
  EXPECT_TRUE(M("a\\\\b", "a\\b"));
}

TEST(PolicyGlob, BacktracksAcrossSeveralStars) {
  EXPECT_TRUE(M("a*b*c", "aXXbYYc"));
  EXPECT_TRUE(M("a*b*c", "abbbc"));
  EXPECT_FALSE(M("a*b*c", "aXXbYY"));
  EXPECT_TRUE(M("*.py", "x.tar.py"));
  EXPECT_FALSE(M("*.py", "x.pyc"));
}

TEST(PolicyGlob, PathologicalPatternFinishes) {
  const std::string text(20000, 'a');
  EXPECT_FALSE(M("*a*a*a*a*a*a*a*b", text));
  EXPECT_TRUE(M("*a*a*a*a*a*a*a*", text));
}

TEST(PolicyGlob, InvalidPatternsNameTheColumn) {
  std::string e = CompileError("rm [abc");
  EXPECT_NE(e.find("unclosed '['"), std::string::npos) << e;
  EXPECT_NE(e.find("column 4"), std::string::npos) << e;
  e = CompileError("ab\\");
  EXPECT_NE(e.find("trailing '\\'"), std::string::npos) << e;
  e = CompileError("x[[:alpha:]]");
  EXPECT_NE(e.find("[:alpha:]"), std::string::npos) << e;
  e = CompileError("[z-a]");
  EXPECT_NE(e.find("reversed"), std::string::npos) << e;
  CompileError("[");
  CompileError("[!");
  CompileError("[]");
}

}  // namespace
}  // namespace sbx::policy
