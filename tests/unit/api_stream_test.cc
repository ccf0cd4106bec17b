// Streamed (chunked) responses, back-pressure, a client that goes away mid-stream, the
// connection cap, and graceful/terminal shutdown, against a real server on loopback and a unix
// socket.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>

#include "api/http/server.h"
#include "api/testing/raw_client.h"
#include "api/testing/test_util.h"

namespace sbx::api {
namespace {

using testing::EventLog;
using testing::HttpReply;
using testing::MakeRequest;
using testing::RawConn;

constexpr size_t kFloodPiece = 16 * 1024;
constexpr size_t kFloodTotal = 4 * 1024 * 1024;
constexpr size_t kStreamBuffer = 64 * 1024;

const char* ReasonName(StreamSink::CloseReason r) {
  switch (r) {
    case StreamSink::CloseReason::kFinished:
      return "finished";
    case StreamSink::CloseReason::kClientGone:
      return "client_gone";
    case StreamSink::CloseReason::kServerStopping:
      return "server_stopping";
  }
  return "?";
}

// What the handlers share with the test.
struct Probe {
  EventLog events;
  std::atomic<int> backoffs{0};
  std::atomic<size_t> max_buffered{0};
  std::atomic<size_t> flood_sent{0};
  std::mutex mu;
  std::shared_ptr<StreamSink> follow_sink;
};

// Writes kFloodTotal bytes in kFloodPiece pieces, backing off when the sink says so.
struct Flood : std::enable_shared_from_this<Flood> {
  Flood(std::shared_ptr<StreamSink> s, Probe* p) : sink(std::move(s)), probe(p) {}
  void Pump() {
    while (sent < kFloodTotal) {
      char fill = static_cast<char>('a' + (sent / kFloodPiece) % 26);
      StreamSink::WriteResult r = sink->Write(std::string(kFloodPiece, fill));
      size_t buffered = sink->buffered_bytes();
      if (buffered > probe->max_buffered) probe->max_buffered = buffered;
      if (r == StreamSink::WriteResult::kBackoff) {
        if (probe->backoffs++ == 0) probe->events.Add("flood-backoff");
        sink->OnWritable([self = shared_from_this()] { self->Pump(); });
        return;
      }
      if (r == StreamSink::WriteResult::kClosed) {
        probe->events.Add("flood-closed");
        return;
      }
      sent += kFloodPiece;
      probe->flood_sent = sent;
    }
    sink->Finish();
    probe->events.Add("flood-done");
  }
  std::shared_ptr<StreamSink> sink;
  Probe* probe;
  size_t sent = 0;
};

void Must(Status s) {
  if (!s.ok()) throw std::runtime_error(s.error().message);
}

Router StreamRoutes(Probe* probe) {
  Router r;
  Must(r.Add(Method::kGet, "/healthz", Access::kPublic, [](const Request&) -> Reply {
    return JsonResponse(200, {{"ok", true}});
  }));
  Must(r.Add(Method::kGet, "/v1/runs/{id}/logs", Access::kPublic, [](const Request&) -> Reply {
    StreamResponse s;
    s.content_type = "text/plain; charset=utf-8";
    s.start = [](std::shared_ptr<StreamSink> sink) {
      for (int i = 0; i < 10; ++i) {
        if (sink->Write("line " + std::to_string(i) + "\n") != StreamSink::WriteResult::kOk) {
          return;
        }
      }
      sink->Finish();
    };
    return s;
  }));
  Must(r.Add(Method::kGet, "/flood", Access::kPublic, [probe](const Request&) -> Reply {
    StreamResponse s;
    s.start = [probe](std::shared_ptr<StreamSink> sink) {
      std::make_shared<Flood>(std::move(sink), probe)->Pump();
    };
    return s;
  }));
  Must(r.Add(Method::kGet, "/follow", Access::kPublic, [probe](const Request&) -> Reply {
    StreamResponse s;
    s.start = [probe](std::shared_ptr<StreamSink> sink) {
      sink->OnClose([probe](StreamSink::CloseReason reason) {
        probe->events.Add(std::string("follow-closed:") + ReasonName(reason));
      });
      sink->Write("first\n");
      std::lock_guard lock(probe->mu);
      probe->follow_sink = std::move(sink);  // "waiting for more output"
    };
    return s;
  }));
  Must(r.Add(Method::kGet, "/block", Access::kPublic, [probe](const Request&) -> Reply {
    probe->events.Add("block-entered");
    bool released = probe->events.WaitFor("release", std::chrono::seconds(10));
    return JsonResponse(200, {{"released", released}});
  }));
  return r;
}

class ApiStreamTest : public ::testing::Test {
 protected:
  void StartServer(std::vector<std::string> listen = {}, size_t max_connections = 1024,
                   std::chrono::milliseconds request_timeout = std::chrono::seconds(5)) {
    ASSERT_FALSE(dir_.path().empty());
    socket_path_ = dir_.path() + "/api.sock";
    ServerOptions o;
    o.listen =
        listen.empty() ? std::vector<std::string>{"127.0.0.1:0", "unix:" + socket_path_} : listen;
    o.stream_buffer_bytes = kStreamBuffer;
    o.max_connections = max_connections;
    o.request_timeout = request_timeout;
    o.worker_threads = 3;
    auto s = Server::Start(std::move(o), StreamRoutes(&probe_), Authenticator());
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    server_ = std::move(*s);
    port_ = server_->addresses()[0].port;
  }

