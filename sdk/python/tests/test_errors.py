"""Typed errors, ownership, and the API key kept out of every repr, str and log line."""
import io
import logging
import pickle
import unittest

from _support import alice, all_keys, bob, LIMITS, reviewer, sandboxd, SandboxTestCase


class ErrorsTest(SandboxTestCase):
    def test_bob_cannot_see_alice_sandbox(self):
        with bob() as b:
            with self.assertRaises(sandboxd.NotFound) as cm:
                b.sandboxes.get(self.sbx.id)
            self.assertEqual(cm.exception.code, "not_found")
            self.assertEqual(cm.exception.status, 404)
            self.assertIn(self.sbx.id, cm.exception.message)
            # Nor drive it: files, processes, deletion.
            other = sandboxd.Sandbox(b, dict(self.sbx.data))
            with self.assertRaises(sandboxd.NotFound):
                other.files.read("/tmp")
            with self.assertRaises(sandboxd.NotFound):
                other.run(["true"])
            with self.assertRaises(sandboxd.NotFound):
                other.delete()
            self.assertNotIn(self.sbx.id, [s.id for s in b.sandboxes.list()])
        self.assertEqual(self.sbx.refresh().state, "RUNNING")

    def test_denied_command(self):
        with self.assertRaises(sandboxd.PermissionDenied) as cm:
            self.sbx.start(["forbidden", "thing"])
        e = cm.exception
        self.assertEqual((e.code, e.status), ("permission_denied", 403))
        self.assertIn("forbidden", e.message)
        self.assertIsInstance(e, sandboxd.SandboxdError)
        with self.assertRaises(sandboxd.PermissionDenied):  # not in the policy at all
            self.sbx.run(["rm", "-rf", "/tmp"])

    def test_role_too_low(self):
        run = self.client.runs.submit(["needs-review", "x"])
        self.assertEqual(run.state, "AWAITING_REVIEW")
        with self.assertRaises(sandboxd.PermissionDenied) as cm:
            run.approve()
        self.assertIn("reviewer", cm.exception.message)
        with reviewer() as rev:
            rev.runs.reject(run.id, "not today")
            # Approving what was rejected is a state conflict.
            with self.assertRaises(sandboxd.FailedPrecondition) as cm:
                rev.runs.approve(run.id)
            self.assertEqual(cm.exception.status, 409)
        self.assertEqual(run.refresh().state, "CANCELLED")

    def test_invalid_argument(self):
        with self.assertRaises(sandboxd.InvalidArgument) as cm:
            self.client.runs.submit(["echo"], limits={"memory": "lots"})
        self.assertEqual(cm.exception.status, 400)
        self.assertIn("limits.memory", cm.exception.message)
        with self.assertRaises(sandboxd.InvalidArgument):
            sandboxd.Process(self.sbx, {"id": 1}).signal("SIGNOPE")

    def test_unknown_ids_and_hostile_ids(self):
        with self.assertRaises(sandboxd.NotFound):
            self.client.runs.get("run_aaaaaaaaaaaaaaaaaaaa")
        # An id is one path segment: ".." or "a/b" cannot walk the route tree.
        for bad in ("..", "../../v1/info", "sbx_x/processes"):
            with self.assertRaises((sandboxd.NotFound, sandboxd.InvalidArgument)):
                self.client.sandboxes.get(bad)

    def test_bad_key(self):
        secret = "sbx_bogus_" + "7" * 24
        with sandboxd.Client(api_key=secret) as c:
            with self.assertRaises(sandboxd.Unauthenticated) as cm:
                c.info()
            e = cm.exception
            self.assertEqual((e.code, e.status), ("unauthenticated", 401))
            for text in (str(e), repr(e), str(e.args), repr(c), str(c), repr(vars(c)),
                         repr(vars(c._t))):
                self.assertNotIn(secret, text)
            # Streams answer the same typed error.
            with self.assertRaises(sandboxd.Unauthenticated) as cm:
                sandboxd.Sandbox(c, dict(self.sbx.data)).files.watch("/tmp")
            self.assertNotIn(secret, str(cm.exception) + repr(cm.exception))
        with sandboxd.Client(api_key="") as anonymous:  # public routes need no key
            self.assertEqual(anonymous.health(), {"ok": True})
            with self.assertRaises(sandboxd.Unauthenticated):
                anonymous.info()

    def test_key_never_shown(self):
        keys = all_keys()
        self.assertTrue(keys)
        buf = io.StringIO()
        handler = logging.StreamHandler(buf)
        handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
        root = logging.getLogger()
        old = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            c = alice()
            sbx = c.sandboxes.create(limits=LIMITS)
            p = sbx.start(["echo", "x"])
            list(p.stream())
            with self.assertRaises(sandboxd.NotFound) as cm:
                sbx.process(999)
            with self.assertRaises(sandboxd.NotFound) as cm2:
                sbx.process(998).events()
            run = c.runs.submit(["echo", "y"])
            shown = [repr(c), str(c), repr(sbx), str(sbx), repr(p), repr(run), repr(cm.exception),
                     str(cm.exception), repr(cm2.exception), str(cm2.exception), repr(c._t),
                     repr(vars(c)), repr(vars(c._t)), repr(c.retry), repr(sbx.files)]
            sbx.delete()
            c.close()
        finally:
            root.removeHandler(handler)
            root.setLevel(old)
        log = buf.getvalue()
        self.assertIn("GET", log)  # the requests were logged ...
        for key in keys:  # ... without the key
            self.assertNotIn(key, log)
            for text in shown:
                self.assertNotIn(key, text)
        with self.assertRaises(TypeError):
            pickle.dumps(c._t._key)

    def test_error_classes(self):
        cls = sandboxd.errors.error_class
        self.assertIs(cls("not_found"), sandboxd.NotFound)
        self.assertIs(cls("bad_request"), sandboxd.InvalidArgument)
        self.assertIs(cls("resource_exhausted"), sandboxd.ResourceExhausted)
        self.assertIs(cls("unavailable"), sandboxd.Unavailable)
        self.assertIs(cls("something_new", 503), sandboxd.Unavailable)
        self.assertIs(cls("something_new", 599), sandboxd.Internal)
        self.assertTrue(issubclass(sandboxd.ConnectionFailed, sandboxd.Unavailable))
        e = sandboxd.errors.error_from_response(502, b"<html>bad gateway</html>")
        self.assertIsInstance(e, sandboxd.Internal)
        self.assertEqual(e.status, 502)


if __name__ == "__main__":
    unittest.main()
