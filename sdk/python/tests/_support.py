"""Shared by the tests: puts sdk/python on sys.path and reads the daemon's environment.

The tests run against a real daemon started by tests/support/with_daemon.py, which exports
SANDBOXD_URL, SANDBOXD_API_KEY (alice), SANDBOXD_API_KEY_2 (bob), SANDBOXD_REVIEWER_KEY,
SANDBOXD_ADMIN_KEY and SANDBOXD_HARNESS (a socket that restarts the daemon).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import unittest

SDK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.path.join(os.path.dirname(os.path.dirname(SDK)), "tests", "support", "with_daemon.py")
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


# Run by the harness in place of a test command: prints the daemon's environment as one JSON
# line once the daemon is ready, then holds it until its stdin closes.
_HOLD = ("import json, os, sys\n"
         "print(json.dumps({k: v for k, v in os.environ.items() if k.startswith('SANDBOXD_')}),"
         " flush=True)\n"
         "sys.stdin.read()\n")


class WorkspaceDaemon:
    """A daemon with a workspace root for copy-on-write runs (``.root``; its directories are
    made by the tests): ``.url`` and ``.keys`` (alice, bob, rev, admin). ``close()`` stops it.

    The harness's daemon when it has a root (SANDBOXD_WORKSPACE_ROOT names it) and no
    ``policy`` is asked for; else a second one from tests/support/with_daemon.py (the binary of
    SANDBOXD_SERVER) with the root in its config, as tests/web/run.sh configures its own, and
    ``policy`` (commands.yaml text) as its command policy when given.
    """

    def __init__(self, policy=None):
        require_daemon()
        self._proc = None
        self._tmp = None
        if os.environ.get("SANDBOXD_WORKSPACE_ROOT") and policy is None:
            self.root = os.environ["SANDBOXD_WORKSPACE_ROOT"]
            env = os.environ
        else:
            server = os.environ.get("SANDBOXD_SERVER")
            if not server or not os.path.exists(HARNESS):
                raise unittest.SkipTest("needs SANDBOXD_SERVER and %s%s" % (
                    HARNESS, "" if policy else ", or SANDBOXD_WORKSPACE_ROOT"))
            env = self._start(server, policy)
        self.url = env["SANDBOXD_URL"]
        self.keys = {"alice": env["SANDBOXD_API_KEY"], "bob": env["SANDBOXD_API_KEY_2"],
                     "rev": env["SANDBOXD_REVIEWER_KEY"], "admin": env["SANDBOXD_ADMIN_KEY"]}

    def _start(self, server, policy):
        self._tmp = tempfile.mkdtemp(prefix="sbx-sdk-workspaces-")
        os.chmod(self._tmp, 0o711)  # the sandboxes reach their workspaces through it
        self.root = os.path.join(self._tmp, "workspaces")
        os.mkdir(self.root)
        os.chmod(self.root, 0o755)
        extra = os.path.join(self._tmp, "extra.yaml")
        with open(extra, "w") as f:
            f.write("workspace_roots: [%s]\nworkspace_cow_root_owned: true\n" % self.root)
        options = []
        if policy is not None:
            options = ["--policy", os.path.join(self._tmp, "commands.yaml")]
            with open(options[1], "w") as f:
                f.write(policy)
        self._proc = subprocess.Popen(
            [sys.executable, HARNESS, "--server", server, "--extra-config", extra] + options +
            ["--", sys.executable, "-c", _HOLD],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError("the second daemon did not start (its log is above)")
        return json.loads(line)

    def client(self, who):
        return sandboxd.Client(url=self.url, api_key=self.keys[who])

    def workspace(self, files):
        """A new directory under the root holding ``files`` ({relative path: bytes or str})."""
        d = tempfile.mkdtemp(prefix="apply-", dir=self.root)
        os.chmod(d, 0o755)
        for name, content in files.items():
            path = os.path.join(d, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(content.encode() if isinstance(content, str) else content)
        return d

    def close(self):
        if self._proc is not None:
            self._proc.stdin.close()  # the held command ends; the harness stops the daemon
            self._proc.wait(60)
            self._proc.stdout.close()
            self._proc = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
