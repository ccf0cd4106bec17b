// The WebSocket client: URL parsing; ws:// against the project's own server (echo in order,
// close from either side, refusals of the upgrade, refused and silent ports, the bounded send
// queue, keep-alive); wss:// against a Python `websockets` echo server with certificates made by
// the openssl tool for each test (the right CA, an unrelated CA, a name the certificate does not
// hold), and an idle timeout against a server that never answers pings.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "api/http/server.h"
#include "api/testing/test_util.h"
#include "api/testing/ws_echo.h"
#include "api/ws_client/ws_client.h"
#include "base/sha256.h"
#include "base/unique_fd.h"
#include "tests/support/test_certs.h"

namespace sbx::api {
using testing::ReasonName;
namespace {

using namespace std::chrono_literals;
using testing::EventLog;

constexpr char kKey[] = "runner-secret";
constexpr auto kWait = 10s;

// What a client's callbacks saw, with waits on it.
class Seen {
 public:
  WsClientCallbacks Callbacks() {
    WsClientCallbacks cb;
    cb.on_message = [this](std::string data, bool binary) {
      std::lock_guard lock(mu_);
      messages_.emplace_back(std::move(data), binary);
      cv_.notify_all();
    };
    cb.on_close = [this](std::string why) {
      std::lock_guard lock(mu_);
      closes_.push_back(std::move(why));
      cv_.notify_all();
    };
    return cb;
  }
  bool WaitMessages(size_t n, std::chrono::milliseconds timeout = kWait) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return messages_.size() >= n; });
  }
  bool WaitClosed(std::chrono::milliseconds timeout = kWait) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return !closes_.empty(); });
  }
  std::vector<std::pair<std::string, bool>> messages() {
    std::lock_guard lock(mu_);
    return messages_;
  }
  std::vector<std::string> closes() {
    std::lock_guard lock(mu_);
    return closes_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<std::string, bool>> messages_;
  std::vector<std::string> closes_;
};

void Must(Status s) {
  if (!s.ok()) throw std::runtime_error(s.error().message);
}

// Sends each incoming message back as it came (api/testing/ws_echo.h), recording its start.
void Echo(std::shared_ptr<WebSocket> ws, EventLog* events) {
  api::testing::PacedEcho(ws, [events](std::string_view data, bool binary) {
    events->Add(std::string(binary ? "binary:" : "text:") + std::string(data.substr(0, 20)));
  });
}

Router Routes(EventLog* events) {
  Router r;
  auto log_close = [events](const std::shared_ptr<WebSocket>& ws) {
    ws->OnClose([events](WebSocket::CloseReason reason) {
      events->Add(std::string("closed:") + ReasonName(reason));
    });
  };
  // Needs the key: the client's Authorization header must have been sent.
  Must(r.AddWebSocket("/v1/echo", Access::kSubmitter, [events, log_close](const Request&) {
    WebSocketAccept accept;
    accept.on_open = [events, log_close](std::shared_ptr<WebSocket> ws) {
      log_close(ws);
      Echo(ws, events);
    };
    return Reply(std::move(accept));
  }));
  Must(r.AddWebSocket("/v1/bye", Access::kPublic, [log_close](const Request&) {
    WebSocketAccept accept;
    accept.on_open = [log_close](std::shared_ptr<WebSocket> ws) {
      log_close(ws);
      ws->Send("bye");
      ws->Close();
    };
    return Reply(std::move(accept));
  }));
  Must(r.AddWebSocket("/v1/deny", Access::kPublic, [](const Request&) {
    return Reply(ErrorResponse(401, "unauthenticated", "runner key 'r1' is not known"));
  }));
  Must(r.AddWebSocket("/v1/gone", Access::kPublic, [](const Request&) {
    return Reply(ErrorResponse(404, "not_found", "no such coordinator"));
  }));
  return r;
}

TEST(WsClientUrlTest, ParsesWsAndWssUrls) {
  Result<WsUrl> a = ParseWsUrl("ws://coordinator.example/v1/runners/r1/connect?x=1");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_FALSE(a->tls);
  EXPECT_EQ(a->host, "coordinator.example");
  EXPECT_EQ(a->port, 80);
  EXPECT_EQ(a->target, "/v1/runners/r1/connect?x=1");

  Result<WsUrl> b = ParseWsUrl("WSS://[::1]:8443");
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_TRUE(b->tls);
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, 8443);
  EXPECT_EQ(b->target, "/");

  Result<WsUrl> c = ParseWsUrl("wss://10.0.0.7?token=t");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->host, "10.0.0.7");
  EXPECT_EQ(c->port, 443);
  EXPECT_EQ(c->target, "/?token=t");
}

