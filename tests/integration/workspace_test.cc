// Workspaces and /artifacts in real sandboxes: refused paths, a read-only view, a copy-on-write
// view whose changes never reach the host and come back as a diff, the artifacts quota and a
// collection that follows no link and opens no fifo, and no mount left behind.
#include "supervisor/workspace/workspace.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <sstream>

#include "base/fs.h"
#include "base/sha256.h"
#include "integration/sandbox_harness.h"
#include "supervisor/workspace/workspace_fs.h"
#include "tests/support/skip.h"

namespace sbx::testing {
namespace {

using isolate::EndReason;
using supervisor::ArtifactLimits;
using supervisor::ResolvedWorkspace;
using supervisor::ResolveWorkspace;
using supervisor::RunMounts;
using supervisor::WorkspaceMode;

constexpr uint64_t kQuota = 1 << 20;

// A directory under /tmp, searchable by others (the sandbox reaches its mounts through it),
// removed with everything in it. Removal never crosses a mount point.
class TempDir {
 public:
  static constexpr const char* kPrefix = "sbx-ws-test-";

  TempDir() {
    std::string tmpl = fmt::format("/tmp/{}{}-XXXXXX", kPrefix, ::getpid());
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    if (p != nullptr) path_ = p;
    ::chmod(path_.c_str(), 0711);
  }
  ~TempDir() {
    if (path_.empty()) return;
    size_t slash = path_.rfind('/');
    UniqueFd parent(::open(path_.substr(0, slash).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    Status st = supervisor::internal::RemoveTree(parent.get(), path_.substr(slash + 1));
    EXPECT_TRUE(st.ok()) << st.error().ToString();
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void Mkdir(const std::string& p, mode_t mode = 0755) {
  ASSERT_EQ(::mkdir(p.c_str(), mode), 0) << p << ": " << std::strerror(errno);
  ASSERT_EQ(::chmod(p.c_str(), mode), 0);
}

void Put(const std::string& p, std::string_view data, mode_t mode = 0644) {
  UniqueFd fd(::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
  ASSERT_TRUE(fd.valid()) << p << ": " << std::strerror(errno);
  Status st = WriteAll(fd.get(), data);
  ASSERT_TRUE(st.ok()) << st.error().ToString();
  ASSERT_EQ(::fchmod(fd.get(), mode), 0);
}

// Everything about a tree that a change could touch: type, mode, owner, size, content or link
// target, per relative path.
std::map<std::string, std::string> Snapshot(const std::string& root) {
  std::map<std::string, std::string> out;
  std::vector<std::string> todo = {""};
  while (!todo.empty()) {
    std::string rel = todo.back();
    todo.pop_back();
    std::string abs = rel.empty() ? root : root + "/" + rel;
    struct stat st;
    if (::lstat(abs.c_str(), &st) < 0) {
      out[rel] = "lstat failed";
      continue;
    }
    std::string desc = fmt::format("{:o} {}:{} {}", st.st_mode, st.st_uid, st.st_gid, st.st_size);
    if (S_ISREG(st.st_mode)) {
      auto data = ReadFile(abs, 1 << 24);
      desc += " " + (data.ok() ? Sha256Hex(*data) : "unreadable");
    } else if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = ::readlink(abs.c_str(), buf, sizeof buf);
      desc += " -> " + std::string(buf, n > 0 ? static_cast<size_t>(n) : 0);
    } else if (S_ISDIR(st.st_mode)) {
      DIR* d = ::opendir(abs.c_str());
      while (d != nullptr) {
        dirent* e = ::readdir(d);
        if (e == nullptr) break;
        std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        todo.push_back(rel.empty() ? name : rel + "/" + name);
      }
      if (d != nullptr) ::closedir(d);
    }
    out[rel] = desc;
  }
  return out;
}

// Mount points at or below `dir`, from /proc/self/mountinfo.
std::vector<std::string> MountsUnder(const std::string& dir) {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, mp;
    fields >> id >> parent >> dev >> root >> mp;
    mp = supervisor::UnescapeMountinfo(mp);
    if (mp == dir || mp.rfind(dir + "/", 0) == 0) out.push_back(mp);
  }
  return out;
}

// Removes what test processes that died mid-test (a crash, a kill) left in /tmp: their mounts,
// deepest first, then their directories. Only "sbx-ws-test-PID-*" whose PID no longer runs.
void RemoveStaleTestDirs() {
  DIR* d = ::opendir("/tmp");
  if (d == nullptr) return;
  std::vector<std::string> stale;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind(TempDir::kPrefix, 0) != 0) continue;
    pid_t pid = static_cast<pid_t>(std::atoi(name.c_str() + std::strlen(TempDir::kPrefix)));
    if (pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    stale.push_back(name);
  }
  ::closedir(d);
  UniqueFd tmp(::open("/tmp", O_PATH | O_DIRECTORY | O_CLOEXEC));
  for (const std::string& name : stale) {
    std::vector<std::string> mounts = MountsUnder("/tmp/" + name);
    std::sort(mounts.begin(), mounts.end(), [](const std::string& a, const std::string& b) {
      return std::count(a.begin(), a.end(), '/') > std::count(b.begin(), b.end(), '/');
    });
    for (const std::string& mp : mounts) ::umount2(mp.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
    (void)supervisor::internal::RemoveTree(tmp.get(), name);
  }
}

bool Exists(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0;
}

// ---- path resolution (no sandbox needed) ----------------------------------------------------

class ResolveWorkspaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = tmp_.path();
    root_ = base_ + "/work";
    Mkdir(root_);
    Mkdir(root_ + "/proj");
    Mkdir(root_ + "/proj/sub");
    Mkdir(base_ + "/work2");
    Mkdir(base_ + "/work2/proj");
    Put(root_ + "/file.txt", "x");
    ASSERT_EQ(::symlink("proj", (root_ + "/link").c_str()), 0);
    ASSERT_EQ(::symlink("/etc", (root_ + "/out").c_str()), 0);
    ASSERT_EQ(::symlink("../work2", (root_ + "/up").c_str()), 0);
  }

  void ExpectRefused(const std::string& path, ErrorCode code, const std::string& words) {
    auto r = ResolveWorkspace(path, {root_});
    ASSERT_FALSE(r.ok()) << "accepted " << path;
    EXPECT_EQ(r.error().code, code) << path << ": " << r.error().ToString();
    EXPECT_NE(r.error().message.find(words), std::string::npos)
        << path << ": " << r.error().ToString();
  }

  TempDir tmp_;
  std::string base_;
  std::string root_;
};

TEST_F(ResolveWorkspaceTest, RefusesEveryBadPath) {
  ExpectRefused("", ErrorCode::kInvalidArgument, "empty");
  ExpectRefused("work/proj", ErrorCode::kInvalidArgument, "relative");
  ExpectRefused(root_ + std::string("/proj\0/etc", 10), ErrorCode::kInvalidArgument, "NUL");
  ExpectRefused(root_ + "/proj/../proj", ErrorCode::kInvalidArgument, "'..'");
  ExpectRefused(root_ + "/./proj", ErrorCode::kInvalidArgument, "'.'");
  ExpectRefused(root_ + "/..", ErrorCode::kInvalidArgument, "'..'");
  // A sibling whose name starts with the root's is not under it.
  ExpectRefused(base_ + "/work2/proj", ErrorCode::kPermissionDenied, "not under an allowed");
  ExpectRefused("/etc", ErrorCode::kPermissionDenied, "not under an allowed");
  // Symlinks: as a middle component, pointing inside; as the last one; pointing outside.
  ExpectRefused(root_ + "/link/sub", ErrorCode::kPermissionDenied, "symbolic link");
  ExpectRefused(root_ + "/link", ErrorCode::kPermissionDenied, "symbolic link");
  ExpectRefused(root_ + "/out", ErrorCode::kPermissionDenied, "symbolic link");
  ExpectRefused(root_ + "/up/proj", ErrorCode::kPermissionDenied, "symbolic link");
  ExpectRefused(root_ + "/file.txt", ErrorCode::kInvalidArgument, "not a directory");
  ExpectRefused(root_ + "/file.txt/x", ErrorCode::kInvalidArgument, "not a directory");
  ExpectRefused(root_ + "/missing", ErrorCode::kNotFound, "does not exist");

  auto none = ResolveWorkspace(root_ + "/proj", {});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, ErrorCode::kPermissionDenied);
  EXPECT_NE(none.error().message.find("workspaces are not enabled: set workspace_roots"),
            std::string::npos);
}

TEST_F(ResolveWorkspaceTest, ResolvesUnderTheRoot) {
  if (::geteuid() != 0) SBX_SKIP_PRIVILEGED("needs root (chown)");
  ASSERT_EQ(::chown((root_ + "/proj").c_str(), 1234, 4321), 0);
  for (const std::string& p : {root_ + "/proj", root_ + "//proj/", root_ + "/proj/"}) {
    auto r = ResolveWorkspace(p, {base_ + "/other", root_ + "/"});
    ASSERT_TRUE(r.ok()) << p << ": " << r.error().ToString();
    EXPECT_EQ(r->path, root_ + "/proj");
    EXPECT_EQ(r->root, root_ + "/");
    EXPECT_EQ(r->owner_uid, 1234u);
    EXPECT_EQ(r->owner_gid, 4321u);
    EXPECT_TRUE(r->fd.valid());
  }
  // The longest matching root wins; the root itself may be named.
  auto nested = ResolveWorkspace(root_ + "/proj/sub", {root_, root_ + "/proj"});
  ASSERT_TRUE(nested.ok()) << nested.error().ToString();
  EXPECT_EQ(nested->root, root_ + "/proj");
  auto itself = ResolveWorkspace(root_, {root_});
  ASSERT_TRUE(itself.ok()) << itself.error().ToString();
  EXPECT_EQ(itself->path, root_);
}

TEST(UnescapeMountinfo, DecodesOctalEscapes) {
  EXPECT_EQ(supervisor::UnescapeMountinfo("/a\\040b\\011c\\012d\\134e"), "/a b\tc\nd\\e");
  EXPECT_EQ(supervisor::UnescapeMountinfo("/plain"), "/plain");
  EXPECT_EQ(supervisor::UnescapeMountinfo("/bad\\09"), "/bad\\09");
}

// ---- mounts in real sandboxes -----------------------------------------------------------------

class WorkspaceTest : public SandboxTest {
 protected:
  static void SetUpTestSuite() {
    SandboxTest::SetUpTestSuite();
    if (::geteuid() == 0) RemoveStaleTestDirs();
  }

