// Artifacts written piece by piece: ArtifactWriter (size and sha256 of what was written, nothing
// in place before Finish) and audit.json streamed page by page, which must read exactly as the
// whole document dumped at once would.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "api/testing/test_util.h"
#include "base/fs.h"
#include "base/sha256.h"
#include "supervisor/workspace/artifacts.h"
#include "supervisor/workspace/run_logs.h"

namespace sbx::supervisor {
namespace {

class ArtifactWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.empty());
    std::filesystem::create_directories(RunDir(dir_, kRun));  // the run's own, as a run has
  }

  std::string Path(const std::string& name) { return ArtifactDir(dir_, kRun) + "/" + name; }

  static constexpr char kRun[] = "run_abc";
  sbx::api::testing::TempDir tmp_{"artifact_writer_test"};
  const std::string dir_ = tmp_.path();
};

TEST_F(ArtifactWriterTest, DescribesWhatItWroteAndAppearsOnlyWhenFinished) {
  auto w = ArtifactWriter::Create(dir_, kRun, "big.txt");
  ASSERT_TRUE(w.ok()) << w.error().ToString();
  std::string all;
  for (int i = 0; i < 100; ++i) {
    std::string piece(1000 + i, static_cast<char>('a' + i % 26));
    ASSERT_TRUE(w->Write(piece).ok());
    all += piece;
  }
  EXPECT_FALSE(std::filesystem::exists(Path("big.txt")));
  auto info = w->Finish();
  ASSERT_TRUE(info.ok()) << info.error().ToString();
  EXPECT_EQ(info->name, "big.txt");
  EXPECT_EQ(info->size, all.size());
  EXPECT_EQ(info->sha256, Sha256Hex(all));
  EXPECT_EQ(*ReadFile(Path("big.txt"), 1 << 20), all);
  EXPECT_FALSE(std::filesystem::exists(Path("big.txt.tmp")));
  EXPECT_FALSE(w->Write("more").ok());
  EXPECT_FALSE(w->Finish().ok());

  // The one-shot form is the same writer.
  auto one = WriteArtifact(dir_, kRun, "small.txt", "hello\n");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->sha256, Sha256Hex("hello\n"));
  EXPECT_EQ(*ReadFile(Path("small.txt")), "hello\n");
}

TEST_F(ArtifactWriterTest, RefusesNamesThatAreNotTopLevelArtifacts) {
  for (const char* bad : {"", "../x", "/etc/passwd", "a/b", ".", ".."}) {
    EXPECT_FALSE(ArtifactWriter::Create(dir_, kRun, bad).ok()) << bad;
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/x"));
}

std::vector<store::EventRecord> SampleEvents(int n) {
  std::vector<store::EventRecord> out;
  for (int i = 1; i <= n; ++i) {
    store::EventRecord e;
    e.run_id = "run_abc";
    e.seq = i;
    e.ts_ms = 1700000000000 + i;
    if (i % 3 == 0) {
      e.type = store::EventType::kStepLog;
      e.data = {{"step", "main"}, {"stream", "stdout"}, {"offset", i * 10}, {"length", 10}};
    } else if (i % 3 == 1) {
      e.type = store::EventType::kRunStatus;
      e.data = {{"state", "RUNNING"}, {"nested", {{"list", {1, 2, {{"deep", "x\ny\"z"}}}}}}};
    } else {
      e.type = store::EventType::kStepStarted;
      e.data = "not an object";
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<store::AuditRecord> SampleAudit(int n) {
  std::vector<store::AuditRecord> out;
  for (int i = 1; i <= n; ++i) {
    store::AuditRecord a;
    a.id = 100 + i;
    a.ts_ms = 1700000000000 + i;
    a.actor = "alice";
    a.action = "run.approve";
    a.details = {{"run_id", "run_abc"}, {"note", "ünïcode"}};
    a.prev_hash = std::string(64, '0');
    a.hash = std::string(64, 'f');
    out.push_back(std::move(a));
  }
  return out;
}

// Pages of `page` records after a position, as the store hands them out.
template <class Record, class Position>
auto Pager(const std::vector<Record>& all, size_t page, Position position) {
  return [&all, page, position](int64_t after) -> Result<std::vector<Record>> {
    std::vector<Record> out;
    for (const Record& r : all) {
      if (position(r) > after && out.size() < page) out.push_back(r);
    }
    return out;
  };
}

TEST_F(ArtifactWriterTest, StreamedAuditDocumentIsTheWholeDocumentsDump) {
  for (int events : {0, 1, 7}) {
    for (int audits : {0, 1, 5}) {
      SCOPED_TRACE(std::to_string(events) + " events, " + std::to_string(audits) + " records");
      auto ev = SampleEvents(events);
      auto au = SampleAudit(audits);
      nlohmann::json doc_events = nlohmann::json::array();
      for (const auto& e : ev) doc_events.push_back(AuditEventJson(e));
      nlohmann::json doc_audit = nlohmann::json::array();
      for (const auto& a : au) doc_audit.push_back(AuditRecordJson(a));
      nlohmann::json doc = {{"run_id", "run_abc"}, {"events", doc_events}, {"audit", doc_audit}};

      auto w = ArtifactWriter::Create(dir_, kRun, "audit.json");
      ASSERT_TRUE(w.ok());
      Status st = WriteAuditDocument(
          *w, "run_abc", Pager(au, 2, [](const store::AuditRecord& a) { return a.id; }),
          Pager(ev, 3, [](const store::EventRecord& e) { return e.seq; }));
      ASSERT_TRUE(st.ok()) << st.error().ToString();
      ASSERT_TRUE(w->Finish().ok());
      EXPECT_EQ(*ReadFile(Path("audit.json")), doc.dump(2) + "\n");
    }
  }
}

TEST_F(ArtifactWriterTest, AStoreErrorFailsTheDocument) {
  auto w = ArtifactWriter::Create(dir_, kRun, "audit.json");
  ASSERT_TRUE(w.ok());
  auto events = SampleEvents(5);
  Status st = WriteAuditDocument(
      *w, "run_abc",
      [](int64_t) -> Result<std::vector<store::AuditRecord>> {
        return std::vector<store::AuditRecord>{};
      },
      [&](int64_t after) -> Result<std::vector<store::EventRecord>> {
        if (after > 0) return MakeError(ErrorCode::kUnavailable, "the store went away");
        return std::vector<store::EventRecord>(events.begin(), events.begin() + 2);
      });
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("went away"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(Path("audit.json")));  // never finished, never in place
}

}  // namespace
}  // namespace sbx::supervisor
