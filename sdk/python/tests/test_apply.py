"""Host changes only after review: a copy-on-write run's change set (runs.changes) and applying it
(runs.apply, Run.apply): the host directory then holds what the run wrote; a host file changed
since the run is a Conflict with its conflicts and nothing written; the submitter is refused."""
import os
import unittest

from _support import WorkspaceDaemon, sandboxd


def read(path):
    with open(path, "rb") as f:
        return f.read()


class ApplyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = WorkspaceDaemon()
        cls.alice = cls.daemon.client("alice")
        cls.rev = cls.daemon.client("rev")

    @classmethod
    def tearDownClass(cls):
        cls.alice.close()
        cls.rev.close()
        cls.daemon.close()

    def cow_run(self, client, files, script):
        """A succeeded copy-on-write run of ``script`` on a new workspace holding ``files``."""
        d = self.daemon.workspace(files)
        run = client.runs.submit(["sh", "-c", script], workspace={"path": d, "mode": "cow"})
        self.assertEqual(run.wait(timeout=60).state, "SUCCEEDED", run.result)
        return d, run

    def test_changes_then_apply_writes_the_host(self):
        d, run = self.cow_run(self.alice, {"a.txt": "one\n", "gone.txt": "bye\n"},
                              "printf 'one\\ntwo\\n' > /workspace/a.txt; rm /workspace/gone.txt; "
                              "mkdir /workspace/new; printf '\\377\\000x' > /workspace/new/b.bin; "
                              "chmod 700 /workspace/new/b.bin")
        changes = run.changes()  # the submitter may read it
        self.assertEqual(changes["run_id"], run.id)
        self.assertTrue(changes["applicable"])
        self.assertIsNone(changes["applied"])
        self.assertEqual(changes["refused"], [])
        self.assertEqual([(e["path"], e["op"], e["host"]) for e in changes["entries"]],
                         [("a.txt", "write", "file"), ("gone.txt", "delete", "file"),
                          ("new", "make_dir", "absent"), ("new/b.bin", "write", "absent")])
        self.assertEqual([(e.get("mode"), e.get("size")) for e in changes["entries"]],
                         [("0644", 8), (None, None), ("0755", None), ("0700", 3)])
        diff = {a["name"]: a for a in run.artifacts()}["diff.patch"]
        self.assertEqual(changes["diff_sha256"], diff["sha256"])
        self.assertEqual(read(os.path.join(d, "a.txt")), b"one\n")  # nothing yet

        done = self.rev.run(run.id).apply(diff_sha256=changes["diff_sha256"])
        self.assertEqual((done["run_id"], done["diff_sha256"]), (run.id, diff["sha256"]))
        self.assertEqual((done["files_written"], done["files_deleted"], done["dirs_made"],
                          done["dirs_removed"]), (2, 1, 1, 0))
        self.assertEqual(len(done["changes_sha256"]), 64)
        self.assertEqual(read(os.path.join(d, "a.txt")), b"one\ntwo\n")
        self.assertEqual(read(os.path.join(d, "new", "b.bin")), b"\xff\x00x")
        self.assertEqual(os.stat(os.path.join(d, "new", "b.bin")).st_mode & 0o7777, 0o700)
        self.assertFalse(os.path.exists(os.path.join(d, "gone.txt")))

        again = self.alice.runs.changes(run.id)
        self.assertFalse(again["applicable"])
        self.assertEqual(again["applied"]["by"], "rev")
        self.assertEqual(again["applied"]["files_written"], 2)
        self.assertEqual(again["applied"]["changes_sha256"], done["changes_sha256"])
        # Once only.
        with self.assertRaises(sandboxd.AlreadyExists) as cm:
            self.rev.runs.apply(run.id)
        self.assertEqual(cm.exception.status, 409)
        self.assertIn("rev", cm.exception.message)

    def test_conflict_writes_nothing(self):
        d, run = self.cow_run(self.alice, {"a.txt": "one\n"},
                              "printf 'run\\n' > /workspace/a.txt; printf 'new\\n' > /workspace/b.txt")
        with open(os.path.join(d, "a.txt"), "w") as f:
            f.write("edited on the host\n")
        with self.assertRaises(sandboxd.Conflict) as cm:
            self.rev.runs.apply(run.id, run.changes()["diff_sha256"])
        e = cm.exception
        self.assertIsInstance(e, sandboxd.FailedPrecondition)
        self.assertEqual((e.code, e.status), ("conflict", 409))
        self.assertEqual(e.conflicts, [{"path": "a.txt",
                                        "why": "changed on the host since the run started"}])
        self.assertIn("a.txt", e.message)
        self.assertEqual(read(os.path.join(d, "a.txt")), b"edited on the host\n")
        self.assertFalse(os.path.exists(os.path.join(d, "b.txt")))
        self.assertIsNone(run.changes()["applied"])

    def test_stale_diff_refused(self):
        d, run = self.cow_run(self.alice, {"a.txt": "one\n"}, "printf 'run\\n' > /workspace/a.txt")
        with self.assertRaises(sandboxd.FailedPrecondition) as cm:
            self.rev.runs.apply(run.id, "0" * 64)
        self.assertEqual(cm.exception.code, "failed_precondition")
        self.assertNotIsInstance(cm.exception, sandboxd.Conflict)
        self.assertEqual(read(os.path.join(d, "a.txt")), b"one\n")

    def test_the_submitter_is_refused(self):
        d, run = self.cow_run(self.alice, {"a.txt": "one\n"}, "printf 'run\\n' > /workspace/a.txt")
        with self.assertRaises(sandboxd.PermissionDenied) as cm:
            run.apply()  # alice's own client
        self.assertEqual(cm.exception.status, 403)
        # A reviewer who submitted the run is refused too; another reviewer applies it.
        d2, own = self.cow_run(self.rev, {"a.txt": "one\n"}, "printf 'run\\n' > /workspace/a.txt")
        with self.assertRaises(sandboxd.PermissionDenied) as cm:
            own.apply()
        self.assertEqual(cm.exception.status, 403)
        self.assertIn("own", cm.exception.message)
        for path in (d, d2):
            self.assertEqual(read(os.path.join(path, "a.txt")), b"one\n")
        with self.daemon.client("admin") as admin:
            self.assertEqual(admin.runs.apply(own.id)["files_written"], 1)
        self.assertEqual(read(os.path.join(d2, "a.txt")), b"run\n")

    def test_no_change_set(self):
        run = self.alice.runs.submit(["echo", "no workspace"])
        run.wait(timeout=60)
        with self.assertRaises(sandboxd.NotFound):
            run.changes()


class ConflictErrorTest(unittest.TestCase):
    def test_conflicts_from_the_answer(self):
        body = (b'{"error": {"code": "conflict", "message": "1 conflicts"},'
                b' "conflicts": [{"path": "a", "why": "gone from the host"}]}')
        e = sandboxd.errors.error_from_response(409, body)
        self.assertIs(type(e), sandboxd.Conflict)
        self.assertEqual(e.conflicts, [{"path": "a", "why": "gone from the host"}])
        self.assertEqual((e.code, e.status, e.message), ("conflict", 409, "1 conflicts"))
        other = sandboxd.errors.error_from_response(
            409, b'{"error": {"code": "failed_precondition", "message": "no"}}')
        self.assertIs(type(other), sandboxd.FailedPrecondition)


if __name__ == "__main__":
    unittest.main()