  void SetUp() override {
    SandboxTest::SetUp();
    if (IsSkipped()) return;
    base_ = tmp_.path();
    data_ = base_ + "/data";
    Mkdir(data_, 0711);
    Mkdir(data_ + "/runs", 0711);
    run_dir_ = data_ + "/runs/r1";
    Mkdir(run_dir_, 0711);
    root_ = base_ + "/roots";
    Mkdir(root_);
    ws_ = root_ + "/proj";
    Mkdir(ws_);
  }

  void TearDown() override {
    if (!data_.empty()) {
      EXPECT_TRUE(MountsUnder(data_).empty()) << "mounts left under " << data_;
      // Never leave a mount behind for the next test, even when this one failed.
      for (const std::string& mp : MountsUnder(data_)) ::umount2(mp.c_str(), MNT_DETACH);
    }
  }

  ResolvedWorkspace Resolve() {
    auto r = ResolveWorkspace(ws_, {root_});
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    return r.ok() ? std::move(*r) : ResolvedWorkspace{};
  }

  std::optional<RunMounts> Prepare(const ResolvedWorkspace* ws, WorkspaceMode mode,
                                   const isolate::SandboxSpec& spec) {
    auto m = RunMounts::Prepare(run_dir_, ws, mode, kQuota, spec.host_id_base + spec.uid,
                                spec.host_id_base + spec.gid);
    EXPECT_TRUE(m.ok()) << m.error().ToString();
    if (!m.ok()) return std::nullopt;
    return std::move(*m);
  }

