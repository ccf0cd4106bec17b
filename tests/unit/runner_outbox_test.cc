#include "supervisor/runner/outbox.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace sbx::supervisor::runner {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class OutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sbx-outbox-XXXXXX";
    const char* made = ::mkdtemp(tmpl);
    ASSERT_NE(made, nullptr);
    dir_ = made;
    path_ = (dir_ / "outbox.jsonl").string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::unique_ptr<Outbox> OpenOrDie() {
    auto r = Outbox::Open(path_);
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }
  std::string ReadRaw() const {
    std::ifstream in(path_, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  void AppendRaw(const std::string& text) const {
    std::ofstream out(path_, std::ios::binary | std::ios::app);
    out << text;
  }
  void WriteRaw(const std::string& text) const {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out << text;
  }
  std::vector<int64_t> PendingSeqs(const Outbox& o) const {
    std::vector<int64_t> seqs;
    for (const auto& [seq, entry] : o.After(0, 1000)) seqs.push_back(seq);
    return seqs;
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(OutboxTest, WritesOneCompactRecordPerLineWithMode0600) {
  auto o = OpenOrDie();
  ASSERT_TRUE(o);
  auto seq = o->Append(json{{"a", 1}});
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 1);
  ASSERT_TRUE(o->Ack(1).ok());
  EXPECT_EQ(ReadRaw(), "{\"seq\":1,\"entry\":{\"a\":1}}\n{\"ack\":1}\n");
  struct stat st;
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(OutboxTest, AppendAckReopenKeepsPendingAndNumbering) {
  {
    auto o = OpenOrDie();
    ASSERT_TRUE(o);
    for (int i = 1; i <= 3; ++i) {
      auto seq = o->Append(json{{"n", i}});
      ASSERT_TRUE(seq.ok()) << seq.error().ToString();
      EXPECT_EQ(*seq, i);
    }
    ASSERT_TRUE(o->Ack(1).ok());
    EXPECT_EQ(o->last_seq(), 3);
    EXPECT_EQ(o->acked_seq(), 1);
    EXPECT_EQ(o->pending(), 2u);
    EXPECT_EQ(PendingSeqs(*o), (std::vector<int64_t>{2, 3}));
  }
  auto o = OpenOrDie();
  ASSERT_TRUE(o);
  EXPECT_EQ(o->last_seq(), 3);
  EXPECT_EQ(o->acked_seq(), 1);
  EXPECT_EQ(o->pending(), 2u);
  auto after = o->After(0, 10);
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0].first, 2);
  EXPECT_EQ(after[0].second, (json{{"n", 2}}));
  EXPECT_EQ(after[1].first, 3);
  EXPECT_EQ(after[1].second, (json{{"n", 3}}));
  auto seq = o->Append(json{{"n", 4}});
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 4);
}

TEST_F(OutboxTest, ReopenAfterEverythingAckedContinuesNumbering) {
  {
    auto o = OpenOrDie();
    ASSERT_TRUE(o);
    ASSERT_TRUE(o->Append(json{{"n", 1}}).ok());
    ASSERT_TRUE(o->Append(json{{"n", 2}}).ok());
    ASSERT_TRUE(o->Ack(2).ok());
    EXPECT_EQ(o->pending(), 0u);
  }
  auto o = OpenOrDie();
  ASSERT_TRUE(o);
  EXPECT_EQ(o->last_seq(), 2);
  EXPECT_EQ(o->acked_seq(), 2);
  EXPECT_EQ(o->pending(), 0u);
  EXPECT_TRUE(o->After(0, 10).empty());
  auto seq = o->Append(json{{"n", 3}});
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 3);
}

TEST_F(OutboxTest, AfterSkipsAndLimits) {
  auto o = OpenOrDie();
  ASSERT_TRUE(o);
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(o->Append(json{{"n", i}}).ok());
  ASSERT_TRUE(o->Ack(1).ok());
  auto two = o->After(2, 2);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].first, 3);
  EXPECT_EQ(two[1].first, 4);
  EXPECT_EQ(o->After(0, 1).at(0).first, 2);  // acknowledged entries are gone
  EXPECT_TRUE(o->After(5, 10).empty());
  EXPECT_TRUE(o->After(1, 0).empty());
}

