"""Runs: submit, stream logs, wait, artifacts, review, cancel, idempotency."""
import json
import unittest
import uuid

from _support import alice, bob, require_daemon, reviewer, sandboxd


class RunsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_daemon()
        cls.client = alice()

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def test_submit_stream_wait_artifacts(self):
        label = uuid.uuid4().hex[:12]
        run = self.client.runs.submit(
            ["sh", "-c", "echo one; echo two >&2; mkdir -p /artifacts/sub; "
                         "printf result > /artifacts/sub/out.txt; echo three"],
            labels={"t": label}, limits={"memory": "256m", "timeout_s": 60})
        self.assertIn(run.state, ("QUEUED", "RUNNING", "SUCCEEDED"))
        streamed = b"".join(run.stream_logs())  # follows to the end of the run
        self.assertEqual(sorted(streamed.splitlines()), [b"one", b"three", b"two"])
        run.wait(timeout=30)
        self.assertEqual(run.state, "SUCCEEDED")
        self.assertEqual(run.exit_code, 0)
        self.assertEqual(run.logs("stdout"), b"one\nthree\n")
        self.assertEqual(run.logs("stderr"), b"two\n")
        self.assertEqual(run.logs("stdout", tail=1), b"three\n")
        names = {a["name"]: a for a in run.artifacts()}
        self.assertTrue({"report.md", "audit.json", "files/sub/out.txt"} <= set(names))
        self.assertEqual(names["files/sub/out.txt"]["size"], 6)
        self.assertEqual(run.artifact("files/sub/out.txt"), b"result")
        self.assertIsInstance(json.loads(run.artifact("audit.json")), (dict, list))
        with self.assertRaises(sandboxd.NotFound):
            run.artifact("files/missing")
        # Its events replay in order and end with run.completed.
        with run.events() as s:
            events = list(s)
        self.assertEqual([e.seq for e in events], list(range(1, len(events) + 1)))
        self.assertEqual(events[-1].type, "run.completed")
        self.assertEqual(s.close_code, 1000)
        logs = b"".join(e.data for e in events if e.type == "step.log")
        self.assertEqual(sorted(logs.splitlines()), [b"one", b"three", b"two"])
        # Listing by label finds it; bob sees none of it.
        self.assertEqual([r.id for r in self.client.runs.list(label="t=" + label)], [run.id])
        with bob() as b:
            self.assertEqual(list(b.runs.list(label="t=" + label)), [])
            with self.assertRaises(sandboxd.NotFound):
                b.runs.get(run.id)

    def test_review_approve_wait(self):
        run = self.client.runs.submit(["needs-review", "now"])
        self.assertEqual(run.state, "AWAITING_REVIEW")
        with reviewer() as rev:
            approved = rev.runs.approve(run.id)
            self.assertEqual(approved.data["approval"]["approved_by"], "rev")
        run.wait(timeout=30)
        self.assertTrue(run.done)  # the program is not installed: it ends, setup_failed
        self.assertEqual(run.state, "FAILED")

    def test_failing_and_cancelled_runs(self):
        run = self.client.runs.submit(["sh", "-c", "exit 7"])
        self.assertEqual(run.wait(timeout=30).state, "FAILED")
        self.assertEqual(run.exit_code, 7)
        slow = self.client.runs.submit(["sleep", "60"])
        with slow.events() as s:
            while True:
                e = s.next(timeout=30)
                self.assertIsNotNone(e)
                if e.type == "step.started":
                    break
            slow.cancel()
            last = list(s)[-1]
        self.assertEqual(last.type, "run.completed")
        self.assertEqual(slow.wait(timeout=30).state, "CANCELLED")
        with self.assertRaises(sandboxd.FailedPrecondition):
            slow.cancel()

    def test_idempotency_key(self):
        key = "sdk-" + uuid.uuid4().hex
        a = self.client.runs.submit(["echo", "once"], idempotency_key=key)
        b = self.client.runs.submit(["echo", "once"], idempotency_key=key)
        self.assertEqual(a.id, b.id)
        with self.assertRaises(sandboxd.AlreadyExists):
            self.client.runs.submit(["echo", "twice"], idempotency_key=key)
        a.wait(timeout=30)


if __name__ == "__main__":
    unittest.main()