TEST(WsClientUrlTest, RefusesBadUrlsAndHeaders) {
  for (const char* url :
       {"", "http://h/", "ws://", "ws:///p", "ws://h:0/", "ws://h:65536/", "ws://h:8x/", "ws://h:/",
        "ws://user:pw@h/", "ws://h/#frag", "ws://[::1/", "ws://[nothost]:80/", "ws://::1/",
        "ws://h/a b", "ws://h/\r\nX: y", "ws://h\\x/"}) {
    Result<WsUrl> r = ParseWsUrl(url);
    EXPECT_FALSE(r.ok()) << url;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << url;
    }
  }
  Seen seen;
  WsClientOptions o;
  o.url = "http://127.0.0.1:1/";
  auto bad_url = WsClient::Connect(o, seen.Callbacks());
  ASSERT_FALSE(bad_url.ok());
  EXPECT_EQ(bad_url.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(bad_url.error().message.find("ws://"), std::string::npos) << bad_url.error().message;

  o.url = "ws://127.0.0.1:1/";
  for (auto header : std::vector<std::pair<std::string, std::string>>{
           {"Bad Name", "v"}, {"X-Ok", "a\r\nInjected: 1"}, {"Host", "evil"}, {"", "v"}}) {
    o.headers = {header};
    auto r = WsClient::Connect(o, seen.Callbacks());
    ASSERT_FALSE(r.ok()) << header.first;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << header.first;
  }
  EXPECT_TRUE(seen.closes().empty());
}

class WsClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions o;
    o.listen = {"127.0.0.1:0"};
    o.ws_queue_messages = 16;
    auto auth = Authenticator::Create({{"runner", Role::kSubmitter, Sha256Hex(kKey)}});
    ASSERT_TRUE(auth.ok());
    auto s = Server::Start(std::move(o), Routes(&events_), std::move(*auth));
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    server_ = std::move(*s);
    port_ = server_->addresses()[0].port;
  }

  WsClientOptions Options(const std::string& path) {
    WsClientOptions o;
    o.url = "ws://127.0.0.1:" + std::to_string(port_) + path;
    o.headers = {{"Authorization", std::string("Bearer ") + kKey}};
    return o;
  }

  EventLog events_;
  std::unique_ptr<Server> server_;
  uint16_t port_ = 0;
};

TEST_F(WsClientTest, EchoesTextAndBinaryInOrder) {
  Seen seen;
  auto client = WsClient::Connect(Options("/v1/echo"), seen.Callbacks());
  ASSERT_TRUE(client.ok()) << client.error().message;
  constexpr int kCount = 1000;
  for (int i = 0; i < kCount; ++i) {
    if (i % 2 == 0) {
      ASSERT_TRUE((*client)->Send("text " + std::to_string(i)));
    } else {
      ASSERT_TRUE((*client)->SendBinary(std::string("bin\0\xff", 5) + std::to_string(i)));
    }
  }
  ASSERT_TRUE(seen.WaitMessages(kCount)) << seen.messages().size();
  auto got = seen.messages();
  ASSERT_EQ(got.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) {
    if (i % 2 == 0) {
      EXPECT_EQ(got[i], std::make_pair("text " + std::to_string(i), false)) << i;
    } else {
      EXPECT_EQ(got[i], std::make_pair(std::string("bin\0\xff", 5) + std::to_string(i), true)) << i;
    }
  }
  EXPECT_EQ((*client)->queued_bytes(), 0u);
  EXPECT_FALSE((*client)->closed());
  EXPECT_TRUE(seen.closes().empty());
}

