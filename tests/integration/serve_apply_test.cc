// Host changes only after review, against the real daemon: a copy-on-write run proposes changes,
// GET /v1/runs/{id}/changes shows them, and POST /v1/runs/{id}:apply by a reviewer who is not
// the submitter writes them into the host directory byte-exact, once. A host file changed while
// the run ran or since, a symbolic link planted in the host directory afterwards, a symbolic link
// the run made, the submitter itself: each is refused with nothing written.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "base/fs.h"
#include "base/sha256.h"
#include "integration/server_harness.h"

namespace sbx::testing {
namespace {

constexpr char kAlice[] = "apply-test-alice";  // submitter
constexpr char kBob[] = "apply-test-bob";      // reviewer
constexpr char kCarol[] = "apply-test-carol";  // reviewer
constexpr uid_t kOwner = 1234;                 // the workspace's owner

class ServeApplyTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    if (IsSkipped()) return;
    SetUpServer("apply", "  \"*\": allow\n");
    roots_ = dir_ + "/roots";
    proj_ = roots_ + "/proj";
    std::filesystem::create_directories(proj_);
    WriteConfig("127.0.0.1:0",
                {{"alice", "submitter", kAlice},
                 {"bob", "reviewer", kBob},
                 {"carol", "reviewer", kCarol}},
                "workspace_roots: [\"" + roots_ + "\"]\nartifacts_quota: 4m\n");
    StartServerOnLoopback();
  }

  // A file of the workspace, owned by its owner.
  void Put(const std::string& rel, const std::string& content, mode_t mode = 0644) {
    const std::string path = proj_ + "/" + rel;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << content;
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    for (std::string p = path; p.size() >= proj_.size();
         p = std::filesystem::path(p).parent_path()) {
      ASSERT_EQ(::lchown(p.c_str(), kOwner, kOwner), 0) << p;
    }
  }
  std::string Get(const std::string& rel) {
    auto r = ReadFile(proj_ + "/" + rel, 1 << 20);
    return r.ok() ? *r : "<" + r.error().message + ">";
  }

  // A copy-on-write run of `script` submitted with `key`, ended.
  nlohmann::json RunCow(const std::string& script, const char* key = kAlice) {
    nlohmann::json body = {{"argv", {"/bin/sh", "-c", script}},
                           {"workspace", {{"path", proj_}, {"mode", "cow"}}}};
    auto r = Call("POST", "/v1/runs", key, body.dump());
    EXPECT_EQ(r.status, 201) << r.body;
    const std::string id = r.Json().value("id", "");
    EXPECT_FALSE(WaitForEvent(id, "run.completed", key).is_null());
    return Call("GET", "/v1/runs/" + id, key).Json();
  }
  std::string DiffSha(const std::string& id) {
    return Sha256Hex(Call("GET", "/v1/runs/" + id + "/artifacts/diff.patch", kBob).body);
  }
  // Everything in the workspace, as "path mode uid content" lines: what a refused apply must
  // leave exactly as it was.
  std::set<std::string> Snapshot() {
    std::set<std::string> out;
    for (const auto& e : std::filesystem::recursive_directory_iterator(proj_)) {
      struct stat st;
      ::lstat(e.path().c_str(), &st);
      std::string line = fmt::format("{} {:o} {}", e.path().string(), st.st_mode, st.st_uid);
      if (S_ISREG(st.st_mode)) line += " " + *ReadFile(e.path().string(), 1 << 20);
      out.insert(line);
    }
    return out;
  }

  std::string roots_;
  std::string proj_;
};

