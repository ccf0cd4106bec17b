"""The change feed (GET /v1/events/sandboxes), and the waits that follow it instead of polling."""
import threading
import time
import unittest

from _support import LIMITS, alice, bob, require_daemon, reviewer, sandboxd

PATH_ENV = {"PATH": "/tmp/bin:/usr/bin:/bin"}


class _Counter:
    """Counts the HTTP requests a client makes, by method, while installed."""

    def __init__(self, client):
        self.gets = []
        self.requests = 0
        t = client._t
        real = t.request

        def request(method, path, *args, **kw):
            self.requests += 1
            if method.upper() == "GET":
                self.gets.append(path)
            return real(method, path, *args, **kw)

        t.request = request

    def reset(self):
        self.gets, self.requests = [], 0


def _later(delay, fn):
    """Calls fn after ``delay`` seconds in a thread; ``.at`` is when it returned."""
    box = {"at": None, "error": None}

    def run():
        time.sleep(delay)
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported by the test
            box["error"] = e
        box["at"] = time.monotonic()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    box["thread"] = th
    return box


class ChangesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_daemon()
        cls.client = alice()
        cls.rev = reviewer()
        cls.sbx = cls.client.sandboxes.create(limits=LIMITS, labels={"suite": "changes"})
        cls.sbx.files.write("/tmp/bin/needs-review", "#!/bin/sh\necho reviewed \"$@\"\n",
                            mode=0o755)

    @classmethod
    def tearDownClass(cls):
        cls.sbx.delete()
        cls.client.close()
        cls.rev.close()

    def _review_later(self, p, delay, decision, *args):
        rp = self.rev.sandboxes.get(self.sbx.id).process(p.id)
        return _later(delay, lambda: getattr(rp, decision)(*args))

    def test_wait_on_review_follows_the_feed(self):
        with alice() as c:
            sbx = c.sandboxes.get(self.sbx.id)
            p = sbx.start(["needs-review", "late"], env=PATH_ENV)
            self.assertEqual(p.state, "AWAITING_REVIEW")
            count = _Counter(c)
            approval = self._review_later(p, 1.5, "approve")
            p.wait(timeout=30)
            waited = time.monotonic()
            approval["thread"].join(10)
            self.assertIsNone(approval["error"])
            self.assertEqual(p.state, "FINISHED")
            self.assertEqual(p.exit_code, 0)
            # Promptly after the decision, and without asking again and again meanwhile.
            self.assertLess(waited - approval["at"], 1.0)
            self.assertLessEqual(len(count.gets), 3, count.gets)
            self.assertFalse(c._t.feed_missing)
            self.assertEqual(p.logs(), b"reviewed late\n")

    def test_a_rejection_ends_the_wait_at_once(self):
        with alice() as c:
            p = c.sandboxes.get(self.sbx.id).start(["needs-review", "no"], env=PATH_ENV)
            count = _Counter(c)
            rejection = self._review_later(p, 1.0, "reject", "not this one")
            p.wait(timeout=30)
            waited = time.monotonic()
            rejection["thread"].join(10)
            self.assertIsNone(rejection["error"])
            self.assertEqual(p.state, "REJECTED")
            self.assertLess(waited - rejection["at"], 1.0)
            self.assertLessEqual(len(count.gets), 3, count.gets)

    def test_a_decision_taken_before_the_wait(self):
        p = self.sbx.start(["needs-review", "early"], env=PATH_ENV)
        self.rev.sandboxes.get(self.sbx.id).process(p.id).reject()
        # The local copy still says AWAITING_REVIEW: the record read after subscribing says
        # otherwise, and nothing is waited for.
        self.assertEqual(p.state, "AWAITING_REVIEW")
        t0 = time.monotonic()
        self.assertEqual(p.wait(timeout=10).state, "REJECTED")
        self.assertLess(time.monotonic() - t0, 2.0)

    def test_wait_running_on_a_sandbox_under_review(self):
        # Beyond the test policy's allow_within: the sandbox waits for a reviewer.
        with alice() as c:
            sbx = c.sandboxes.create(limits={"timeout_s": 600, "memory_bytes": 4 << 30})
            try:
                self.assertEqual(sbx.state, "AWAITING_REVIEW")
                count = _Counter(c)
                approval = _later(1.5, lambda: self.rev.sandboxes.approve(sbx.id))
                sbx.wait_running(timeout=30)
                waited = time.monotonic()
                approval["thread"].join(10)
                self.assertIsNone(approval["error"])
                self.assertEqual(sbx.state, "RUNNING")
                self.assertLess(waited - approval["at"], 1.0)
                self.assertLessEqual(len(count.gets), 3, count.gets)
            finally:
                sbx.delete()

    def test_without_the_feed_the_wait_polls(self):
        # A daemon without /v1/events/sandboxes (404): the wait falls back to polling.
        with alice() as c:
            t = c._t
            real = t.websocket

            def websocket(path, *args, **kw):
                if path == "/v1/events/sandboxes":
                    raise sandboxd.NotFound("no route", status=404, code="not_found")
                return real(path, *args, **kw)

            t.websocket = websocket
            p = c.sandboxes.get(self.sbx.id).start(["needs-review", "polled"], env=PATH_ENV)
            count = _Counter(c)
            approval = self._review_later(p, 1.0, "approve")
            self.assertEqual(p.wait(timeout=30).state, "FINISHED")
            approval["thread"].join(10)
            self.assertTrue(t.feed_missing)
            self.assertGreater(len(count.gets), 3)  # it did poll

    def test_the_feed_shows_changes_as_they_happen(self):
        with self.client.sandboxes.changes() as feed:
            p = self.sbx.start(["sh", "-c", "echo hi"])
            seen = []
            while True:
                c = feed.next(timeout=20)
                self.assertIsNotNone(c, "the feed closed")
                self.assertIsInstance(c, sandboxd.Change)
                if c.type == "process.state" and c.process_id == p.id:
                    seen.append(c.state)
                    if c.state == "FINISHED":
                        break
            self.assertEqual(c.sandbox_id, self.sbx.id)
            self.assertEqual(c.submitter, "alice")
            self.assertEqual(c.reason, "exited")
            self.assertIsInstance(c.ts, int)
            self.assertEqual(seen[-1], "FINISHED")
        self.assertIsNotNone(feed.close_code)

    def test_one_submitter_never_sees_anothers_sandboxes(self):
        with bob() as b, b.sandboxes.changes() as bobs, self.client.sandboxes.changes() as alices:
            mine = self.client.sandboxes.create(limits=LIMITS)
            try:
                mine.run(["echo", "alice"])
            finally:
                mine.delete()
            # bob's own sandbox, made after alice's: once bob saw it stop, alice's changes
            # would have come before.
            his = b.sandboxes.create(limits=LIMITS)
            his.run(["echo", "bob"])
            his.delete()
            # And alice's last one, after bob's: the same for alice's feed.
            last = self.sbx.run(["true"])
            got = []
            while True:
                c = bobs.next(timeout=20)
                self.assertIsNotNone(c, "bob's feed closed")
                got.append(c)
                if c.sandbox_id == his.id and c.type == "sandbox.state" and c.state == "STOPPED":
                    break
            self.assertTrue(all(c.submitter == "bob" for c in got), got)
            self.assertNotIn(mine.id, {c.sandbox_id for c in got})
            self.assertIn("process.state", {c.type for c in got})
            # alice's feed has hers, and not bob's.
            hers = []
            while True:
                c = alices.next(timeout=20)
                self.assertIsNotNone(c, "alice's feed closed")
                hers.append(c)
                if c.process_id == last.id and c.sandbox_id == self.sbx.id \
                        and c.state == "FINISHED":
                    break
            self.assertTrue(all(c.submitter == "alice" for c in hers), hers)
            self.assertNotIn(his.id, {c.sandbox_id for c in hers})


if __name__ == "__main__":
    unittest.main()
