// The runner link's wire formats: file chunks (a header and bytes, any bytes) with names that
// cannot leave the run's directory, and the JSON of a commit's writes and of a whole run record,
// which must come back exactly as they went.
#include <gtest/gtest.h>

#include "supervisor/runner/protocol.h"
#include "supervisor/store/wire_json.h"

namespace sbx::supervisor::runner {
namespace {

TEST(RunnerProtocol, AFileChunkCarriesAnyBytes) {
  const std::string bytes("a\0b\xff\n", 5);
  const std::string m = EncodeFileChunk("run_abc", "artifacts/out/x.bin", 123456789012, bytes);
  auto c = DecodeFileChunk(m);
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_EQ(c->run_id, "run_abc");
  EXPECT_EQ(c->file, "artifacts/out/x.bin");
  EXPECT_EQ(c->offset, 123456789012u);
  EXPECT_EQ(c->bytes, bytes);
}

TEST(RunnerProtocol, AChunkNamingAFileOutsideTheRunIsRefused) {
  for (const char* bad : {"../x", "artifacts/../../etc/passwd", "/etc/passwd", "artifacts/",
                          "artifacts//x", "artifacts/.hidden", "artifacts/a/../b", "stdin",
                          "runner.db", "", "stdout/x"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(CheckRunFileName(bad).ok());
    EXPECT_FALSE(DecodeFileChunk(EncodeFileChunk("run_abc", bad, 0, "x")).ok());
  }
  for (const char* good : {"stdout", "stderr", "artifacts.json", "artifacts/report.md",
                           "artifacts/a/b/c.txt"}) {
    EXPECT_TRUE(CheckRunFileName(good).ok()) << good;
  }
  EXPECT_FALSE(DecodeFileChunk(EncodeFileChunk("../run", "stdout", 0, "x")).ok());
  EXPECT_FALSE(DecodeFileChunk(EncodeFileChunk("", "stdout", 0, "x")).ok());
}

TEST(RunnerProtocol, AMalformedChunkIsRefused) {
  EXPECT_FALSE(DecodeFileChunk("").ok());
  EXPECT_FALSE(DecodeFileChunk(std::string("\0\0\0\x50{}", 6)).ok());  // header past the end
  EXPECT_FALSE(DecodeFileChunk(std::string("\0\0\0\x02{}", 6)).ok());  // no fields
  EXPECT_FALSE(DecodeFileChunk(std::string("\0\0\0\x03[1]", 7)).ok());
}

TEST(RunnerProtocol, WritesComeBackAsTheyWent) {
  store::RunResult result;
  result.reason = {store::EndCode::kExited, ""};
  result.exit_code = 3;
  result.backend = "native";
  result.steps.push_back({.name = "main", .reason = {store::EndCode::kExited, ""}, .exit_code = 3});
  result.timeline.push_back({"steps", 1234});
  result.seccomp_denials.push_back({"ptrace", 2});
  result.isolation = {{"user", true}};
  store::RunUpdate update;
  update.result = result;
  update.node = "edge1";
  std::vector<store::Write> writes = {
      store::TransitionWrite{.run_id = "run_a",
                             .from = {store::RunState::kRunning},
                             .to = store::RunState::kFailed,
                             .update = update,
                             .if_attempt = 2},
      store::EventWrite{"run_a", store::EventType::kStepLog,
                        {{"stream", "stdout"}, {"offset", 10}, {"length", 5}}},
      store::AuditWrite{"sandboxd", "run.finished", std::string("run_a"), {{"k", "v"}}},
      store::AuditWrite{"sandboxd", "daemon.started", std::nullopt, nullptr},
      store::RunnerAckWrite{"edge1", 7}};
  auto back = store::WritesFromJson(nlohmann::json::parse(store::WritesToJson(writes).dump()));
  ASSERT_TRUE(back.ok()) << back.error().ToString();
  ASSERT_EQ(back->size(), writes.size());
  const auto& t = std::get<store::TransitionWrite>((*back)[0]);
  EXPECT_EQ(t.run_id, "run_a");
  EXPECT_EQ(t.to, store::RunState::kFailed);
  EXPECT_EQ(t.if_attempt, 2);
  EXPECT_EQ(t.update.node, "edge1");
  ASSERT_TRUE(t.update.result);
  EXPECT_EQ(*t.update.result, result);
  const auto& e = std::get<store::EventWrite>((*back)[1]);
  EXPECT_EQ(e.type, store::EventType::kStepLog);
  EXPECT_EQ(e.data["offset"], 10);
  EXPECT_EQ(std::get<store::AuditWrite>((*back)[2]).run_id, "run_a");
  EXPECT_FALSE(std::get<store::AuditWrite>((*back)[3]).run_id);
  EXPECT_EQ(std::get<store::RunnerAckWrite>((*back)[4]).seq, 7);
}

TEST(RunnerProtocol, MalformedWritesAreRefusedWithTheirIndex) {
  auto bad = store::WritesFromJson(nlohmann::json::parse(
      R"([{"kind":"event","run_id":"r","type":"step.log","data":{}},{"kind":"transition"}])"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("writes[1]"), std::string::npos) << bad.error().message;
  EXPECT_FALSE(store::WritesFromJson(nlohmann::json::parse(R"([{"kind":"drop table"}])")).ok());
  EXPECT_FALSE(store::WritesFromJson(nlohmann::json::parse(
                   R"([{"kind":"event","run_id":"r","type":"no.such","data":{}}])"))
                   .ok());
  EXPECT_FALSE(store::WritesFromJson(nlohmann::json::object()).ok());
}

TEST(RunnerProtocol, ARunRecordComesBackWhole) {
  store::RunRecord run;
  run.id = "run_abcdefghijklmnopqrst";
  run.submitter = "alice";
  run.argv = {"/bin/sh", "-c", "echo hi"};
  run.env = {{"SECRET", "s3cr3t"}};
  run.stdin_data = std::string("in\0put\xff", 7);
  run.labels = {{"team", "a"}};
  run.node_selector = {{"runner", "true"}};
  run.limits.memory_bytes = 64 << 20;
  run.limits.timeout_s = 30;
  run.state = store::RunState::kRunning;
  run.node = "edge1";
  run.attempt = 3;
  run.created_at_ms = 1000;
  run.idempotency_key = "k1";
  run.retry_on_node_loss = true;
  run.workspace = store::Workspace{.path = "/srv/w", .mode = "cow"};
  auto wire = store::RunToWire(run);
  ASSERT_TRUE(wire.ok()) << wire.error().ToString();
  auto back = store::RunFromWire(nlohmann::json::parse(wire->dump()));
  ASSERT_TRUE(back.ok()) << back.error().ToString();
  EXPECT_EQ(back->request(), run.request());
  EXPECT_EQ(back->id, run.id);
  EXPECT_EQ(back->attempt, 3);
  EXPECT_EQ(back->node, "edge1");
  EXPECT_EQ(back->stdin_data, run.stdin_data);
  EXPECT_FALSE(store::RunFromWire(nlohmann::json::array({1, 2})).ok());
}

}  // namespace
}  // namespace sbx::supervisor::runner
