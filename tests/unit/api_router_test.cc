#include <gtest/gtest.h>

#include <string>

#include "api/http/http.h"
#include "api/http/listen.h"
#include "api/http/router.h"

namespace sbx::api {
namespace {

Handler Named(std::string name) {
  return [name](const Request&) -> Reply {
    Response r;
    r.body = name;
    return r;
  };
}

// The body the matched route's handler produces, or a marker for the other outcomes.
std::string Hit(const Router& router, Method m, std::string_view path) {
  RouteMatch match = router.Find(m, path);
  switch (match.kind) {
    case RouteMatch::Kind::kFound:
      return std::get<Response>(match.route->handler(Request{})).body;
    case RouteMatch::Kind::kNotFound:
      return "404";
    case RouteMatch::Kind::kMethodNotAllowed:
      return "405";
    case RouteMatch::Kind::kBadPath:
      return "400";
  }
  return "?";
}

Router SandboxdRoutes() {
  Router r;
  EXPECT_TRUE(r.Add(Method::kPost, "/v1/runs", Access::kSubmitter, Named("create")).ok());
  EXPECT_TRUE(r.Add(Method::kGet, "/v1/runs", Access::kSubmitter, Named("list")).ok());
  EXPECT_TRUE(r.Add(Method::kGet, "/v1/runs/{id}", Access::kSubmitter, Named("get")).ok());
  EXPECT_TRUE(
      r.Add(Method::kPost, "/v1/runs/{id}:approve", Access::kReviewer, Named("approve")).ok());
  EXPECT_TRUE(
      r.Add(Method::kPost, "/v1/runs/{id}:reject", Access::kReviewer, Named("reject")).ok());
  EXPECT_TRUE(
      r.Add(Method::kPost, "/v1/runs/{id}:cancel", Access::kSubmitter, Named("cancel")).ok());
  EXPECT_TRUE(r.Add(Method::kGet, "/v1/runs/{id}/logs", Access::kSubmitter, Named("logs")).ok());
  EXPECT_TRUE(r.AddWebSocket("/v1/runs/{id}/events", Access::kSubmitter, Named("events")).ok());
  EXPECT_TRUE(
      r.Add(Method::kGet, "/v1/runs/{id}/artifacts", Access::kSubmitter, Named("artifacts")).ok());
  EXPECT_TRUE(
      r.Add(Method::kGet, "/v1/runs/{id}/artifacts/{name}", Access::kSubmitter, Named("artifact"))
          .ok());
  EXPECT_TRUE(r.Add(Method::kGet, "/v1/runs/latest", Access::kSubmitter, Named("latest")).ok());
  EXPECT_TRUE(r.AddWebSocket("/v1/events", Access::kSubmitter, Named("all-events")).ok());
  EXPECT_TRUE(r.Add(Method::kGet, "/v1/audit", Access::kAdmin, Named("audit")).ok());
  EXPECT_TRUE(r.Add(Method::kGet, "/healthz", Access::kPublic, Named("healthz")).ok());
  EXPECT_TRUE(r.Add(Method::kGet, "/", Access::kPublic, Named("root")).ok());
  return r;
}

TEST(Router, MatchesLiteralsAndParams) {
  Router r = SandboxdRoutes();
  EXPECT_EQ(Hit(r, Method::kGet, "/healthz"), "healthz");
  EXPECT_EQ(Hit(r, Method::kGet, "/"), "root");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs"), "list");
  EXPECT_EQ(Hit(r, Method::kPost, "/v1/runs"), "create");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/run_1"), "get");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/run_1/logs"), "logs");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/run_1/events"), "events");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/run_1/artifacts/out.tar"), "artifact");
  RouteMatch m = r.Find(Method::kGet, "/v1/runs/run_1/artifacts/out.tar");
  EXPECT_EQ(m.params.at("id"), "run_1");
  EXPECT_EQ(m.params.at("name"), "out.tar");
  EXPECT_TRUE(r.Find(Method::kGet, "/v1/runs/x/events").route->websocket);
  EXPECT_FALSE(r.Find(Method::kGet, "/v1/runs/x/logs").route->websocket);
}

TEST(Router, LiteralBeatsParam) {
  Router r = SandboxdRoutes();
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/latest"), "latest");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/latest2"), "get");
}