TEST_F(OutboxTest, TornLastLineIsDroppedAndNextAppendReadable) {
  {
    auto o = OpenOrDie();
    ASSERT_TRUE(o);
    ASSERT_TRUE(o->Append(json{{"n", 1}}).ok());
    ASSERT_TRUE(o->Append(json{{"n", 2}}).ok());
  }
  const std::string whole = ReadRaw();
  AppendRaw("{\"seq\":3,\"entry\":{\"n\"");  // a crash in the middle of an append
  {
    auto o = OpenOrDie();
    ASSERT_TRUE(o);
    EXPECT_EQ(o->last_seq(), 2);
    EXPECT_EQ(o->pending(), 2u);
    EXPECT_EQ(ReadRaw(), whole);  // truncated to the last whole record
    auto seq = o->Append(json{{"n", "three"}});
    ASSERT_TRUE(seq.ok());
    EXPECT_EQ(*seq, 3);
  }
  auto o = OpenOrDie();
  ASSERT_TRUE(o);
  EXPECT_EQ(o->last_seq(), 3);
  auto after = o->After(2, 10);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].second, (json{{"n", "three"}}));
}

TEST_F(OutboxTest, UnparseableLastLineIsDroppedEvenWithNewline) {
  {
    auto o = OpenOrDie();
    ASSERT_TRUE(o);
    ASSERT_TRUE(o->Append(json{{"n", 1}}).ok());
  }
  const std::string whole = ReadRaw();
  AppendRaw("{\"seq\":2,\"ent\n");
  auto o = OpenOrDie();
  ASSERT_TRUE(o);
  EXPECT_EQ(o->last_seq(), 1);
  EXPECT_EQ(ReadRaw(), whole);
}

TEST_F(OutboxTest, CorruptMiddleLineIsRefusedNamingOffset) {
  const std::string first = "{\"seq\":1,\"entry\":{\"n\":1}}\n";
  WriteRaw(first + "garbage\n{\"seq\":2,\"entry\":{\"n\":2}}\n");
  auto r = Outbox::Open(path_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(r.error().message.find("byte offset " + std::to_string(first.size())),
            std::string::npos)
      << r.error().message;
  // Refused, not repaired: the file is as it was.
  EXPECT_EQ(ReadRaw(), first + "garbage\n{\"seq\":2,\"entry\":{\"n\":2}}\n");
}

TEST_F(OutboxTest, OutOfSequenceOrMisshapenRecordsAreRefused) {
  for (const char* bad : {
           "{\"seq\":1,\"entry\":1}\n{\"seq\":3,\"entry\":3}\n",  // a gap
           "{\"seq\":1,\"entry\":1}\n{\"ack\":0}\n",              // not positive
           "{\"seq\":1,\"entry\":1}\n{\"ack\":1,\"x\":2}\n",      // unknown shape
           "{\"ack\":2}\n{\"ack\":1}\n",                          // ack going backwards
       }) {
    WriteRaw(bad);
    auto r = Outbox::Open(path_);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition) << bad;
  }
}

TEST_F(OutboxTest, AckBeyondLastSeqIsRefusedAndOldAckIsNoOp) {
  auto o = OpenOrDie();
  ASSERT_TRUE(o);
  ASSERT_TRUE(o->Append(json{{"n", 1}}).ok());
  ASSERT_TRUE(o->Append(json{{"n", 2}}).ok());
  Status past = o->Ack(3);
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(o->acked_seq(), 0);
  ASSERT_TRUE(o->Ack(1).ok());
  const std::string before = ReadRaw();
  EXPECT_TRUE(o->Ack(1).ok());
  EXPECT_TRUE(o->Ack(0).ok());
  EXPECT_EQ(ReadRaw(), before);  // nothing recorded
  EXPECT_EQ(o->acked_seq(), 1);
  EXPECT_EQ(o->pending(), 1u);
}

TEST_F(OutboxTest, UnserializableEntryIsRefusedWithoutUsingASeq) {
  auto o = OpenOrDie();
  ASSERT_TRUE(o);
  auto bad = o->Append(json{{"s", std::string("\xff\xfe")}});  // not UTF-8
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(o->last_seq(), 0);
  EXPECT_EQ(ReadRaw(), "");
  auto seq = o->Append(json{{"n", 1}});
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 1);
}

TEST_F(OutboxTest, NotifyIsCalledAfterEachAppend) {
  auto o = OpenOrDie();
  ASSERT_TRUE(o);
  int calls = 0;
  int64_t seen_last = 0;
  o->SetNotify([&] {
    ++calls;
    seen_last = o->last_seq();  // called outside the lock: may call back in
  });
  ASSERT_TRUE(o->Append(json{{"n", 1}}).ok());
  ASSERT_TRUE(o->Append(json{{"n", 2}}).ok());
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(seen_last, 2);
  o->SetNotify(nullptr);
  ASSERT_TRUE(o->Append(json{{"n", 3}}).ok());
  EXPECT_EQ(calls, 2);
}

