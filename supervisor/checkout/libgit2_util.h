// libgit2 glue shared by the checkout library's .cc files: one-time initialization, owning
// handles and errors. Internal: only this folder's .cc files include it (libgit2 is a PRIVATE
// dependency).
#pragma once

#include <git2.h>

#include <memory>
#include <string>

#include "base/result.h"

namespace sbx::supervisor::checkout::internal {

// Initializes libgit2 once per process (thread-safe) and configures it for the daemon, process-
// wide:
//   - no system, XDG or global configuration is read (no ~/.gitconfig): an operator's
//     url.<base>.insteadOf, credential helpers, proxies or http.extraHeader cannot change what
//     a mirror fetches or send anything with it;
//   - libgit2's plain socket stream is replaced by one with timeouts (timed_stream.h); TLS runs
//     over it.
void EnsureLibgit2();

// Owning handles: GitPtr<git_repository> and so on.
struct GitDeleter {
  void operator()(git_repository* p) const { git_repository_free(p); }
  void operator()(git_remote* p) const { git_remote_free(p); }
  void operator()(git_config* p) const { git_config_free(p); }
  void operator()(git_commit* p) const { git_commit_free(p); }
  void operator()(git_tree* p) const { git_tree_free(p); }
  void operator()(git_blob* p) const { git_blob_free(p); }
  void operator()(git_odb* p) const { git_odb_free(p); }
  void operator()(git_odb_object* p) const { git_odb_object_free(p); }
};
template <typename T>
using GitPtr = std::unique_ptr<T, GitDeleter>;

// libgit2's last error message on this thread ("unknown error" when none).
std::string LastGitMessage();

// An Error with `code` whose message is "<what>: <libgit2's message>".
Error GitError(ErrorCode code, const std::string& what);

// Opens a bare repository at exactly `path` (no search upwards, no environment variables).
Result<GitPtr<git_repository>> OpenBare(const std::string& path);

}  // namespace sbx::supervisor::checkout::internal
