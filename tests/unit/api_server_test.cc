// A real server on 127.0.0.1:0 and on a unix socket in a temp dir, driven by a raw-socket client:
// routing, parameters, colon verbs, queries, authentication, the JSON error statuses, keep-alive,
// limits and timeouts, hostile input, and the listener forms.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>

#include "api/http/server.h"
#include "api/testing/raw_client.h"
#include "api/testing/test_util.h"

namespace sbx::api {
namespace {

using testing::HttpReply;
using testing::MakeRequest;
using testing::RawConn;

constexpr char kSubmitterKey[] = "submitter-secret";
constexpr char kReviewerKey[] = "reviewer-secret";
constexpr char kAdminKey[] = "admin-secret";

Authenticator TestKeys() {
  auto auth = Authenticator::Create({{"sam", Role::kSubmitter, Sha256Hex(kSubmitterKey)},
                                     {"rae", Role::kReviewer, Sha256Hex(kReviewerKey)},
                                     {"ada", Role::kAdmin, Sha256Hex(kAdminKey)}});
  if (!auth.ok()) throw std::runtime_error(auth.error().message);
  return std::move(*auth);
}

nlohmann::json Who(const Request& r) {
  if (!r.principal) return nullptr;
  return {{"name", r.principal->key_name}, {"role", RoleName(r.principal->role)}};
}

void Must(Status s) {
  if (!s.ok()) throw std::runtime_error(s.error().message);
}

Router TestRoutes() {
  Router r;
  Must(r.Add(Method::kGet, "/healthz", Access::kPublic, [](const Request& req) -> Reply {
    return JsonResponse(200, {{"ok", true}, {"peer_set", !req.peer.empty()}});
  }));
  Must(r.Add(Method::kGet, "/v1/runs", Access::kSubmitter, [](const Request& req) -> Reply {
    nlohmann::json q = nlohmann::json::array();
    for (const auto& [k, v] : req.query.items()) q.push_back({k, v});
    std::vector<std::string> streams;
    for (auto s : req.query.GetAll("stream")) streams.emplace_back(s);
    return JsonResponse(200, {{"who", Who(req)}, {"query", q}, {"stream", streams}});
  }));
  Must(r.Add(Method::kPost, "/v1/runs", Access::kSubmitter, [](const Request& req) -> Reply {
    return JsonResponse(201, {{"who", Who(req)}, {"body", req.body}});
  }));
  Must(r.Add(Method::kGet, "/v1/runs/{id}", Access::kSubmitter, [](const Request& req) -> Reply {
    return JsonResponse(200, {{"id", req.PathParam("id")}, {"who", Who(req)}});
  }));
  for (const char* verb : {"approve", "reject"}) {
    Must(r.Add(Method::kPost, std::string("/v1/runs/{id}:") + verb, Access::kReviewer,
               [verb](const Request& req) -> Reply {
                 return JsonResponse(
                     200, {{"id", req.PathParam("id")}, {"verb", verb}, {"who", Who(req)}});
               }));
  }
  Must(r.Add(Method::kPost, "/v1/runs/{id}:cancel", Access::kSubmitter,
             [](const Request& req) -> Reply {
               return JsonResponse(200, {{"id", req.PathParam("id")}, {"verb", "cancel"}});
             }));
  Must(r.Add(Method::kGet, "/v1/audit", Access::kAdmin, [](const Request& req) -> Reply {
    return JsonResponse(200, {{"who", Who(req)}});
  }));
  Must(r.Add(Method::kGet, "/v1/echo/{x}", Access::kPublic, [](const Request& req) -> Reply {
    return JsonResponse(200, {{"x", req.PathParam("x")}});
  }));
  Must(r.Add(Method::kGet, "/v1/throw", Access::kPublic,
             [](const Request&) -> Reply { throw std::runtime_error("boom"); }));
  Must(r.Add(Method::kGet, "/v1/bad-header", Access::kPublic, [](const Request&) -> Reply {
    Response res;
    res.headers.Add("X-Bad", "a\r\nInjected: 1");
    return res;
  }));
  Must(r.Add(Method::kGet, "/v1/missing-run", Access::kPublic, [](const Request&) -> Reply {
    return ErrorResponse(MakeError(ErrorCode::kNotFound, "run run_x not found"));
  }));
  return r;
}

ServerOptions TestOptions() {
  ServerOptions o;
  o.io_threads = 2;
  o.worker_threads = 2;
  o.max_body_bytes = 1024;
  o.max_header_bytes = 2048;
  o.request_timeout = std::chrono::milliseconds(1000);
  o.write_timeout = std::chrono::milliseconds(5000);
  return o;
}

class ApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }

  void StartServer(ServerOptions o = TestOptions()) {
    socket_path_ = dir_.path() + "/api.sock";
    o.listen = {"127.0.0.1:0", "unix:" + socket_path_};
    auto s = Server::Start(std::move(o), TestRoutes(), TestKeys());
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    server_ = std::move(*s);
    ASSERT_EQ(server_->addresses().size(), 2u);
    port_ = server_->addresses()[0].port;
    ASSERT_NE(port_, 0);
  }

  RawConn Connect() {
    std::optional<RawConn> c = RawConn::Tcp(port_);
    if (!c) throw std::runtime_error("connect to 127.0.0.1 failed");
    return std::move(*c);
  }

  // One request on a fresh connection.
  HttpReply Call(const std::string& request) {
    RawConn c = Connect();
    std::optional<HttpReply> reply = testing::RoundTrip(c, request);
    if (!reply) throw std::runtime_error("no reply to: " + request.substr(0, 80));
    return std::move(*reply);
  }
  HttpReply Get(const std::string& target,
                std::vector<std::pair<std::string, std::string>> headers = {}) {
    return Call(MakeRequest("GET", target, headers));
  }

  testing::TempDir dir_;
  std::string socket_path_;
  std::unique_ptr<Server> server_;
  uint16_t port_ = 0;
};

const std::vector<std::pair<std::string, std::string>> kSubmitter = {{"x-api-key", kSubmitterKey}};
const std::vector<std::pair<std::string, std::string>> kReviewer = {{"x-api-key", kReviewerKey}};

