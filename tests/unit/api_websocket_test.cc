// WebSocket routes against a real server: the upgrade (and its refusals), ordered delivery, a
// slow consumer that overflows the bounded queue and is told where to resume, close from either
// side, ping, and shutdown.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <deque>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "api/http/server.h"
#include "api/testing/raw_client.h"
#include "api/testing/test_util.h"
#include "api/testing/ws_echo.h"
#include "base/fs.h"

namespace sbx::api {
using testing::ReasonName;
namespace {

using testing::EventLog;
using testing::MakeRequest;
using testing::RawConn;
using testing::WsFrame;

constexpr char kKey[] = "ws-secret";
constexpr size_t kQueueMessages = 16;

struct Probe {
  EventLog events;
  std::mutex mu;
  std::shared_ptr<WebSocket> held;
  std::atomic<int64_t> sends_before_overflow{0};
  std::string file;  // what the "file" routes send from
};

void Must(Status s) {
  if (!s.ok()) throw std::runtime_error(s.error().message);
}

std::string Event(int64_t seq, size_t pad = 0) {
  return DumpJson({{"seq", seq}, {"pad", std::string(pad, 'p')}});
}

// Replays seq first..last at the pace the queue allows (never overflowing), then closes.
struct Replay : std::enable_shared_from_this<Replay> {
  Replay(std::shared_ptr<WebSocket> w, int64_t first, int64_t l)
      : ws(std::move(w)), next(first), last(l) {}
  void Pump() {
    while (next <= last) {
      if (ws->queue_space() == 0) {
        ws->OnWritable([self = shared_from_this()] { self->Pump(); });
        return;
      }
      if (ws->Send(Event(next), next) != WebSocket::SendResult::kQueued) return;
      ++next;
    }
    ws->Close();
  }
  std::shared_ptr<WebSocket> ws;
  int64_t next;
  int64_t last;
};

Router WsRoutes(Probe* probe) {
  Router r;
  Must(r.AddWebSocket(
      "/v1/runs/{id}/events", Access::kSubmitter, [probe](const Request& req) -> Reply {
        std::string id(req.PathParam("id"));
        if (id == "missing") return ErrorResponse(404, "not_found", "no run " + id);
        int64_t after = std::stoll(std::string(req.query.Get("after").value_or("0")));
        WebSocketAccept accept;
        accept.resume_after = after;
        accept.on_open = [probe, id, after](std::shared_ptr<WebSocket> ws) {
          ws->OnClose([probe](WebSocket::CloseReason reason) {
            probe->events.Add(std::string("closed:") + ReasonName(reason));
          });
          if (id == "ordered") {
            // 500 messages through a 16-message queue: paced, so no overflow.
            std::make_shared<Replay>(ws, after + 1, after + 500)->Pump();
          } else if (id == "flood") {
            // Far faster than a client that does not read: ends in overflow.
            int64_t seq = after;
            while (seq < after + 1'000'000) {
              WebSocket::SendResult res = ws->Send(Event(seq + 1, 8000), seq + 1);
              if (res != WebSocket::SendResult::kQueued) break;
              ++seq;
            }
            probe->sends_before_overflow = seq - after;
            probe->events.Add("overflowed");
          } else if (id == "file" || id == "short-file") {
            // Binary messages that end with a file's bytes, sent from the file (sendfile): a
            // range from the middle, a text message, a head alone, the whole file; or a range
            // that runs past the file's end.
            UniqueFd fd(::open(probe->file.c_str(), O_RDONLY | O_CLOEXEC));
            auto shared = std::make_shared<const UniqueFd>(std::move(fd));
            struct stat st;
            ::fstat(shared->get(), &st);
            const size_t size = static_cast<size_t>(st.st_size);
            if (id == "short-file") {
              ws->SendBinary("head\n", FileBytes{shared, 0, size + 4096}, 1);
              return;
            }
            // The large one last: the queue takes it once what is before it is small.
            ws->SendBinary("middle\n", FileBytes{shared, 1000, 5}, 1);
            ws->Send(Event(2), 2);
            ws->SendBinary("empty\n", FileBytes{shared, 0, 0}, 3);
            ws->SendBinary("whole\n", FileBytes{shared, 0, size}, 4);
            ws->Close();
          } else if (id == "echo") {
            // Each incoming message back as it came, paced by the outbound queue (a client
            // that sends everything before reading would otherwise overflow the queue of
            // kQueueMessages whenever the writer falls behind), with a record of it.
            api::testing::PacedEcho(ws, [probe](std::string_view data, bool binary) {
              probe->events.Add(std::string(binary ? "binary:" : "text:") +
                                std::to_string(data.size()));
            });
          } else if (id == "slow") {
            // A handler far behind its client: the session stops reading meanwhile.
            ws->OnMessage([probe](std::string_view data, bool) {
              std::this_thread::sleep_for(std::chrono::milliseconds(20));
              probe->events.Add("got:" + std::string(data));
            });
          } else {
            std::lock_guard lock(probe->mu);
            probe->held = ws;
            probe->events.Add("open");
          }
        };
        return accept;
      }));
  return r;
}

class ApiWebSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    socket_path_ = dir_.path() + "/api.sock";
    ServerOptions o;
    o.listen = {"127.0.0.1:0", "unix:" + socket_path_};
    o.ws_queue_messages = kQueueMessages;
    o.request_timeout = std::chrono::seconds(5);
    auto auth = Authenticator::Create({{"sam", Role::kSubmitter, Sha256Hex(kKey)}});
    ASSERT_TRUE(auth.ok());
    auto s = Server::Start(std::move(o), WsRoutes(&probe_), std::move(*auth));
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    server_ = std::move(*s);
    port_ = server_->addresses()[0].port;
  }

