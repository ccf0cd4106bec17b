// The bounded queues behind streamed responses and WebSockets, without sockets: a fake session
// counts wake-ups and the test plays the writer.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "api/http/internal/fronts.h"

namespace sbx::api::internal {
namespace {

struct FakeSession : Wakeable {
  void Wake() override { ++wakes; }
  int wakes = 0;
};

// Collects posted callbacks; RunAll plays the worker pool.
struct FakeWorkers {
  PostFn Post() {
    return [this](std::function<void()> fn) {
      if (closed) return false;
      queue.push_back(std::move(fn));
      return true;
    };
  }
  void RunAll() {
    while (!queue.empty()) {
      auto fn = std::move(queue.front());
      queue.erase(queue.begin());
      fn();
    }
  }
  std::vector<std::function<void()>> queue;
  bool closed = false;
};

using WR = StreamSink::WriteResult;

TEST(StreamFront, BacksOffWhenFullAndResumesAtHalf) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  StreamFront f(session, workers.Post(), 100);
  EXPECT_EQ(f.Write(std::string(60, 'a')), WR::kOk);
  EXPECT_EQ(session->wakes, 1);
  EXPECT_EQ(f.Write(std::string(40, 'b')), WR::kOk);
  EXPECT_EQ(session->wakes, 1);  // one wake-up until the writer takes
  EXPECT_EQ(f.Write("c"), WR::kBackoff);
  EXPECT_EQ(f.buffered_bytes(), 100u);
  bool writable = false;
  f.OnWritable([&] { writable = true; });
  workers.RunAll();
  EXPECT_FALSE(writable);

  std::string piece;
  ASSERT_EQ(f.Take(&piece), StreamFront::Next::kData);
  EXPECT_EQ(piece, std::string(60, 'a'));
  EXPECT_EQ(f.buffered_bytes(), 100u);  // in flight still counts
  f.Written(piece.size());
  workers.RunAll();
  EXPECT_TRUE(writable);  // 40 <= 50
  EXPECT_EQ(f.Write("c"), WR::kOk);
}

TEST(StreamFront, OversizedPieceOnlyWhenEmpty) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  StreamFront f(session, workers.Post(), 10);
  EXPECT_EQ(f.Write(std::string(50, 'x')), WR::kOk);
  EXPECT_EQ(f.Write("y"), WR::kBackoff);
  EXPECT_EQ(f.Write(""), WR::kOk);
}

TEST(StreamFront, FinishDrainsThenEnds) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  StreamFront f(session, workers.Post(), 100);
  std::vector<StreamSink::CloseReason> reasons;
  f.OnClose([&](StreamSink::CloseReason r) { reasons.push_back(r); });
  EXPECT_EQ(f.Write("one"), WR::kOk);
  f.Finish();
  EXPECT_TRUE(f.closed());
  EXPECT_EQ(f.Write("two"), WR::kClosed);
  std::string piece;
  EXPECT_EQ(f.Take(&piece), StreamFront::Next::kData);
  EXPECT_EQ(piece, "one");
  EXPECT_EQ(f.Take(&piece), StreamFront::Next::kEnd);
  f.Close(StreamSink::CloseReason::kFinished);
  f.Close(StreamSink::CloseReason::kClientGone);
  workers.RunAll();
  EXPECT_EQ(reasons, std::vector<StreamSink::CloseReason>{StreamSink::CloseReason::kFinished});
}

TEST(StreamFront, ClientGoneDropsQueueAndTellsProducer) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  StreamFront f(session, workers.Post(), 100);
  EXPECT_EQ(f.Write("data"), WR::kOk);
  f.Close(StreamSink::CloseReason::kClientGone);
  EXPECT_EQ(f.buffered_bytes(), 0u);
  EXPECT_EQ(f.Write("more"), WR::kClosed);
  std::string piece;
  EXPECT_EQ(f.Take(&piece), StreamFront::Next::kClosed);
  // Registered after the fact: still told, once.
  int calls = 0;
  StreamSink::CloseReason seen = StreamSink::CloseReason::kFinished;
  f.OnClose([&](StreamSink::CloseReason r) {
    ++calls;
    seen = r;
  });
  workers.RunAll();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, StreamSink::CloseReason::kClientGone);
}