TEST_F(ApiServerTest, HealthzOverTcpAndUnix) {
  StartServer();
  HttpReply tcp = Get("/healthz");
  EXPECT_EQ(tcp.status, 200);
  EXPECT_EQ(tcp.Header("Content-Type"), "application/json");
  EXPECT_EQ(tcp.Json()["ok"], true);
  EXPECT_EQ(tcp.Json()["peer_set"], true);

  std::optional<RawConn> u = RawConn::Unix(socket_path_);
  ASSERT_TRUE(u.has_value());
  auto reply = testing::RoundTrip(*u, MakeRequest("GET", "/healthz"));
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 200);
  struct stat st {};
  ASSERT_EQ(stat(socket_path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
}

TEST_F(ApiServerTest, PathParamsAndColonVerbs) {
  StartServer();
  HttpReply get = Get("/v1/runs/run_42", kSubmitter);
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(get.Json()["id"], "run_42");
  EXPECT_EQ(get.Json()["who"]["name"], "sam");

  HttpReply approve = Call(MakeRequest("POST", "/v1/runs/run_42:approve", kReviewer));
  EXPECT_EQ(approve.status, 200);
  EXPECT_EQ(approve.Json()["id"], "run_42");
  EXPECT_EQ(approve.Json()["verb"], "approve");
  EXPECT_EQ(approve.Json()["who"]["role"], "reviewer");

  HttpReply cancel = Call(MakeRequest("POST", "/v1/runs/a%20b:cancel", kSubmitter));
  EXPECT_EQ(cancel.status, 200);
  EXPECT_EQ(cancel.Json()["id"], "a b");
  EXPECT_EQ(cancel.Json()["verb"], "cancel");

  HttpReply wrong_verb = Get("/v1/runs/run_42:approve", kReviewer);
  EXPECT_EQ(wrong_verb.status, 405);
  EXPECT_EQ(wrong_verb.Header("Allow"), "POST");
  EXPECT_EQ(wrong_verb.ErrorCode(), "method_not_allowed");
}

TEST_F(ApiServerTest, QueryStrings) {
  StartServer();
  HttpReply r = Get("/v1/runs?stream=stdout&stream=stderr&tail=10&follow&q=a+b%26c", kSubmitter);
  ASSERT_EQ(r.status, 200);
  nlohmann::json j = r.Json();
  EXPECT_EQ(j["stream"], nlohmann::json::array({"stdout", "stderr"}));
  EXPECT_EQ(j["query"].size(), 5u);
  EXPECT_EQ(j["query"][3], nlohmann::json::array({"follow", ""}));
  EXPECT_EQ(j["query"][4], nlohmann::json::array({"q", "a b&c"}));
}

TEST_F(ApiServerTest, Authentication) {
  StartServer();
  HttpReply none = Get("/v1/runs");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.ErrorCode(), "unauthenticated");
  EXPECT_EQ(none.Header("WWW-Authenticate"), "Bearer");

  HttpReply wrong = Get("/v1/runs", {{"x-api-key", "guess"}});
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.ErrorCode(), "unauthenticated");

  HttpReply bearer = Get("/v1/runs", {{"Authorization", std::string("Bearer ") + kSubmitterKey}});
  EXPECT_EQ(bearer.status, 200);
  EXPECT_EQ(bearer.Json()["who"]["name"], "sam");

  HttpReply low = Call(MakeRequest("POST", "/v1/runs/r1:approve", kSubmitter));
  EXPECT_EQ(low.status, 403);
  EXPECT_EQ(low.ErrorCode(), "permission_denied");
  EXPECT_EQ(Get("/v1/audit", kReviewer).status, 403);

  // Admin may do everything.
  const std::vector<std::pair<std::string, std::string>> admin = {{"x-api-key", kAdminKey}};
  EXPECT_EQ(Get("/v1/audit", admin).status, 200);
  EXPECT_EQ(Call(MakeRequest("POST", "/v1/runs/r1:reject", admin)).status, 200);
  EXPECT_EQ(Get("/v1/runs", admin).status, 200);
  // Public routes need no key and ignore a bad one.
  EXPECT_EQ(Get("/healthz", {{"x-api-key", "guess"}}).status, 200);
}

TEST_F(ApiServerTest, RoutingErrorsAreJson) {
  StartServer();
  HttpReply missing = Get("/v2/nothing");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.ErrorCode(), "not_found");
  EXPECT_EQ(missing.Header("Content-Type"), "application/json");

  HttpReply verb = Call(MakeRequest("DELETE", "/v1/runs", kSubmitter));
  EXPECT_EQ(verb.status, 405);
  EXPECT_EQ(verb.Header("Allow"), "GET, POST");

  for (const char* bad : {"/v1/runs/a%2Fb", "/v1/runs/%zz", "/v1/runs/..", "/v1/runs/a%00"}) {
    HttpReply r = Get(bad, kSubmitter);
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_EQ(r.ErrorCode(), "bad_request") << bad;
  }
  EXPECT_EQ(Get("/v1/runs?a=%g0", kSubmitter).status, 400);
  EXPECT_EQ(Get("http://example.com/healthz").status, 400);

  HttpReply mapped = Get("/v1/missing-run");
  EXPECT_EQ(mapped.status, 404);
  EXPECT_EQ(mapped.ErrorCode(), "not_found");
  EXPECT_EQ(mapped.Json()["error"]["message"], "run run_x not found");
}

TEST_F(ApiServerTest, HandlerFailuresBecome500) {
  StartServer();
  HttpReply thrown = Get("/v1/throw");
  EXPECT_EQ(thrown.status, 500);
  EXPECT_EQ(thrown.ErrorCode(), "internal");
  HttpReply injected = Get("/v1/bad-header");
  EXPECT_EQ(injected.status, 500);
  EXPECT_EQ(injected.Header("Injected"), "");
  // Invalid UTF-8 in a parameter is echoed without failing the JSON encoder.
  HttpReply utf = Get("/v1/echo/%ff%fe");
  EXPECT_EQ(utf.status, 200);
  EXPECT_TRUE(utf.Json().is_object());
}