  void ExpectTornDown(RunMounts& m) {
    Status st = m.Teardown();
    EXPECT_TRUE(st.ok()) << st.error().ToString();
    EXPECT_TRUE(MountsUnder(data_).empty());
    EXPECT_FALSE(Exists(run_dir_ + "/mnt"));
    EXPECT_FALSE(Exists(run_dir_ + "/cow"));
    EXPECT_TRUE(Exists(run_dir_));
    Status again = m.Teardown();
    EXPECT_TRUE(again.ok()) << "Teardown is idempotent";
  }

  static std::vector<std::string> Sh(const std::string& script) {
    return {"/bin/busybox", "sh", "-c", script};
  }

  TempDir tmp_;
  std::string base_, data_, run_dir_, root_, ws_;
};

TEST_F(WorkspaceTest, ReadOnlyWorkspaceIsReadableAndUnwritable) {
  Put(ws_ + "/a.txt", "alpha\n");
  Mkdir(ws_ + "/dir");
  Put(ws_ + "/dir/b.txt", "beta\n");
  const auto before = Snapshot(ws_);
  ResolvedWorkspace ws = Resolve();
  auto spec = DefaultSpec();
  auto m = Prepare(&ws, WorkspaceMode::kReadOnly, spec);
  ASSERT_TRUE(m.has_value());
  auto binds = m->Binds();
  ASSERT_EQ(binds.size(), 2u);
  EXPECT_EQ(binds[0].target, "/workspace");
  EXPECT_FALSE(binds[0].writable);
  EXPECT_EQ(binds[1].target, "/artifacts");
  EXPECT_TRUE(binds[1].writable);
  for (auto& b : binds) spec.binds.push_back(b);

  auto o = Run(spec, Sh("cat /workspace/a.txt /workspace/dir/b.txt; "
                        "for t in 'echo x > /workspace/a.txt' 'echo x > /workspace/new' "
                        "'rm /workspace/dir/b.txt' 'mkdir /workspace/d' "
                        "'mv /workspace/a.txt /workspace/z' 'chmod 777 /workspace/a.txt' "
                        "'touch /workspace/a.txt'; do "
                        "  if (eval \"$t\") 2>/dev/null; then echo \"WROTE: $t\"; fi; "
                        "done; echo done"));
  EXPECT_EQ(o.result.reason, EndReason::kExited) << o.err;
  EXPECT_EQ(o.result.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, "alpha\nbeta\ndone\n");
  EXPECT_EQ(Snapshot(ws_), before);
  // No diff for a read-only workspace.
  auto diff = m->Diff(1 << 20);
  ASSERT_TRUE(diff.ok());
  EXPECT_EQ(*diff, "");
  ExpectTornDown(*m);
  EXPECT_EQ(Snapshot(ws_), before);
}

TEST_F(WorkspaceTest, CopyOnWriteChangesStayInTheRunAndShowInTheDiff) {
  Put(ws_ + "/a.txt", "line1\nline2\nline3\n");
  Put(ws_ + "/b.txt", "bee\n");
  Put(ws_ + "/c.txt", "sea\n");
  Put(ws_ + "/run.sh", "#!/bin/sh\n", 0755);
  Mkdir(ws_ + "/dir");
  Put(ws_ + "/dir/x.txt", "unchanged\n");
  Mkdir(ws_ + "/olddir");
  Put(ws_ + "/olddir/y.txt", "why\n");
  Mkdir(ws_ + "/olddir/deep");
  Put(ws_ + "/olddir/deep/z.txt", "zed\n");
  Mkdir(ws_ + "/redo");
  Put(ws_ + "/redo/gone.txt", "gone\n");
  Put(ws_ + "/root-owned.txt", "root's\n");
  // The workspace belongs to a host user; one file belongs to someone else (root).
  for (const char* p :
       {"", "/a.txt", "/b.txt", "/c.txt", "/run.sh", "/dir", "/dir/x.txt", "/olddir",
        "/olddir/y.txt", "/olddir/deep", "/olddir/deep/z.txt", "/redo", "/redo/gone.txt"}) {
    ASSERT_EQ(::lchown((ws_ + p).c_str(), 1234, 1234), 0) << p;
  }
  const auto before = Snapshot(ws_);

  ResolvedWorkspace ws = Resolve();
  auto spec = DefaultSpec();
  auto m = Prepare(&ws, WorkspaceMode::kCopyOnWrite, spec);
  ASSERT_TRUE(m.has_value());
  auto binds = m->Binds();
  ASSERT_EQ(binds.size(), 2u);
  EXPECT_EQ(binds[0].target, "/workspace");
  EXPECT_TRUE(binds[0].writable);
  for (auto& b : binds) spec.binds.push_back(b);

  auto sb = Create(spec);
  ASSERT_NE(sb, nullptr);
  auto change = RunIn(*sb, Sh("set -e; cd /workspace; "
                              "stat -c '%u:%g %n' a.txt dir root-owned.txt .; "
                              "echo line4 >> a.txt; rm b.txt; mv c.txt d.txt; "
                              "mkdir newdir emptydir; printf 'hi\\n' > newdir/n.txt; "
                              "rm -r olddir; chmod 644 run.sh; "
                              "rm -r redo; mkdir redo; echo fresh > redo/new.txt; "
                              "if echo x >> root-owned.txt 2>/dev/null; then echo WROTE; fi; "
                              "echo ok"));
  EXPECT_EQ(change.result.exit_code, 0) << change.err;
  EXPECT_EQ(change.out,
            "1000:1000 a.txt\n1000:1000 dir\n65534:65534 root-owned.txt\n1000:1000 .\nok\n");
  // A later command of the same run sees the changes.
  auto look = RunIn(*sb, Sh("cd /workspace; cat a.txt d.txt newdir/n.txt redo/new.txt; "
                            "for p in b.txt c.txt olddir redo/gone.txt; do "
                            "  test -e $p && echo \"still there: $p\"; done; "
                            "test -d emptydir && echo emptydir; echo end"));
  EXPECT_EQ(look.result.exit_code, 0) << look.err;
  EXPECT_EQ(look.out, "line1\nline2\nline3\nline4\nsea\nhi\nfresh\nemptydir\nend\n");
  ASSERT_TRUE(sb->Destroy().ok());
  sb.reset();

  EXPECT_EQ(Snapshot(ws_), before) << "the host workspace changed";

  auto diff = m->Diff(1 << 20);
  ASSERT_TRUE(diff.ok()) << diff.error().ToString();
  EXPECT_EQ(*diff,
            "diff --git a/a.txt b/a.txt\n"
            "--- a/a.txt\n"
            "+++ b/a.txt\n"
            "@@ -1,3 +1,4 @@\n"
            " line1\n"
            " line2\n"
            " line3\n"
            "+line4\n"
            "diff --git a/b.txt b/b.txt\n"
            "deleted file mode 100644\n"
            "--- a/b.txt\n"
            "+++ /dev/null\n"
            "@@ -1 +0,0 @@\n"
            "-bee\n"
            "diff --git a/c.txt b/c.txt\n"
            "deleted file mode 100644\n"
            "--- a/c.txt\n"
            "+++ /dev/null\n"
            "@@ -1 +0,0 @@\n"
            "-sea\n"
            "diff --git a/d.txt b/d.txt\n"
            "new file mode 100644\n"
            "--- /dev/null\n"
            "+++ b/d.txt\n"
            "@@ -0,0 +1 @@\n"
            "+sea\n"
            "diff --git a/newdir/n.txt b/newdir/n.txt\n"
            "new file mode 100644\n"
            "--- /dev/null\n"
            "+++ b/newdir/n.txt\n"
            "@@ -0,0 +1 @@\n"
            "+hi\n"
            "diff --git a/olddir/deep/z.txt b/olddir/deep/z.txt\n"
            "deleted file mode 100644\n"
            "--- a/olddir/deep/z.txt\n"
            "+++ /dev/null\n"
            "@@ -1 +0,0 @@\n"
            "-zed\n"
            "diff --git a/olddir/y.txt b/olddir/y.txt\n"
            "deleted file mode 100644\n"
            "--- a/olddir/y.txt\n"
            "+++ /dev/null\n"
            "@@ -1 +0,0 @@\n"
            "-why\n"
            "diff --git a/redo/gone.txt b/redo/gone.txt\n"
            "deleted file mode 100644\n"
            "--- a/redo/gone.txt\n"
            "+++ /dev/null\n"
            "@@ -1 +0,0 @@\n"
            "-gone\n"
            "diff --git a/redo/new.txt b/redo/new.txt\n"
            "new file mode 100644\n"
            "--- /dev/null\n"
            "+++ b/redo/new.txt\n"
            "@@ -0,0 +1 @@\n"
            "+fresh\n"
            "diff --git a/run.sh b/run.sh\n"
            "old mode 100755\n"
            "new mode 100644\n");

  // Cut at a file boundary, saying how much was left out.
  auto cut = m->Diff(400);
  ASSERT_TRUE(cut.ok());
  EXPECT_LE(cut->size(), 400u);
  EXPECT_EQ(diff->rfind(cut->substr(0, cut->find("... diff cut")), 0), 0u);
  EXPECT_NE(cut->find("more changed files left out\n"), std::string::npos) << *cut;
  const std::string footer = cut->substr(cut->find("... diff cut"));
  const std::string kept = cut->substr(0, cut->size() - footer.size());
  size_t kept_files = 0;
  for (size_t p = kept.find("diff --git"); p != std::string::npos;
       p = kept.find("diff --git", p + 1)) {
    ++kept_files;
  }
  EXPECT_NE(footer.find(fmt::format(": {} more changed files", 10 - kept_files)), std::string::npos)
      << footer;

  ExpectTornDown(*m);
  EXPECT_EQ(Snapshot(ws_), before);
}

TEST_F(WorkspaceTest, ArtifactsQuotaAndHostileLeftovers) {
  auto spec = DefaultSpec();
  auto m = Prepare(nullptr, WorkspaceMode::kReadOnly, spec);
  ASSERT_TRUE(m.has_value());
  auto binds = m->Binds();
  ASSERT_EQ(binds.size(), 1u);
  EXPECT_EQ(binds[0].target, "/artifacts");
  for (auto& b : binds) spec.binds.push_back(b);

  auto o = Run(
      spec,
      Sh(fmt::format("cd /artifacts; stat -c '%u:%g %a' .; "
                     "if dd if=/dev/zero of=big bs={} count=1 2>/tmp/err; then echo OVER-QUOTA-OK; "
                     "fi; grep -c 'No space left on device' /tmp/err; stat -c %s big; rm -f big; "
                     "dd if=/dev/zero of=exact bs={} count=1 2>/dev/null && echo exact-fits; "
                     "rm -f exact; "
                     "echo result > out.txt; mkdir -p sub/deeper; printf 'a\\0b' > sub/r.bin; "
                     "echo deep > sub/deeper/d.txt; "
                     "ln -s /etc/shadow shadow; ln -s / rootlink; mkfifo fifo; "
                     "touch \"$(printf 'bad\\001name')\"; touch \"$(printf 'bad\\377')\"; "
                     "echo done",
                     kQuota + 1, kQuota)));
  EXPECT_EQ(o.result.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, fmt::format("1000:1000 755\n1\n{}\nexact-fits\ndone\n", kQuota));

  const std::string dest = run_dir_ + "/artifacts/files";
  Mkdir(run_dir_ + "/artifacts");
  // A fifo is never opened: collection must finish on its own.
  auto job = std::async(std::launch::async, [&] { return m->CollectArtifacts(dest); });
  if (job.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    ADD_FAILURE() << "CollectArtifacts blocked";
    std::abort();
  }
  auto list = job.get();
  ASSERT_TRUE(list.ok()) << list.error().ToString();
  ASSERT_EQ(list->files.size(), 3u);
  EXPECT_EQ(list->files[0].path, "out.txt");
  EXPECT_EQ(list->files[0].size, 7u);
  EXPECT_EQ(list->files[0].sha256, Sha256Hex("result\n"));
  EXPECT_EQ(list->files[1].path, "sub/deeper/d.txt");
  EXPECT_EQ(list->files[1].sha256, Sha256Hex("deep\n"));
  EXPECT_EQ(list->files[2].path, "sub/r.bin");
  EXPECT_EQ(list->files[2].size, 3u);
  EXPECT_EQ(list->files[2].sha256, Sha256Hex(std::string("a\0b", 3)));
  EXPECT_EQ(list->total_bytes, 7u + 5u + 3u);
  for (const auto& f : list->files) {
    auto copy = ReadFile(dest + "/" + f.path);
    ASSERT_TRUE(copy.ok()) << f.path;
    EXPECT_EQ(Sha256Hex(*copy), f.sha256) << f.path;
  }
  std::map<std::string, std::string> skipped;
  for (const auto& s : list->skipped) skipped[s.path] = s.reason;
  EXPECT_EQ(skipped.size(), 5u);
  EXPECT_NE(skipped["shadow"].find("symbolic link"), std::string::npos);
  EXPECT_NE(skipped["rootlink"].find("symbolic link"), std::string::npos);
  EXPECT_NE(skipped["fifo"].find("fifo"), std::string::npos);
  EXPECT_NE(skipped["bad\\x01name"].find("control characters"), std::string::npos);
  EXPECT_NE(skipped["bad\\xff"].find("not valid UTF-8"), std::string::npos);
  for (const char* p : {"shadow", "rootlink", "fifo"}) {
    EXPECT_FALSE(Exists(dest + "/" + p)) << p;
  }

  // Limits: bytes and file count, each skip said.
  auto small = m->CollectArtifacts(run_dir_ + "/artifacts/small", ArtifactLimits{8, 10, 32});
  ASSERT_TRUE(small.ok()) << small.error().ToString();
  // out.txt (7 bytes) fits; sub/deeper/d.txt (5) and sub/r.bin (3) would pass 8.
  ASSERT_EQ(small->files.size(), 1u);
  EXPECT_EQ(small->files[0].path, "out.txt");
  EXPECT_EQ(small->total_bytes, 7u);
  size_t over = 0;
  for (const auto& s : small->skipped)
    over += s.reason.find("quota of 8 bytes") != std::string::npos;
  EXPECT_EQ(over, 2u);
  EXPECT_FALSE(Exists(run_dir_ + "/artifacts/small/sub/r.bin"));
  auto few = m->CollectArtifacts(run_dir_ + "/artifacts/few", ArtifactLimits{0, 1, 32});
  ASSERT_TRUE(few.ok());
  EXPECT_EQ(few->files.size(), 1u);
  bool said = false;
  for (const auto& s : few->skipped) said |= s.reason.find("limit of 1 files") != std::string::npos;
  EXPECT_TRUE(said);
  auto shallow = m->CollectArtifacts(run_dir_ + "/artifacts/shallow", ArtifactLimits{0, 10, 1});
  ASSERT_TRUE(shallow.ok());
  EXPECT_EQ(shallow->files.size(), 2u);  // out.txt, sub/r.bin; sub/deeper is too deep

  ExpectTornDown(*m);
  EXPECT_TRUE(Exists(dest + "/out.txt")) << "collected files are not part of the mounts";
  auto late = m->CollectArtifacts(run_dir_ + "/late");
  EXPECT_FALSE(late.ok());
}

TEST_F(WorkspaceTest, TheDiffNeverShowsWhatTheSandboxCouldNotRead) {
  // The workspace is 1234's. secret.txt is another user's, 0600; locked/ is another user's
  // 0700 directory holding a file of 1234's.
  Put(ws_ + "/open.txt", "open\n");
  Put(ws_ + "/secret.txt", "TOPSECRET-A\n", 0600);
  Mkdir(ws_ + "/locked");
  Put(ws_ + "/locked/inner.txt", "TOPSECRET-B\n");
  Put(ws_ + "/writeonly.txt", "TOPSECRET-C\n", 0200);  // its owner's, but not readable by it
  for (const char* p : {"", "/open.txt", "/locked/inner.txt", "/writeonly.txt"}) {
    ASSERT_EQ(::lchown((ws_ + p).c_str(), 1234, 1234), 0) << p;
  }
  ASSERT_EQ(::lchown((ws_ + "/secret.txt").c_str(), 4321, 4321), 0);
  ASSERT_EQ(::lchown((ws_ + "/locked").c_str(), 4321, 4321), 0);
  ASSERT_EQ(::chmod((ws_ + "/locked").c_str(), 0700), 0);
  const auto before = Snapshot(ws_);
  ResolvedWorkspace ws = Resolve();
  auto spec = DefaultSpec();
  auto m = Prepare(&ws, WorkspaceMode::kCopyOnWrite, spec);
  ASSERT_TRUE(m.has_value());
  for (auto& b : m->Binds()) spec.binds.push_back(b);
  // The hostile program tries every way to make the diff show the old content: delete, move
  // over, hard link, delete and recreate, and the same for the file in locked/; then it hides
  // a directory of its own.
  auto o = Run(spec, Sh("cd /workspace; rm -f secret.txt; mv open.txt secret.txt; "
                        "ln secret.txt hl; echo mine > secret.txt; rm -rf locked; "
                        "mv locked l2; rm -f locked/inner.txt; echo x > locked/inner.txt; "
                        "mkdir hidden; echo h > hidden/h.txt; chmod 000 hidden; "
                        "echo changed > open2.txt; true"));
  EXPECT_EQ(Snapshot(ws_), before) << "the host workspace changed";
  auto diff = m->Diff(1 << 20);
  ASSERT_TRUE(diff.ok()) << diff.error().ToString();
  EXPECT_EQ(diff->find("TOPSECRET"), std::string::npos) << *diff;
  EXPECT_NE(diff->find("+changed"), std::string::npos) << *diff;
  EXPECT_NE(diff->find("1 directory the run made unreadable left out (first: hidden)"),
            std::string::npos)
      << *diff;

  // The daemon itself could read them (root): only the sandbox user's rights keep them out.
  // Forge what the kernel refused the sandbox: whiteouts for both files in the upper layer.
  const std::string upper = run_dir_ + "/cow/upper";
  ::unlink((upper + "/secret.txt").c_str());
  ASSERT_EQ(::mknod((upper + "/secret.txt").c_str(), S_IFCHR | 0000, makedev(0, 0)), 0);
  std::filesystem::remove_all(upper + "/locked");
  ASSERT_EQ(::mknod((upper + "/locked").c_str(), S_IFCHR | 0000, makedev(0, 0)), 0);
  ASSERT_EQ(::mknod((upper + "/writeonly.txt").c_str(), S_IFCHR | 0000, makedev(0, 0)), 0);
  auto forged = m->Diff(1 << 20);
  ASSERT_TRUE(forged.ok()) << forged.error().ToString();
  EXPECT_EQ(forged->find("TOPSECRET"), std::string::npos) << *forged;
  EXPECT_NE(forged->find("diff --git a/secret.txt b/secret.txt\ndeleted file mode"),
            std::string::npos)
      << *forged;
  EXPECT_NE(forged->find("diff --git a/writeonly.txt b/writeonly.txt\ndeleted file mode"),
            std::string::npos)
      << *forged;
  ExpectTornDown(*m);
}

TEST_F(WorkspaceTest, TheCopyOnWriteLayerIsBoundedInBytesAndInodes) {
  ASSERT_EQ(::chown(ws_.c_str(), 1234, 1234), 0);
  const auto before = Snapshot(ws_);
  ResolvedWorkspace ws = Resolve();
  auto spec = DefaultSpec();
  auto m = RunMounts::Prepare(run_dir_, &ws, WorkspaceMode::kCopyOnWrite, kQuota,
                              spec.host_id_base + spec.uid, spec.host_id_base + spec.gid,
                              supervisor::CowLimits{1 << 20, 64});
  ASSERT_TRUE(m.ok()) << m.error().ToString();
  for (auto& b : m->Binds()) spec.binds.push_back(b);
  // 4 MiB into a 1 MiB layer, then 200 files into 64 inodes: each stops at ENOSPC.
  auto o = Run(spec, Sh("dd if=/dev/zero of=/workspace/big bs=65536 count=64 2>/tmp/err; "
                        "grep -c 'No space left' /tmp/err; stat -c %s /workspace/big; "
                        "rm /workspace/big; i=0; made=0; while [ $i -lt 200 ]; do "
                        "touch /workspace/f$i 2>/dev/null && made=$((made+1)); i=$((i+1)); done; "
                        "echo made=$made"));
  EXPECT_EQ(o.result.exit_code, 0) << o.err;
  std::istringstream in(o.out);
  std::string nospace, size, made;
  in >> nospace >> size >> made;
  EXPECT_EQ(nospace, "1") << o.out;
  EXPECT_LE(std::stoull(size), 1u << 20) << o.out;
  EXPECT_TRUE(made.rfind("made=", 0) == 0) << o.out;
  EXPECT_LT(std::stoi(made.substr(5)), 64) << o.out;
  EXPECT_GT(std::stoi(made.substr(5)), 10) << o.out;
  // The layer is a tmpfs of its own: nothing of it lands on the data directory's filesystem.
  struct statfs fs;
  ASSERT_EQ(::statfs((run_dir_ + "/cow").c_str(), &fs), 0);
  EXPECT_EQ(fs.f_type, static_cast<decltype(fs.f_type)>(TMPFS_MAGIC));
  ExpectTornDown(*m);
  EXPECT_EQ(Snapshot(ws_), before) << "the host directory changed";
}

TEST_F(WorkspaceTest, HardLinkedLeftoversCostTheDaemonABoundedList) {
  auto spec = DefaultSpec();
  auto m = Prepare(nullptr, WorkspaceMode::kReadOnly, spec);
  ASSERT_TRUE(m.has_value());
  for (auto& b : m->Binds()) spec.binds.push_back(b);
  // One fifo and 2,999 hard links to it: one inode, 3,000 entries to skip.
  auto o = Run(spec, Sh("cd /artifacts && mkfifo f && i=1 && while [ $i -lt 3000 ]; do "
                        "ln f l$i || exit 1; i=$((i+1)); done; echo made"));
  ASSERT_EQ(o.out, "made\n") << o.err;
  Mkdir(run_dir_ + "/artifacts");
  auto list = m->CollectArtifacts(run_dir_ + "/artifacts/files");
  ASSERT_TRUE(list.ok()) << list.error().ToString();
  EXPECT_TRUE(list->files.empty());
  EXPECT_EQ(list->skipped.size(), supervisor::ArtifactList::kMaxSkippedListed);
  EXPECT_EQ(list->skipped.size() + list->skipped_unlisted, 3000u);
  for (const auto& s : list->skipped) EXPECT_NE(s.reason.find("fifo"), std::string::npos) << s.path;
  ExpectTornDown(*m);
}

TEST_F(WorkspaceTest, PrepareFailuresLeaveNothingBehind) {
  ResolvedWorkspace ws = Resolve();
  auto spec = DefaultSpec();
  // cow/ already there: Prepare fails after making mnt/ and the artifacts tmpfs.
  Mkdir(run_dir_ + "/cow");
  Put(run_dir_ + "/cow/keep", "not ours");
  auto m = RunMounts::Prepare(run_dir_, &ws, WorkspaceMode::kCopyOnWrite, kQuota, 101000, 101000);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, ErrorCode::kAlreadyExists) << m.error().ToString();
  EXPECT_NE(m.error().message.find("SweepStaleMounts"), std::string::npos);
  EXPECT_TRUE(MountsUnder(data_).empty());
  EXPECT_FALSE(Exists(run_dir_ + "/mnt"));
  EXPECT_TRUE(Exists(run_dir_ + "/cow/keep")) << "a directory Prepare did not make was removed";

