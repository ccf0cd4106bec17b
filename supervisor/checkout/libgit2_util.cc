#include "supervisor/checkout/libgit2_util.h"

#include <mutex>

#include "supervisor/checkout/timed_stream.h"

namespace sbx::supervisor::checkout::internal {

void EnsureLibgit2() {
  static std::once_flag once;
  std::call_once(once, [] {
    git_libgit2_init();
    // An empty search path: the level's file is never found (libgit2's sysdir.c skips empty
    // entries of the list), so only a repository's own config is read.
    for (int level : {GIT_CONFIG_LEVEL_PROGRAMDATA, GIT_CONFIG_LEVEL_SYSTEM, GIT_CONFIG_LEVEL_XDG,
                      GIT_CONFIG_LEVEL_GLOBAL}) {
      git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, level, "");
    }
    RegisterTimedStream();
  });
}

std::string LastGitMessage() {
  const git_error* e = git_error_last();
  if (e == nullptr || e->message == nullptr) return "unknown error";
  return e->message;
}

Error GitError(ErrorCode code, const std::string& what) {
  return Error{code, 0, what + ": " + LastGitMessage(), {}};
}

Result<GitPtr<git_repository>> OpenBare(const std::string& path) {
  git_repository* repo = nullptr;
  const int rc = git_repository_open_ext(
      &repo, path.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH | GIT_REPOSITORY_OPEN_BARE, nullptr);
  if (rc != 0) {
    return GitError(rc == GIT_ENOTFOUND ? ErrorCode::kNotFound : ErrorCode::kInternal,
                    "opening the mirror " + path);
  }
  return GitPtr<git_repository>(repo);
}

}  // namespace sbx::supervisor::checkout::internal