TEST_F(ApiServerTest, BodyLimit) {
  StartServer();
  HttpReply at_limit = Call(MakeRequest("POST", "/v1/runs", kSubmitter, std::string(1024, 'x')));
  EXPECT_EQ(at_limit.status, 201);
  EXPECT_EQ(at_limit.Json()["body"].get<std::string>().size(), 1024u);

  // Refused from the Content-Length alone, before any body byte.
  RawConn c = Connect();
  ASSERT_TRUE(c.Send("POST /v1/runs HTTP/1.1\r\nHost: t\r\nx-api-key: " +
                     std::string(kSubmitterKey) + "\r\nContent-Length: 5000\r\n\r\n"));
  auto big = testing::ReadReply(c);
  ASSERT_TRUE(big.has_value());
  EXPECT_EQ(big->status, 413);
  EXPECT_EQ(big->ErrorCode(), "payload_too_large");
  EXPECT_TRUE(c.WaitClosed());

  // A chunked body that grows past the limit.
  RawConn d = Connect();
  std::string chunk(600, 'y');
  ASSERT_TRUE(d.Send("POST /v1/runs HTTP/1.1\r\nHost: t\r\nx-api-key: " +
                     std::string(kSubmitterKey) +
                     "\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n" + chunk + "\r\n258\r\n" +
                     chunk + "\r\n0\r\n\r\n"));
  auto chunked = testing::ReadReply(d);
  ASSERT_TRUE(chunked.has_value());
  EXPECT_EQ(chunked->status, 413);
}

TEST_F(ApiServerTest, HeaderLimit) {
  StartServer();
  HttpReply r = Get("/healthz", {{"X-Big", std::string(4096, 'h')}});
  EXPECT_EQ(r.status, 431);
  EXPECT_EQ(r.ErrorCode(), "headers_too_large");
}

// A connection's share is given back when the server has closed it, a moment after the client
// sees the close: retry a little (bounded) for the freed share.
std::optional<HttpReply> RetryUntilServed(const std::function<RawConn()>& connect,
                                          const std::string& request) {
  std::optional<HttpReply> r;
  for (int i = 0; i < 200 && (!r || r->status != 200); ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    RawConn c = connect();
    r = testing::RoundTrip(c, request);
  }
  return r;
}

TEST_F(ApiServerTest, ConnectionsPerKeyAreCapped) {
  ServerOptions o = TestOptions();
  o.max_connections_per_address = 0;
  o.max_connections_per_key = 2;
  StartServer(o);
  // Two connections of key sam: both served, kept open.
  RawConn a = Connect(), b = Connect();
  for (RawConn* c : {&a, &b}) {
    auto r = testing::RoundTrip(*c, MakeRequest("GET", "/v1/runs", kSubmitter));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  // A third for sam: 429, naming the key; another key is served.
  RawConn c = Connect();
  auto refused = testing::RoundTrip(c, MakeRequest("GET", "/v1/runs", kSubmitter));
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 429);
  EXPECT_EQ(refused->Json()["error"]["code"], "too_many_connections");
  EXPECT_NE(refused->body.find("sam"), std::string::npos) << refused->body;
  RawConn d = Connect();
  auto other = testing::RoundTrip(d, MakeRequest("GET", "/v1/runs", kReviewer));
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 200);
  // A connection that changes key moves its share: b now counts for rae, so sam has room.
  auto moved = testing::RoundTrip(b, MakeRequest("GET", "/v1/runs", kReviewer));
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->status, 200);
  auto again = RetryUntilServed([this] { return Connect(); },
                                MakeRequest("GET", "/v1/runs", kSubmitter));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
}

