// Line diffs in git's unified format, as pure functions of their inputs: no files, no state.
// RunMounts::Diff (supervisor/workspace/workspace.h) walks an overlay upper layer and formats each
// changed file with these.
//
// The output follows `git diff` closely enough for `git apply` and human eyes: `diff --git`
// headers, `new file mode` / `deleted file mode` / `old mode`+`new mode`, `---`/`+++` lines,
// `@@ -l,n +l,n @@` hunks with 3 lines of context (",1" omitted as git does), and
// `\ No newline at end of file`. It leaves out git's `index` lines (no blob hashes here).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sbx::supervisor {

// One edit of a line script: lines of the old text kept, deleted, or lines of the new inserted.
struct LineEdit {
  enum class Kind { kEqual, kDelete, kInsert };
  Kind kind = Kind::kEqual;
  size_t old_line = 0;  // 0-based index into the old lines (kEqual, kDelete)
  size_t new_line = 0;  // 0-based index into the new lines (kEqual, kInsert)
};

// Splits text into lines, each keeping its '\n'; the last one may lack it. "" has no lines.
std::vector<std::string_view> SplitLines(std::string_view text);

constexpr size_t kDefaultMaxEditCost = 2048;

// A shortest edit script from `old_lines` to `new_lines` (Myers, "An O(ND) Difference Algorithm
// and Its Variations", 1986), after stripping the common prefix and suffix. Deterministic.
// When the two differ by more than `max_edit_cost` inserted plus deleted lines, or when `*work`
// (a budget of steps shared by many calls; nullptr: unbounded) runs out, the differing middle is
// reported as deleted then inserted as a whole: still a correct script, not a minimal one. Time
// and memory stay O((N+M) * max_edit_cost) at most whatever the input.
std::vector<LineEdit> DiffLines(const std::vector<std::string_view>& old_lines,
                                const std::vector<std::string_view>& new_lines,
                                size_t max_edit_cost = kDefaultMaxEditCost,
                                uint64_t* work = nullptr);

// The hunks only (from the first "@@" on) for old -> new with `context` lines of context; ""
// when the texts are equal. `work` as for DiffLines.
std::string UnifiedHunks(std::string_view old_text, std::string_view new_text, int context = 3,
                         uint64_t* work = nullptr);

// A complete git-style block for a text file modified in place: "diff --git a/P b/P",
// "--- a/P", "+++ b/P" and the hunks; "" when the texts are equal.
std::string UnifiedDiff(std::string_view path, std::string_view old_text,
                        std::string_view new_text);

// One side of a file diff. `mode` is git's: 0100644, 0100755 or 0120000 (a symlink, whose
// content is its target).
struct DiffSide {
  uint32_t mode = 0100644;
  std::string_view content;
  // Set when the content was too large to load: the file is reported like a binary file.
  bool too_large = false;
};

// A complete git-style block for `path`: a new file (no old side), a deleted file (no new side),
// or a modified one (content and/or mode changed). Content with a NUL byte (on either side) is
// reported as "Binary files … differ". "" when both sides are equal or both absent. `work` as
// for DiffLines.
std::string GitFileDiff(std::string_view path, const std::optional<DiffSide>& old_side,
                        const std::optional<DiffSide>& new_side, uint64_t* work = nullptr);

// git's file mode for a stat(2) st_mode: 0120000 for a symlink, 0100755 when the owner may
// execute, else 0100644.
uint32_t GitMode(uint32_t st_mode);

// True when `content` has a NUL byte (git's rule, applied to the whole content).
bool LooksBinary(std::string_view content);

// "a/" + path as git writes it in headers: quoted with C escapes ("a/x\ty", octal for bytes that
// are not printable ASCII) when the path has a control character, a byte >= 0x80, '"' or '\\'.
std::string QuoteGitPath(std::string_view prefix, std::string_view path);

}  // namespace sbx::supervisor
