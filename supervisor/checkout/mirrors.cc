#include "supervisor/checkout/mirrors.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "base/sha256.h"
#include "base/unique_fd.h"
#include "supervisor/checkout/libgit2_util.h"
#include "supervisor/checkout/remove_tree.h"
#include "supervisor/checkout/repo_location.h"
#include "supervisor/checkout/timed_stream.h"

namespace sbx::supervisor::checkout {
namespace {

using internal::GitError;
using internal::GitPtr;

constexpr char kFetchSpec[] = "+refs/*:refs/*";
constexpr char kPushUrlDisabled[] = "sandboxd-push-disabled://this-mirror-is-read-only";

// mkdir -p with mode 0700 for what is missing.
Status MakeDirs(const std::string& dir) {
  if (dir.empty()) return MakeError(ErrorCode::kInvalidArgument, "no mirrors directory given");
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    const std::string prefix = dir.substr(0, pos);
    if (prefix.empty()) continue;
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      return ErrnoError("making the mirrors directory {}", prefix);
    }
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return ErrnoError("stat {}", dir);
  if (!S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kFailedPrecondition, "the mirrors directory {} is not a directory",
                     dir);
  }
  return Ok();
}

Result<bool> PathExists(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "{} is not a directory; remove it to let the mirror be made again", path);
    }
    return true;
  }
  if (errno == ENOENT) return false;
  return ErrnoError("stat {}", path);
}

// Holds flock(LOCK_EX) on `path` until destroyed (closing the fd releases it).
Result<UniqueFd> LockFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return ErrnoError("opening the mirror lock {}", path);
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return ErrnoError("flock {}", path);
  }
  return fd;
}

// Whether `repo` holds commit `oid`; kNotFound when the object is there but is no commit.
Result<bool> HasCommit(git_repository* repo, const git_oid& oid, const std::string& sha) {
  git_odb* raw = nullptr;
  if (git_repository_odb(&raw, repo) != 0) {
    return GitError(ErrorCode::kInternal, "opening the mirror's object database");
  }
  GitPtr<git_odb> odb(raw);
  size_t size = 0;
  git_object_t type = GIT_OBJECT_INVALID;
  const int rc = git_odb_read_header(&size, &type, odb.get(), &oid);
  if (rc == GIT_ENOTFOUND) return false;
  if (rc != 0) return GitError(ErrorCode::kInternal, "looking up " + sha + " in the mirror");
  if (type != GIT_OBJECT_COMMIT) {
    return MakeError(ErrorCode::kNotFound, "{} is a {}, not a commit; give a commit's sha", sha,
                     git_object_type2string(type));
  }
  return true;
}

Result<bool> MirrorHasCommit(const std::string& path, const git_oid& oid, const std::string& sha) {
  auto repo = internal::OpenBare(path);
  if (!repo.ok()) return std::move(repo).error();
  return HasCommit(repo->get(), oid, sha);
}

Status SetConfig(git_config* cfg, const char* key, const char* value) {
  if (git_config_set_string(cfg, key, value) != 0) {
    return GitError(ErrorCode::kInternal, fmt::format("setting {} in a mirror's config", key));
  }
  return Ok();
}

Result<GitPtr<git_config>> LocalConfig(git_repository* repo, const std::string& path) {
  git_config* raw_cfg = nullptr;
  if (git_repository_config(&raw_cfg, repo) != 0) {
    return GitError(ErrorCode::kInternal, "opening the config of the mirror " + path);
  }
  GitPtr<git_config> all(raw_cfg);
  git_config* raw_local = nullptr;
  if (git_config_open_level(&raw_local, all.get(), GIT_CONFIG_LEVEL_LOCAL) != 0) {
    return GitError(ErrorCode::kInternal, "opening the config of the mirror " + path);
  }
  return GitPtr<git_config>(raw_local);
}