TEST_F(ApiServerTest, ConnectionsPerAddressAreCappedButNotTheUnixSockets) {
  ServerOptions o = TestOptions();
  o.max_connections_per_address = 2;
  StartServer(o);
  RawConn a = Connect(), b = Connect();
  for (RawConn* c : {&a, &b}) {
    auto r = testing::RoundTrip(*c, MakeRequest("GET", "/healthz", {}));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  RawConn c = Connect();
  auto over = testing::RoundTrip(c, MakeRequest("GET", "/healthz", {}));
  ASSERT_TRUE(over);
  EXPECT_EQ(over->status, 429);
  EXPECT_NE(over->body.find("127.0.0.1"), std::string::npos) << over->body;
  // Local clients on the unix socket are not capped by address.
  for (int i = 0; i < 4; ++i) {
    std::optional<RawConn> local = RawConn::Unix(socket_path_);
    ASSERT_TRUE(local);
    auto r = testing::RoundTrip(*local, MakeRequest("GET", "/healthz", {}));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  // Closing one frees its share.
  { RawConn gone = std::move(a); }
  auto again = RetryUntilServed([this] { return Connect(); }, MakeRequest("GET", "/healthz", {}));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
}

TEST_F(ApiServerTest, KeepAliveAndPipelining) {
  StartServer();
  RawConn c = Connect();
  for (int i = 0; i < 5; ++i) {
    auto r =
        testing::RoundTrip(c, MakeRequest("GET", "/v1/runs/r" + std::to_string(i), kSubmitter));
    ASSERT_TRUE(r.has_value()) << i;
    EXPECT_EQ(r->Json()["id"], "r" + std::to_string(i));
  }
  // Errors that leave the request whole keep the connection too.
  auto nf = testing::RoundTrip(c, MakeRequest("GET", "/nope"));
  ASSERT_TRUE(nf.has_value());
  EXPECT_EQ(nf->status, 404);
  // Two requests in one write are answered in order.
  ASSERT_TRUE(c.Send(MakeRequest("GET", "/v1/runs/p1", kSubmitter) +
                     MakeRequest("GET", "/v1/runs/p2", kSubmitter)));
  auto p1 = testing::ReadReply(c);
  auto p2 = testing::ReadReply(c);
  ASSERT_TRUE(p1 && p2);
  EXPECT_EQ(p1->Json()["id"], "p1");
  EXPECT_EQ(p2->Json()["id"], "p2");
  // Connection: close is honoured.
  auto last = testing::RoundTrip(c, MakeRequest("GET", "/healthz", {{"Connection", "close"}}));
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->Header("Connection"), "close");
  EXPECT_TRUE(c.WaitClosed());
}

TEST_F(ApiServerTest, Http10AndExpectContinue) {
  StartServer();
  RawConn c = Connect();
  ASSERT_TRUE(c.Send("GET /healthz HTTP/1.0\r\n\r\n"));
  auto r = testing::ReadReply(c);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(c.WaitClosed());

  RawConn d = Connect();
  ASSERT_TRUE(
      d.Send("POST /v1/runs HTTP/1.1\r\nHost: t\r\nx-api-key: " + std::string(kSubmitterKey) +
             "\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"));
  auto cont = testing::ReadHead(d);
  ASSERT_TRUE(cont.has_value());
  EXPECT_EQ(cont->status, 100);
  ASSERT_TRUE(d.Send("hello"));
  auto created = testing::ReadReply(d);
  ASSERT_TRUE(created.has_value());
  EXPECT_EQ(created->status, 201);
  EXPECT_EQ(created->Json()["body"], "hello");
}

TEST_F(ApiServerTest, RequestsAreAuthenticatedBeforeTheirBodyIsRead) {
  StartServer();
  // No key: answered 401 on the head alone. The body is never sent; a server that waited for
  // it would answer 408 after the request timeout instead.
  RawConn anon = Connect();
  ASSERT_TRUE(anon.Send("POST /v1/runs HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"));
  auto r = testing::ReadReply(anon);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->Header("Connection"), "close");  // its body was left unread
  EXPECT_TRUE(anon.WaitClosed());
  // A wrong key, or a role below the route's, never gets 100 Continue.
  RawConn wrong = Connect();
  ASSERT_TRUE(wrong.Send(
      "POST /v1/runs HTTP/1.1\r\nHost: t\r\nx-api-key: nope\r\nExpect: 100-continue\r\n"
      "Content-Length: 1000\r\n\r\n"));
  auto w = testing::ReadReply(wrong);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->status, 401);
  RawConn low = Connect();
  ASSERT_TRUE(low.Send("POST /v1/runs/r1:approve HTTP/1.1\r\nHost: t\r\nx-api-key: " +
                       std::string(kSubmitterKey) +
                       "\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n"));
  auto l = testing::ReadReply(low);
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->status, 403);
  EXPECT_EQ(l->ErrorCode(), "permission_denied");
  // An unknown route with a body is refused before it too, and a request without a body keeps
  // its connection.
  RawConn nf = Connect();
  ASSERT_TRUE(nf.Send("POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"));
  auto n = testing::ReadReply(nf);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(n->status, 404);
  EXPECT_TRUE(nf.WaitClosed());
  RawConn keep = Connect();
  auto first = testing::RoundTrip(keep, MakeRequest("GET", "/v1/runs"));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->status, 401);
  auto second = testing::RoundTrip(keep, MakeRequest("GET", "/v1/runs", kSubmitter));
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->status, 200);
}