  // Connects and upgrades; the 101 has been checked.
  RawConn Open(const std::string& target, bool unix_socket = false) {
    std::optional<RawConn> c = unix_socket ? RawConn::Unix(socket_path_) : RawConn::Tcp(port_);
    if (!c) throw std::runtime_error("connect failed");
    if (!c->Send(testing::MakeWsUpgrade(target, {{"x-api-key", kKey}}))) {
      throw std::runtime_error("send failed");
    }
    auto head = testing::ReadHead(*c);
    if (!head || head->status != 101) throw std::runtime_error("no 101 for " + target);
    EXPECT_EQ(head->Header("Sec-WebSocket-Accept"), testing::kWsAccept);
    return std::move(*c);
  }

  Probe probe_;
  testing::TempDir dir_;
  std::string socket_path_;
  std::unique_ptr<Server> server_;
  uint16_t port_ = 0;
};

TEST_F(ApiWebSocketTest, MessagesArriveInOrder) {
  RawConn c = Open("/v1/runs/ordered/events?after=100");
  for (int64_t seq = 101; seq <= 600; ++seq) {
    std::optional<WsFrame> f = testing::WsReadFrame(c);
    ASSERT_TRUE(f.has_value()) << seq;
    ASSERT_EQ(f->opcode, 1);
    EXPECT_EQ(nlohmann::json::parse(f->payload)["seq"], seq);
  }
  std::optional<WsFrame> close = testing::WsReadFrame(c);
  ASSERT_TRUE(close.has_value());
  EXPECT_EQ(close->opcode, 8);
  EXPECT_EQ(close->CloseCode(), 1000);
  testing::WsSendFrame(c, 8, testing::WsClosePayload(1000));
  // As RFC 6455 §7.1.1 has it: the server closes TCP first; the client follows.
  EXPECT_TRUE(c.WaitClosed());
  c.Close();
  EXPECT_TRUE(probe_.events.WaitFor("closed:server_closed"));
}

TEST_F(ApiWebSocketTest, RefusalsBeforeTheUpgrade) {
  auto call = [&](const std::string& request) {
    std::optional<RawConn> c = RawConn::Tcp(port_);
    EXPECT_TRUE(c.has_value());
    auto r = testing::RoundTrip(*c, request);
    EXPECT_TRUE(r.has_value());
    return r ? *r : testing::HttpReply{};
  };
  auto no_key = call(testing::MakeWsUpgrade("/v1/runs/x/events"));
  EXPECT_EQ(no_key.status, 401);
  EXPECT_EQ(no_key.ErrorCode(), "unauthenticated");
  auto missing = call(testing::MakeWsUpgrade("/v1/runs/missing/events", {{"x-api-key", kKey}}));
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.ErrorCode(), "not_found");
  auto plain = call(MakeRequest("GET", "/v1/runs/x/events", {{"x-api-key", kKey}}));
  EXPECT_EQ(plain.status, 426);
  EXPECT_EQ(plain.ErrorCode(), "upgrade_required");
  auto post = call(MakeRequest("POST", "/v1/runs/x/events", {{"x-api-key", kKey}}));
  EXPECT_EQ(post.status, 405);
}