  // A run dir the sandbox cannot reach.
  ASSERT_EQ(::chmod(run_dir_.c_str(), 0700), 0);
  auto closed =
      RunMounts::Prepare(run_dir_, nullptr, WorkspaceMode::kReadOnly, kQuota, 101000, 101000);
  ASSERT_FALSE(closed.ok());
  EXPECT_EQ(closed.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(closed.error().message.find("o+x"), std::string::npos) << closed.error().ToString();
  EXPECT_FALSE(Exists(run_dir_ + "/mnt"));

  auto zero = RunMounts::Prepare(data_ + "/runs", nullptr, WorkspaceMode::kReadOnly, 0, 1, 1);
  EXPECT_FALSE(zero.ok());
}

TEST_F(WorkspaceTest, SweepRemovesMountsOfACrashedDaemon) {
  Put(ws_ + "/f.txt", "data\n");
  // Two run dirs, one with a space (mountinfo writes it as \040), prepared by a process that
  // dies without tearing down, as a crashed daemon would.
  const std::string spaced = data_ + "/runs/run 2";
  Mkdir(spaced, 0711);
  Put(run_dir_ + "/stdout", "log\n", 0600);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto ws = ResolveWorkspace(ws_, {root_});
    if (!ws.ok()) ::_exit(2);
    auto a =
        RunMounts::Prepare(run_dir_, &*ws, WorkspaceMode::kCopyOnWrite, kQuota, 101000, 101000);
    auto b = RunMounts::Prepare(spaced, &*ws, WorkspaceMode::kReadOnly, kQuota, 101000, 101000);
    ::_exit(a.ok() && b.ok() ? 0 : 3);  // no destructors: the mounts stay
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ASSERT_GE(MountsUnder(data_).size(), 6u);

  // A mount of the data dir that is not a run mount stays.
  Mkdir(data_ + "/other", 0755);
  ASSERT_EQ(::mount("sbx-test", (data_ + "/other").c_str(), "tmpfs", 0, "size=64k"), 0);

  Status st = supervisor::SweepStaleMounts(data_);
  EXPECT_TRUE(st.ok()) << st.error().ToString();
  auto left = MountsUnder(data_);
  EXPECT_EQ(left, std::vector<std::string>{data_ + "/other"});
  ::umount2((data_ + "/other").c_str(), MNT_DETACH);
  for (const std::string& dir : {run_dir_, spaced}) {
    EXPECT_FALSE(Exists(dir + "/mnt")) << dir;
    EXPECT_FALSE(Exists(dir + "/cow")) << dir;
    EXPECT_TRUE(Exists(dir)) << dir;
  }
  auto log = ReadFile(run_dir_ + "/stdout");
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(*log, "log\n");
  EXPECT_EQ(ReadFile(ws_ + "/f.txt").value(), "data\n");
  // And a fresh run can be prepared in the same dir again.
  auto again =
      RunMounts::Prepare(run_dir_, nullptr, WorkspaceMode::kReadOnly, kQuota, 101000, 101000);
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  ExpectTornDown(*again);
  // Nothing to do is fine.
  EXPECT_TRUE(supervisor::SweepStaleMounts(data_).ok());
  EXPECT_TRUE(supervisor::SweepStaleMounts(base_ + "/no-such-dir").ok());
}

// A workspace root that is its own filesystem, mounted by the test and removed again.
class ScopedMount {
 public:
  ScopedMount(const std::string& path, const char* type, const char* data) : path_(path) {
    Mkdir(path);
    ok_ = ::mount(type, path.c_str(), type, MS_NOSUID | MS_NODEV, data) == 0;
    EXPECT_TRUE(ok_) << "mount " << type << ": " << std::strerror(errno);
  }
  ~ScopedMount() {
    if (ok_) {
      EXPECT_EQ(::umount2(path_.c_str(), MNT_DETACH), 0);
    }
  }
  bool ok() const { return ok_; }