TEST_F(ApiServerTest, SlowRequestsTimeOutWith408) {
  StartServer();
  auto started = std::chrono::steady_clock::now();
  RawConn head = Connect();
  ASSERT_TRUE(head.Send("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: "));
  auto r = testing::ReadReply(head);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 408);
  EXPECT_EQ(r->ErrorCode(), "request_timeout");
  EXPECT_TRUE(head.WaitClosed());
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(4));

  RawConn body = Connect();
  ASSERT_TRUE(body.Send("POST /v1/runs HTTP/1.1\r\nHost: t\r\nx-api-key: " +
                        std::string(kSubmitterKey) + "\r\nContent-Length: 10\r\n\r\nabc"));
  auto rb = testing::ReadReply(body);
  ASSERT_TRUE(rb.has_value());
  EXPECT_EQ(rb->status, 408);

  // An idle keep-alive connection is just closed.
  RawConn idle = Connect();
  EXPECT_TRUE(idle.WaitClosed());
  EXPECT_EQ(idle.buffered(), 0u);
}

TEST_F(ApiServerTest, HostileInputDoesNotCrash) {
  StartServer();
  const std::vector<std::string> cases = {
      std::string("GET /healthz HTTP/1.1\r\nHo\0st: t\r\n\r\n", 35),
      std::string("GET /healthz HTTP/1.1\r\nHost: a\0b\r\n\r\n", 36),
      std::string("GET /heal\0thz HTTP/1.1\r\n\r\n", 26),
      std::string(8, '\0') + "\r\n\r\n",
      "GET /healthz HTTP/9.9\r\n\r\n",
      "GET /healthz HTTP/1.1\n\n",
      "GET\r\n\r\n",
      "  GET / HTTP/1.1\r\n\r\n",
      std::string(5000, 'G') + " / HTTP/1.1\r\n\r\n",
      "GET /" + std::string(5000, 'a') + " HTTP/1.1\r\n\r\n",
      "POST /v1/runs HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
      "POST /v1/runs HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
      "POST /v1/runs HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
      "POST /v1/runs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n",
      "POST /v1/runs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "POST /v1/runs HTTP/1.1\r\nTransfer-Encoding: gzip, chunked, identity\r\n\r\n",
      "GET /healthz HTTP/1.1\r\n" + std::string(200, ' ') + "X: y\r\n\r\n",
      "GET /healthz HTTP/1.1\r\n: novalue\r\n\r\n",
      "GET /v1/runs/\xff\xfe HTTP/1.1\r\n\r\n",
      "GET /v1/echo/\xc3\x28 HTTP/1.1\r\n\r\n",
      "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  // a TLS ClientHello
      "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
      "GET /v1/events HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
  };
  auto check = [&](const std::string& blob) {
    RawConn c = Connect();
    c.SetTimeout(std::chrono::milliseconds(3000));
    c.Send(blob);  // the server may already have hung up
    c.ShutdownWrite();
    std::string reply = c.ReadToEof();
    if (reply.empty()) return;
    EXPECT_EQ(reply.rfind("HTTP/1.1 ", 0), 0u) << reply.substr(0, 60);
  };
  for (const std::string& blob : cases) check(blob);

  std::mt19937 rng(20240601);
  static constexpr char kAlphabet[] = "GETPOST /:\r\n\0%?&=chunkedContent-Length0123456789";
  const std::string alphabet(kAlphabet, sizeof(kAlphabet) - 1);
  for (int i = 0; i < 200; ++i) {
    size_t len = rng() % 600;
    std::string blob;
    bool prefixed = i % 2 == 0;
    if (prefixed) blob = "POST /v1/runs HTTP/1.1\r\n";
    for (size_t j = 0; j < len; ++j) {
      blob.push_back(i % 4 < 2 ? alphabet[rng() % alphabet.size()] : static_cast<char>(rng()));
    }
    check(blob);
  }
  HttpReply still = Get("/healthz");
  EXPECT_EQ(still.status, 200);
  // Every connection above has been released.
  for (int i = 0; i < 100 && server_->connection_count() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(server_->connection_count(), 0u);
}

TEST_F(ApiServerTest, MalformedRequestGets400) {
  StartServer();
  RawConn c = Connect();
  ASSERT_TRUE(c.Send("GET /healthz HTTP/1.1\r\nBad Header Name: x\r\n\r\n"));
  auto r = testing::ReadReply(c);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->ErrorCode(), "bad_request");
  EXPECT_TRUE(c.WaitClosed());
}