TEST(Router, ColonVerbs) {
  Router r = SandboxdRoutes();
  EXPECT_EQ(Hit(r, Method::kPost, "/v1/runs/run_1:approve"), "approve");
  EXPECT_EQ(Hit(r, Method::kPost, "/v1/runs/run_1:reject"), "reject");
  EXPECT_EQ(Hit(r, Method::kPost, "/v1/runs/run_1:cancel"), "cancel");
  RouteMatch m = r.Find(Method::kPost, "/v1/runs/run_1:approve");
  EXPECT_EQ(m.params.at("id"), "run_1");
  // The parameter is what precedes the last colon.
  EXPECT_EQ(r.Find(Method::kPost, "/v1/runs/a:b:approve").params.at("id"), "a:b");
  // An encoded colon is a colon.
  EXPECT_EQ(Hit(r, Method::kPost, "/v1/runs/run_1%3Aapprove"), "approve");
  // A verb path with the wrong method is 405, not GET /v1/runs/{id} with id "x:approve".
  RouteMatch wrong = r.Find(Method::kGet, "/v1/runs/run_1:approve");
  EXPECT_EQ(wrong.kind, RouteMatch::Kind::kMethodNotAllowed);
  ASSERT_EQ(wrong.allowed.size(), 1u);
  EXPECT_EQ(wrong.allowed[0], Method::kPost);
  // No parameter, or an unknown verb.
  EXPECT_EQ(Hit(r, Method::kPost, "/v1/runs/:approve"), "405");  // {id} "…:approve" via GET
  EXPECT_EQ(Hit(r, Method::kPost, "/v1/runs/run_1:explode"), "405");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/run_1:explode"), "get");
}

TEST(Router, NotFoundAndMethodNotAllowed) {
  Router r = SandboxdRoutes();
  EXPECT_EQ(Hit(r, Method::kGet, "/v2/runs"), "404");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/"), "404");  // empty last segment
  EXPECT_EQ(Hit(r, Method::kGet, "/v1//runs"), "404");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/a/b/c/d/e"), "404");
  RouteMatch m = r.Find(Method::kDelete, "/v1/runs");
  EXPECT_EQ(m.kind, RouteMatch::Kind::kMethodNotAllowed);
  EXPECT_EQ(m.allowed.size(), 2u);
  EXPECT_EQ(Hit(r, Method::kOther, "/healthz"), "405");
}

TEST(Router, PercentDecodedParamsAndRefusals) {
  Router r = SandboxdRoutes();
  EXPECT_EQ(r.Find(Method::kGet, "/v1/runs/a%20b").params.at("id"), "a b");
  EXPECT_EQ(r.Find(Method::kGet, "/v1/runs/a+b").params.at("id"), "a+b");  // '+' only in queries
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/r%75ns"), "list");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/a%2Fb"), "400");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/a%2fb/logs"), "400");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/a%00b"), "400");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/%zz"), "400");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/%4"), "400");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/.."), "400");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/%2e%2e"), "400");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/x/artifacts/."), "400");
  EXPECT_EQ(Hit(r, Method::kGet, "v1/runs"), "400");
  EXPECT_EQ(Hit(r, Method::kGet, ""), "400");
}

TEST(Router, GreedyLastSegment) {
  Router r;
  ASSERT_TRUE(r.Add(Method::kGet, "/v1/runs/{id}/artifacts", Access::kSubmitter, Named("ls")).ok());
  ASSERT_TRUE(
      r.Add(Method::kGet, "/v1/runs/{id}/artifacts/{name+}", Access::kSubmitter, Named("get")).ok());
  ASSERT_TRUE(
      r.Add(Method::kGet, "/v1/runs/{id}/artifacts/report.md", Access::kSubmitter, Named("rep")).ok());
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/r1/artifacts"), "ls");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/r1/artifacts/report.md"), "rep");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/r1/artifacts/files/a/b%20c.txt"), "get");
  RouteMatch m = r.Find(Method::kGet, "/v1/runs/r1/artifacts/files/a/b%20c.txt");
  ASSERT_EQ(m.kind, RouteMatch::Kind::kFound);
  EXPECT_EQ(m.params["name"], "files/a/b c.txt");
  EXPECT_EQ(m.params["id"], "r1");
  // Every segment is still checked: no "..", no encoded '/', no empty segment.
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/r1/artifacts/files/../../etc/passwd"), "400");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/r1/artifacts/files%2f..%2fx"), "400");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/r1/artifacts/a//b"), "404");
  EXPECT_EQ(Hit(r, Method::kGet, "/v1/runs/r1/artifacts/a%00b"), "400");
  EXPECT_FALSE(r.Add(Method::kGet, "/x/{rest+}/y", Access::kSubmitter, Named("bad")).ok());
  EXPECT_FALSE(r.Add(Method::kGet, "/x/{rest+}:verb", Access::kSubmitter, Named("bad")).ok());
}

