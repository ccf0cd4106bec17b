// A static site served from a directory: the web page (api/web/, built into web_root). Public
// routes (the files hold no secrets; the page asks for a key and keeps it in the tab):
//
//   GET /               index.html
//   GET /ui/{path+}     index.html (the page's own routes, resolved in the browser)
//   GET /assets/{path+} the file root/assets/PATH
//
// Files are opened below the root with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so
// neither ".." nor a symlink reaches outside it; only regular files are served. index.html is
// sent with `Cache-Control: no-cache` and a Content-Security-Policy that allows the page's own
// origin only (scripts, styles, connections, images); assets, whose names carry a content
// hash, are cached for a year. A root that does not exist answers 404 saying so.
#pragma once

#include <string>

#include "api/http/router.h"

namespace sbx::api {

Status AddStaticSite(Router& router, const std::string& root);

// The Content-Type for a file name's extension ("index.html" -> "text/html; charset=utf-8");
// application/octet-stream for one not known.
const char* ContentTypeFor(std::string_view name);

}  // namespace sbx::api
