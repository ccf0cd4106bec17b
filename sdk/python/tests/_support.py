"""Shared by the tests: puts sdk/python on sys.path and reads the daemon's environment.

The tests run against a real daemon started by tests/support/with_daemon.py, which exports
SANDBOXD_URL, SANDBOXD_API_KEY (alice), SANDBOXD_API_KEY_2 (bob), SANDBOXD_REVIEWER_KEY,
SANDBOXD_ADMIN_KEY and SANDBOXD_HARNESS (a socket that restarts the daemon).
"""
import os
import socket
import sys
import threading
import unittest

SDK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if SDK not in sys.path:
    sys.path.insert(0, SDK)

import sandboxd  # noqa: E402

ENV = ("SANDBOXD_URL", "SANDBOXD_API_KEY", "SANDBOXD_API_KEY_2", "SANDBOXD_REVIEWER_KEY",
       "SANDBOXD_ADMIN_KEY")

# Sandboxes within the test policy's allow_within start without review.
LIMITS = {"timeout_s": 600, "memory_bytes": 256 << 20}


def require_daemon():
    missing = [v for v in ENV if not os.environ.get(v)]
    if missing:
        raise unittest.SkipTest("needs a daemon: run under tests/support/with_daemon.py "
                                "(missing %s)" % ", ".join(missing))


def alice(**kw):
    require_daemon()
    return sandboxd.Client(**kw)


def bob(**kw):
    require_daemon()
    return sandboxd.Client(api_key=os.environ["SANDBOXD_API_KEY_2"], **kw)


def reviewer(**kw):
    require_daemon()
    return sandboxd.Client(api_key=os.environ["SANDBOXD_REVIEWER_KEY"], **kw)


def all_keys():
    return [os.environ[v] for v in ENV[1:] if os.environ.get(v)]


class Restart:
    """Asks the harness to restart the daemon, in a thread; ``wait()`` returns its answer."""

    def __init__(self):
        path = os.environ.get("SANDBOXD_HARNESS")
        if not path:
            raise unittest.SkipTest("needs SANDBOXD_HARNESS (tests/support/with_daemon.py)")
        self.answer = None
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(60)
        self._sock.connect(path)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            self._sock.sendall(b"restart\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = self._sock.recv(256)
                if not chunk:
                    break
                data += chunk
            self.answer = data.decode().strip()
        except OSError as e:
            self.answer = "error %s" % e
        finally:
            self._sock.close()

    @property
    def done(self):
        return not self._thread.is_alive()

    def wait(self):
        self._thread.join(60)
        return self.answer


def wait_until_refused(url, restart):
    """Connects to the daemon's port until a connection is refused (the daemon is down);
    False when the restart finished before that was seen."""
    import urllib.parse
    u = urllib.parse.urlsplit(url)
    while not restart.done:
        try:
            socket.create_connection((u.hostname, u.port), timeout=0.2).close()
        except ConnectionRefusedError:
            return True
        except OSError:  # e.g. a full accept queue while the old daemon stops: not down yet
            pass
    return False


class SandboxTestCase(unittest.TestCase):
    """Tests that share one of alice's sandboxes: ``cls.client`` and ``cls.sbx``, made before
    the class's tests and deleted after them. ``sandbox_options`` go to sandboxes.create."""

    sandbox_options = {}

    @classmethod
    def setUpClass(cls):
        require_daemon()
        cls.client = alice()
        cls.sbx = cls.client.sandboxes.create(limits=LIMITS, **cls.sandbox_options)

    @classmethod
    def tearDownClass(cls):
        cls.sbx.delete()
        cls.client.close()