TEST(StreamFront, StopFlushesAndTellsNow) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  StreamFront f(session, workers.Post(), 100);
  std::vector<StreamSink::CloseReason> reasons;
  f.OnClose([&](StreamSink::CloseReason r) { reasons.push_back(r); });
  EXPECT_EQ(f.Write("queued"), WR::kOk);
  f.Stop();
  workers.RunAll();
  EXPECT_EQ(reasons,
            std::vector<StreamSink::CloseReason>{StreamSink::CloseReason::kServerStopping});
  EXPECT_EQ(f.Write("late"), WR::kClosed);
  std::string piece;
  EXPECT_EQ(f.Take(&piece), StreamFront::Next::kData);
  EXPECT_EQ(piece, "queued");
  EXPECT_EQ(f.Take(&piece), StreamFront::Next::kEnd);
}

TEST(StreamFront, DetachedRunsCallbacksInline) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  StreamFront f(session, workers.Post(), 100);
  f.Detach();
  workers.RunAll();
  bool called = false;
  f.OnClose([&](StreamSink::CloseReason r) {
    called = true;
    EXPECT_EQ(r, StreamSink::CloseReason::kServerStopping);
  });
  EXPECT_TRUE(called);
  EXPECT_TRUE(workers.queue.empty());
}

TEST(StreamFront, CallbacksRunInlineOnceThePoolIsGone) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  StreamFront f(session, workers.Post(), 100);
  f.Close(StreamSink::CloseReason::kClientGone);
  workers.closed = true;
  bool called = false;
  f.OnClose([&](StreamSink::CloseReason) { called = true; });
  EXPECT_TRUE(called);
}

TEST(StreamFront, GoneSessionIsNotWoken) {
  FakeWorkers workers;
  std::weak_ptr<FakeSession> weak;
  {
    auto session = std::make_shared<FakeSession>();
    weak = session;
  }
  StreamFront f(weak, workers.Post(), 100);
  EXPECT_EQ(f.Write("x"), WR::kOk);  // queued; nobody to wake, nothing breaks
}

using SR = WebSocket::SendResult;
using Kind = WebSocketFront::Next::Kind;

TEST(WebSocketFront, InOrderWithSeq) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  WebSocketFront f(session, workers.Post(), {10, 1 << 20}, std::nullopt);
  const std::string text[] = {"m1", "m2", "m3"};
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(f.Send(text[i - 1], i), SR::kQueued);
  EXPECT_EQ(f.Send("no-seq"), SR::kQueued);
  for (int i = 1; i <= 3; ++i) {
    WebSocketFront::Next n = f.Take();
    ASSERT_EQ(n.kind, Kind::kMessage);
    EXPECT_EQ(n.text, text[i - 1]);
    EXPECT_EQ(n.seq, i);
    f.Sent(n.seq);
  }
  WebSocketFront::Next n = f.Take();
  EXPECT_EQ(n.text, "no-seq");
  f.Sent(n.seq);
  EXPECT_EQ(f.last_sent_seq(), 3);  // a message without seq does not move it
  EXPECT_EQ(f.Take().kind, Kind::kIdle);
}