TEST(Router, RefusesBadPatterns) {
  Router r;
  Handler h = Named("x");
  EXPECT_FALSE(r.Add(Method::kGet, "v1/runs", Access::kPublic, h).ok());
  EXPECT_FALSE(r.Add(Method::kGet, "/v1/{", Access::kPublic, h).ok());
  EXPECT_FALSE(r.Add(Method::kGet, "/v1/{}", Access::kPublic, h).ok());
  EXPECT_FALSE(r.Add(Method::kGet, "/v1/{a-b}", Access::kPublic, h).ok());
  EXPECT_FALSE(r.Add(Method::kGet, "/v1/{a}/{a}", Access::kPublic, h).ok());
  EXPECT_FALSE(r.Add(Method::kGet, "/v1/{a}x", Access::kPublic, h).ok());
  EXPECT_FALSE(r.Add(Method::kGet, "/v1/{a}:", Access::kPublic, h).ok());
  EXPECT_FALSE(r.Add(Method::kGet, "/v1/{a}:b:c", Access::kPublic, h).ok());
  EXPECT_FALSE(r.Add(Method::kGet, "/v1/x}", Access::kPublic, h).ok());
  EXPECT_FALSE(r.Add(Method::kGet, "/v1//x", Access::kPublic, h).ok());
  EXPECT_FALSE(r.Add(Method::kGet, "/v1/x/", Access::kPublic, h).ok());
  EXPECT_FALSE(r.Add(Method::kGet, "/v1/x", Access::kPublic, nullptr).ok());
  EXPECT_FALSE(r.Add(Method::kOther, "/v1/x", Access::kPublic, h).ok());
  ASSERT_TRUE(r.Add(Method::kGet, "/v1/{a}", Access::kPublic, h).ok());
  Status dup = r.Add(Method::kGet, "/v1/{b}", Access::kPublic, h);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::kAlreadyExists);
  EXPECT_TRUE(r.Add(Method::kPost, "/v1/{b}", Access::kPublic, h).ok());
  EXPECT_TRUE(r.Add(Method::kPost, "/v1/{b}:go", Access::kPublic, h).ok());
  EXPECT_FALSE(r.Add(Method::kPost, "/v1/{c}:go", Access::kPublic, h).ok());
}

TEST(PercentDecode, Basics) {
  EXPECT_EQ(*PercentDecode("a%41%62"), "aAb");
  EXPECT_EQ(*PercentDecode("a+b"), "a+b");
  EXPECT_EQ(*PercentDecode("a+b", true), "a b");
  EXPECT_EQ(*PercentDecode("%25"), "%");
  EXPECT_EQ(*PercentDecode(""), "");
  EXPECT_FALSE(PercentDecode("%").ok());
  EXPECT_FALSE(PercentDecode("%a").ok());
  EXPECT_FALSE(PercentDecode("%ag").ok());
  EXPECT_EQ(PercentDecode("%").error().code, ErrorCode::kInvalidArgument);
}

TEST(ParseQuery, RepeatedKeysAndForms) {
  auto q = ParseQuery("stream=stdout&stream=stderr&tail=10&follow&&x=a+b%21&=v");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->GetAll("stream"), (std::vector<std::string_view>{"stdout", "stderr"}));
  EXPECT_EQ(q->Get("stream"), "stdout");
  EXPECT_EQ(q->Get("tail"), "10");
  EXPECT_EQ(q->Get("follow"), "");
  EXPECT_TRUE(q->Has("follow"));
  EXPECT_FALSE(q->Has("after"));
  EXPECT_EQ(q->Get("x"), "a b!");
  EXPECT_EQ(q->Get(""), "v");
  EXPECT_EQ(q->items().size(), 6u);
  EXPECT_TRUE(ParseQuery("")->items().empty());
  EXPECT_FALSE(ParseQuery("a=%g0").ok());
  EXPECT_FALSE(ParseQuery("a=%00").ok());
}

TEST(HeaderList, CaseInsensitive) {
  HeaderList h;
  h.Add("x-api-key", "k");
  h.Add("X-Other", "1");
  h.Add("x-other", "2");
  EXPECT_EQ(h.Get("X-API-KEY"), "k");
  EXPECT_EQ(h.Get("x-other"), "1");
  EXPECT_FALSE(h.Get("x-missing").has_value());
}

TEST(ErrorMapping, StatusAndBody) {
  EXPECT_EQ(HttpStatusFor(ErrorCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kAlreadyExists), 409);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kFailedPrecondition), 409);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(ErrorCode::kInternal), 500);
  Response r = ErrorResponse(MakeError(ErrorCode::kNotFound, "run {} not found", "run_x"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.content_type, "application/json");
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["error"]["code"], "not_found");
  EXPECT_EQ(j["error"]["message"], "run run_x not found");
  // Invalid UTF-8 does not throw.
  Response bad = ErrorResponse(400, "bad_request", std::string("\xff\xfe", 2));
  EXPECT_EQ(bad.status, 400);
  EXPECT_FALSE(bad.body.empty());
}

TEST(ParseListenAddress, Forms) {
  auto a = ParseListenAddress("127.0.0.1:8080");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->kind, ListenAddress::Kind::kTcp);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8080);
  auto v6 = ParseListenAddress("[::1]:0");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->ToString(), "[::1]:0");
  EXPECT_EQ(ParseListenAddress("localhost:1")->host, "127.0.0.1");
  auto u = ParseListenAddress("unix:/run/sandboxd/api.sock");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->kind, ListenAddress::Kind::kUnix);
  EXPECT_EQ(u->path, "/run/sandboxd/api.sock");
  EXPECT_EQ(u->ToString(), "unix:/run/sandboxd/api.sock");
  for (const char* bad :
       {"", "8080", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:80x",
        "::1:80", "[::1]80", "[::1]", "example.com:80", "unix:", "unix:relative.sock"}) {
    EXPECT_FALSE(ParseListenAddress(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace sbx::api