 private:
  std::string path_;
  bool ok_ = false;
};

TEST_F(WorkspaceTest, FilesystemsWithAndWithoutIdmappedMounts) {
  auto spec = DefaultSpec();
  {
    // ramfs has no idmapped mounts: copy-on-write says so, read-only still works.
    ScopedMount ramfs(base_ + "/ram", "ramfs", "mode=0755");
    ASSERT_TRUE(ramfs.ok());
    Mkdir(base_ + "/ram/proj");
    Put(base_ + "/ram/proj/f.txt", "on ramfs\n");
    auto ws = ResolveWorkspace(base_ + "/ram/proj", {base_ + "/ram"});
    ASSERT_TRUE(ws.ok()) << ws.error().ToString();
    auto cow =
        RunMounts::Prepare(run_dir_, &*ws, WorkspaceMode::kCopyOnWrite, kQuota, 101000, 101000);
    ASSERT_FALSE(cow.ok());
    EXPECT_EQ(cow.error().code, ErrorCode::kUnavailable) << cow.error().ToString();
    EXPECT_NE(cow.error().message.find("is on ramfs"), std::string::npos) << cow.error().ToString();
    EXPECT_NE(cow.error().message.find("idmapped"), std::string::npos);
    EXPECT_TRUE(MountsUnder(data_).empty());
    EXPECT_FALSE(Exists(run_dir_ + "/mnt"));
    EXPECT_FALSE(Exists(run_dir_ + "/cow"));

    auto ro = RunMounts::Prepare(run_dir_, &*ws, WorkspaceMode::kReadOnly, kQuota, 101000, 101000);
    ASSERT_TRUE(ro.ok()) << ro.error().ToString();
    auto s = spec;
    for (auto& b : ro->Binds()) s.binds.push_back(b);
    auto o = Run(s, Sh("cat /workspace/f.txt; echo x > /workspace/g 2>/dev/null || echo ro"));
    EXPECT_EQ(o.out, "on ramfs\nro\n") << o.err;
    ExpectTornDown(*ro);
  }
  {
    // A workspace on tmpfs under an upper layer on the data dir's filesystem.
    ScopedMount tmpfs(base_ + "/shm", "tmpfs", "size=1m,mode=0755");
    ASSERT_TRUE(tmpfs.ok());
    Mkdir(base_ + "/shm/proj");
    Put(base_ + "/shm/proj/f.txt", "on tmpfs\n");
    ASSERT_EQ(::chown((base_ + "/shm/proj").c_str(), 1234, 1234), 0);
    ASSERT_EQ(::chown((base_ + "/shm/proj/f.txt").c_str(), 1234, 1234), 0);
    auto ws = ResolveWorkspace(base_ + "/shm/proj", {base_ + "/shm"});
    ASSERT_TRUE(ws.ok()) << ws.error().ToString();
    auto cow = RunMounts::Prepare(run_dir_, &*ws, WorkspaceMode::kCopyOnWrite, kQuota,
                                  spec.host_id_base + spec.uid, spec.host_id_base + spec.gid);
    ASSERT_TRUE(cow.ok()) << cow.error().ToString();
    auto s = spec;
    for (auto& b : cow->Binds()) s.binds.push_back(b);
    auto o = Run(s, Sh("cd /workspace && echo more >> f.txt && cat f.txt"));
    EXPECT_EQ(o.out, "on tmpfs\nmore\n") << o.err;
    EXPECT_EQ(ReadFile(base_ + "/shm/proj/f.txt").value(), "on tmpfs\n");
    auto diff = cow->Diff(1 << 20);
    ASSERT_TRUE(diff.ok());
    EXPECT_EQ(*diff,
              "diff --git a/f.txt b/f.txt\n--- a/f.txt\n+++ b/f.txt\n@@ -1 +1,2 @@\n on tmpfs\n"
              "+more\n");
    ExpectTornDown(*cow);
  }
}

TEST_F(WorkspaceTest, DiffOfHostSideChangesIsDeterministicAndQuoted) {
  // Changes made through the merged mount by the daemon itself: no sandbox needed to exercise
  // the walk (binary files, symlinks, odd names, a directory replacing a file).
  Put(ws_ + "/bin.dat", std::string("a\0b", 3));
  Put(ws_ + "/file-then-dir", "was a file\n");
  ASSERT_EQ(::symlink("target-a", (ws_ + "/link").c_str()), 0);
  Put(ws_ + "/same.txt", "same\n");
  ResolvedWorkspace ws = Resolve();
  auto m = RunMounts::Prepare(run_dir_, &ws, WorkspaceMode::kCopyOnWrite, kQuota, 101000, 101000);
  ASSERT_TRUE(m.ok()) << m.error().ToString();
  const std::string merged = run_dir_ + "/mnt/merged";
  Put(merged + "/bin.dat", std::string("a\0c", 3));
  ASSERT_EQ(::unlink((merged + "/file-then-dir").c_str()), 0);
  Mkdir(merged + "/file-then-dir");
  Put(merged + "/file-then-dir/inner", "in\n");
  ASSERT_EQ(::unlink((merged + "/link").c_str()), 0);
  ASSERT_EQ(::symlink("target-b", (merged + "/link").c_str()), 0);
  Put(merged + "/tab\tname", "t\n");
  ASSERT_EQ(::chmod((merged + "/same.txt").c_str(), 0644), 0);  // copied up, unchanged
  ASSERT_EQ(::mkfifo((merged + "/pipe").c_str(), 0644), 0);

  auto diff = m->Diff(1 << 20);
  ASSERT_TRUE(diff.ok()) << diff.error().ToString();
  EXPECT_EQ(*diff,
            "diff --git a/bin.dat b/bin.dat\n"
            "Binary files a/bin.dat and b/bin.dat differ\n"
            "diff --git a/file-then-dir b/file-then-dir\n"
            "deleted file mode 100644\n"
            "--- a/file-then-dir\n"
            "+++ /dev/null\n"
            "@@ -1 +0,0 @@\n"
            "-was a file\n"
            "diff --git a/file-then-dir/inner b/file-then-dir/inner\n"
            "new file mode 100644\n"
            "--- /dev/null\n"
            "+++ b/file-then-dir/inner\n"
            "@@ -0,0 +1 @@\n"
            "+in\n"
            "diff --git a/link b/link\n"
            "--- a/link\n"
            "+++ b/link\n"
            "@@ -1 +1 @@\n"
            "-target-a\n"
            "\\ No newline at end of file\n"
            "+target-b\n"
            "\\ No newline at end of file\n"
            "diff --git \"a/tab\\tname\" \"b/tab\\tname\"\n"
            "new file mode 100644\n"
            "--- /dev/null\n"
            "+++ \"b/tab\\tname\"\n"
            "@@ -0,0 +1 @@\n"
            "+t\n");
  auto again = m->Diff(1 << 20);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *diff);
  EXPECT_EQ(ReadFile(ws_ + "/file-then-dir").value(), "was a file\n");
  auto tiny = m->Diff(10);
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ(*tiny, "... diff cut at 10 bytes: 5 more changed files left out\n");
  Status st = m->Teardown();
  EXPECT_TRUE(st.ok()) << st.error().ToString();
  EXPECT_FALSE(m->Diff(100).ok());
}

}  // namespace
}  // namespace sbx::testing