// A new bare repository at `path` with the remote and the push-disabling config. The remote is
// written as plain keys, not with git_remote_create: that adds the fetchspec through a regex
// over the config, and libgit2 1.5 leaks pcre2 match data on every entry a regex does not match
// (libgit2 PR #6382, in 1.6).
Result<GitPtr<git_repository>> CreateMirror(const std::string& path, const std::string& url) {
  git_repository_init_options init;
  git_repository_init_options_init(&init, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
  init.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_NO_REINIT | GIT_REPOSITORY_INIT_MKDIR;
  init.mode = GIT_REPOSITORY_INIT_SHARED_UMASK;
  git_repository* raw = nullptr;
  if (git_repository_init_ext(&raw, path.c_str(), &init) != 0) {
    return GitError(ErrorCode::kInternal, "making the mirror " + path);
  }
  GitPtr<git_repository> repo(raw);
  auto cfg = LocalConfig(repo.get(), path);
  if (!cfg.ok()) return std::move(cfg).error();
  SBX_TRY(SetConfig(cfg->get(), "remote.origin.url", url.c_str()));
  SBX_TRY(SetConfig(cfg->get(), "remote.origin.fetch", kFetchSpec));
  SBX_TRY(SetConfig(cfg->get(), "remote.origin.pushurl", kPushUrlDisabled));
  SBX_TRY(SetConfig(cfg->get(), "remote.origin.tagOpt", "--tags"));
  SBX_TRY(SetConfig(cfg->get(), "push.default", "nothing"));
  SBX_TRY(SetConfig(cfg->get(), "credential.helper", ""));
  if (git_config_set_bool(cfg->get(), "sandboxd.readOnlyMirror", 1) != 0) {
    return GitError(ErrorCode::kInternal, "setting sandboxd.readOnlyMirror");
  }
  return repo;
}

// The URL the mirror's config names for its origin.
Result<std::string> ConfiguredUrl(git_repository* repo, const std::string& path) {
  auto cfg = LocalConfig(repo, path);
  if (!cfg.ok()) return std::move(cfg).error();
  git_buf buf = GIT_BUF_INIT;
  if (git_config_get_string_buf(&buf, cfg->get(), "remote.origin.url") != 0) {
    return GitError(ErrorCode::kInternal, "the mirror " + path + " names no remote.origin.url");
  }
  std::string url(buf.ptr, buf.size);
  git_buf_dispose(&buf);
  return url;
}

int OnTransferProgress(const git_indexer_progress* /*stats*/, void* payload) {
  auto* limits = static_cast<internal::FetchLimits*>(payload);
  if (std::chrono::steady_clock::now() < limits->deadline) return 0;
  limits->timed_out = true;
  git_error_set_str(GIT_ERROR_NET, "the fetch timed out");
  return -1;
}

int OnSidebandProgress(const char* /*str*/, int /*len*/, void* payload) {
  return OnTransferProgress(nullptr, payload);
}

// Why a fetch failed, in words that say what to do.
Error FetchError(const RepoLocation& loc, const internal::FetchLimits& limits,
                 const MirrorsOptions& options) {
  const std::string reason = internal::LastGitMessage();
  if (limits.timed_out) {
    return MakeError(ErrorCode::kUnavailable,
                     "fetching {} timed out (limits: {} ms in all, {} ms per network wait): {}",
                     loc.url, options.fetch_timeout.count(), options.io_timeout.count(), reason);
  }
  if (loc.kind == RepoLocation::Kind::kLocalPath &&
      (reason.find("safe.directory") != std::string::npos ||
       reason.find("not owned by current user") != std::string::npos)) {
    // libgit2 1.5 reports its ownership check as "config value 'safe.directory' was not found".
    struct stat st {};
    const std::string owner =
        ::stat(loc.url.c_str(), &st) == 0 ? fmt::format("uid {}", st.st_uid) : "another user";
    return MakeError(ErrorCode::kFailedPrecondition,
                     "the repository {} is owned by {}, not by this daemon's uid {}: libgit2, like "
                     "git, does not read another user's repository; give the daemon a copy it "
                     "owns, or serve the repository over https",
                     loc.url, owner, ::geteuid());
  }
  return MakeError(ErrorCode::kUnavailable, "fetching {} failed: {}", loc.url, reason);
}

}  // namespace

Mirrors::Mirrors(std::string mirrors_dir, MirrorsOptions options)
    : dir_(std::move(mirrors_dir)), options_(options) {
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
}

Result<std::string> Mirrors::MirrorPath(const std::string& repo) const {
  auto loc = ParseRepo(repo);
  if (!loc.ok()) return std::move(loc).error();
  return dir_ + "/" + Sha256Hex(loc->url).substr(0, 32) + ".git";
}