TEST(WebSocketFront, OverflowDropsQueueAndReportsLastSentSeq) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  WebSocketFront f(session, workers.Post(), {3, 1 << 20}, 7);
  std::vector<WebSocket::CloseReason> reasons;
  f.OnClose([&](WebSocket::CloseReason r) { reasons.push_back(r); });
  EXPECT_EQ(f.Send("a", 8), SR::kQueued);
  WebSocketFront::Next first = f.Take();  // in flight
  EXPECT_EQ(f.Send("b", 9), SR::kQueued);
  EXPECT_EQ(f.Send("c", 10), SR::kQueued);
  EXPECT_EQ(f.Send("d", 11), SR::kQueued);
  EXPECT_EQ(f.Send("e", 12), SR::kOverflow);
  EXPECT_EQ(f.queued_messages(), 0u);
  EXPECT_TRUE(f.closed());
  EXPECT_EQ(f.Send("f", 13), SR::kClosed);
  workers.RunAll();
  EXPECT_EQ(reasons, std::vector<WebSocket::CloseReason>{WebSocket::CloseReason::kOverflow});
  f.Sent(first.seq);  // the in-flight write completes
  WebSocketFront::Next final_msg = f.Take();
  ASSERT_EQ(final_msg.kind, Kind::kFinal);
  EXPECT_EQ(final_msg.close_code, WebSocketFront::kCloseTryAgainLater);
  auto j = nlohmann::json::parse(final_msg.text);
  EXPECT_EQ(j["type"], "overflow");
  EXPECT_EQ(j["resume_after"], 8);
  EXPECT_EQ(f.Take().kind, Kind::kIdle);
  f.Ended(WebSocket::CloseReason::kServerStopping);
  workers.RunAll();
  EXPECT_EQ(reasons.size(), 1u);
}

TEST(WebSocketFront, OverflowBeforeAnySendUsesAcceptResumePoint) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  WebSocketFront with(session, workers.Post(), {1, 1 << 20}, 41);
  EXPECT_EQ(with.Send("a", 42), SR::kQueued);
  EXPECT_EQ(with.Send("b", 43), SR::kOverflow);
  EXPECT_EQ(nlohmann::json::parse(with.Take().text)["resume_after"], 41);

  WebSocketFront without(session, workers.Post(), {1, 1 << 20}, std::nullopt);
  EXPECT_EQ(without.Send("a", 1), SR::kQueued);
  EXPECT_EQ(without.Send("b", 2), SR::kOverflow);
  EXPECT_TRUE(nlohmann::json::parse(without.Take().text)["resume_after"].is_null());
}

TEST(WebSocketFront, ByteLimit) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  WebSocketFront f(session, workers.Post(), {1000, 100}, std::nullopt);
  EXPECT_EQ(f.Send(std::string(150, 'x'), 1), SR::kQueued);  // alone, a big one fits
  EXPECT_EQ(f.Send("y", 2), SR::kOverflow);
}

TEST(WebSocketFront, TheBudgetOfEverySessionTogetherOverflowsTheOneThatWouldPassIt) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  auto used = std::make_shared<std::atomic<size_t>>(0);
  WebSocketFront::Limits limits{1000, 1 << 20, 64 * 1024, 16, used, 100};
  auto a = std::make_shared<WebSocketFront>(session, workers.Post(), limits, std::nullopt);
  auto b = std::make_shared<WebSocketFront>(session, workers.Post(), limits, std::nullopt);
  EXPECT_EQ(a->Send(std::string(60, 'a'), 1), SR::kQueued);
  EXPECT_EQ(a->Send(std::string(30, 'a'), 2), SR::kQueued);
  EXPECT_EQ(used->load(), 90u);
  // b's queue is empty: one message is always taken, so no session starves.
  EXPECT_EQ(b->Send(std::string(40, 'b'), 1), SR::kQueued);
  EXPECT_EQ(used->load(), 130u);
  // Past the budget with a queue of its own: b overflows, and gives back what it held.
  EXPECT_FALSE(b->HasRoomFor(1));
  EXPECT_EQ(b->queue_space(), 0u);
  EXPECT_EQ(b->Send("x", 2), SR::kOverflow);
  EXPECT_EQ(used->load(), 90u);
  // a's messages go out: the budget comes back.
  a->Take();
  EXPECT_EQ(used->load(), 30u);
  EXPECT_TRUE(a->HasRoomFor(50));
  EXPECT_EQ(a->Send(std::string(50, 'a'), 3), SR::kQueued);
  a->Ended(WebSocket::CloseReason::kClientClosed);
  EXPECT_EQ(used->load(), 0u);
  {
    auto c = std::make_shared<WebSocketFront>(session, workers.Post(), limits, std::nullopt);
    EXPECT_EQ(c->Send(std::string(10, 'c'), 1), SR::kQueued);
    EXPECT_EQ(used->load(), 10u);
  }
  EXPECT_EQ(used->load(), 0u);  // a session destroyed with messages queued gives them back
  workers.RunAll();
}