TEST_F(ApiWebSocketTest, SlowConsumerOverflowsAndLearnsWhereToResume) {
  RawConn c = Open("/v1/runs/flood/events?after=5", /*unix_socket=*/true);
  // Read nothing until the handler has been told the queue overflowed.
  ASSERT_TRUE(probe_.events.WaitFor("overflowed"));
  EXPECT_TRUE(probe_.events.WaitFor("closed:overflow"));
  // Bounded: what was accepted is the queue plus what the socket buffers held.
  EXPECT_LT(probe_.sends_before_overflow.load(), 1000);
  EXPECT_GE(probe_.sends_before_overflow.load(), static_cast<int64_t>(kQueueMessages));

  int64_t expected = 6;
  std::optional<nlohmann::json> notice;
  while (true) {
    std::optional<WsFrame> f = testing::WsReadFrame(c);
    ASSERT_TRUE(f.has_value()) << "at seq " << expected;
    if (f->opcode == 8) {
      EXPECT_EQ(f->CloseCode(), 1013);
      testing::WsSendFrame(c, 8, testing::WsClosePayload(1013));
      EXPECT_TRUE(c.WaitClosed());
      c.Close();
      break;
    }
    ASSERT_EQ(f->opcode, 1);
    nlohmann::json j = nlohmann::json::parse(f->payload);
    if (j.value("type", "") == "overflow") {
      notice = j;
      continue;
    }
    ASSERT_FALSE(notice.has_value()) << "a message after the overflow notice";
    EXPECT_EQ(j["seq"], expected);
    ++expected;
  }
  ASSERT_TRUE(notice.has_value());
  // The client has everything up to resume_after and reconnects with ?after=resume_after.
  EXPECT_EQ((*notice)["resume_after"], expected - 1);
  EXPECT_LT(expected - 1, 5 + probe_.sends_before_overflow.load());
}

TEST_F(ApiWebSocketTest, ClientCloseAndPing) {
  RawConn c = Open("/v1/runs/hold/events");
  ASSERT_TRUE(probe_.events.WaitFor("open"));
  // Incoming data messages are ignored (no callback); pings are answered.
  ASSERT_TRUE(testing::WsSendFrame(c, 1, "hello server"));
  ASSERT_TRUE(testing::WsSendFrame(c, 9, "are-you-there"));
  std::optional<WsFrame> pong = testing::WsReadFrame(c);
  ASSERT_TRUE(pong.has_value());
  EXPECT_EQ(pong->opcode, 10);
  EXPECT_EQ(pong->payload, "are-you-there");
  {
    std::lock_guard lock(probe_.mu);
    EXPECT_EQ(probe_.held->Send(Event(1), 1), WebSocket::SendResult::kQueued);
  }
  std::optional<WsFrame> msg = testing::WsReadFrame(c);
  ASSERT_TRUE(msg.has_value());
  EXPECT_EQ(nlohmann::json::parse(msg->payload)["seq"], 1);

  ASSERT_TRUE(testing::WsSendFrame(c, 8, testing::WsClosePayload(1000)));
  std::optional<WsFrame> echo = testing::WsReadFrame(c);
  ASSERT_TRUE(echo.has_value());
  EXPECT_EQ(echo->opcode, 8);
  EXPECT_TRUE(probe_.events.WaitFor("closed:client_closed"));
  std::lock_guard lock(probe_.mu);
  EXPECT_TRUE(probe_.held->closed());
  EXPECT_EQ(probe_.held->Send("late"), WebSocket::SendResult::kClosed);
  EXPECT_EQ(probe_.held->last_sent_seq(), 1);
}

