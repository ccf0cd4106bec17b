#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "supervisor/policy/shell_words.h"

namespace sbx::policy {
namespace {

using Words = std::vector<std::string>;

ShellParse Split(std::string_view line) {
  auto p = SplitShell(line);
  EXPECT_TRUE(p.ok()) << line << ": " << p.error().ToString();
  return p.ok() ? std::move(*p) : ShellParse{};
}

// The words of a line that must be one plain command needing no shell.
Words Plain(std::string_view line) {
  ShellParse p = Split(line);
  EXPECT_FALSE(p.NeedsShell()) << line << " needs: " << p.shell_features.front();
  EXPECT_EQ(p.commands.size(), 1u) << line;
  return p.commands.empty() ? Words{} : p.commands[0].words;
}

bool HasFeature(const ShellParse& p, std::string_view prefix) {
  return std::any_of(p.shell_features.begin(), p.shell_features.end(),
                     [&](const std::string& f) { return f.starts_with(prefix); });
}

std::string SplitError(std::string_view line) {
  auto p = SplitShell(line);
  EXPECT_FALSE(p.ok()) << line << " was accepted";
  return p.ok() ? "" : p.error().message;
}

TEST(PolicyShellWords, BlanksSeparateWords) {
  EXPECT_EQ(Plain("git   status\t--short"), (Words{"git", "status", "--short"}));
  EXPECT_EQ(Plain("  ls  "), (Words{"ls"}));
}

TEST(PolicyShellWords, DoubleQuotesGroupAndKeepOnlyFourEscapes) {
  EXPECT_EQ(Plain("git commit -m \"fix the build\""),
            (Words{"git", "commit", "-m", "fix the build"}));
  EXPECT_EQ(Plain(R"(echo "a\"b\\c\$d\n")"), (Words{"echo", R"(a"b\c$d\n)"}));
}

TEST(PolicyShellWords, SingleQuotesKeepEverything) {
  EXPECT_EQ(Plain(R"(echo 'a $HOME `x` \ "q" ;|&')"), (Words{"echo", R"(a $HOME `x` \ "q" ;|&)"}));
}

TEST(PolicyShellWords, BackslashEscapesOneCharacter) {
  EXPECT_EQ(Plain(R"(echo a\ b \$HOME \; \|)"), (Words{"echo", "a b", "$HOME", ";", "|"}));
  EXPECT_EQ(Plain("echo a\\\nb"), (Words{"echo", "ab"}));  // line continuation
}

TEST(PolicyShellWords, AdjacentQuotedPartsMakeOneWord) {
  EXPECT_EQ(Plain(R"(r''m -r""f '/')"), (Words{"rm", "-rf", "/"}));
  EXPECT_EQ(Plain(R"(\rm "-"rf /)"), (Words{"rm", "-rf", "/"}));
  EXPECT_EQ(Plain(R"(echo "")"), (Words{"echo", ""}));
}

TEST(PolicyShellWords, ControlOperatorsSplitCommandsAndNeedAShell) {
  ShellParse p = Split("ls; rm -rf / && echo ok || true | cat &");
  ASSERT_EQ(p.commands.size(), 5u);
  EXPECT_EQ(p.commands[1].words, (Words{"rm", "-rf", "/"}));
  EXPECT_EQ(p.commands[4].words, (Words{"cat"}));
  for (std::string_view f : {"';'", "'&&'", "'||'", "'|'", "'&'"}) {
    EXPECT_TRUE(HasFeature(p, f)) << f;
  }
  // Operators need no blanks around them.
  p = Split("ls;pwd&&id");
  ASSERT_EQ(p.commands.size(), 3u);
  EXPECT_EQ(p.commands[2].words, (Words{"id"}));
}

TEST(PolicyShellWords, PipelinesShareANumber) {
  ShellParse p = Split("curl x | sudo sh; ls");
  ASSERT_EQ(p.commands.size(), 3u);
  EXPECT_EQ(p.commands[0].pipeline, p.commands[1].pipeline);
  EXPECT_NE(p.commands[1].pipeline, p.commands[2].pipeline);
}

TEST(PolicyShellWords, Redirections) {
  ShellParse p = Split("cmd a > out 2>&1 < in >> log");
  ASSERT_EQ(p.commands.size(), 1u);
  EXPECT_EQ(p.commands[0].words, (Words{"cmd", "a"}));
  ASSERT_EQ(p.commands[0].redirections.size(), 4u);
  EXPECT_EQ(p.commands[0].redirections[0].op, ">");
  EXPECT_EQ(p.commands[0].redirections[0].target, "out");
  EXPECT_EQ(p.commands[0].redirections[1].op, "2>&");
  EXPECT_EQ(p.commands[0].redirections[1].target, "1");
  EXPECT_EQ(p.commands[0].redirections[3].op, ">>");
  EXPECT_TRUE(HasFeature(p, "redirection '2>&1'"));
  // A number is a descriptor only right before the operator.
  p = Split("echo 2 > f");
  EXPECT_EQ(p.commands[0].words, (Words{"echo", "2"}));
  EXPECT_EQ(p.commands[0].redirections[0].op, ">");
}

TEST(PolicyShellWords, SubstitutionsAreParsedAndLinkedToTheirCommand) {
  ShellParse p = Split("echo $(rm -rf $(echo /)) `whoami`");
  ASSERT_EQ(p.commands.size(), 4u);
  // Innermost first: echo / (depth 2), rm (depth 1), whoami (depth 1), then the outer echo.
  EXPECT_EQ(p.commands[0].words, (Words{"echo", "/"}));
  EXPECT_EQ(p.commands[0].depth, 2);
  EXPECT_EQ(p.commands[1].words, (Words{"rm", "-rf", "$(echo /)"}));
  EXPECT_EQ(p.commands[1].depth, 1);
  EXPECT_EQ(p.commands[0].parent, 1);
  EXPECT_EQ(p.commands[2].words, (Words{"whoami"}));
  EXPECT_EQ(p.commands[3].words, (Words{"echo", "$(rm -rf $(echo /))", "`whoami`"}));
  EXPECT_EQ(p.commands[3].depth, 0);
  EXPECT_EQ(p.commands[1].parent, 3);
  EXPECT_EQ(p.commands[2].parent, 3);
  EXPECT_TRUE(HasFeature(p, "command substitution"));
  // Inside double quotes too, and a ')' in a quoted string does not end it.
  p = Split(R"x(echo "$(printf ')')")x");
  ASSERT_EQ(p.commands.size(), 2u);
  EXPECT_EQ(p.commands[0].words, (Words{"printf", ")"}));
  // Process substitution.
  p = Split("bash <(curl -s x)");
  ASSERT_EQ(p.commands.size(), 2u);
  EXPECT_EQ(p.commands[0].words, (Words{"curl", "-s", "x"}));
  EXPECT_EQ(p.commands[0].parent, 1);
  EXPECT_TRUE(HasFeature(p, "process substitution"));
}

TEST(PolicyShellWords, ExpansionsStayUnexpanded) {
  ShellParse p = Split("echo $HOME ${X:-y} $1 $((1+2))");
  EXPECT_EQ(p.commands[0].words, (Words{"echo", "$HOME", "${X:-y}", "$1", "$((1+2))"}));
  EXPECT_TRUE(HasFeature(p, "variable expansion"));
  EXPECT_TRUE(HasFeature(p, "arithmetic expansion"));
  // ${…} may hold a command substitution; it is found.
  p = Split("echo ${X:-$(rm -rf /)}");
  ASSERT_EQ(p.commands.size(), 2u);
  EXPECT_EQ(p.commands[0].words, (Words{"rm", "-rf", "/"}));
  // A lone $ is itself.
  EXPECT_EQ(Plain("echo $ a$"), (Words{"echo", "$", "a$"}));
}

TEST(PolicyShellWords, AnsiCQuotingIsDecoded) {
  ShellParse p = Split(R"(rm -rf $'\x2f' $'a\tb\'')");
  EXPECT_EQ(p.commands[0].words, (Words{"rm", "-rf", "/", "a\tb'"}));
  EXPECT_TRUE(HasFeature(p, "ANSI-C quoting"));
}

TEST(PolicyShellWords, GlobsTildesAndBracesNeedAShellOnlyUnquoted) {
  EXPECT_TRUE(HasFeature(Split("ls *.py"), "filename expansion"));
  EXPECT_TRUE(HasFeature(Split("ls file?.txt"), "filename expansion"));
  EXPECT_TRUE(HasFeature(Split("ls [ab].txt"), "filename expansion"));
  EXPECT_EQ(Plain("ls '*.py' \"?\" \\*"), (Words{"ls", "*.py", "?", "*"}));
  EXPECT_EQ(Plain("[ -f x ]"), (Words{"[", "-f", "x", "]"}));
  EXPECT_TRUE(HasFeature(Split("ls ~"), "tilde expansion"));
  EXPECT_TRUE(HasFeature(Split("ls ~/src"), "tilde expansion"));
  EXPECT_EQ(Plain("git log HEAD~1 a~b"), (Words{"git", "log", "HEAD~1", "a~b"}));
  EXPECT_TRUE(HasFeature(Split("cp a.{c,h} x"), "brace expansion"));
  EXPECT_EQ(Plain("echo {} {x}"), (Words{"echo", "{}", "{x}"}));
}

TEST(PolicyShellWords, AssignmentsOnlyBeforeTheCommand) {
  ShellParse p = Split("FOO=1 BAR=2 make");
  EXPECT_TRUE(HasFeature(p, "variable assignment"));
  EXPECT_EQ(p.commands[0].words, (Words{"FOO=1", "BAR=2", "make"}));
  EXPECT_EQ(Plain("make CC=gcc"), (Words{"make", "CC=gcc"}));
  EXPECT_EQ(Plain("\"FOO=1\" x"), (Words{"FOO=1", "x"}));  // quoted: a program named FOO=1
}

TEST(PolicyShellWords, CommentsNewlinesSubshellsAndCompoundCommands) {
  ShellParse p = Split("ls # rm -rf /");
  EXPECT_EQ(p.commands.size(), 1u);
  EXPECT_TRUE(HasFeature(p, "comment"));
  EXPECT_EQ(Plain("echo a#b"), (Words{"echo", "a#b"}));

  EXPECT_EQ(Plain("ls\n"), (Words{"ls"}));
  p = Split("ls\nrm x");
  EXPECT_EQ(p.commands.size(), 2u);
  EXPECT_TRUE(HasFeature(p, "newline"));

  p = Split("(cd x && make) || { echo failed; exit 1; }");
  ASSERT_EQ(p.commands.size(), 4u);
  EXPECT_EQ(p.commands[0].words, (Words{"cd", "x"}));
  EXPECT_EQ(p.commands[3].words, (Words{"exit", "1"}));
  EXPECT_TRUE(HasFeature(p, "subshell"));
  EXPECT_TRUE(HasFeature(p, "command group"));

  p = Split("if test -f x; then rm -rf /; else echo no; fi");
  ASSERT_EQ(p.commands.size(), 3u);
  EXPECT_EQ(p.commands[1].words, (Words{"rm", "-rf", "/"}));
  EXPECT_TRUE(HasFeature(p, "compound command"));

  p = Split("for f in a $(ls); do echo $f; done");
  ASSERT_EQ(p.commands.size(), 2u);  // ls (in the header's substitution) and echo
  EXPECT_EQ(p.commands[0].words, (Words{"ls"}));
  EXPECT_EQ(p.commands[1].words, (Words{"echo", "$f"}));
}

TEST(PolicyShellWords, FunctionDefinitionsRecordTheirBody) {
  ShellParse p = Split(":(){ :|:& };:");
  ASSERT_EQ(p.functions.size(), 1u);
  EXPECT_EQ(p.functions[0].name, ":");
  EXPECT_EQ(p.functions[0].first_command, 0u);
  EXPECT_EQ(p.functions[0].end_command, 2u);
  ASSERT_EQ(p.commands.size(), 3u);
  EXPECT_EQ(p.commands[2].words, (Words{":"}));
  EXPECT_TRUE(HasFeature(p, "function definition"));
}

TEST(PolicyShellWords, HereDocuments) {
  ShellParse p = Split("cat <<'EOF'\n$(rm -rf /)\nEOF\necho done");
  ASSERT_EQ(p.commands.size(), 2u);
  EXPECT_EQ(p.commands[0].redirections[0].op, "<<");
  EXPECT_EQ(p.commands[0].redirections[0].target, "EOF");
  EXPECT_EQ(p.commands[1].words, (Words{"echo", "done"}));
  EXPECT_NE(SplitError("cat <<EOF\n$(rm -rf /)\nEOF").find("here-document"), std::string::npos);
}

TEST(PolicyShellWords, MalformedLinesAreRefused) {
  EXPECT_NE(SplitError("echo 'oops").find("unterminated '"), std::string::npos);
  EXPECT_NE(SplitError("echo \"oops").find("unterminated \""), std::string::npos);
  EXPECT_NE(SplitError("echo $(ls").find("unterminated $("), std::string::npos);
  EXPECT_NE(SplitError("echo `ls").find("unterminated `"), std::string::npos);
  EXPECT_NE(SplitError("echo ${X").find("unterminated ${"), std::string::npos);
  EXPECT_NE(SplitError("echo \\").find("trailing '\\'"), std::string::npos);
  EXPECT_NE(SplitError("ls |").find("nothing after '|'"), std::string::npos);
  EXPECT_NE(SplitError("ls &&").find("nothing after '&&'"), std::string::npos);
  EXPECT_NE(SplitError("| ls").find("nothing before '|'"), std::string::npos);
  EXPECT_NE(SplitError("(ls").find("unclosed '('"), std::string::npos);
  EXPECT_NE(SplitError("ls )").find("unbalanced ')'"), std::string::npos);
  EXPECT_NE(SplitError("{ ls; ").find("unclosed '{'"), std::string::npos);
  EXPECT_NE(SplitError("ls >").find("without a target"), std::string::npos);
  EXPECT_NE(SplitError("case $x in a) ls;; esac").find("'case' is not supported"),
            std::string::npos);
  std::string deep = "echo ";
  for (int i = 0; i < 20; ++i) deep += "$(echo ";
  deep += std::string(20, ')');
  EXPECT_NE(SplitError(deep).find("nested too deep"), std::string::npos);
}

TEST(PolicyShellWords, EmptyLineHasNoCommands) {
  EXPECT_TRUE(Split("").commands.empty());
  EXPECT_TRUE(Split("   \t ").commands.empty());
}

TEST(PolicyShellWords, JoinWordsQuotesWhatAShellWouldSplit) {
  EXPECT_EQ(JoinWords({"git", "commit", "-m", "fix the build"}), "git commit -m 'fix the build'");
  EXPECT_EQ(JoinWords({"ls", "-la"}), "ls -la");
  EXPECT_EQ(JoinWords({"a", "b", "c"}, 1), "b c");
  EXPECT_EQ(QuoteWord(""), "''");
  EXPECT_EQ(QuoteWord("it's"), "'it'\\''s'");
  EXPECT_EQ(QuoteWord("a;b"), "'a;b'");
  EXPECT_EQ(QuoteWord("$HOME"), "'$HOME'");
  EXPECT_EQ(QuoteWord("/usr/bin/git"), "/usr/bin/git");
  // A word starting with '#' would read back as a comment (found by fuzzing); inside, it is
  // an ordinary character.
  EXPECT_EQ(QuoteWord("#s"), "'#s'");
  EXPECT_EQ(QuoteWord("a#b"), "a#b");
  // So would a reserved word in command position: 'do' as a program's name.
  EXPECT_EQ(QuoteWord("do"), "'do'");
  EXPECT_EQ(QuoteWord("done!"), "done!");
  EXPECT_EQ(JoinWords({"echo", "do", "{}", "!"}), "echo do {} !");
  auto program = SplitShell(JoinWords({"do", "x"}));
  ASSERT_TRUE(program.ok());
  ASSERT_EQ(program->commands.size(), 1u);
  EXPECT_EQ(program->commands[0].words, (std::vector<std::string>{"do", "x"}));
  auto back = SplitShell(JoinWords({"echo", "#s", "x"}));
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->commands.size(), 1u);
  EXPECT_EQ(back->commands[0].words, (std::vector<std::string>{"echo", "#s", "x"}));
  // What JoinWords writes reads back as the same words.
  const Words tricky = {"echo", "a b", "it's", "\"q\"", "x\\y", "$(no)", "", "tab\there"};
  EXPECT_EQ(Split(JoinWords(tricky)).commands[0].words, tricky);
}

}  // namespace
}  // namespace sbx::policy