TEST(WebSocketFront, HasRoomForMatchesWhatSendTakes) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  WebSocketFront f(session, workers.Post(), {1000, 100}, std::nullopt);
  EXPECT_TRUE(f.HasRoomFor(500));  // empty: one message of any size
  EXPECT_EQ(f.Send(std::string(40, 'a'), 1), SR::kQueued);
  // 40 queued, at most half the cap: one more of any size is taken (no wait for an empty
  // queue), and the queue then holds at most half the cap plus that message.
  EXPECT_TRUE(f.HasRoomFor(90));
  EXPECT_EQ(f.Send(std::string(90, 'b'), 2), SR::kQueued);
  // 130 queued, over the cap: nothing more fits, and a Send overflows.
  EXPECT_FALSE(f.HasRoomFor(1));
  ASSERT_EQ(f.Take().kind, Kind::kMessage);  // 90 queued: over half, a small one fits
  EXPECT_TRUE(f.HasRoomFor(10));
  EXPECT_FALSE(f.HasRoomFor(11));
  EXPECT_EQ(f.Send(std::string(11, 'c'), 3), SR::kOverflow);
  EXPECT_FALSE(f.HasRoomFor(1));  // closing
}

TEST(WebSocketFront, BinaryMessagesKeepTheirKindAndBytes) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  WebSocketFront f(session, workers.Post(), {10, 1 << 20}, std::nullopt);
  std::string bytes("h\n\0\xff", 4);
  EXPECT_EQ(f.SendBinary(bytes, 1), SR::kQueued);
  EXPECT_EQ(f.Send("{}", 2), SR::kQueued);
  WebSocketFront::Next a = f.Take();
  EXPECT_TRUE(a.binary);
  EXPECT_EQ(a.text, bytes);
  EXPECT_EQ(a.seq, 1);
  WebSocketFront::Next b = f.Take();
  EXPECT_FALSE(b.binary);
  EXPECT_EQ(b.text, "{}");
}

// A message that ends with a file range counts the range's bytes against the queue's cap, and
// hands the range on untouched.
TEST(WebSocketFront, FileRangesCountAgainstTheCap) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  WebSocketFront f(session, workers.Post(), {10, 100}, std::nullopt);
  auto fd = std::make_shared<const UniqueFd>(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  EXPECT_EQ(f.SendBinary("h\n", FileBytes{fd, 7, 58}, 1), SR::kQueued);
  EXPECT_TRUE(f.HasRoomFor(40));  // 60 queued, over half the cap: up to the cap
  EXPECT_FALSE(f.HasRoomFor(41));
  EXPECT_EQ(f.SendBinary("x\n", FileBytes{fd, 0, 38}, 2), SR::kQueued);
  EXPECT_FALSE(f.HasRoomFor(1));
  WebSocketFront::Next a = f.Take();
  EXPECT_TRUE(a.binary);
  EXPECT_EQ(a.text, "h\n");
  EXPECT_EQ(a.file.fd, fd);
  EXPECT_EQ(a.file.offset, 7);
  EXPECT_EQ(a.file.length, 58u);
  EXPECT_TRUE(f.HasRoomFor(1000));  // 40 queued: at most half the cap, one of any size fits
  // Without an fd there is no range, whatever its length says.
  EXPECT_EQ(f.SendBinary("y\n", FileBytes{nullptr, 0, 1000}, 3), SR::kQueued);
  f.Take();
  WebSocketFront::Next c = f.Take();
  EXPECT_EQ(c.text, "y\n");
  EXPECT_FALSE(c.file.fd);
  EXPECT_EQ(c.file.length, 0u);
}