TEST_F(WsClientTest, ServerCloseEndsTheLinkOnce) {
  Seen seen;
  auto client = WsClient::Connect(Options("/v1/bye"), seen.Callbacks());
  ASSERT_TRUE(client.ok()) << client.error().message;
  ASSERT_TRUE(seen.WaitClosed());
  EXPECT_TRUE((*client)->closed());
  EXPECT_FALSE((*client)->Send("too late"));
  (*client)->Close();
  (*client)->Abort();
  client->reset();  // joins the I/O thread: nothing can be called after this
  ASSERT_EQ(seen.messages().size(), 1u);
  EXPECT_EQ(seen.messages()[0].first, "bye");
  ASSERT_EQ(seen.closes().size(), 1u);
  EXPECT_EQ(seen.closes()[0].rfind("closed by the server (1000", 0), 0u) << seen.closes()[0];
  EXPECT_TRUE(events_.WaitFor("closed:server_closed"));
}

TEST_F(WsClientTest, CloseSendsWhatIsQueuedThenClosesGracefully) {
  Seen seen;
  auto client = WsClient::Connect(Options("/v1/echo"), seen.Callbacks());
  ASSERT_TRUE(client.ok()) << client.error().message;
  ASSERT_TRUE((*client)->Send("first"));
  ASSERT_TRUE((*client)->SendBinary("second"));
  (*client)->Close();
  (*client)->Close();  // idempotent
  EXPECT_FALSE((*client)->Send("after close"));
  EXPECT_FALSE((*client)->SendBinary("after close"));
  ASSERT_TRUE(seen.WaitClosed());
  EXPECT_EQ(seen.closes(), std::vector<std::string>{"closed"});
  EXPECT_TRUE((*client)->closed());
  // The server got both messages, in order, and the client's close frame (the server may
  // report the close before its handler has seen the messages: they run on different workers).
  ASSERT_TRUE(events_.WaitFor("closed:client_closed"));
  ASSERT_TRUE(events_.WaitFor("binary:second"));
  auto all = events_.All();
  std::erase(all, "closed:client_closed");
  EXPECT_EQ(all, (std::vector<std::string>{"text:first", "binary:second"}));
  client->reset();
  EXPECT_EQ(seen.closes().size(), 1u);
}

TEST_F(WsClientTest, DestructorClosesGracefully) {
  Seen seen;
  auto client = WsClient::Connect(Options("/v1/echo"), seen.Callbacks());
  ASSERT_TRUE(client.ok()) << client.error().message;
  ASSERT_TRUE((*client)->Send("only"));
  client->reset();
  EXPECT_EQ(seen.closes(), std::vector<std::string>{"closed"});
  EXPECT_TRUE(events_.WaitFor("text:only"));
  EXPECT_TRUE(events_.WaitFor("closed:client_closed"));
}

TEST_F(WsClientTest, AbortEndsTheLinkAtOnce) {
  Seen seen;
  auto client = WsClient::Connect(Options("/v1/echo"), seen.Callbacks());
  ASSERT_TRUE(client.ok()) << client.error().message;
  (*client)->Abort();
  ASSERT_TRUE(seen.WaitClosed());
  EXPECT_EQ(seen.closes(), std::vector<std::string>{"aborted"});
  EXPECT_FALSE((*client)->Send("x"));
  // No close frame: the server sees the connection drop.
  EXPECT_TRUE(events_.WaitFor("closed:client_closed")) << ::testing::PrintToString(events_.All());
}

TEST_F(WsClientTest, RefusedUpgradesReportStatusAndBody) {
  Seen seen;
  auto denied = WsClient::Connect(Options("/v1/deny"), seen.Callbacks());
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.error().code, ErrorCode::kPermissionDenied);
  EXPECT_NE(denied.error().message.find("HTTP 401"), std::string::npos) << denied.error().message;
  EXPECT_NE(denied.error().message.find("runner key 'r1' is not known"), std::string::npos)
      << denied.error().message;

  WsClientOptions no_key = Options("/v1/echo");
  no_key.headers.clear();
  auto unauthenticated = WsClient::Connect(no_key, seen.Callbacks());
  ASSERT_FALSE(unauthenticated.ok());
  EXPECT_EQ(unauthenticated.error().code, ErrorCode::kPermissionDenied);
  EXPECT_NE(unauthenticated.error().message.find("401"), std::string::npos);

  WsClientOptions wrong_key = Options("/v1/echo");
  wrong_key.headers = {{"Authorization", "Bearer nope"}};
  auto wrong = WsClient::Connect(wrong_key, seen.Callbacks());
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code, ErrorCode::kPermissionDenied);

  auto gone = WsClient::Connect(Options("/v1/gone"), seen.Callbacks());
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(gone.error().message.find("HTTP 404"), std::string::npos) << gone.error().message;
  EXPECT_NE(gone.error().message.find("no such coordinator"), std::string::npos);
  EXPECT_TRUE(seen.closes().empty());
}

