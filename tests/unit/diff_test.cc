#include "supervisor/workspace/diff.h"

#include <gtest/gtest.h>

#include <string>

namespace sbx::supervisor {
namespace {

// Applies a unified diff's hunks to `old_text`, checking every context and deleted line, so a
// test can prove that the hunks turn old into new whatever their exact shape.
std::string ApplyHunks(const std::string& old_text, const std::string& hunks) {
  std::vector<std::string_view> old_lines = SplitLines(old_text);
  std::string out;
  size_t pos = 0;  // next old line to copy
  std::vector<std::string_view> lines = SplitLines(hunks);
  bool last_added = false;  // whether the previous hunk line went into `out`
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view l = lines[i];
    if (l.substr(0, 2) == "@@") {
      size_t minus = l.find('-');
      size_t start = std::stoul(std::string(l.substr(minus + 1)));
      size_t comma = l.find(',', minus);
      size_t space = l.find(' ', minus);
      bool empty =
          comma != std::string_view::npos && comma < space && l.substr(comma + 1, 1) == "0";
      size_t first = empty ? start : start - 1;  // 0-based index of the hunk's first old line
      while (pos < first) out += old_lines[pos++];
      continue;
    }
    if (l.substr(0, 1) == "\\") {
      // The line before lacks its newline: drop the one the format added.
      if (last_added && !out.empty() && out.back() == '\n') out.pop_back();
      continue;
    }
    std::string body(l.substr(1));
    // A line followed by "\ No newline" keeps its '\n' here; the marker strips it above.
    if (l[0] == ' ' || l[0] == '-') {
      EXPECT_LT(pos, old_lines.size());
      if (pos >= old_lines.size()) return "<bad>";
      std::string expected(old_lines[pos]);
      if (expected.empty() || expected.back() != '\n') expected += '\n';
      EXPECT_EQ(body, expected) << "at old line " << pos + 1;
      ++pos;
    }
    last_added = l[0] == ' ' || l[0] == '+';
    if (last_added) out += body;
  }
  while (pos < old_lines.size()) out += old_lines[pos++];
  return out;
}

TEST(SplitLines, KeepsNewlinesAndAFinalPartialLine) {
  auto l = SplitLines("a\nb\nc");
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(l[0], "a\n");
  EXPECT_EQ(l[2], "c");
  EXPECT_TRUE(SplitLines("").empty());
  EXPECT_EQ(SplitLines("\n\n").size(), 2u);
}

TEST(DiffLines, FindsAShortestScript) {
  // Myers' paper example: ABCABBA -> CBABAC has an edit distance of 5.
  std::vector<std::string_view> a = {"A", "B", "C", "A", "B", "B", "A"};
  std::vector<std::string_view> b = {"C", "B", "A", "B", "A", "C"};
  auto edits = DiffLines(a, b);
  size_t cost = 0;
  size_t ai = 0, bi = 0;
  for (const auto& e : edits) {
    if (e.kind == LineEdit::Kind::kEqual) {
      EXPECT_EQ(a[e.old_line], b[e.new_line]);
      EXPECT_EQ(e.old_line, ai++);
      EXPECT_EQ(e.new_line, bi++);
    } else if (e.kind == LineEdit::Kind::kDelete) {
      EXPECT_EQ(e.old_line, ai++);
      ++cost;
    } else {
      EXPECT_EQ(e.new_line, bi++);
      ++cost;
    }
  }
  EXPECT_EQ(ai, a.size());
  EXPECT_EQ(bi, b.size());
  EXPECT_EQ(cost, 5u);
}

TEST(DiffLines, OverTheCostLimitStillCorrect) {
  std::vector<std::string> a_s, b_s;
  // Not "a" + std::to_string(i) + "\n": a bogus -Wrestrict from GCC 12 at -O3 (GCC PR 105329).
  auto line = [](char c, int i) {
    return std::string(1, c).append(std::to_string(i)).append("\n");
  };
  for (int i = 0; i < 200; ++i) {
    a_s.push_back(line('a', i));
    b_s.push_back(line('b', i));
  }
  std::vector<std::string_view> a(a_s.begin(), a_s.end()), b(b_s.begin(), b_s.end());
  auto edits = DiffLines(a, b, /*max_edit_cost=*/10);
  size_t dels = 0, ins = 0;
  for (const auto& e : edits) {
    if (e.kind == LineEdit::Kind::kDelete) ++dels;
    if (e.kind == LineEdit::Kind::kInsert) ++ins;
  }
  EXPECT_EQ(dels, 200u);
  EXPECT_EQ(ins, 200u);
}

TEST(DiffLines, AnExhaustedWorkBudgetFallsBackToReplacement) {
  std::vector<std::string_view> a = {"a\n", "b\n", "c\n"};
  std::vector<std::string_view> b = {"b\n", "c\n", "d\n"};
  uint64_t plenty = 1000;
  EXPECT_EQ(DiffLines(a, b, kDefaultMaxEditCost, &plenty).size(), 4u);  // -a, b, c, +d
  EXPECT_LT(plenty, 1000u);
  EXPECT_GT(plenty, 0u);
  uint64_t none = 0;
  auto edits = DiffLines(a, b, kDefaultMaxEditCost, &none);
  ASSERT_EQ(edits.size(), 6u);  // everything deleted, then everything inserted
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(edits[i].kind, LineEdit::Kind::kDelete);
  for (size_t i = 3; i < 6; ++i) EXPECT_EQ(edits[i].kind, LineEdit::Kind::kInsert);
  // Still a correct diff.
  EXPECT_EQ(UnifiedHunks("a\nb\nc\n", "b\nc\nd\n", 3, &none),
            "@@ -1,3 +1,3 @@\n-a\n-b\n-c\n+b\n+c\n+d\n");
}

TEST(UnifiedHunks, EqualTextsGiveNothing) {
  EXPECT_EQ(UnifiedHunks("a\nb\n", "a\nb\n"), "");
  EXPECT_EQ(UnifiedDiff("x", "same", "same"), "");
}

TEST(UnifiedHunks, OneChangedLineWithContext) {
  std::string old_text = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
  std::string new_text = "1\n2\n3\n4\nFIVE\n6\n7\n8\n9\n";
  EXPECT_EQ(UnifiedHunks(old_text, new_text),
            "@@ -2,7 +2,7 @@\n"
            " 2\n 3\n 4\n"
            "-5\n"
            "+FIVE\n"
            " 6\n 7\n 8\n");
}

TEST(UnifiedHunks, DistantChangesMakeTwoHunksCloseOnesMerge) {
  std::string old_text, far_text, near_text;
  for (int i = 1; i <= 20; ++i) old_text += std::to_string(i) + "\n";
  far_text = old_text;
  far_text.replace(far_text.find("2\n"), 2, "two\n");
  far_text.replace(far_text.find("\n19\n") + 1, 3, "nineteen\n");
  EXPECT_EQ(UnifiedHunks(old_text, far_text),
            "@@ -1,5 +1,5 @@\n 1\n-2\n+two\n 3\n 4\n 5\n"
            "@@ -16,5 +16,5 @@\n 16\n 17\n 18\n-19\n+nineteen\n 20\n");
  // Changes 6 equal lines apart (2 * context) share one hunk.
  near_text = old_text;
  near_text.replace(near_text.find("\n3\n") + 1, 2, "three\n");
  near_text.replace(near_text.find("\n10\n") + 1, 3, "ten\n");
  EXPECT_EQ(UnifiedHunks(old_text, near_text),
            "@@ -1,13 +1,13 @@\n 1\n 2\n-3\n+three\n 4\n 5\n 6\n 7\n 8\n 9\n-10\n+ten\n"
            " 11\n 12\n 13\n");
}

TEST(UnifiedHunks, SingleLineRangesOmitTheCount) {
  EXPECT_EQ(UnifiedHunks("a\n", "b\n"), "@@ -1 +1 @@\n-a\n+b\n");
  EXPECT_EQ(UnifiedHunks("", "new\n"), "@@ -0,0 +1 @@\n+new\n");
  EXPECT_EQ(UnifiedHunks("x\ny\n", ""), "@@ -1,2 +0,0 @@\n-x\n-y\n");
}

TEST(UnifiedHunks, MissingFinalNewlineIsMarked) {
  EXPECT_EQ(UnifiedHunks("a\nb", "a\nb\n"),
            "@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n");
  EXPECT_EQ(UnifiedHunks("a\n", "a\nb"), "@@ -1 +1,2 @@\n a\n+b\n\\ No newline at end of file\n");
}

TEST(UnifiedHunks, ApplyingTheHunksGivesTheNewText) {
  const std::string cases[][2] = {
      {"", "x\n"},
      {"x\n", ""},
      {"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\n", "a\nB\nc\nd\ne\nf\ng\nh\nI\nj\nk\nl\n"},
      {"a\nb\nc", "a\nc"},
      {"keep\n", "keep"},
      {"1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n",
       "0\n1\n2\n4\n5\n6\n7\n8\n9\nX\n10\n11\n12\n13\n15\n16\n"},
  };
  for (const auto& c : cases) {
    std::string hunks = UnifiedHunks(c[0], c[1]);
    EXPECT_EQ(ApplyHunks(c[0], hunks), c[1]) << hunks;
  }
}

TEST(UnifiedDiff, HasGitHeaders) {
  EXPECT_EQ(UnifiedDiff("src/a.txt", "old\n", "new\n"),
            "diff --git a/src/a.txt b/src/a.txt\n"
            "--- a/src/a.txt\n"
            "+++ b/src/a.txt\n"
            "@@ -1 +1 @@\n-old\n+new\n");
}

TEST(GitFileDiff, NewDeletedEmptyAndModeChanges) {
  EXPECT_EQ(GitFileDiff("n.txt", std::nullopt, DiffSide{0100644, "hi\n"}),
            "diff --git a/n.txt b/n.txt\nnew file mode 100644\n--- /dev/null\n+++ b/n.txt\n"
            "@@ -0,0 +1 @@\n+hi\n");
  EXPECT_EQ(GitFileDiff("d.txt", DiffSide{0100755, "x\ny\n"}, std::nullopt),
            "diff --git a/d.txt b/d.txt\ndeleted file mode 100755\n--- a/d.txt\n+++ /dev/null\n"
            "@@ -1,2 +0,0 @@\n-x\n-y\n");
  EXPECT_EQ(GitFileDiff("e", std::nullopt, DiffSide{0100644, ""}),
            "diff --git a/e b/e\nnew file mode 100644\n");
  EXPECT_EQ(GitFileDiff("m", DiffSide{0100644, "s\n"}, DiffSide{0100755, "s\n"}),
            "diff --git a/m b/m\nold mode 100644\nnew mode 100755\n");
  EXPECT_EQ(GitFileDiff("same", DiffSide{0100644, "s\n"}, DiffSide{0100644, "s\n"}), "");
  EXPECT_EQ(GitFileDiff("none", std::nullopt, std::nullopt), "");
}

TEST(GitFileDiff, BinaryFiles) {
  std::string bin("a\0b", 3);
  EXPECT_EQ(GitFileDiff("b.bin", DiffSide{0100644, "text\n"}, DiffSide{0100644, bin}),
            "diff --git a/b.bin b/b.bin\nBinary files a/b.bin and b/b.bin differ\n");
  EXPECT_EQ(GitFileDiff("b.bin", std::nullopt, DiffSide{0100644, bin}),
            "diff --git a/b.bin b/b.bin\nnew file mode 100644\n"
            "Binary files /dev/null and b/b.bin differ\n");
  EXPECT_EQ(GitFileDiff("b.bin", DiffSide{0100644, bin}, std::nullopt),
            "diff --git a/b.bin b/b.bin\ndeleted file mode 100644\n"
            "Binary files a/b.bin and /dev/null differ\n");
  DiffSide large{0100644, "", true};
  EXPECT_EQ(GitFileDiff("big", DiffSide{0100644, "x\n"}, large),
            "diff --git a/big b/big\nBinary files a/big and b/big differ\n");
}

TEST(GitFileDiff, SymlinkToFileIsDeleteThenAdd) {
  std::string d = GitFileDiff("l", DiffSide{0120000, "target"}, DiffSide{0100644, "text\n"});
  EXPECT_EQ(d,
            "diff --git a/l b/l\ndeleted file mode 120000\n--- a/l\n+++ /dev/null\n"
            "@@ -1 +0,0 @@\n-target\n\\ No newline at end of file\n"
            "diff --git a/l b/l\nnew file mode 100644\n--- /dev/null\n+++ b/l\n"
            "@@ -0,0 +1 @@\n+text\n");
}

TEST(QuoteGitPath, QuotesLikeGit) {
  EXPECT_EQ(QuoteGitPath("a/", "plain/name.txt"), "a/plain/name.txt");
  EXPECT_EQ(QuoteGitPath("a/", "tab\there"), "\"a/tab\\there\"");
  EXPECT_EQ(QuoteGitPath("b/", "q\"b\\"), "\"b/q\\\"b\\\\\"");
  EXPECT_EQ(QuoteGitPath("a/", "caf\xc3\xa9"), "\"a/caf\\303\\251\"");
  EXPECT_EQ(QuoteGitPath("a/", "nl\nx"), "\"a/nl\\nx\"");
}

TEST(GitMode, FromStatModes) {
  EXPECT_EQ(GitMode(0100644), 0100644u);
  EXPECT_EQ(GitMode(0100700), 0100755u);
  EXPECT_EQ(GitMode(0100604), 0100644u);
  EXPECT_EQ(GitMode(0120777), 0120000u);
}

}  // namespace
}  // namespace sbx::supervisor
