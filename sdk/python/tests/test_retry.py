"""Retries: idempotent requests survive a daemon restart, others are never sent twice.

The daemon is restarted through the harness's socket (SANDBOXD_HARNESS); each test waits until
the daemon's port refuses connections, then sends its request into that gap.
"""
import os
import time
import unittest

from _support import LIMITS, Restart, alice, require_daemon, sandboxd, wait_until_refused

from sandboxd._http import RetryPolicy, parse_retry_after


def during_restart(test, body, tries=3):
    """Runs body(client) while the daemon is down; retried when the gap was missed.

    The client has no pooled connection: one opened before the restart may still be served by
    the stopping daemon (test_post_after_restart_uses_a_fresh_connection covers those)."""
    for _ in range(tries):
        client = alice(max_retries=10, backoff=0.05, max_backoff=0.5)
        restart = Restart()
        try:
            if not wait_until_refused(client.url, restart):
                continue
            return body(client)
        finally:
            test.assertEqual(restart.wait(), "ok")
            client.close()
    test.skipTest("the daemon restarted too fast to catch it down")


class RetryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_daemon()
        if not os.environ.get("SANDBOXD_HARNESS"):
            raise unittest.SkipTest("needs SANDBOXD_HARNESS")

    def test_get_is_retried_across_a_restart(self):
        def body(client):
            before = client._t.attempts
            info = client.info()
            self.assertIn("node", info)
            return client._t.attempts - before
        attempts = during_restart(self, body)
        self.assertGreater(attempts, 1)

    def test_post_is_not_retried(self):
        def body(client):
            before = client._t.attempts
            with self.assertRaises(sandboxd.ConnectionFailed) as cm:
                client.runs.submit(["echo", "never"])
            self.assertIsNone(cm.exception.status)
            self.assertIsInstance(cm.exception, sandboxd.Unavailable)
            return client._t.attempts - before
        self.assertEqual(during_restart(self, body), 1)

    def test_post_after_restart_uses_a_fresh_connection(self):
        client = alice(max_retries=0)
        try:
            client.info()  # leaves a keep-alive connection in the pool
            self.assertEqual(Restart().wait(), "ok")
            before = client._t.attempts
            run = client.runs.submit(["echo", "after restart"])  # no retries allowed
            self.assertEqual(client._t.attempts - before, 1)
            self.assertEqual(run.wait(timeout=30).state, "SUCCEEDED")
        finally:
            client.close()

    def test_websocket_open_is_retried(self):
        client = alice(max_retries=10, backoff=0.05, max_backoff=0.5)
        try:
            run = client.runs.submit(["echo", "ws"])
            run.wait(timeout=30)

            def body(c):
                with sandboxd.Run(c, run.data).events() as s:
                    return [e.type for e in s]
            types = during_restart(self, body)
            self.assertEqual(types[-1], "run.completed")
        finally:
            client.close()

    def test_resource_exhausted_is_typed_and_not_retried(self):
        # A sandbox runs at most 64 processes of its init at once; the 65th start is answered
        # 429 with Retry-After, and as a POST it is not retried.
        client = alice(max_retries=5)
        sbx = client.sandboxes.create(limits=LIMITS)
        try:
            for _ in range(64):
                sbx.start(["sleep", "60"])
            before = client._t.attempts
            with self.assertRaises(sandboxd.ResourceExhausted) as cm:
                sbx.start(["sleep", "60"])
            self.assertEqual(client._t.attempts - before, 1)
            e = cm.exception
            self.assertEqual((e.code, e.status, e.retry_after), ("resource_exhausted", 429, 5.0))
            self.assertIn("64", e.message)
        finally:
            sbx.delete()
            client.close()

    def test_backoff_policy(self):
        p = RetryPolicy(max_retries=3, backoff=0.1, max_backoff=1.0, max_retry_after=10)
        for n in range(8):
            d = p.delay(n)
            cap = min(1.0, 0.1 * 2 ** n)
            self.assertTrue(cap / 2 <= d <= cap, (n, d))
        self.assertEqual(p.delay(0, retry_after=5), 5)
        self.assertEqual(p.delay(0, retry_after=500), 10)
        self.assertEqual(parse_retry_after("7"), 7.0)
        self.assertIsNone(parse_retry_after("soon"))
        when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
        self.assertTrue(25 <= parse_retry_after(when) <= 31)


if __name__ == "__main__":
    unittest.main()
