#include <arpa/inet.h>
#include <git2.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "checkout_test_repo.h"
#include "supervisor/checkout/mirrors.h"

namespace sbx::supervisor::checkout {
namespace {

using testing::FileSpec;
using testing::Repo;
using testing::TempDir;

constexpr char kMissingSha[] = "0123456789abcdef0123456789abcdef01234567";

template <typename T>
std::string ErrorText(const Result<T>& r) {
  return r.ok() ? "ok" : r.error().ToString();
}

struct timespec MtimeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mtim;
}

bool SameTime(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

// Reads `key` from the config of the repository at `path`; nullopt when unset.
std::optional<std::string> ConfigValue(const std::string& path, const std::string& key) {
  git_repository* repo = nullptr;
  EXPECT_EQ(git_repository_open_bare(&repo, path.c_str()), 0) << testing::GitMessage();
  git_config* cfg = nullptr;
  EXPECT_EQ(git_repository_config_snapshot(&cfg, repo), 0);
  git_buf buf = GIT_BUF_INIT;
  std::optional<std::string> out;
  if (git_config_get_string_buf(&buf, cfg, key.c_str()) == 0) out = std::string(buf.ptr, buf.size);
  git_buf_dispose(&buf);
  git_config_free(cfg);
  git_repository_free(repo);
  return out;
}

class CheckoutMirrors : public ::testing::Test {
 protected:
  TempDir tmp_;
  std::string mirrors_dir_ = tmp_ / "state/mirrors";
};

TEST_F(CheckoutMirrors, EnsureClonesALocalPathOnceAndFetchesOnlyForMissingCommits) {
  Repo origin(tmp_ / "origin.git", /*bare=*/true);
  const std::string c1 = origin.Commit({{"README", "one\n"}}, "first");
  Mirrors mirrors(mirrors_dir_);

  auto path = mirrors.Ensure(origin.path(), c1);
  ASSERT_TRUE(path.ok()) << ErrorText(path);
  EXPECT_EQ(*path, *mirrors.MirrorPath(origin.path()));
  EXPECT_EQ(path->rfind(mirrors_dir_ + "/", 0), 0u) << *path;
  EXPECT_EQ(path->size(), mirrors_dir_.size() + 1 + 32 + 4) << *path;
  EXPECT_EQ(mirrors.fetches(), 1u);
  struct stat st {};
  ASSERT_EQ(::stat(mirrors_dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  const std::string fetch_head = *path + "/FETCH_HEAD";
  const struct timespec first_fetch = MtimeOf(fetch_head);
  EXPECT_FALSE(::access((*path + ".new").c_str(), F_OK) == 0) << "the staging directory stayed";

  // Present: no fetch, whatever the spelling of the repository.
  for (const std::string& spelling :
       {origin.path(), origin.path() + "/", "file://" + origin.path()}) {
    auto again = mirrors.Ensure(spelling, c1);
    ASSERT_TRUE(again.ok()) << spelling << ": " << ErrorText(again);
    EXPECT_EQ(*again, *path) << spelling;
  }
  EXPECT_EQ(mirrors.fetches(), 1u);
  EXPECT_TRUE(SameTime(MtimeOf(fetch_head), first_fetch));

  // A commit added to the origin later is fetched when asked for.
  const std::string c2 = origin.Commit({{"README", "two\n"}}, "second");
  auto old = mirrors.Ensure("file://" + origin.path(), c1);
  ASSERT_TRUE(old.ok()) << ErrorText(old);
  EXPECT_EQ(mirrors.fetches(), 1u) << "an old commit made it fetch";
  EXPECT_TRUE(SameTime(MtimeOf(fetch_head), first_fetch));
  auto fresh = mirrors.Ensure("file://" + origin.path(), c2);
  ASSERT_TRUE(fresh.ok()) << ErrorText(fresh);
  EXPECT_EQ(*fresh, *path);
  EXPECT_EQ(mirrors.fetches(), 2u);
  EXPECT_FALSE(SameTime(MtimeOf(fetch_head), first_fetch)) << "FETCH_HEAD was not rewritten";

  // Another Mirrors over the same directory (another process, say) finds both without fetching.
  Mirrors other(mirrors_dir_);
  ASSERT_TRUE(other.Ensure(origin.path(), c1).ok());
  ASSERT_TRUE(other.Ensure(origin.path(), c2).ok());
  EXPECT_EQ(other.fetches(), 0u);
}

TEST_F(CheckoutMirrors, EnsureFetchesFromANonBareRepositoryByFileUrl) {
  Repo origin(tmp_ / "work", /*bare=*/false);
  const std::string c1 = origin.Commit({{"a.txt", "a\n"}, {"dir/b.txt", "b\n"}}, "first");
  Mirrors mirrors(mirrors_dir_);
  auto path = mirrors.Ensure("file://" + origin.path(), c1);
  ASSERT_TRUE(path.ok()) << ErrorText(path);
  git_repository* repo = nullptr;
  ASSERT_EQ(git_repository_open_bare(&repo, path->c_str()), 0);
  EXPECT_TRUE(git_repository_is_bare(repo));
  git_oid oid{};
  git_oid_fromstr(&oid, c1.c_str());
  git_commit* commit = nullptr;
  EXPECT_EQ(git_commit_lookup(&commit, repo, &oid), 0);
  git_commit_free(commit);
  git_repository_free(repo);
}

TEST_F(CheckoutMirrors, CommitsOnlyATagReachesAreFetched) {
  Repo origin(tmp_ / "origin.git", true);
  const std::string main = origin.Commit({{"f", "main\n"}}, "main");
  const std::string tagged = origin.Commit({{"f", "tagged\n"}}, "release", /*ref=*/"");
  origin.Tag("v1.0", tagged);
  Mirrors mirrors(mirrors_dir_);
  ASSERT_TRUE(mirrors.Ensure(origin.path(), main).ok());
  auto r = mirrors.Ensure(origin.path(), tagged);
  ASSERT_TRUE(r.ok()) << ErrorText(r);
  EXPECT_EQ(mirrors.fetches(), 1u) << "the tag was not fetched with the first fetch";
}

TEST_F(CheckoutMirrors, ACommitNotInTheRepositoryIsNotFound) {
  Repo origin(tmp_ / "origin.git", true);
  origin.Commit({{"f", "x\n"}}, "first");
  // Unreachable from every ref: never sent by a fetch.
  const std::string dangling = origin.Commit({{"f", "dangling\n"}}, "dangling", /*ref=*/"");
  Mirrors mirrors(mirrors_dir_);
  auto r = mirrors.Ensure(origin.path(), kMissingSha);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound) << ErrorText(r);
  EXPECT_NE(r.error().message.find(origin.path()), std::string::npos) << r.error().message;
  EXPECT_EQ(mirrors.fetches(), 1u);
  // The mirror was made all the same; asking again fetches again (the commit may be new).
  EXPECT_EQ(::access(mirrors.MirrorPath(origin.path())->c_str(), F_OK), 0);
  r = mirrors.Ensure(origin.path(), dangling);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound) << ErrorText(r);
  EXPECT_EQ(mirrors.fetches(), 2u);
}

TEST_F(CheckoutMirrors, AnObjectThatIsNotACommitIsNotFound) {
  Repo origin(tmp_ / "origin.git", true);
  origin.Commit({{"f", "blob content\n"}}, "first");
  const std::string blob = testing::Hex(origin.Blob("blob content\n"));
  Mirrors mirrors(mirrors_dir_);
  auto r = mirrors.Ensure(origin.path(), blob);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  EXPECT_NE(r.error().message.find("not a commit"), std::string::npos) << r.error().message;
}

TEST_F(CheckoutMirrors, MalformedShasReposAndSchemesAreInvalidArguments) {
  Repo origin(tmp_ / "origin.git", true);
  const std::string c1 = origin.Commit({{"f", "x\n"}}, "first");
  Mirrors mirrors(mirrors_dir_);
  std::string upper = c1;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const std::string& sha : {std::string("main"), c1.substr(0, 39), c1 + "0", upper,
                                 std::string("HEAD"), std::string()}) {
    auto r = mirrors.Ensure(origin.path(), sha);
    ASSERT_FALSE(r.ok()) << sha;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << sha << ": " << ErrorText(r);
  }
  for (const std::string& repo :
       {std::string("ssh://git@example.com/r.git"), std::string("git://example.com/r"),
        std::string("example.com:r.git"), std::string("relative/repo"),
        std::string("https://example.com/"), std::string("file://host/r")}) {
    auto r = mirrors.Ensure(repo, c1);
    ASSERT_FALSE(r.ok()) << repo;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << repo << ": " << ErrorText(r);
  }
  auto ssh = mirrors.Ensure("ssh://git@example.com/r.git", c1);
  EXPECT_NE(ssh.error().message.find("https://"), std::string::npos) << ssh.error().message;
  auto creds = mirrors.Ensure("https://bob:hunter2@example.com/r.git", c1);
  ASSERT_FALSE(creds.ok());
  EXPECT_EQ(creds.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(creds.error().ToString().find("hunter2"), std::string::npos);
  EXPECT_EQ(mirrors.fetches(), 0u);
}

TEST_F(CheckoutMirrors, AFailedFirstFetchIsUnavailableAndLeavesNoMirror) {
  Mirrors mirrors(mirrors_dir_);
  const std::string missing = tmp_ / "no-such-repo";
  auto r = mirrors.Ensure(missing, kMissingSha);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << ErrorText(r);
  EXPECT_NE(r.error().message.find(missing), std::string::npos) << r.error().message;
  const std::string mirror = *mirrors.MirrorPath(missing);
  EXPECT_NE(::access(mirror.c_str(), F_OK), 0);
  EXPECT_NE(::access((mirror + ".new").c_str(), F_OK), 0);
}

TEST_F(CheckoutMirrors, ALocalRepositoryOfAnotherOwnerIsAFailedPrecondition) {
  if (::geteuid() != 0) GTEST_SKIP() << "giving the origin to another uid needs root";
  std::string sha;
  {
    Repo origin(tmp_ / "origin.git", true);
    sha = origin.Commit({{"f", "x\n"}}, "first");
  }
  // The origin's top directory (what libgit2 checks) given to another uid.
  ASSERT_EQ(::chown((tmp_ / "origin.git").c_str(), 65534, 65534), 0);
  Mirrors mirrors(mirrors_dir_);
  auto r = mirrors.Ensure(tmp_ / "origin.git", sha);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition) << ErrorText(r);
  EXPECT_NE(r.error().message.find("uid 65534"), std::string::npos) << r.error().message;
  ASSERT_EQ(::chown((tmp_ / "origin.git").c_str(), 0, 0), 0);
  EXPECT_TRUE(mirrors.Ensure(tmp_ / "origin.git", sha).ok());
}

TEST_F(CheckoutMirrors, TheMirrorHasNoPushUrlNoCredentialsAndNoHelper) {
  Repo origin(tmp_ / "origin.git", true);
  const std::string c1 = origin.Commit({{"f", "x\n"}}, "first");
  Mirrors mirrors(mirrors_dir_);
  auto path = mirrors.Ensure(origin.path(), c1);
  ASSERT_TRUE(path.ok()) << ErrorText(path);

  EXPECT_EQ(ConfigValue(*path, "remote.origin.url"), origin.path());
  auto pushurl = ConfigValue(*path, "remote.origin.pushurl");
  ASSERT_TRUE(pushurl.has_value());
  EXPECT_NE(*pushurl, origin.path());
  EXPECT_NE(pushurl->find("push-disabled"), std::string::npos) << *pushurl;
  EXPECT_EQ(ConfigValue(*path, "push.default"), "nothing");
  EXPECT_EQ(ConfigValue(*path, "credential.helper"), "");
  EXPECT_EQ(ConfigValue(*path, "sandboxd.readonlymirror"), "true");
  EXPECT_EQ(ConfigValue(*path, "remote.origin.fetch"), "+refs/*:refs/*");

  // Nothing in the config that could hold a secret or send one.
  git_repository* repo = nullptr;
  ASSERT_EQ(git_repository_open_bare(&repo, path->c_str()), 0);
  git_config* cfg = nullptr;
  ASSERT_EQ(git_repository_config_snapshot(&cfg, repo), 0);
  git_config_iterator* it = nullptr;
  ASSERT_EQ(git_config_iterator_new(&it, cfg), 0);
  git_config_entry* entry = nullptr;
  int keys = 0;
  while (git_config_next(&entry, it) == 0) {
    ++keys;
    const std::string name = entry->name;
    const std::string value = entry->value != nullptr ? entry->value : "";
    EXPECT_EQ(entry->level, GIT_CONFIG_LEVEL_LOCAL) << name << " comes from outside the mirror";
    for (const char* word : {"password", "token", "extraheader", "cookie", "askpass", "sslkey"}) {
      EXPECT_EQ(name.find(word), std::string::npos) << name;
    }
    if (name.rfind("credential.", 0) == 0) {
      EXPECT_EQ(name, "credential.helper");
      EXPECT_EQ(value, "");
    }
    if (name.find("url") != std::string::npos) {
      EXPECT_EQ(value.find('@'), std::string::npos) << name << " = " << value;
    }
  }
  EXPECT_GT(keys, 5);
  git_config_iterator_free(it);
  git_config_free(cfg);

  git_remote* remote = nullptr;
  {
    testing::IgnoreLibgit2Leaks ignore;
    ASSERT_EQ(git_remote_lookup(&remote, repo, "origin"), 0);
  }
  ASSERT_NE(git_remote_pushurl(remote), nullptr);
  EXPECT_STRNE(git_remote_pushurl(remote), git_remote_url(remote));
  git_remote_free(remote);
  git_repository_free(repo);
  for (const char* f : {"/.git-credentials", "/credentials", "/.netrc"}) {
    EXPECT_NE(::access((*path + f).c_str(), F_OK), 0) << f;
  }
}

TEST_F(CheckoutMirrors, PushingFromTheMirrorToItsOriginFails) {
  Repo origin(tmp_ / "origin.git", true);
  const std::string c1 = origin.Commit({{"f", "x\n"}}, "first");
  Mirrors mirrors(mirrors_dir_);
  auto path = mirrors.Ensure(origin.path(), c1);
  ASSERT_TRUE(path.ok()) << ErrorText(path);

  // A commit made in the mirror, pushed to a new branch of the origin through the configured
  // remote: must fail, and the origin must not get it.
  Repo mirror(*path, Repo::OpenExisting{});
  const std::string evil = mirror.Commit({{"f", "pushed\n"}}, "evil", "refs/heads/evil");
  testing::IgnoreLibgit2Leaks ignore;
  git_remote* remote = nullptr;
  ASSERT_EQ(git_remote_lookup(&remote, mirror.get(), "origin"), 0);
  const char* specs[] = {"refs/heads/evil:refs/heads/evil"};
  git_strarray refspecs = {const_cast<char**>(specs), 1};
  git_push_options opts;
  git_push_options_init(&opts, GIT_PUSH_OPTIONS_VERSION);
  EXPECT_NE(git_remote_push(remote, &refspecs, &opts), 0) << "the push went through";
  git_remote_free(remote);

  git_reference* ref = nullptr;
  EXPECT_EQ(git_reference_lookup(&ref, origin.get(), "refs/heads/evil"), GIT_ENOTFOUND);
  git_reference_free(ref);
  git_oid oid{};
  git_oid_fromstr(&oid, evil.c_str());
  git_odb* odb = nullptr;
  ASSERT_EQ(git_repository_odb(&odb, origin.get()), 0);
  EXPECT_FALSE(git_odb_exists(odb, &oid)) << "the pushed commit reached the origin";
  git_odb_free(odb);
}

TEST_F(CheckoutMirrors, ConcurrentEnsuresOfOneMirrorFetchOnce) {
  Repo origin(tmp_ / "origin.git", true);
  std::string sha;
  for (int i = 0; i < 20; ++i) sha = origin.Commit({{fmt::format("f{}", i), "x\n"}}, "c");
  // Two objects over one directory: the lock is the file's, not an object's.
  Mirrors a(mirrors_dir_);
  Mirrors b(mirrors_dir_);
  std::atomic<int> ready{0};
  std::vector<std::future<Result<std::string>>> results;
  for (int i = 0; i < 8; ++i) {
    Mirrors* m = i % 2 == 0 ? &a : &b;
    results.push_back(std::async(std::launch::async, [&, m] {
      ready.fetch_add(1);
      while (ready.load() < 8) std::this_thread::yield();
      return m->Ensure(origin.path(), sha);
    }));
  }
  std::string path;
  for (auto& f : results) {
    auto r = f.get();
    ASSERT_TRUE(r.ok()) << ErrorText(r);
    if (path.empty()) path = *r;
    EXPECT_EQ(*r, path);
  }
  EXPECT_EQ(a.fetches() + b.fetches(), 1u);
}

TEST_F(CheckoutMirrors, NoGlobalGitConfigIsRead) {
  Repo origin(tmp_ / "origin.git", true);
  const std::string c1 = origin.Commit({{"f", "x\n"}}, "first");
  Mirrors mirrors(mirrors_dir_);
  ASSERT_TRUE(mirrors.Ensure(origin.path(), c1).ok());
  for (int level : {GIT_CONFIG_LEVEL_SYSTEM, GIT_CONFIG_LEVEL_XDG, GIT_CONFIG_LEVEL_GLOBAL}) {
    git_buf buf = GIT_BUF_INIT;
    ASSERT_EQ(git_libgit2_opts(GIT_OPT_GET_SEARCH_PATH, level, &buf), 0);
    EXPECT_EQ(std::string(buf.ptr != nullptr ? buf.ptr : "", buf.size), "") << level;
    git_buf_dispose(&buf);
  }
}

// A server that accepts connections (the kernel completes the handshake) and never answers.
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "listen: " << std::strerror(errno);
    }
    port_ = ntohs(addr.sin_port);
  }
  ~SilentServer() { Close(); }
  // Closing the listener resets the connections waiting in its queue.
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