TEST_F(OutboxTest, ConcurrentAppendsGetDistinctSeqsInFileOrder) {
  constexpr int kThreads = 4;
  constexpr int kEach = 1000;
  {
    auto o = OpenOrDie();
    ASSERT_TRUE(o);
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&o, &ready, t] {
        ready.fetch_add(1);
        while (ready.load() < kThreads) {
        }
        for (int i = 0; i < kEach; ++i) {
          EXPECT_TRUE(o->Append(json{{"t", t}, {"i", i}}).ok());
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(o->last_seq(), kThreads * kEach);
  }
  auto o = OpenOrDie();  // Open refuses a file whose seqs are out of order
  ASSERT_TRUE(o);
  auto all = o->After(0, 10'000);
  ASSERT_EQ(all.size(), size_t{kThreads * kEach});
  std::vector<int> next(kThreads, 0);  // each thread's entries in its own order
  for (const auto& [seq, entry] : all) {
    int t = entry["t"].get<int>();
    EXPECT_EQ(entry["i"].get<int>(), next[t]++);
  }
}

TEST_F(OutboxTest, SecondOpenOfTheSameFileIsRefused) {
  auto o = OpenOrDie();
  ASSERT_TRUE(o);
  auto second = Outbox::Open(path_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::kFailedPrecondition);
  o.reset();
  EXPECT_TRUE(Outbox::Open(path_).ok());
}

json Big(int n) { return json{{"n", n}, {"data", std::string(10 * 1024, 'x')}}; }

TEST_F(OutboxTest, CompactionShrinksFileAndKeepsState) {
  constexpr int kEntries = 150;
  constexpr int kAcked = 120;
  {
    auto o = OpenOrDie();
    ASSERT_TRUE(o);
    for (int i = 1; i <= kEntries; ++i) ASSERT_TRUE(o->Append(Big(i)).ok());
    const uintmax_t full = fs::file_size(path_);
    ASSERT_GT(full, uintmax_t{kEntries} * 10 * 1024);
    // 100 of 150 acknowledged: more than half of the file but under 1 MiB, so no compaction.
    ASSERT_TRUE(o->Ack(100).ok());
    EXPECT_GT(fs::file_size(path_), full);
    ASSERT_TRUE(o->Ack(kAcked).ok());
    const uintmax_t compacted = fs::file_size(path_);
    EXPECT_LT(compacted, uintmax_t{kEntries - kAcked} * 10 * 1024 + 4096);
    EXPECT_GE(compacted, uintmax_t{kEntries - kAcked} * 10 * 1024);
    EXPECT_FALSE(fs::exists(path_ + ".tmp"));
    // Still appending to the new file.
    auto seq = o->Append(json{{"n", kEntries + 1}});
    ASSERT_TRUE(seq.ok());
    EXPECT_EQ(*seq, kEntries + 1);
  }
  auto o = OpenOrDie();
  ASSERT_TRUE(o);
  EXPECT_EQ(o->last_seq(), kEntries + 1);
  EXPECT_EQ(o->acked_seq(), kAcked);
  EXPECT_EQ(o->pending(), size_t{kEntries - kAcked + 1});
  auto after = o->After(0, 1000);
  ASSERT_EQ(after.size(), size_t{kEntries - kAcked + 1});
  EXPECT_EQ(after.front().first, kAcked + 1);
  EXPECT_EQ(after.front().second, Big(kAcked + 1));
  EXPECT_EQ(after.back().second, (json{{"n", kEntries + 1}}));
}

TEST_F(OutboxTest, CompactionWhenNothingPendingKeepsNumbering) {
  constexpr int kEntries = 110;  // just over 1 MiB
  {
    auto o = OpenOrDie();
    ASSERT_TRUE(o);
    for (int i = 1; i <= kEntries; ++i) ASSERT_TRUE(o->Append(Big(i)).ok());
    ASSERT_GT(fs::file_size(path_), Outbox::kCompactMinBytes);
    ASSERT_TRUE(o->Ack(kEntries).ok());
    EXPECT_EQ(ReadRaw(), "{\"ack\":" + std::to_string(kEntries) + "}\n");
  }
  auto o = OpenOrDie();
  ASSERT_TRUE(o);
  EXPECT_EQ(o->last_seq(), kEntries);
  EXPECT_EQ(o->acked_seq(), kEntries);
  EXPECT_EQ(o->pending(), 0u);
  auto seq = o->Append(json{{"n", kEntries + 1}});
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, kEntries + 1);
}

TEST_F(OutboxTest, SmallFileIsNotCompacted) {
  auto o = OpenOrDie();
  ASSERT_TRUE(o);
  for (int i = 1; i <= 10; ++i) ASSERT_TRUE(o->Append(json{{"n", i}}).ok());
  ASSERT_TRUE(o->Ack(10).ok());
  EXPECT_NE(ReadRaw().find("{\"seq\":1,"), std::string::npos);
}

}  // namespace
}  // namespace sbx::supervisor::runner