// A TCP socket on 127.0.0.1 with a port; listening or not.
UniqueFd LocalSocket(bool listening, uint16_t* port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sin);
  if (!fd || bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0 ||
      (listening && listen(fd.get(), 8) != 0) ||
      getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sin), &len) != 0) {
    return UniqueFd();
  }
  *port = ntohs(sin.sin_port);
  return fd;
}

TEST(WsClientConnectTest, RefusedConnectionIsUnavailable) {
  // Bound but not listening: the port stays ours and every connect is refused.
  uint16_t port = 0;
  UniqueFd fd = LocalSocket(false, &port);
  ASSERT_TRUE(fd);
  Seen seen;
  WsClientOptions o;
  o.url = "ws://127.0.0.1:" + std::to_string(port) + "/";
  auto r = WsClient::Connect(o, seen.Callbacks());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(r.error().message.find("connecting to 127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("refused"), std::string::npos) << r.error().message;
}

TEST(WsClientConnectTest, SilentServerTimesOut) {
  // Listening, never accepting: TCP connects (the backlog), the upgrade is never answered.
  uint16_t port = 0;
  UniqueFd fd = LocalSocket(true, &port);
  ASSERT_TRUE(fd);
  Seen seen;
  WsClientOptions o;
  o.url = "ws://127.0.0.1:" + std::to_string(port) + "/";
  o.connect_timeout = 300ms;
  auto start = std::chrono::steady_clock::now();
  auto r = WsClient::Connect(o, seen.Callbacks());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(r.error().message.find("WebSocket upgrade with 127.0.0.1"), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("timed out"), std::string::npos) << r.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_F(WsClientTest, SendQueueIsBounded) {
  Seen seen;
  WsClientOptions o = Options("/v1/echo");
  o.max_queued_bytes = 1024;
  auto client = WsClient::Connect(o, seen.Callbacks());
  ASSERT_TRUE(client.ok()) << client.error().message;
  EXPECT_FALSE((*client)->SendBinary(std::string(1025, 'x')));
  ASSERT_TRUE(seen.WaitClosed());
  EXPECT_EQ(seen.closes(), std::vector<std::string>{"send queue full"});
  EXPECT_FALSE((*client)->Send("x"));
  EXPECT_EQ((*client)->queued_bytes(), 0u);
}

TEST_F(WsClientTest, KeepAlivePingsHoldAQuietLink) {
  Seen seen;
  WsClientOptions o = Options("/v1/echo");
  o.idle_timeout = 200ms;
  auto client = WsClient::Connect(o, seen.Callbacks());
  ASSERT_TRUE(client.ok()) << client.error().message;
  // Five idle timeouts pass with no data; the server's pongs keep the link up.
  EXPECT_FALSE(seen.WaitClosed(1000ms)) << seen.closes()[0];
  ASSERT_TRUE((*client)->Send("still here"));
  ASSERT_TRUE(seen.WaitMessages(1));
  EXPECT_EQ(seen.messages()[0].first, "still here");
}

TEST_F(WsClientTest, DestroyedFromItsOwnCallback) {
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::unique_ptr<WsClient> client;
    std::vector<std::string> log;
  } state;
  WsClientCallbacks cb;
  cb.on_message = [&state](std::string data, bool) {
    std::lock_guard lock(state.mu);
    state.client.reset();
    state.log.push_back("destroyed after " + data);
    state.cv.notify_all();
  };
  cb.on_close = [&state](std::string why) {
    std::lock_guard lock(state.mu);
    state.log.push_back("on_close " + why);
  };
  auto r = WsClient::Connect(Options("/v1/echo"), std::move(cb));
  ASSERT_TRUE(r.ok()) << r.error().message;
  std::unique_lock lock(state.mu);
  state.client = std::move(*r);
  ASSERT_TRUE(state.client->Send("ping"));
  ASSERT_TRUE(state.cv.wait_for(lock, kWait, [&] { return !state.log.empty(); }));
  lock.unlock();
  // The link ended without the close handshake, and no callback followed.
  EXPECT_TRUE(events_.WaitFor("closed:client_closed"));
  lock.lock();
  EXPECT_EQ(state.log, std::vector<std::string>{"destroyed after ping"});
  EXPECT_EQ(state.client, nullptr);
}

// ---- wss:// against a Python server ----

constexpr char kEchoServer[] = R"py(
import asyncio, ssl, sys
import websockets

async def echo(ws, path=None):
    async for message in ws:
        await ws.send(message)

async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    async with websockets.serve(echo, "127.0.0.1", 0, ssl=ctx) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
)py";

// Completes one upgrade, then never reads again: pings go unanswered.
constexpr char kSilentServer[] = R"py(
import base64, hashlib, re, socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
head = b""
while b"\r\n\r\n" not in head:
    head += c.recv(4096)
key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head).group(1)
accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
sys.stdin.read()
)py";

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// A python3 that has the websockets module (Debian's python3-websockets is in /usr/bin's), or "".
std::string FindPython() {
  std::vector<std::string> candidates = {"/usr/bin/python3"};
  std::stringstream path(getenv("PATH") ? getenv("PATH") : "");
  for (std::string dir; std::getline(path, dir, ':');) {
    if (!dir.empty()) candidates.push_back(dir + "/python3");
  }
  for (const std::string& py : candidates) {
    if (access(py.c_str(), X_OK) != 0) continue;
    if (system((Quote(py) + " -c 'import websockets' >/dev/null 2>&1").c_str()) == 0) return py;
  }
  return "";
}