TEST(WebSocketFront, HandlerCloseAfterQueue) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  WebSocketFront f(session, workers.Post(), {10, 1 << 20}, std::nullopt);
  std::vector<WebSocket::CloseReason> reasons;
  f.OnClose([&](WebSocket::CloseReason r) { reasons.push_back(r); });
  EXPECT_EQ(f.Send("last", 5), SR::kQueued);
  f.Close();
  EXPECT_EQ(f.Send("after", 6), SR::kClosed);
  EXPECT_EQ(f.Take().kind, Kind::kMessage);
  WebSocketFront::Next close = f.Take();
  EXPECT_EQ(close.kind, Kind::kClose);
  EXPECT_EQ(close.close_code, WebSocketFront::kCloseNormal);
  EXPECT_EQ(f.Take().kind, Kind::kIdle);
  f.Ended(WebSocket::CloseReason::kServerStopping);
  workers.RunAll();
  EXPECT_EQ(reasons, std::vector<WebSocket::CloseReason>{WebSocket::CloseReason::kServerClosed});
}

TEST(WebSocketFront, StopTellsNowAndClosesGoingAway) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  WebSocketFront f(session, workers.Post(), {10, 1 << 20}, std::nullopt);
  std::vector<WebSocket::CloseReason> reasons;
  f.OnClose([&](WebSocket::CloseReason r) { reasons.push_back(r); });
  f.Stop();
  workers.RunAll();
  EXPECT_EQ(reasons, std::vector<WebSocket::CloseReason>{WebSocket::CloseReason::kServerStopping});
  WebSocketFront::Next close = f.Take();
  EXPECT_EQ(close.kind, Kind::kClose);
  EXPECT_EQ(close.close_code, WebSocketFront::kCloseGoingAway);
}

TEST(WebSocketFront, PacingWithQueueSpaceAndOnWritable) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  WebSocketFront f(session, workers.Post(), {4, 1 << 20}, std::nullopt);
  EXPECT_EQ(f.queue_space(), 4u);
  for (int i = 1; i <= 4; ++i) EXPECT_EQ(f.Send("m", i), SR::kQueued);
  EXPECT_EQ(f.queue_space(), 0u);
  bool writable = false;
  f.OnWritable([&] { writable = true; });
  f.Take();
  workers.RunAll();
  EXPECT_FALSE(writable);  // 3 queued > 4/2
  f.Take();
  workers.RunAll();
  EXPECT_TRUE(writable);  // 2 queued
  EXPECT_EQ(f.queue_space(), 2u);
  bool again = false;
  f.OnWritable([&] { again = true; });  // already half empty: at once
  workers.RunAll();
  EXPECT_TRUE(again);
  f.Close();
  EXPECT_EQ(f.queue_space(), 0u);
}

TEST(WebSocketFront, ClientClose) {
  auto session = std::make_shared<FakeSession>();
  FakeWorkers workers;
  WebSocketFront f(session, workers.Post(), {10, 1 << 20}, std::nullopt);
  f.Ended(WebSocket::CloseReason::kClientClosed);
  EXPECT_EQ(f.Send("x", 1), SR::kClosed);
  WebSocket::CloseReason seen = WebSocket::CloseReason::kError;
  f.OnClose([&](WebSocket::CloseReason r) { seen = r; });
  workers.RunAll();
  EXPECT_EQ(seen, WebSocket::CloseReason::kClientClosed);
}

}  // namespace
}  // namespace sbx::api::internal