// A message whose bytes come from a file arrives whole and in order, over TCP (where the kernel
// sends the file's pages) and a Unix socket. The client sends a ping and only then reads: the
// server cannot have written all of a 32 MiB message yet, so its pong comes between messages,
// never inside one (it would break the frame).
TEST_F(ApiWebSocketTest, BinaryMessagesFromAFile) {
  std::string bytes(32 << 20, '\0');
  uint32_t x = 12345;
  for (char& b : bytes) {
    x = x * 1103515245 + 12345;
    b = static_cast<char>(x >> 24);  // not UTF-8, and no two MiB alike
  }
  probe_.file = dir_.path() + "/bytes";
  {
    UniqueFd f(::open(probe_.file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(f);
    ASSERT_TRUE(WriteAll(f.get(), bytes).ok());
  }
  for (bool unix_socket : {false, true}) {
    SCOPED_TRACE(unix_socket ? "unix" : "tcp");
    RawConn c = Open("/v1/runs/file/events", unix_socket);
    ASSERT_TRUE(testing::WsSendFrame(c, 9, "mid-message"));
    std::vector<WsFrame> frames;
    for (;;) {
      std::optional<WsFrame> f = testing::WsReadFrame(c);
      ASSERT_TRUE(f.has_value()) << frames.size();
      frames.push_back(*f);
      if (f->opcode == 8) break;
    }
    std::vector<WsFrame> data;
    int pongs = 0;
    for (const WsFrame& f : frames) {
      if (f.opcode == 10) {
        EXPECT_EQ(f.payload, "mid-message");
        ++pongs;
      } else if (f.opcode != 8) {
        data.push_back(f);
      }
    }
    EXPECT_EQ(pongs, 1);
    ASSERT_EQ(data.size(), 4u);
    EXPECT_EQ(data[0].opcode, 2);
    EXPECT_EQ(data[0].payload, "middle\n" + bytes.substr(1000, 5));
    EXPECT_EQ(data[1].opcode, 1);
    EXPECT_EQ(nlohmann::json::parse(data[1].payload)["seq"], 2);
    EXPECT_EQ(data[2].payload, "empty\n");
    EXPECT_EQ(data[3].opcode, 2);
    EXPECT_TRUE(data[3].payload == "whole\n" + bytes) << data[3].payload.size();
    EXPECT_EQ(frames.back().CloseCode(), 1000);
    testing::WsSendFrame(c, 8, testing::WsClosePayload(1000));
    EXPECT_TRUE(c.WaitClosed());
    c.Close();
    EXPECT_TRUE(probe_.events.WaitForCount("closed:server_closed", unix_socket ? 2 : 1));
  }
}

// A range that runs past the file's end cannot become a whole frame: the session ends with an
// error, and the client never gets a message cut short as if it were whole.
TEST_F(ApiWebSocketTest, AFileRangePastTheEndEndsTheSession) {
  probe_.file = dir_.path() + "/small";
  {
    UniqueFd f(::open(probe_.file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(f);
    ASSERT_TRUE(WriteAll(f.get(), std::string(10000, 'a')).ok());
  }
  RawConn c = Open("/v1/runs/short-file/events");
  EXPECT_FALSE(testing::WsReadFrame(c).has_value());
  EXPECT_TRUE(probe_.events.WaitFor("closed:error"));
}

TEST_F(ApiWebSocketTest, AbruptDisconnectIsObserved) {
  RawConn c = Open("/v1/runs/hold/events");
  ASSERT_TRUE(probe_.events.WaitFor("open"));
  c.Close();
  EXPECT_TRUE(probe_.events.WaitFor("closed:client_closed"));
}

TEST_F(ApiWebSocketTest, OversizedIncomingMessageClosesTheSession) {
  RawConn c = Open("/v1/runs/hold/events");
  ASSERT_TRUE(probe_.events.WaitFor("open"));
  ASSERT_TRUE(testing::WsSendFrame(c, 1, std::string(128 * 1024, 'x')));
  std::optional<WsFrame> f = testing::WsReadFrame(c);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->opcode, 8);
  EXPECT_EQ(f->CloseCode(), 1009);  // message too big
  EXPECT_TRUE(probe_.events.WaitFor("closed:error"));
}

// Incoming messages reach the handler in order and byte-exact, text and binary alike, including
// those sent at once after the handshake (before on_open has registered the callback).
TEST_F(ApiWebSocketTest, IncomingMessagesReachTheHandlerInOrder) {
  RawConn c = Open("/v1/runs/echo/events");
  std::vector<std::pair<int, std::string>> sent;
  std::string bin;
  for (int i = 0; i < 256; ++i) bin.push_back(static_cast<char>(i));  // NULs, not UTF-8
  for (int i = 0; i < 40; ++i) {
    if (i % 2 == 0) {
      sent.push_back({1, "text message " + std::to_string(i) + " \u00e9\n"});
    } else {
      sent.push_back({2, bin + std::string(static_cast<size_t>(i) * 50, static_cast<char>(i))});
    }
  }
  for (const auto& [opcode, payload] : sent) ASSERT_TRUE(testing::WsSendFrame(c, opcode, payload));
  for (size_t i = 0; i < sent.size(); ++i) {
    std::optional<WsFrame> f = testing::WsReadFrame(c);
    ASSERT_TRUE(f.has_value()) << i;
    EXPECT_EQ(f->opcode, sent[i].first) << i;
    EXPECT_TRUE(f->payload == sent[i].second) << i << ": " << f->payload.size() << " bytes";
  }
  ASSERT_TRUE(probe_.events.WaitFor("binary:" + std::to_string(sent.back().second.size())));
  std::vector<std::string> seen = probe_.events.All();
  std::vector<std::string> kinds;
  for (const auto& e : seen) {
    if (e.starts_with("text:") || e.starts_with("binary:")) kinds.push_back(e);
  }
  ASSERT_EQ(kinds.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(kinds[i], std::string(sent[i].first == 1 ? "text:" : "binary:") +
                            std::to_string(sent[i].second.size()));
  }
  ASSERT_TRUE(testing::WsSendFrame(c, 8, testing::WsClosePayload(1000)));
  EXPECT_TRUE(probe_.events.WaitFor("closed:client_closed"));
}

// A handler slower than its client costs no memory beyond the bound: the session stops reading
// and every message still arrives, in order; pings wait their turn but are answered.
TEST_F(ApiWebSocketTest, ASlowMessageHandlerHoldsTheClientBack) {
  RawConn c = Open("/v1/runs/slow/events");
  constexpr int kMessages = 60;
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(testing::WsSendFrame(c, 1, "m" + std::to_string(i) + std::string(4000, 'x')));
  }
  ASSERT_TRUE(testing::WsSendFrame(c, 9, "still-there"));
  c.SetTimeout(std::chrono::seconds(20));
  std::optional<WsFrame> pong = testing::WsReadFrame(c);
  ASSERT_TRUE(pong.has_value());
  EXPECT_EQ(pong->opcode, 10);
  const std::string last = "got:m" + std::to_string(kMessages - 1) + std::string(4000, 'x');
  ASSERT_TRUE(probe_.events.WaitFor(last));
  std::vector<std::string> got;
  for (const auto& e : probe_.events.All()) {
    if (e.starts_with("got:")) got.push_back(e.substr(4, e.find('x') - 4));
  }
  ASSERT_EQ(got.size(), static_cast<size_t>(kMessages));
  for (int i = 0; i < kMessages; ++i) EXPECT_EQ(got[i], "m" + std::to_string(i));
}

// Over the cap, the session closes with 1009 whether or not a handler listens, and the handler
// never sees the message.
TEST_F(ApiWebSocketTest, OversizedMessageToAListeningHandlerCloses) {
  RawConn c = Open("/v1/runs/echo/events");
  ASSERT_TRUE(testing::WsSendFrame(c, 2, std::string(64 * 1024 + 1, 'x')));
  std::optional<WsFrame> f = testing::WsReadFrame(c);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->opcode, 8);
  EXPECT_EQ(f->CloseCode(), 1009);
  EXPECT_TRUE(probe_.events.WaitFor("closed:error"));
  for (const auto& e : probe_.events.All()) EXPECT_FALSE(e.starts_with("binary:")) << e;
}

// A session whose handler registered no callback keeps discarding what the client sends, and
// keeps answering: far more than the incoming bound goes through.
TEST_F(ApiWebSocketTest, WithoutACallbackMessagesAreDiscarded) {
  RawConn c = Open("/v1/runs/hold/events");
  ASSERT_TRUE(probe_.events.WaitFor("open"));
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(testing::WsSendFrame(c, 2, std::string(32000, 'd')));
  ASSERT_TRUE(testing::WsSendFrame(c, 9, "after-the-flood"));
  std::optional<WsFrame> pong = testing::WsReadFrame(c);
  ASSERT_TRUE(pong.has_value());
  EXPECT_EQ(pong->opcode, 10);
  EXPECT_EQ(pong->payload, "after-the-flood");
}

TEST_F(ApiWebSocketTest, StopSendsGoingAway) {
  RawConn c = Open("/v1/runs/hold/events");
  ASSERT_TRUE(probe_.events.WaitFor("open"));
  std::thread stopper([&] {
    server_->Stop(std::chrono::seconds(5));
    probe_.events.Add("stopped");
  });
  std::optional<WsFrame> f = testing::WsReadFrame(c);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->opcode, 8);
  EXPECT_EQ(f->CloseCode(), 1001);
  testing::WsSendFrame(c, 8, testing::WsClosePayload(1001));
  EXPECT_TRUE(c.WaitClosed());
  c.Close();
  EXPECT_TRUE(probe_.events.WaitFor("closed:server_stopping"));
  EXPECT_TRUE(probe_.events.WaitFor("stopped"));
  stopper.join();
  // A WebSocket kept by a handler after the server is gone is inert.
  std::lock_guard lock(probe_.mu);
  EXPECT_EQ(probe_.held->Send("after stop"), WebSocket::SendResult::kClosed);
  bool told = false;
  probe_.held->OnClose([&](WebSocket::CloseReason) { told = true; });
  EXPECT_TRUE(told);
}

}  // namespace
}  // namespace sbx::api
