"""The SDK over a Unix socket (SANDBOXD_URL=unix:/PATH), against a second daemon of its own."""
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import unittest

from _support import LIMITS, require_daemon, sandboxd


class UnixSocketTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_daemon()
        server = os.environ.get("SANDBOXD_SERVER")
        if not server:
            raise unittest.SkipTest("needs SANDBOXD_SERVER (tests/support/with_daemon.py)")
        cls.tmp = tempfile.mkdtemp(prefix="sbx-pysdk-unix-")
        os.chmod(cls.tmp, 0o711)
        os.makedirs(cls.tmp + "/policies")
        with open(cls.tmp + "/policies/commands.yaml", "w") as f:
            f.write('version: 1\nrules:\n  "*": deny\n  "echo *": allow\n  "sh *": allow\n'
                    "sandboxes:\n  allow_within: {timeout_s: 7200}\n")
        cls.cgroup = "sandboxd-pysdk-unix-%d" % os.getpid()
        cls.sock = cls.tmp + "/api.sock"
        key = os.environ["SANDBOXD_API_KEY"]
        with open(cls.tmp + "/sandboxd.yaml", "w") as f:
            f.write('listen: ["unix:%s"]\ndatabase: sqlite://%s/sandboxd.db\n'
                    "data_dir: %s/data\nnode: pysdk-unix-%d\ncgroup_parent: %s\n"
                    "policy_dir: %s/policies\napi_keys:\n"
                    "  - {name: alice, role: submitter, key_sha256: %s}\n"
                    % (cls.sock, cls.tmp, cls.tmp, os.getpid(), cls.cgroup, cls.tmp,
                       hashlib.sha256(key.encode()).hexdigest()))
        cls.proc = subprocess.Popen([server, "--config", cls.tmp + "/sandboxd.yaml"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    text=True, start_new_session=True)
        for line in cls.proc.stdout:
            if line.startswith("sandboxd: ready"):
                break
        else:
            cls.tearDownClass()
            raise AssertionError("the second daemon did not start")

    @classmethod
    def tearDownClass(cls):
        if cls.proc.poll() is None:
            cls.proc.send_signal(signal.SIGTERM)
            try:
                cls.proc.wait(30)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait()
        cls.proc.stdout.close()
        roots = ["/sys/fs/cgroup"]
        if os.path.isdir(roots[0]):
            roots += [os.path.join(roots[0], d) for d in os.listdir(roots[0])]
        for root in roots:
            try:
                os.rmdir(os.path.join(root, cls.cgroup))
            except OSError:
                pass
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_http_and_streams(self):
        with sandboxd.Client("unix:" + self.sock) as c:
            self.assertTrue(c.info()["node"].startswith("pysdk-unix-"))
            with c.sandboxes.create(limits=LIMITS) as sbx:
                p = sbx.start(["echo", "over a unix socket"])
                self.assertEqual(list(p.stream(timeout=20)),
                                 [("stdout", b"over a unix socket\n")])
                with sbx.terminal(["sh"]) as term:
                    term.write("echo U$((20+2))\n")
                    term.read_until("U22", timeout=20)
                    term.write("exit\n")
                with self.assertRaises(sandboxd.PermissionDenied):
                    sbx.start(["forbidden"])


if __name__ == "__main__":
    unittest.main()
