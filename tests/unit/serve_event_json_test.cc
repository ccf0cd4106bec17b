// The JSON text of an event as a WebSocket client gets it: EventToJsonText must mean exactly what
// DumpJson(EventToJson()) means, for log bytes of every kind (quotes, backslashes, every control
// character, multi-byte UTF-8, bytes that are not UTF-8) and for events that carry no log.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "api/testing/test_util.h"
#include "api/v1/event_pump.h"
#include "base/fs.h"
#include "supervisor/workspace/run_logs.h"

namespace sbx::api {
namespace {

class EventJsonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.empty());
    std::filesystem::create_directories(supervisor::RunDir(dir_, "run_x"));
  }

  // A step.log event whose bytes are `bytes`, appended to the run's stdout log.
  store::EventRecord LogEvent(const std::string& bytes) {
    auto log = supervisor::LogAppender::Open(supervisor::RunDir(dir_, "run_x") + "/stdout");
    EXPECT_TRUE(log.ok());
    const int64_t offset = log->offset();
    EXPECT_TRUE(log->Append(bytes).ok());
    store::EventRecord e;
    e.run_id = "run_x";
    e.seq = ++seq_;
    e.cursor = 1000 + seq_;
    e.ts_ms = 1700000000123;
    e.type = store::EventType::kStepLog;
    e.data = {{"step", "main"},
              {"stream", "stdout"},
              {"offset", offset},
              {"length", static_cast<int64_t>(bytes.size())}};
    return e;
  }

  void ExpectSameMeaning(const store::EventRecord& e) {
    std::string text = EventToJsonText(e, dir_);
    auto parsed = nlohmann::json::parse(text, nullptr, false);
    ASSERT_FALSE(parsed.is_discarded()) << text;
    EXPECT_EQ(parsed, EventToJson(e, dir_)) << text;
  }

  sbx::api::testing::TempDir tmp_{"serve_event_json_test"};
  const std::string dir_ = tmp_.path();
  int64_t seq_ = 0;
};

TEST_F(EventJsonTest, LogBytesOfEveryKindMeanTheSame) {
  std::string controls;
  for (int c = 0; c < 0x20; ++c) controls.push_back(static_cast<char>(c));
  for (const std::string& bytes : {
           std::string("plain line\n"),
           std::string("\"quoted\" and \\back\\slashed\\"),
           controls + "\x7f",
           std::string("2 bytes: \xc3\xa9, 3 bytes: \xe2\x82\xac, 4 bytes: \xf0\x9f\x98\x80"),
           std::string("\\u0041 is not an escape here, nor is \\n"),
           std::string(100000, 'x') + "\"" + std::string(100000, '\n'),
       }) {
    SCOPED_TRACE(bytes.substr(0, 40));
    ExpectSameMeaning(LogEvent(bytes));
  }
  // Not UTF-8: data_b64, as EventToJson says.
  store::EventRecord binary =
      LogEvent(std::string("a\xff"
                           "b\x80",
                           4));
  ExpectSameMeaning(binary);
  EXPECT_TRUE(nlohmann::json::parse(EventToJsonText(binary, dir_)).contains("data_b64"));
  // The text escapes what JSON needs and nothing more.
  EXPECT_NE(EventToJsonText(LogEvent("tab\there"), dir_).find(R"("data":"tab\there")"),
            std::string::npos);
  EXPECT_NE(EventToJsonText(LogEvent("\x01\xc3\xa9"), dir_).find("\"data\":\"\\u0001\xc3\xa9\""),
            std::string::npos);
}

TEST_F(EventJsonTest, EventsWithoutLogBytesMeanTheSame) {
  store::EventRecord status;
  status.run_id = "run_x";
  status.seq = 1;
  status.type = store::EventType::kRunStatus;
  status.data = {{"state", "RUNNING"}, {"note", "with \"quotes\"\n"}};
  ExpectSameMeaning(status);
  store::EventRecord carried = LogEvent("x");
  carried.data = {{"step", "main"}, {"stream", "stderr"}, {"data", "carried \"itself\""}};
  ExpectSameMeaning(carried);
  store::EventRecord not_object = status;
  not_object.data = "just a string";
  ExpectSameMeaning(not_object);
  // A log whose file is gone: empty data, as EventToJson gives it.
  store::EventRecord gone = LogEvent("lost");
  std::filesystem::remove(supervisor::RunDir(dir_, "run_x") + "/stdout");
  ExpectSameMeaning(gone);
}

}  // namespace
}  // namespace sbx::api