void ExpectFetchTimesOut(const std::string& scheme, const std::string& mirrors_dir) {
  SilentServer server;
  MirrorsOptions options;
  options.fetch_timeout = std::chrono::milliseconds(1500);
  options.io_timeout = std::chrono::milliseconds(300);
  Mirrors mirrors(mirrors_dir, options);
  const std::string url = fmt::format("{}://127.0.0.1:{}/repo.git", scheme, server.port());
  const auto start = std::chrono::steady_clock::now();
  auto pending = std::async(std::launch::async, [&] { return mirrors.Ensure(url, kMissingSha); });
  if (pending.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    ADD_FAILURE() << scheme << ": the fetch did not time out within 20 s";
    server.Close();  // lets the hung fetch end so the test can
  }
  auto r = pending.get();
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << ErrorText(r);
  EXPECT_NE(r.error().message.find("timed out"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(url), std::string::npos) << r.error().message;
  EXPECT_LT(elapsed, std::chrono::seconds(10));
  EXPECT_EQ(mirrors.fetches(), 1u);
}

TEST_F(CheckoutMirrors, AnHttpServerThatNeverAnswersTimesOut) {
  ExpectFetchTimesOut("http", mirrors_dir_);
}

TEST_F(CheckoutMirrors, AnHttpsServerThatNeverAnswersTimesOut) {
  // The TLS handshake waits on the same timed socket stream.
  ExpectFetchTimesOut("https", mirrors_dir_);
}

}  // namespace
}  // namespace sbx::supervisor::checkout