TEST_F(ServeApplyTest, AReviewerAppliesTheChangesByteExactOnce) {
  Put("a.txt", "one\n", 0640);
  Put("gone.txt", "bye\n");
  Put("sub/keep.sh", "#!/bin/sh\n", 0644);
  Put("olddir/x.txt", "x\n");
  Put("olddir/deeper/y.txt", "y\n");
  auto run = RunCow(
      "echo two >> /workspace/a.txt && printf '\\000\\001\\377bin' > /workspace/b.bin && "
      "mkdir /workspace/newdir && echo n > /workspace/newdir/n.txt && chmod 700 "
      "/workspace/newdir && rm /workspace/gone.txt && rm -r /workspace/olddir && "
      "chmod 755 /workspace/sub/keep.sh && touch /workspace/sub/keep.sh");
  ASSERT_EQ(run["state"], "SUCCEEDED") << run.dump();
  const std::string id = run["id"];
  // Nothing reached the host yet.
  EXPECT_EQ(Get("a.txt"), "one\n");
  EXPECT_FALSE(std::filesystem::exists(proj_ + "/b.bin"));

  auto changes = Call("GET", "/v1/runs/" + id + "/changes", kAlice);
  ASSERT_EQ(changes.status, 200) << changes.body;
  auto c = changes.Json();
  EXPECT_TRUE(c["applicable"].get<bool>()) << c.dump();
  EXPECT_EQ(c["diff_sha256"], DiffSha(id));
  std::set<std::string> listed;
  for (const auto& e : c["entries"]) {
    listed.insert(e["op"].get<std::string>() + " " + e["path"].get<std::string>());
    EXPECT_FALSE(e.contains("sha256")) << e.dump();  // no hash of a host file goes out
  }
  EXPECT_EQ(listed, (std::set<std::string>{"write a.txt", "write b.bin", "make_dir newdir",
                                           "write newdir/n.txt", "delete gone.txt",
                                           "remove_dir olddir", "delete olddir/x.txt",
                                           "remove_dir olddir/deeper",
                                           "delete olddir/deeper/y.txt", "write sub/keep.sh"}));

  // The submitter's role cannot; a reviewer who submitted cannot apply its own run.
  EXPECT_EQ(Call("POST", "/v1/runs/" + id + ":apply", kAlice).status, 403);
  auto carols = RunCow("echo c > /workspace/c.txt", kCarol);
  auto own = Call("POST", "/v1/runs/" + carols["id"].get<std::string>() + ":apply", kCarol);
  EXPECT_EQ(own.status, 403) << own.body;
  // Malformed bodies and a diff other than the run's change nothing.
  EXPECT_EQ(Call("POST", "/v1/runs/" + id + ":apply", kBob, R"({"diff": "x"})").status, 400);
  EXPECT_EQ(Call("POST", "/v1/runs/" + id + ":apply", kBob, R"({"diff_sha256": 1})").status, 400);
  auto other = Call("POST", "/v1/runs/" + id + ":apply", kBob,
                    nlohmann::json{{"diff_sha256", std::string(64, 'a')}}.dump());
  EXPECT_EQ(other.status, 409) << other.body;
  EXPECT_EQ(Get("a.txt"), "one\n");
  EXPECT_EQ(Call("POST", "/v1/runs/run_nosuchrun:apply", kBob).status, 404);

  auto applied = Call("POST", "/v1/runs/" + id + ":apply", kBob,
                      nlohmann::json{{"diff_sha256", DiffSha(id)}}.dump());
  ASSERT_EQ(applied.status, 200) << applied.body;
  auto a = applied.Json();
  EXPECT_EQ(a["files_written"], 4);
  EXPECT_EQ(a["files_deleted"], 3);
  EXPECT_EQ(a["dirs_made"], 1);
  EXPECT_EQ(a["dirs_removed"], 2);

  EXPECT_EQ(Get("a.txt"), "one\ntwo\n");
  EXPECT_EQ(Get("b.bin"), std::string("\0\1\377bin", 6));
  EXPECT_EQ(Get("newdir/n.txt"), "n\n");
  EXPECT_FALSE(std::filesystem::exists(proj_ + "/gone.txt"));
  EXPECT_FALSE(std::filesystem::exists(proj_ + "/olddir"));
  struct stat st;
  ASSERT_EQ(::stat((proj_ + "/a.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);  // a replaced file keeps its mode and owner
  EXPECT_EQ(st.st_uid, kOwner);
  ASSERT_EQ(::stat((proj_ + "/b.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kOwner);  // a new file is the workspace owner's, not root's
  EXPECT_EQ(st.st_gid, kOwner);
  ASSERT_EQ(::stat((proj_ + "/newdir").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, kOwner);
  ASSERT_EQ(::stat((proj_ + "/sub/keep.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_EQ(Get("sub/keep.sh"), "#!/bin/sh\n");
  for (const auto& e : std::filesystem::recursive_directory_iterator(proj_)) {
    EXPECT_EQ(e.path().filename().string().find("sbx-apply"), std::string::npos) << e.path();
  }

  // Once: a second apply is refused, and the audit trail says who applied which diff.
  auto again = Call("POST", "/v1/runs/" + id + ":apply", kCarol);
  EXPECT_EQ(again.status, 409) << again.body;
  auto shown = Call("GET", "/v1/runs/" + id + "/changes", kAlice).Json();
  EXPECT_FALSE(shown["applicable"].get<bool>());
  EXPECT_EQ(shown["applied"]["by"], "bob");
  auto audit = Call("GET", "/v1/audit?run_id=" + id, kBob).Json();
  int recorded = 0;
  for (const auto& r : audit["records"]) {
    if (r["action"] != "run.changes_applied") continue;
    ++recorded;
    EXPECT_EQ(r["actor"], "bob");
    EXPECT_EQ(r["details"]["diff_sha256"], DiffSha(id));
    EXPECT_EQ(r["details"]["workspace"], proj_);
  }
  EXPECT_EQ(recorded, 1) << audit.dump();
}

TEST_F(ServeApplyTest, AHostFileChangedSinceOrDuringTheRunRefusesTheWholeSet) {
  Put("a.txt", "one\n");
  Put("b.txt", "bee\n");
  // Changed on the host after the run: the run's a.txt would overwrite it.
  auto run = RunCow("echo run >> /workspace/a.txt && echo new > /workspace/new.txt");
  ASSERT_EQ(run["state"], "SUCCEEDED") << run.dump();
  const std::string id = run["id"];
  Put("a.txt", "edited on the host\n");
  auto before = Snapshot();
  auto refused = Call("POST", "/v1/runs/" + id + ":apply", kBob);
  ASSERT_EQ(refused.status, 409) << refused.body;
  auto r = refused.Json();
  EXPECT_EQ(r["error"]["code"], "conflict");
  ASSERT_EQ(r["conflicts"].size(), 1u) << r.dump();
  EXPECT_EQ(r["conflicts"][0]["path"], "a.txt");
  EXPECT_EQ(Snapshot(), before);  // new.txt was not written either
  // A file made on the host where the run made one (a.txt is as the run found it again).
  Put("a.txt", "one\n");
  Put("new.txt", "host\n");
  refused = Call("POST", "/v1/runs/" + id + ":apply", kBob);
  ASSERT_EQ(refused.status, 409) << refused.body;
  EXPECT_EQ(refused.Json()["conflicts"][0]["path"], "new.txt");
  EXPECT_EQ(Get("new.txt"), "host\n");

  // Changed on the host while the run ran: the run waits until it sees the edit (the same inode
  // of the lower layer) and appends to it, so the host file is what the run found at its end;
  // the edit still came after the run started.
  const std::string script =
      "echo ready; while ! grep -q edited /workspace/b.txt; do sleep 0.02; done; "
      "echo run >> /workspace/b.txt";
  nlohmann::json body = {{"argv", {"/bin/sh", "-c", script}},
                         {"workspace", {{"path", proj_}, {"mode", "cow"}}},
                         {"limits", {{"timeout_s", 120}}}};
  auto created = Call("POST", "/v1/runs", kAlice, body.dump());
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string during = created.Json()["id"];
  ASSERT_FALSE(WaitForEvent(during, "step.log", kAlice).is_null());
  Put("b.txt", "edited while it ran\n");
  ASSERT_FALSE(WaitForEvent(during, "run.completed", kAlice).is_null());
  ASSERT_EQ(Call("GET", "/v1/runs/" + during, kAlice).Json()["state"], "SUCCEEDED");
  auto shown = Call("GET", "/v1/runs/" + during + "/changes", kBob).Json();
  ASSERT_EQ(shown["entries"].size(), 1u) << shown.dump();
  EXPECT_TRUE(shown["entries"][0]["changed_on_host_during_run"].get<bool>());
  auto lost = Call("POST", "/v1/runs/" + during + ":apply", kBob);
  ASSERT_EQ(lost.status, 409) << lost.body;
  EXPECT_EQ(lost.Json()["conflicts"][0]["path"], "b.txt");
  EXPECT_EQ(Get("b.txt"), "edited while it ran\n");
}

TEST_F(ServeApplyTest, NeverThroughASymlinkPlantedInTheHostNorOneTheRunMade) {
  Put("sub/old.txt", "old\n");
  const std::string outside = dir_ + "/outside";
  std::filesystem::create_directories(outside);
  auto run = RunCow("echo planted > /workspace/sub/new.txt && echo x >> /workspace/sub/old.txt");
  ASSERT_EQ(run["state"], "SUCCEEDED") << run.dump();
  const std::string id = run["id"];
  // After the run, the host directory's sub/ becomes a symbolic link out of the workspace.
  std::filesystem::rename(proj_ + "/sub", proj_ + "/sub.real");
  std::filesystem::create_directory_symlink(outside, proj_ + "/sub");
  auto refused = Call("POST", "/v1/runs/" + id + ":apply", kBob);
  ASSERT_EQ(refused.status, 409) << refused.body;
  const nlohmann::json conflicts = refused.Json()["conflicts"];
  ASSERT_EQ(conflicts.size(), 2u) << refused.body;  // sub/new.txt and sub/old.txt
  for (const auto& c : conflicts) {
    EXPECT_NE(c["why"].get<std::string>().find("symbolic link"), std::string::npos) << c.dump();
  }
  EXPECT_TRUE(std::filesystem::is_empty(outside));
  EXPECT_EQ(Get("sub.real/old.txt"), "old\n");

  // A symbolic link the run made is not a change apply makes: the set says so, and is refused.
  std::filesystem::remove(proj_ + "/sub");
  std::filesystem::rename(proj_ + "/sub.real", proj_ + "/sub");
  auto linker = RunCow("ln -s /etc/shadow /workspace/link && echo y > /workspace/y.txt");
  ASSERT_EQ(linker["state"], "SUCCEEDED") << linker.dump();
  const std::string lid = linker["id"];
  auto shown = Call("GET", "/v1/runs/" + lid + "/changes", kBob).Json();
  EXPECT_FALSE(shown["applicable"].get<bool>());
  ASSERT_EQ(shown["refused"].size(), 1u) << shown.dump();
  EXPECT_EQ(shown["refused"][0]["path"], "link");
  EXPECT_EQ(Call("POST", "/v1/runs/" + lid + ":apply", kBob).status, 409);
  EXPECT_FALSE(std::filesystem::exists(proj_ + "/y.txt"));
  EXPECT_FALSE(std::filesystem::exists(proj_ + "/link"));
}

// What a run keeps to apply is bounded (artifacts_quota, 4 MiB here): past it the set still lists
// every path, is refused, and keeps no content in the data directory.
TEST_F(ServeApplyTest, ChangesPastTheQuotaAreListedNotKept) {
  Put("a.txt", "a\n");
  auto run = RunCow("head -c 5000000 /dev/zero > /workspace/big && echo b > /workspace/b.txt");
  ASSERT_EQ(run["state"], "SUCCEEDED") << run.dump();
  const std::string id = run["id"];
  auto shown = Call("GET", "/v1/runs/" + id + "/changes", kBob).Json();
  EXPECT_FALSE(shown["applicable"].get<bool>());
  ASSERT_EQ(shown["refused"].size(), 1u) << shown.dump();
  EXPECT_NE(shown["refused"][0]["why"].get<std::string>().find("more than 4194304 bytes"),
            std::string::npos);
  EXPECT_EQ(shown["entries"].size(), 2u) << shown.dump();
  EXPECT_EQ(Call("POST", "/v1/runs/" + id + ":apply", kBob).status, 409);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/data/runs/" + id + "/changes/blobs"));
  EXPECT_FALSE(std::filesystem::exists(proj_ + "/big"));
}

TEST_F(ServeApplyTest, OnlySucceededCopyOnWriteRunsOfTheirOwnerToSee) {
  Put("a.txt", "a\n");
  auto failed = RunCow("echo x > /workspace/a.txt; exit 3");
  ASSERT_EQ(failed["state"], "FAILED");
  EXPECT_EQ(Call("POST", "/v1/runs/" + failed["id"].get<std::string>() + ":apply", kBob).status,
            409);
  nlohmann::json ro = {{"argv", {"/bin/true"}}, {"workspace", proj_}};
  auto created = Call("POST", "/v1/runs", kAlice, ro.dump());
  ASSERT_EQ(created.status, 201);
  const std::string ro_id = created.Json()["id"];
  ASSERT_FALSE(WaitForEvent(ro_id, "run.completed", kAlice).is_null());
  EXPECT_EQ(Call("POST", "/v1/runs/" + ro_id + ":apply", kBob).status, 409);
  EXPECT_EQ(Call("GET", "/v1/runs/" + ro_id + "/changes", kBob).status, 404);
  EXPECT_EQ(Get("a.txt"), "a\n");
  // Another submitter learns nothing of a run that is not its own.
  auto carols = RunCow("echo c > /workspace/c.txt", kCarol);
  EXPECT_EQ(Call("GET", "/v1/runs/" + carols["id"].get<std::string>() + "/changes", kAlice).status,
            404);
}

}  // namespace
}  // namespace sbx::testing
