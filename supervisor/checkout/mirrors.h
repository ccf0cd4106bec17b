// Bare mirrors of the repositories checkouts come from, fetched on demand through libgit2 (never
// the git binary).
//
// One mirror per repository: <mirrors_dir>/<first 32 hex digits of sha256(normalized repo)>.git
// (the normalized form is RepoLocation::url, so "/srv/r/", "/srv/r" and "file:///srv/r" share
// one). A mirror holds every ref and tag of its origin ("+refs/*:refs/*", nothing pruned, so a
// commit once fetched stays), and is fetched only when the commit asked for is missing.
//
// Push is disabled in every mirror, and its config says so:
//   remote.origin.pushurl = sandboxd-push-disabled://this-mirror-is-read-only
//                           (a scheme neither libgit2 nor git can push to)
//   push.default          = nothing
//   credential.helper     = ""       (git: an empty value drops every inherited helper)
//   sandboxd.readOnlyMirror = true
// No credentials are ever stored: URLs with "user:password@" are refused (ParseRepo) and no
// credential callback is given to libgit2, so a repository that asks for authentication fails.
//
// Concurrency: one fetch at a time per mirror across threads and processes, by flock(2) on
// <mirror>.lock (the lock files stay). A mirror appears under its name only once its first
// fetch succeeded (it is made as <mirror>.new and renamed), so readers never see a half-made
// one; looking a commit up takes no lock.
//
// http:// is accepted as well as https:// because a checkout names its commit by sha: git object
// ids are hashes of the content, so a server or a man in the middle can withhold a commit but not
// substitute another one (libgit2 verifies the objects it indexes).
// IMPORTANT: a local path (or file:// URL) reads any repository the daemon's user can read and
// owns; the caller decides who may name which.
// IMPORTANT: the first use configures libgit2 process-wide: no system, XDG or global git config
// is read, and its socket stream is replaced by one with timeouts (timed_stream.h).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "base/result.h"

namespace sbx::supervisor::checkout {

struct MirrorsOptions {
  // A fetch as a whole: past it the fetch is abandoned (kUnavailable, "timed out"). Bounded
  // through libgit2's progress callbacks and the timed stream; the DNS lookup is bounded by the
  // resolver's own timeouts only.
  std::chrono::milliseconds fetch_timeout{std::chrono::minutes(10)};
  // Connecting to an http(s) server, and each wait for it to send or accept data.
  std::chrono::milliseconds io_timeout{std::chrono::seconds(60)};
};

class Mirrors {
 public:
  // Does no I/O: `mirrors_dir` (and missing parents) are made, 0700, by the first Ensure.
  explicit Mirrors(std::string mirrors_dir, MirrorsOptions options = {});

  // The path of the mirror of `repo` (see ParseRepo for what is accepted), holding commit
  // `sha`: made and fetched when missing, fetched again when it lacks `sha`, left alone
  // otherwise. May block while another thread or process fetches the same mirror.
  //   kInvalidArgument: `sha` is not 40 lowercase hex digits, or `repo` is malformed or of a
  //     scheme not accepted (the message says which are);
  //   kNotFound: the commit is not in the repository even after fetching all its refs and
  //     tags, or the object is not a commit;
  //   kUnavailable: the fetch failed or timed out (the message names the repository, which
  //     never holds credentials, and libgit2's reason);
  //   kFailedPrecondition: a local repository owned by another user (libgit2 refuses to read
  //     it, as git does without safe.directory, and no global config can allow it here);
  //   kInternal, kPermissionDenied: the mirrors directory could not be made or written.
  Result<std::string> Ensure(const std::string& repo, const std::string& sha);

  // Where the mirror of `repo` is or would be; kInvalidArgument as Ensure. No I/O.
  Result<std::string> MirrorPath(const std::string& repo) const;

  // How many fetches this object started (successful or not): for tests and metrics.
  uint64_t fetches() const { return fetches_.load(); }

  const std::string& mirrors_dir() const { return dir_; }

 private:
  std::string dir_;
  MirrorsOptions options_;
  std::atomic<uint64_t> fetches_{0};
};

}  // namespace sbx::supervisor::checkout
