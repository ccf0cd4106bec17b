// Where a checkout's repository is and how its mirror is keyed: the one parser of the `repo`
// a run names. Pure computation, no I/O.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace sbx::supervisor::checkout {

struct RepoLocation {
  enum class Kind { kLocalPath, kHttp, kHttps };
  Kind kind = Kind::kLocalPath;
  // What the mirror fetches from, normalized so that spellings of one repository are equal
  // (and so share a mirror): a local path or a file:// URL becomes the absolute path without
  // "." components, repeated or trailing slashes; an http(s) URL gets a lowercase scheme and
  // host, no default port and no trailing slash. Never holds credentials (they are refused).
  std::string url;
};

// Parses `repo`: an absolute local path, or a URL with scheme file:// (no host, or
// "localhost"), https:// or http://. Refused with kInvalidArgument, with a message that says
// what is accepted and never repeats more of the input than its scheme:
//   - other schemes (ssh://, git://, …), scp-style "host:path" and relative paths;
//   - credentials ("user:password@host"): the mirror never stores them;
//   - "..": a path or URL path must name one place;
//   - control characters anywhere; in URLs also spaces, non-ASCII bytes, '\', query strings
//     and fragments (which is where tokens hide), and percent-escapes in file:// URLs;
//   - more than 4096 bytes.
Result<RepoLocation> ParseRepo(std::string_view repo);

// True for exactly 40 lowercase hex digits: the only spelling of a commit a checkout takes (no
// abbreviations, branch or tag names: a checkout is pinned).
bool IsCommitSha(std::string_view sha);

}  // namespace sbx::supervisor::checkout
