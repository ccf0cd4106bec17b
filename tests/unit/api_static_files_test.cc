// The static site of the web page: index.html for / and /ui/…, assets below root/assets only,
// never through a symlink or outside the root, and the headers a page needs.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <variant>

#include "api/http/static_files.h"

namespace sbx::api {
namespace {

class StaticSiteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/sbx-static-XXXXXX";
    ASSERT_NE(::mkdtemp(templ), nullptr);
    dir_ = templ;
    std::filesystem::create_directories(dir_ + "/site/assets/js");
    std::ofstream(dir_ + "/site/index.html") << "<!doctype html>page";
    std::ofstream(dir_ + "/site/assets/js/app-1a2b.js") << "run()";
    std::ofstream(dir_ + "/secret.txt") << "secret";
    ASSERT_EQ(::symlink((dir_ + "/secret.txt").c_str(), (dir_ + "/site/assets/link.txt").c_str()), 0);
    ASSERT_EQ(::symlink("../../secret.txt", (dir_ + "/site/assets/rel.txt").c_str()), 0);
    ::mkfifo((dir_ + "/site/assets/fifo.js").c_str(), 0644);
    ASSERT_TRUE(AddStaticSite(router_, dir_ + "/site").ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  Response Get(const std::string& path) {
    RouteMatch m = router_.Find(Method::kGet, path);
    if (m.kind != RouteMatch::Kind::kFound) return ErrorResponse(404, "no_route", path);
    Request req;
    req.path = path;
    req.path_params = m.params;
    Reply r = m.route->handler(req);
    return std::get<Response>(r);
  }

  std::string dir_;
  Router router_;
};

TEST_F(StaticSiteTest, ThePageForItsOwnRoutesAndItsAssets) {
  for (const char* p : {"/", "/ui", "/ui/runs/run_1", "/ui/sandboxes/sbx_1/terminal"}) {
    Response r = Get(p);
    EXPECT_EQ(r.status, 200) << p;
    EXPECT_EQ(r.body, "<!doctype html>page") << p;
    EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
    EXPECT_TRUE(r.headers.Get("content-security-policy").has_value());
    EXPECT_EQ(r.headers.Get("cache-control"), "no-cache");
  }
  Response js = Get("/assets/js/app-1a2b.js");
  EXPECT_EQ(js.status, 200);
  EXPECT_EQ(js.body, "run()");
  EXPECT_EQ(js.content_type, "text/javascript; charset=utf-8");
  EXPECT_NE(js.headers.Get("cache-control")->find("immutable"), std::string_view::npos);
  EXPECT_EQ(js.headers.Get("x-content-type-options"), "nosniff");
}

TEST_F(StaticSiteTest, NothingOutsideTheRootNorThroughALinkNorAFifo) {
  EXPECT_EQ(Get("/assets/link.txt").status, 404);
  EXPECT_EQ(Get("/assets/rel.txt").status, 404);
  EXPECT_EQ(Get("/assets/fifo.js").status, 404);  // and it did not block
  EXPECT_EQ(Get("/assets/missing.js").status, 404);
  EXPECT_EQ(Get("/assets/js").status, 404);  // a directory
  EXPECT_EQ(Get("/index.html").status, 404);  // only through / and /ui/
}

TEST(StaticSite, AMissingRootSaysSo) {
  Router router;
  ASSERT_TRUE(AddStaticSite(router, "/nonexistent/sandboxd-web").ok());
  RouteMatch m = router.Find(Method::kGet, "/");
  ASSERT_EQ(m.kind, RouteMatch::Kind::kFound);
  Request req;
  Response r = std::get<Response>(m.route->handler(req));
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(r.body.find("web_root"), std::string::npos);
  EXPECT_STREQ(ContentTypeFor("x.woff2"), "font/woff2");
  EXPECT_STREQ(ContentTypeFor("x.bin"), "application/octet-stream");
}

}  // namespace
}  // namespace sbx::api
