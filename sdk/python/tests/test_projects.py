"""Projects and plans from intent (client.projects): an admin creates a project of a directory
with a Makefile, a submitter lists only the projects naming it a member and another gets
NotFound, the planner plans an English and a Chinese intent and refuses another action with
NotFound, a run of a plan carries the project and the plan, and a change against a stale
version is refused with FailedPrecondition."""
import secrets
import unittest

from _support import WorkspaceDaemon, sandboxd

# The harness's test policy, with make sent to review: the planner plans `make test` here.
POLICY = """\
version: 1
shell: allow
rules:
  "*": deny
  "echo *": allow
  "true *": allow
  "sh *": allow
  "make *": review
"""

MAKEFILE = "build:\n\techo building\ntest:\n\techo all tests passed\n"
INTENT = "run the tests and give me a report"


def unique(prefix):
    return "%s-%s" % (prefix, secrets.token_hex(4))


class ProjectsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = WorkspaceDaemon(policy=POLICY)
        cls.admin = cls.daemon.client("admin")
        cls.alice = cls.daemon.client("alice")
        cls.bob = cls.daemon.client("bob")
        cls.rev = cls.daemon.client("rev")

    @classmethod
    def tearDownClass(cls):
        for c in (cls.admin, cls.alice, cls.bob, cls.rev):
            c.close()
        cls.daemon.close()

    def project(self, **kw):
        """A new project of a directory holding MAKEFILE, alice its member."""
        d = self.daemon.workspace({"Makefile": MAKEFILE})
        kw.setdefault("members", ["alice"])
        return self.admin.projects.create(unique("sdk"), root_path=d, **kw), d

    def test_admin_creates_and_a_submitter_sees_only_its_own(self):
        p, d = self.project(labels={"team": "sdk"}, default_workspace_mode="ro")
        self.assertIsInstance(p, sandboxd.Project)
        self.assertTrue(p.id.startswith("prj_"), p.id)
        self.assertEqual((p.version, p.members, p["root_path"], p["labels"], p["created_by"]),
                         (1, ["alice"], d, {"team": "sdk"}, "admin"))
        others, _ = self.project(members=[])

        mine = {x.id for x in self.alice.projects.list()}
        self.assertIn(p.id, mine)
        self.assertNotIn(others.id, mine)
        self.assertEqual({x.id for x in self.bob.projects.list()} & {p.id, others.id}, set())
        self.assertTrue({p.id, others.id} <= {x.id for x in self.rev.projects.list()})
        self.assertEqual(self.alice.projects.get(p.name).id, p.id)  # by name too
        self.assertEqual(self.alice.projects.get(p).data, p.data)

        # Not a member: not found, as if it did not exist, whatever it asks.
        for call in (lambda: self.bob.projects.get(p.id), lambda: self.bob.projects.get(p.name),
                     lambda: self.bob.projects.plan(p.id, INTENT),
                     lambda: self.bob.projects.list_plans(p.id),
                     lambda: list(self.bob.runs.list(project=p.id))):
            with self.assertRaises(sandboxd.NotFound) as cm:
                call()
            self.assertEqual(cm.exception.status, 404)

        # Admins only; a name once; members are configured keys.
        with self.assertRaises(sandboxd.PermissionDenied):
            self.alice.projects.create(unique("mine"), root_path=d)
        with self.assertRaises(sandboxd.AlreadyExists) as cm:
            self.admin.projects.create(p.name, root_path=d)
        self.assertIn(p.name, cm.exception.message)
        with self.assertRaises(sandboxd.InvalidArgument) as cm:
            self.admin.projects.create(unique("x"), root_path=d, members=["nobody"])
        self.assertIn("nobody", cm.exception.message)

    def test_plans_from_an_english_and_a_chinese_intent(self):
        p, d = self.project()
        en = self.alice.projects.plan(p, INTENT)
        self.assertIsInstance(en, sandboxd.Plan)
        self.assertEqual(en.project_id, p.id)
        self.assertEqual([s["argv"] for s in en.steps], [["make", "test"]])
        self.assertEqual(en.steps[0]["decision"]["decision"], "review")
        self.assertIn("test", en.steps[0]["why"])
        self.assertEqual(en.decision, "review")
        self.assertEqual((en["goals"], en["report"]), (["test", "report"], True))
        self.assertRegex(en.sha256, "^[0-9a-f]{64}$")
        self.assertIn("make", en.summary)
        self.assertEqual(en["workspace"], {"path": d, "mode": "ro"})
        self.assertEqual(en["project"], {"id": p.id, "name": p.name, "version": 1})

        zh = p.plan("运行测试并生成报告")
        self.assertEqual(zh["intent_text"], "运行测试并生成报告")
        self.assertEqual([s["argv"] for s in zh.steps], [["make", "test"]])
        self.assertEqual(zh["goals"], ["test", "report"])
        self.assertNotEqual(zh.sha256, en.sha256)  # the intent is part of the plan

        self.assertEqual(self.alice.projects.get_plan(en.id).data, en.data)
        self.assertEqual([x.id for x in self.alice.projects.list_plans(p.id)], [zh.id, en.id])
        self.assertEqual([x.id for x in p.plans(limit=1)], [zh.id])
        with self.assertRaises(sandboxd.NotFound):
            self.bob.projects.get_plan(en.id)

    def test_an_intent_it_does_not_plan_is_not_found(self):
        p, _ = self.project()
        for intent in ("deploy to production", "删除所有文件"):
            with self.assertRaises(sandboxd.NotFound) as cm:
                self.alice.projects.plan(p.id, intent)
            self.assertIn("no plan", cm.exception.message)
        with self.assertRaises(sandboxd.InvalidArgument):
            self.alice.projects.plan(p.id, "")
        self.assertEqual(self.alice.projects.list_plans(p.id), [])

    def test_run_plan_makes_a_run_of_the_project_and_the_plan(self):
        p, d = self.project()
        plan = self.alice.projects.plan(p.id, INTENT)
        run = self.alice.projects.run_plan(p.id, plan.id, idempotency_key=unique("plan-run"))
        self.assertIsInstance(run, sandboxd.Run)
        self.assertEqual((run.state, run.project_id, run["submitter"]),
                         ("AWAITING_REVIEW", p.id, "alice"))
        self.assertEqual((run["labels"]["plan"], run["labels"]["plan_sha256"]),
                         (plan.id, plan.sha256))
        self.assertEqual([s["argv"] for s in run["steps"]], [["make", "test"]])
        self.assertEqual(run["workspace"], {"path": d, "mode": "ro"})
        # The same key answers the same run.
        key = unique("again")
        first = plan.run(idempotency_key=key)
        self.assertEqual(self.alice.projects.run_plan(p, plan, idempotency_key=key).id, first.id)
        self.alice.runs.cancel(first.id)

        self.rev.runs.approve(run.id)
        done = run.wait(timeout=60)
        self.assertEqual(done.state, "SUCCEEDED", done.result)
        self.assertIn(b"all tests passed", done.logs())

        # A run submitted with the project, by name; the list of the project's runs.
        other = self.alice.runs.submit(["echo", "in the project"], project=p.name)
        self.assertEqual(other.project_id, p.id)
        self.assertEqual(other.wait(timeout=60).state, "SUCCEEDED")
        outside = self.alice.runs.submit(["echo", "outside"]).wait(timeout=60)
        self.assertIsNone(outside.project_id)
        self.assertEqual([r.id for r in self.alice.runs.list(project=p.id)],
                         [other.id, first.id, run.id])
        self.assertEqual([r.id for r in p.runs(state="SUCCEEDED")], [other.id, run.id])

    def test_update_against_a_stale_version_is_refused(self):
        p, _ = self.project()
        moved = self.admin.projects.update(p.id, version=1, labels={"stage": "two"},
                                           members=["alice", "bob"])
        self.assertEqual((moved.version, moved["labels"], moved.members),
                         (2, {"stage": "two"}, ["alice", "bob"]))
        with self.assertRaises(sandboxd.FailedPrecondition) as cm:
            self.admin.projects.update(p.id, version=1, labels={"stage": "stale"})
        self.assertEqual(cm.exception.status, 409)
        self.assertIn("version", cm.exception.message)
        # The object read at version 1 is stale too; read again, it goes through.
        with self.assertRaises(sandboxd.FailedPrecondition):
            p.update(default_workspace_mode="cow")
        self.assertEqual(p.refresh().update(default_workspace_mode="cow").version, 3)
        self.assertEqual(self.admin.projects.get(p.id)["labels"], {"stage": "two"})
        # Without a version, the change is unconditional; only admins change projects.
        self.assertEqual(self.admin.projects.update(p.id, labels={}).version, 4)
        with self.assertRaises(sandboxd.PermissionDenied):
            self.alice.projects.update(p.id, labels={"x": "y"})

        self.assertEqual(self.admin.projects.delete(p.id), p.id)
        with self.assertRaises(sandboxd.NotFound):
            self.admin.projects.get(p.id)
        with self.assertRaises(sandboxd.NotFound):
            self.admin.projects.delete(p.id)


if __name__ == "__main__":
    unittest.main()
