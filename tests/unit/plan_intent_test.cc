// ParseIntent: English and Chinese goal words, negation, refused actions, invalid input.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "supervisor/plan/intent.h"

namespace sbx::supervisor::plan {
namespace {

using Goals = std::vector<std::string>;

Goals GoalsOf(std::string_view text) {
  auto r = ParseIntent(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.error().ToString();
  return r.ok() ? r->goals : Goals{"<error>"};
}

Goals DeclinedOf(std::string_view text) {
  auto r = ParseIntent(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.error().ToString();
  return r.ok() ? r->declined : Goals{"<error>"};
}

Error ErrorOf(std::string_view text) {
  auto r = ParseIntent(text);
  EXPECT_FALSE(r.ok()) << text << " was understood";
  return r.ok() ? Error{} : r.error();
}

TEST(PlanIntent, EnglishGoals) {
  EXPECT_EQ(GoalsOf("run the tests and give me a report"), (Goals{"test", "report"}));
  EXPECT_EQ(GoalsOf("Run the TESTS"), (Goals{"test"}));
  EXPECT_EQ(GoalsOf("check that it works"), (Goals{"test"}));
  EXPECT_EQ(GoalsOf("make sure everything still works"), (Goals{"test"}));
  EXPECT_EQ(GoalsOf("lint the code"), (Goals{"lint"}));
  EXPECT_EQ(GoalsOf("check the code style"), (Goals{"lint"}));
  EXPECT_EQ(GoalsOf("compile it"), (Goals{"build"}));
  EXPECT_EQ(GoalsOf("type-check"), (Goals{"typecheck"}));
  EXPECT_EQ(GoalsOf("type check please"), (Goals{"typecheck"}));
  EXPECT_EQ(GoalsOf("check the types"), (Goals{"typecheck"}));
  EXPECT_EQ(GoalsOf("summary of a build and the tests"), (Goals{"test", "build", "report"}));
  // The order is fixed, whatever the text's order.
  EXPECT_EQ(GoalsOf("typecheck, build, lint, test"), (Goals{"test", "lint", "build", "typecheck"}));
}

TEST(PlanIntent, ChineseGoals) {
  EXPECT_EQ(GoalsOf("运行测试并生成报告"), (Goals{"test", "report"}));
  EXPECT_EQ(GoalsOf("跑测试"), (Goals{"test"}));
  EXPECT_EQ(GoalsOf("做一下代码检查"), (Goals{"lint"}));
  EXPECT_EQ(GoalsOf("静态检查"), (Goals{"lint"}));
  EXPECT_EQ(GoalsOf("构建项目"), (Goals{"build"}));
  EXPECT_EQ(GoalsOf("编译"), (Goals{"build"}));
  EXPECT_EQ(GoalsOf("类型检查"), (Goals{"typecheck"}));
  EXPECT_EQ(GoalsOf("测试，然后总结"), (Goals{"test", "report"}));
  EXPECT_EQ(GoalsOf("运行lint和测试"), (Goals{"test", "lint"}));
}

TEST(PlanIntent, EnglishNegation) {
  EXPECT_EQ(GoalsOf("don't run the tests, just build"), (Goals{"build"}));
  EXPECT_EQ(DeclinedOf("don't run the tests, just build"), (Goals{"test"}));
  EXPECT_EQ(GoalsOf("do not lint; run the tests"), (Goals{"test"}));
  EXPECT_EQ(GoalsOf("build it but no tests"), (Goals{"build"}));
  EXPECT_EQ(GoalsOf("build without tests"), (Goals{"build"}));
  EXPECT_EQ(GoalsOf("don\u2019t lint. Test."), (Goals{"test"}));
  EXPECT_EQ(GoalsOf("run the tests and lint but not the build"), (Goals{"test", "lint"}));
  EXPECT_EQ(GoalsOf("run the tests instead of building"), (Goals{"test"}));
  EXPECT_EQ(GoalsOf("lint rather than test"), (Goals{"lint"}));
  // A negated goal is never planned, even when named again.
  EXPECT_EQ(GoalsOf("run the tests. Actually, don't run the tests, build"), (Goals{"build"}));
  // Negation reaches to the end of the clause, "and" included.
  EXPECT_EQ(GoalsOf("skip lint and typecheck, test"), (Goals{"test"}));
  EXPECT_EQ(DeclinedOf("skip lint and typecheck, test"), (Goals{"lint", "typecheck"}));
}

TEST(PlanIntent, ChineseNegation) {
  EXPECT_EQ(GoalsOf("不要运行测试，只构建"), (Goals{"build"}));
  EXPECT_EQ(DeclinedOf("不要运行测试，只构建"), (Goals{"test"}));
  EXPECT_EQ(GoalsOf("别做代码检查，运行测试"), (Goals{"test"}));
  EXPECT_EQ(GoalsOf("不用编译，跑测试"), (Goals{"test"}));
  // Words that contain 不 or 别 without negating.
  EXPECT_EQ(GoalsOf("对不同的模块运行测试"), (Goals{"test"}));
  EXPECT_EQ(GoalsOf("特别是测试"), (Goals{"test"}));
  EXPECT_EQ(GoalsOf("看看是不是能通过测试"), (Goals{"test"}));
}

TEST(PlanIntent, EverythingNegatedIsNotFound) {
  Error e = ErrorOf("don't run the tests");
  EXPECT_EQ(e.code, ErrorCode::kNotFound);
  EXPECT_NE(e.message.find("negated"), std::string::npos) << e.message;
  EXPECT_EQ(ErrorOf("不要测试").code, ErrorCode::kNotFound);
}

TEST(PlanIntent, RefusedActionsAreNotFound) {
  for (std::string_view text :
       {"deploy to production", "run the tests and push", "delete everything", "rm -rf the build",
        "publish a release", "don't deploy, just test", "删除所有文件", "运行测试然后部署",
        "发布到生产环境", "推送代码"}) {
    Error e = ErrorOf(text);
    EXPECT_EQ(e.code, ErrorCode::kNotFound) << text;
    EXPECT_TRUE(e.message.starts_with("no plan for this intent: ")) << e.message;
    EXPECT_NE(e.message.find("only plans tests, lint, build, typecheck"), std::string::npos)
        << e.message;
  }
  EXPECT_NE(ErrorOf("deploy to production").message.find("'deploy'"), std::string::npos);
  EXPECT_NE(ErrorOf("删除所有文件").message.find("'删除'"), std::string::npos);
}

TEST(PlanIntent, UnrecognisedIsNotFound) {
  for (std::string_view text : {"写一首诗", "make me a sandwich", "hello", "check"}) {
    Error e = ErrorOf(text);
    EXPECT_EQ(e.code, ErrorCode::kNotFound) << text;
    EXPECT_NE(e.message.find("no goal recognised"), std::string::npos) << e.message;
  }
  // The text is quoted, cut at a character boundary.
  std::string long_text(50, 'x');
  for (int i = 0; i < 60; ++i) long_text += "诗";
  Error e = ErrorOf(long_text);
  EXPECT_NE(e.message.find("…"), std::string::npos);
}

TEST(PlanIntent, ReportAloneIsNotFound) {
  Error e = ErrorOf("give me a report");
  EXPECT_EQ(e.code, ErrorCode::kNotFound);
  EXPECT_NE(e.message.find("report alone"), std::string::npos) << e.message;
  EXPECT_EQ(ErrorOf("生成报告").code, ErrorCode::kNotFound);
}

TEST(PlanIntent, InvalidInput) {
  EXPECT_EQ(ErrorOf("").code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ErrorOf("   \n\t ").code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ErrorOf(" ,.;").code, ErrorCode::kInvalidArgument);
  std::string big = "run the tests " + std::string(5000 - 14, ' ');
  ASSERT_EQ(big.size(), 5000u);
  Error e = ErrorOf(big);
  EXPECT_EQ(e.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(e.message.find("4096"), std::string::npos);
  EXPECT_EQ(ErrorOf("run the tests \xff").code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ErrorOf("run the tests \xc0\xaf").code, ErrorCode::kInvalidArgument);      // overlong
  EXPECT_EQ(ErrorOf("run the tests \xed\xa0\x80").code, ErrorCode::kInvalidArgument);  // surrogate
  EXPECT_EQ(ErrorOf("\xe6\xb5").code, ErrorCode::kInvalidArgument);  // a cut character
  EXPECT_EQ(ErrorOf(std::string("run the tests\0", 14)).code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ErrorOf("run the tests\x1b[31m").code, ErrorCode::kInvalidArgument);
  // Exactly at the limit is fine.
  std::string at_limit = "test" + std::string(kMaxIntentBytes - 4, ' ');
  EXPECT_EQ(GoalsOf(at_limit), (Goals{"test"}));
}

TEST(PlanIntent, WordsAreWholeWords) {
  // "latest", "contest", "rebuilding" are not goal words; "rm" inside "form" is not refused.
  Error e = ErrorOf("fill in the form with the latest contest");
  EXPECT_NE(e.message.find("no goal recognised"), std::string::npos) << e.message;
}

}  // namespace
}  // namespace sbx::supervisor::plan
