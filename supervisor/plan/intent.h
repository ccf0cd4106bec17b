// From an operator's free-text intent ("run the tests and give me a report", "运行测试并生成报告")
// to the goals the built-in planner knows: "test", "lint", "build", "typecheck", "report".
//
// How the text is read (deterministic, no model, no network):
// - English is split into lowercased words (a hyphen separates words, so "type-check" is
//   "type check"); Chinese is matched against a small lexicon, longest entry first.
// - Goal words. test: test(s)/testing/pytest/ctest, "check (that) it works", 测试 (运行测试,
//   跑测试). lint: lint/linter/linting/style/ruff/flake8/clippy/eslint/vet, "static analysis",
//   代码检查/静态检查/代码风格. build: build/compile/compilation, 构建/编译. typecheck:
//   typecheck, "type check(ing)", types/typing/mypy/tsc, 类型检查. report: report/summary/
//   summarize, 报告/生成报告/总结/汇总.
// - Negation: don't/dont/not/no/nor/never/without/skip/except/excluding, "instead of",
//   "rather than", "other than", 不要/别/不用/不需要/无需/不必/跳过/不, negate every goal word
//   after them up to the end of the clause (, . ; : ! ? and their full-width forms, a new line,
//   or but/just/only/then/instead/rather/however/also, 只/仅/但/然后/而是/就). A negated goal is
//   never planned, even when named again elsewhere: "don't run the tests, just build" plans the
//   build only. This errs towards planning less: "make sure it does not break and test" plans
//   nothing for the tests, and says so.
// - Refusal: an intent that contains an action word outside the planner's reach (deploy, push,
//   publish, release, delete, remove, rm, drop, destroy, wipe, erase, uninstall, upload, 部署,
//   发布, 推送, 删除, 删掉, 清空, 清除, 上传, 卸载, 销毁) is refused whole, negated or not, even
//   when it also names a goal: the built-in planner only plans tests, lint, build, typecheck and a
//   report, and does not guess which part of a mixed request the operator meant.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace sbx::supervisor::plan {

// The most bytes of intent text accepted.
inline constexpr size_t kMaxIntentBytes = 4096;

struct Intent {
  // The goals asked for and not negated, in the fixed order test, lint, build, typecheck,
  // report.
  std::vector<std::string> goals;
  // The goals named after a negation, in the same order; never planned.
  std::vector<std::string> declined;
};

// Errors: kInvalidArgument for an empty (or blank) text, one over kMaxIntentBytes, one that is
// not valid UTF-8 or contains a NUL or another control character than tab, CR and LF.
// kNotFound, with a message starting "no plan for this intent: ", when the text contains a
// refused action word (named in the message), names no goal, names only negated goals, or asks
// only for a report (nothing to run).
Result<Intent> ParseIntent(std::string_view text);

}  // namespace sbx::supervisor::plan