// A child process started by the test and killed (by its pid) when this goes away.
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // Runs argv (argv[0] a path), stdout to a pipe, stderr to `log`, stdin an open pipe.
  bool Start(const std::vector<std::string>& args, const std::string& log) {
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    int out[2];
    int in[2];
    if (pipe2(out, O_CLOEXEC) != 0) return false;
    if (pipe2(in, O_CLOEXEC) != 0) return false;
    out_ = UniqueFd(out[0]);
    in_ = UniqueFd(in[1]);
    UniqueFd out_w(out[1]);
    UniqueFd in_r(in[0]);
    UniqueFd err(open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!err) return false;
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      // Only async-signal-safe calls here.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      dup2(in_r.get(), 0);
      dup2(out_w.get(), 1);
      dup2(err.get(), 2);
      execv(argv[0], argv.data());
      _exit(127);
    }
    return true;
  }

  // The first line the child prints, waiting up to `timeout`; "" on timeout or EOF.
  std::string ReadLine(std::chrono::milliseconds timeout) {
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (line.find('\n') == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{out_.get(), POLLIN, 0};
      if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) != 1) return "";
      char buf[256];
      ssize_t n = read(out_.get(), buf, sizeof(buf));
      if (n <= 0) return "";
      line.append(buf, static_cast<size_t>(n));
    }
    return line.substr(0, line.find('\n'));
  }

 private:
  pid_t pid_ = -1;
  UniqueFd out_;
  UniqueFd in_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

class WsClientPythonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    python_ = FindPython();
    if (python_.empty()) {
      GTEST_SKIP() << "no python3 with the websockets module (apt-get install python3-websockets)";
    }
    ASSERT_FALSE(dir_.path().empty());
    const std::string d = dir_.path() + "/";
    ca_ = d + "ca.pem";
    other_ca_ = d + "other-ca.pem";
    Status made = sbx::testing::MakeTestCertificates(dir_.path());
    if (!made.ok() && made.error().code == ErrorCode::kUnavailable) {
      GTEST_SKIP() << made.error().message;
    }
    ASSERT_TRUE(made.ok()) << made.error().message;
    std::ofstream(d + "echo.py") << kEchoServer;
    std::ofstream(d + "silent.py") << kSilentServer;
  }

  // Starts a Python server script from the temp dir; its port, or 0.
  uint16_t StartServer(const std::string& script, std::vector<std::string> args = {}) {
    std::vector<std::string> argv = {python_, "-u", dir_.path() + "/" + script};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string log = dir_.path() + "/" + script + ".log";
    if (!server_.Start(argv, log)) return 0;
    std::string line = server_.ReadLine(15s);
    int port = line.empty() ? 0 : std::atoi(line.c_str());
    EXPECT_GT(port, 0) << "the server printed no port: " << ReadFile(log);
    return static_cast<uint16_t>(port);
  }
  uint16_t StartEcho() {
    return StartServer("echo.py", {dir_.path() + "/server.pem", dir_.path() + "/server.key"});
  }

  std::string python_;
  testing::TempDir dir_{"sbx_ws_client"};
  std::string ca_;
  std::string other_ca_;
  Child server_;
};