Result<std::string> Mirrors::Ensure(const std::string& repo, const std::string& sha) {
  auto loc = ParseRepo(repo);
  if (!loc.ok()) return std::move(loc).error();
  if (!IsCommitSha(sha)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "a checkout's sha must be a full commit id: 40 lowercase hex digits (got {} "
                     "characters that are not)",
                     sha.size());
  }
  internal::EnsureLibgit2();
  git_oid oid;
  if (git_oid_fromstr(&oid, sha.c_str()) != 0) {
    return GitError(ErrorCode::kInvalidArgument, "parsing the sha");
  }
  SBX_TRY(MakeDirs(dir_));
  const std::string path = dir_ + "/" + Sha256Hex(loc->url).substr(0, 32) + ".git";
  const std::string& url = loc->url;

  // Without the lock: a mirror under its name is complete, and git's object store is safe to
  // read while a fetch adds packs to it.
  auto exists = PathExists(path);
  if (!exists.ok()) return std::move(exists).error();
  if (*exists) {
    auto has = MirrorHasCommit(path, oid, sha);
    if (!has.ok()) return std::move(has).error();
    if (*has) return path;
  }

  auto lock = LockFile(path + ".lock");
  if (!lock.ok()) return std::move(lock).error();
  exists = PathExists(path);
  if (!exists.ok()) return std::move(exists).error();

  GitPtr<git_repository> mirror;
  const std::string staging = path + ".new";
  if (*exists) {
    // Another thread or process may have fetched it while this one waited for the lock.
    auto has = MirrorHasCommit(path, oid, sha);
    if (!has.ok()) return std::move(has).error();
    if (*has) return path;
    auto opened = internal::OpenBare(path);
    if (!opened.ok()) return std::move(opened).error();
    mirror = std::move(opened).value();
  } else {
    // A staging directory left by a process that died mid-fetch.
    SBX_TRY(RemoveTree(staging));
    auto made = CreateMirror(staging, url);
    if (!made.ok()) {
      (void)RemoveTree(staging);
      return std::move(made).error();
    }
    mirror = std::move(made).value();
  }

  auto configured = ConfiguredUrl(mirror.get(), path);
  if (!configured.ok()) return std::move(configured).error();
  if (*configured != url) {
    return MakeError(ErrorCode::kInternal, "the mirror {} fetches from {}, not {}", path,
                     *configured, url);
  }
  // An in-memory remote with the mirror's URL and fetchspec: no url.<base>.insteadOf rewriting
  // (SKIP_INSTEADOF), and no regex over the config (see CreateMirror).
  git_remote_create_options remote_opts;
  git_remote_create_options_init(&remote_opts, GIT_REMOTE_CREATE_OPTIONS_VERSION);
  remote_opts.repository = mirror.get();
  remote_opts.name = nullptr;
  remote_opts.fetchspec = kFetchSpec;
  remote_opts.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
  git_remote* raw_remote = nullptr;
  if (git_remote_create_with_opts(&raw_remote, url.c_str(), &remote_opts) != 0) {
    return GitError(ErrorCode::kInternal, "setting up the fetch of " + url);
  }
  GitPtr<git_remote> remote(raw_remote);

  internal::FetchLimits limits;
  limits.deadline = std::chrono::steady_clock::now() + options_.fetch_timeout;
  limits.io_timeout = options_.io_timeout;
  git_fetch_options fetch;
  git_fetch_options_init(&fetch, GIT_FETCH_OPTIONS_VERSION);
  fetch.prune = GIT_FETCH_NO_PRUNE;
  fetch.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_ALL;
  fetch.update_fetchhead = 1;
  fetch.follow_redirects = GIT_REMOTE_REDIRECT_INITIAL;
  fetch.callbacks.transfer_progress = OnTransferProgress;
  fetch.callbacks.sideband_progress = OnSidebandProgress;
  fetch.callbacks.payload = &limits;
  // No credentials callback: a repository that asks for authentication fails the fetch.
  int rc = 0;
  {
    internal::ScopedFetchLimits scope(&limits);
    fetches_.fetch_add(1);
    rc = git_remote_fetch(remote.get(), nullptr, &fetch, nullptr);
  }
  if (rc != 0) {
    Error e = FetchError(*loc, limits, options_);
    remote.reset();
    mirror.reset();
    if (!*exists) (void)RemoveTree(staging);
    return e;
  }
  remote.reset();

  auto has = HasCommit(mirror.get(), oid, sha);
  mirror.reset();
  if (!*exists && ::rename(staging.c_str(), path.c_str()) != 0) {
    Error e = ErrnoError("renaming {} to {}", staging, path);
    (void)RemoveTree(staging);
    return e;
  }
  if (!has.ok()) return std::move(has).error();
  if (!*has) {
    return MakeError(ErrorCode::kNotFound,
                     "commit {} is not in {} (fetched all its branches and tags); push it to a "
                     "branch or tag there, or check the sha",
                     sha, url);
  }
  return path;
}

}  // namespace sbx::supervisor::checkout