TEST(ApiListenTest, AdoptedFdAndIpv6) {
  auto address = ParseListenAddress("127.0.0.1:0");
  ASSERT_TRUE(address.ok());
  auto bound = OpenListener(*address, 16);
  ASSERT_TRUE(bound.ok()) << bound.error().ToString();
  uint16_t port = bound->address.port;
  ServerOptions o = TestOptions();
  o.listen_fds = {bound->fd.release()};
  bool have_ipv6 = OpenListener(*ParseListenAddress("[::1]:0"), 16).ok();
  if (have_ipv6) o.listen = {"[::1]:0"};
  auto server = Server::Start(std::move(o), TestRoutes(), TestKeys());
  ASSERT_TRUE(server.ok()) << server.error().ToString();
  std::optional<RawConn> c = RawConn::Tcp(port);
  ASSERT_TRUE(c.has_value());
  auto r = testing::RoundTrip(*c, MakeRequest("GET", "/healthz"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ((*server)->addresses().back().port, port);
  if (have_ipv6) {
    EXPECT_EQ((*server)->addresses()[0].host, "::1");
    EXPECT_NE((*server)->addresses()[0].port, 0);
  }
  EXPECT_FALSE(AdoptListener(-1).ok());
}

TEST(ApiListenTest, UnixSocketFiles) {
  testing::TempDir dir;
  std::string path = dir.path() + "/s.sock";
  // A stale socket file (bound, then abandoned) is replaced.
  {
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::strcpy(sun.sun_path, path.c_str());
    ASSERT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)), 0);
  }
  ServerOptions o = TestOptions();
  o.listen = {"unix:" + path};
  auto server = Server::Start(o, TestRoutes(), TestKeys());
  ASSERT_TRUE(server.ok()) << server.error().ToString();
  // A live one is not.
  auto second = Server::Start(o, TestRoutes(), TestKeys());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::kAlreadyExists);
  (*server)->Stop(std::chrono::milliseconds(500));
  struct stat st {};
  EXPECT_NE(lstat(path.c_str(), &st), 0);  // removed on stop
  // Nor is a file that is not a socket.
  std::string plain = dir.path() + "/plain";
  UniqueFd f(open(plain.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  o.listen = {"unix:" + plain};
  auto third = Server::Start(o, TestRoutes(), TestKeys());
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().code, ErrorCode::kFailedPrecondition);
}

}  // namespace
}  // namespace sbx::api