TEST_F(WsClientPythonTest, EchoesWithTheRightCa) {
  const uint16_t port = StartEcho();
  ASSERT_GT(port, 0);
  Seen seen;
  WsClientOptions o;
  o.url = "wss://127.0.0.1:" + std::to_string(port) + "/runner";
  o.ca_file = ca_;
  auto client = WsClient::Connect(o, seen.Callbacks());
  ASSERT_TRUE(client.ok()) << client.error().message;
  ASSERT_TRUE((*client)->Send("over tls"));
  ASSERT_TRUE((*client)->SendBinary(std::string("\0\1\2", 3)));
  ASSERT_TRUE(seen.WaitMessages(2));
  EXPECT_EQ(seen.messages()[0], std::make_pair(std::string("over tls"), false));
  EXPECT_EQ(seen.messages()[1], std::make_pair(std::string("\0\1\2", 3), true));
  (*client)->Close();
  ASSERT_TRUE(seen.WaitClosed());
  EXPECT_EQ(seen.closes(), std::vector<std::string>{"closed"});
}

TEST_F(WsClientPythonTest, UnrelatedCaFailsVerification) {
  const uint16_t port = StartEcho();
  ASSERT_GT(port, 0);
  Seen seen;
  WsClientOptions o;
  o.url = "wss://127.0.0.1:" + std::to_string(port) + "/";
  o.ca_file = other_ca_;
  auto r = WsClient::Connect(o, seen.Callbacks());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(r.error().message.find("TLS handshake with 127.0.0.1:" + std::to_string(port) +
                                   ": certificate verify failed"),
            std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("--ca-file"), std::string::npos) << r.error().message;

  // The system's CAs do not know the test CA either: "" verifies too.
  o.ca_file = "";
  r = WsClient::Connect(o, seen.Callbacks());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("certificate verify failed"), std::string::npos)
      << r.error().message;
  EXPECT_TRUE(seen.closes().empty());
}

TEST_F(WsClientPythonTest, NameTheCertificateDoesNotHoldFails) {
  const uint16_t port = StartEcho();
  ASSERT_GT(port, 0);
  Seen seen;
  WsClientOptions o;
  o.url = "wss://localhost:" + std::to_string(port) + "/";  // the certificate has IP:127.0.0.1
  o.ca_file = ca_;
  auto r = WsClient::Connect(o, seen.Callbacks());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(r.error().message.find("certificate verify failed (hostname mismatch)"),
            std::string::npos)
      << r.error().message;
}

TEST_F(WsClientPythonTest, UnreadableCaFileIsInvalidArgument) {
  Seen seen;
  WsClientOptions o;
  o.url = "wss://127.0.0.1:1/";
  o.ca_file = dir_.path() + "/no-such-ca.pem";
  auto r = WsClient::Connect(o, seen.Callbacks());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("no-such-ca.pem"), std::string::npos) << r.error().message;
}

TEST_F(WsClientPythonTest, UnansweredPingsEndTheLink) {
  const uint16_t port = StartServer("silent.py");
  ASSERT_GT(port, 0);
  Seen seen;
  WsClientOptions o;
  o.url = "ws://127.0.0.1:" + std::to_string(port) + "/";
  o.idle_timeout = 300ms;
  auto client = WsClient::Connect(o, seen.Callbacks());
  ASSERT_TRUE(client.ok()) << client.error().message;
  ASSERT_TRUE(seen.WaitClosed());
  EXPECT_EQ(seen.closes(), std::vector<std::string>{"no frame from the server for 300 ms"});
  EXPECT_TRUE((*client)->closed());
}

}  // namespace
}  // namespace sbx::api
