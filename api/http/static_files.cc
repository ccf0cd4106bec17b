#include "api/http/static_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "base/syscalls.h"
#include "base/unique_fd.h"

namespace sbx::api {

namespace {

constexpr off_t kMaxFileBytes = 64 << 20;

// The page's own origin only; inline styles are allowed (the terminal sets them), inline
// scripts are not. WebSockets to the same host are "self" too.
constexpr char kPagePolicy[] =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

Response NotFound(std::string_view what) { return ErrorResponse(404, "not_found", what); }

Response Serve(const std::string& root, const std::string& rel, bool page) {
  UniqueFd dir(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) {
    return NotFound(fmt::format("the web page is not installed here (web_root {} is missing)",
                                root));
  }
  // O_NONBLOCK: opening a fifo for reading would wait for a writer (regular files ignore it).
  UniqueFd fd(sys::Openat2(dir.get(), rel.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                           0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS));
  struct stat st {};
  if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return NotFound(fmt::format("no such file: {}", rel));
  }
  if (st.st_size > kMaxFileBytes) return NotFound(fmt::format("{} is too large to serve", rel));
  Response r;
  r.body.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < r.body.size()) {
    ssize_t n = ::pread(fd.get(), r.body.data() + got, r.body.size() - got,
                        static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  r.body.resize(got);
  r.content_type = ContentTypeFor(rel);
  r.headers.Add("X-Content-Type-Options", "nosniff");
  r.headers.Add("Referrer-Policy", "no-referrer");
  if (page) {
    r.headers.Add("Cache-Control", "no-cache");
    r.headers.Add("Content-Security-Policy", kPagePolicy);
    r.headers.Add("X-Frame-Options", "DENY");
  } else {
    r.headers.Add("Cache-Control", "public, max-age=31536000, immutable");
  }
  return r;
}

}  // namespace

const char* ContentTypeFor(std::string_view name) {
  struct Type {
    std::string_view ext;
    const char* type;
  };
  static constexpr Type kTypes[] = {
      {".html", "text/html; charset=utf-8"},  {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},          {".map", "application/json"},
      {".svg", "image/svg+xml"},              {".png", "image/png"},
      {".ico", "image/x-icon"},               {".woff2", "font/woff2"},
      {".txt", "text/plain; charset=utf-8"},
  };
  for (const Type& t : kTypes) {
    if (name.size() >= t.ext.size() && name.substr(name.size() - t.ext.size()) == t.ext) {
      return t.type;
    }
  }
  return "application/octet-stream";
}

Status AddStaticSite(Router& router, const std::string& root) {
  auto page = [root](const Request&) -> Reply { return Serve(root, "index.html", true); };
  SBX_TRY(router.Add(Method::kGet, "/", Access::kPublic, page));
  SBX_TRY(router.Add(Method::kGet, "/ui/{path+}", Access::kPublic, page));
  SBX_TRY(router.Add(Method::kGet, "/ui", Access::kPublic, page));
  return router.Add(Method::kGet, "/assets/{path+}", Access::kPublic,
                    [root](const Request& req) -> Reply {
                      return Serve(root, "assets/" + std::string(req.PathParam("path")), false);
                    });
}

}  // namespace sbx::api