  RawConn Connect() {
    std::optional<RawConn> c = RawConn::Tcp(port_);
    if (!c) throw std::runtime_error("connect failed");
    return std::move(*c);
  }

  Probe probe_;  // outlives the server
  testing::TempDir dir_;
  std::string socket_path_;
  std::unique_ptr<Server> server_;
  uint16_t port_ = 0;
};

TEST_F(ApiStreamTest, ChunkedStreamThenKeepAlive) {
  StartServer();
  RawConn c = Connect();
  auto r = testing::RoundTrip(c, MakeRequest("GET", "/v1/runs/r1/logs"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->Header("Transfer-Encoding"), "chunked");
  EXPECT_EQ(r->Header("Content-Type"), "text/plain; charset=utf-8");
  ASSERT_EQ(r->chunks.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(r->chunks[i], "line " + std::to_string(i) + "\n");
  // The connection is reusable after the last chunk.
  auto again = testing::RoundTrip(c, MakeRequest("GET", "/healthz"));
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->status, 200);
}

TEST_F(ApiStreamTest, Http10StreamEndsWithTheConnection) {
  StartServer();
  RawConn c = Connect();
  ASSERT_TRUE(c.Send("GET /v1/runs/r1/logs HTTP/1.0\r\n\r\n"));
  auto r = testing::ReadReply(c);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->Header("Transfer-Encoding"), "");
  std::string expected;
  for (int i = 0; i < 10; ++i) expected += "line " + std::to_string(i) + "\n";
  EXPECT_EQ(r->body, expected);
}

TEST_F(ApiStreamTest, SlowClientMakesProducerBackOff) {
  StartServer();
  std::optional<RawConn> c = RawConn::Unix(socket_path_);
  ASSERT_TRUE(c.has_value());
  ASSERT_TRUE(c->Send(MakeRequest("GET", "/flood")));
  auto head = testing::ReadHead(*c);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->Header("Transfer-Encoding"), "chunked");
  // Not reading: the socket fills, then the sink's buffer, then the producer is told to wait.
  ASSERT_TRUE(probe_.events.WaitFor("flood-backoff"));
  EXPECT_LT(probe_.flood_sent.load(), kFloodTotal);
  size_t total = 0;
  bool content_ok = true;
  while (true) {
    std::optional<std::string> chunk = testing::ReadChunk(*c);
    ASSERT_TRUE(chunk.has_value()) << "after " << total << " bytes";
    if (chunk->empty()) break;
    for (size_t i = 0; i < chunk->size(); ++i) {
      char want = static_cast<char>('a' + ((total + i) / kFloodPiece) % 26);
      if ((*chunk)[i] != want) content_ok = false;
    }
    total += chunk->size();
  }
  EXPECT_EQ(total, kFloodTotal);
  EXPECT_TRUE(content_ok);
  EXPECT_TRUE(probe_.events.WaitFor("flood-done"));
  EXPECT_GE(probe_.backoffs.load(), 1);
  EXPECT_LE(probe_.max_buffered.load(), kStreamBuffer);
}

TEST_F(ApiStreamTest, ProducerLearnsOfDisconnect) {
  StartServer();
  RawConn c = Connect();
  ASSERT_TRUE(c.Send(MakeRequest("GET", "/follow")));
  ASSERT_TRUE(testing::ReadHead(c).has_value());
  EXPECT_EQ(testing::ReadChunk(c), "first\n");
  c.Close();
  // The producer has nothing to write; the server notices the hang-up on its own.
  ASSERT_TRUE(probe_.events.WaitFor("follow-closed:client_gone"));
  std::lock_guard lock(probe_.mu);
  ASSERT_TRUE(probe_.follow_sink != nullptr);
  EXPECT_TRUE(probe_.follow_sink->closed());
  EXPECT_EQ(probe_.follow_sink->Write("more"), StreamSink::WriteResult::kClosed);
}

TEST_F(ApiStreamTest, ConnectionCap) {
  StartServer({"127.0.0.1:0"}, /*max_connections=*/2, std::chrono::seconds(10));
  RawConn a = Connect();
  RawConn b = Connect();
  ASSERT_TRUE(testing::RoundTrip(a, MakeRequest("GET", "/healthz")).has_value());
  ASSERT_TRUE(testing::RoundTrip(b, MakeRequest("GET", "/healthz")).has_value());
  EXPECT_EQ(server_->connection_count(), 2u);
  RawConn c = Connect();  // held in the kernel's backlog
  ASSERT_TRUE(c.Send(MakeRequest("GET", "/healthz")));
  c.SetTimeout(std::chrono::milliseconds(300));
  EXPECT_FALSE(testing::ReadReply(c).has_value());
  EXPECT_EQ(server_->connection_count(), 2u);
  a.Close();
  c.SetTimeout(std::chrono::seconds(5));
  auto r = testing::ReadReply(c);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_LE(server_->connection_count(), 2u);
}

TEST_F(ApiStreamTest, GracefulStop) {
  StartServer();
  RawConn idle = Connect();
  RawConn kept = Connect();
  ASSERT_TRUE(testing::RoundTrip(kept, MakeRequest("GET", "/healthz")).has_value());
  RawConn blocked = Connect();
  ASSERT_TRUE(blocked.Send(MakeRequest("GET", "/block")));
  ASSERT_TRUE(probe_.events.WaitFor("block-entered"));
  RawConn follow = Connect();
  ASSERT_TRUE(follow.Send(MakeRequest("GET", "/follow")));
  ASSERT_TRUE(testing::ReadHead(follow).has_value());
  ASSERT_EQ(testing::ReadChunk(follow), "first\n");

  std::thread stopper([&] {
    server_->Stop(std::chrono::seconds(10));
    probe_.events.Add("stopped");
  });
  // Idle connections close at once.
  EXPECT_TRUE(idle.WaitClosed());
  EXPECT_TRUE(kept.WaitClosed());
  // The stream's producer is told, and the body ends properly.
  EXPECT_TRUE(probe_.events.WaitFor("follow-closed:server_stopping"));
  EXPECT_EQ(testing::ReadChunk(follow), "");
  // No new connections.
  bool refused = false;
  for (int i = 0; i < 100 && !refused; ++i) {
    refused = !RawConn::Tcp(port_).has_value();
    if (!refused) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(refused);
  // The request in progress still gets its answer.
  EXPECT_EQ(probe_.events.Count("stopped"), 0);
  probe_.events.Add("release");
  auto r = testing::ReadReply(blocked);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->Json()["released"], true);
  EXPECT_EQ(r->Header("Connection"), "close");
  EXPECT_TRUE(probe_.events.WaitFor("stopped"));
  stopper.join();
  struct stat st {};
  EXPECT_NE(lstat(socket_path_.c_str(), &st), 0);
}

TEST_F(ApiStreamTest, StopClosesWhatOutlivesTheGracePeriod) {
  StartServer();
  RawConn blocked = Connect();
  ASSERT_TRUE(blocked.Send(MakeRequest("GET", "/block")));
  ASSERT_TRUE(probe_.events.WaitFor("block-entered"));
  auto started = std::chrono::steady_clock::now();
  std::thread stopper([&] {
    server_->Stop(std::chrono::milliseconds(200));
    probe_.events.Add("stopped");
  });
  // The connection is closed after the grace period even though the handler still runs.
  EXPECT_TRUE(blocked.WaitClosed());
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(3));
  EXPECT_EQ(probe_.events.Count("stopped"), 0);  // Stop waits for the handler to return
  probe_.events.Add("release");
  EXPECT_TRUE(probe_.events.WaitFor("stopped"));
  stopper.join();
}

}  // namespace
}  // namespace sbx::api
