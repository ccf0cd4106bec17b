#!/usr/bin/env python3
"""Runs a command against a real sandboxd daemon, then stops the daemon.

    with_daemon.py --server PATH/sandboxd-server [--policy FILE] [--extra-config FILE] -- CMD ARGS

Starts sandboxd-server on SQLite in a fresh directory under /tmp, on a free TCP port of 127.0.0.1,
with four API keys, and runs CMD with these in its environment:

    SANDBOXD_URL            http://127.0.0.1:PORT
    SANDBOXD_API_KEY        "alice", a submitter (MCP profiles: all)
    SANDBOXD_API_KEY_2      "bob", another submitter (MCP profile: executor only)
    SANDBOXD_REVIEWER_KEY   "rev", a reviewer
    SANDBOXD_ADMIN_KEY      "admin", an admin
    SANDBOXD_SERVER         the daemon binary (sandboxd-server)
    SANDBOXD_HARNESS        a Unix socket: send "restart\\n" and the daemon is stopped (SIGTERM)
                            and started again on the same port; the answer "ok\\n" comes once it
                            is ready again ("error MESSAGE\\n" when it is not)

The command policy is FILE (commands.yaml syntax), else a small one for tests: echo, true, cat,
ls, sh, sleep and printf run; "needs-review *" waits for a reviewer; "forbidden *" is denied.
The exit status is CMD's. The daemon's output goes to this script's stderr.
"""
import argparse
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

DEFAULT_POLICY = """\
version: 1
shell: allow
rules:
  "*": deny
  "echo *": allow
  "true *": allow
  "false *": allow
  "cat *": allow
  "ls *": allow
  "sh *": allow
  "sleep *": allow
  "printf *": allow
  "head *": allow
  "wc *": allow
  "needs-review *": review
  "forbidden *": deny
sandboxes:
  allow_within:
    cpus: 2
    memory: 1GiB
    pids: 512
    timeout_s: 7200
    idle_timeout_s: 3600
    workspace: [none, ro, cow]
    backends: [native]
  otherwise: review
"""

KEYS = [
    # (environment variable, name, role, MCP profiles or None for the default)
    ("SANDBOXD_API_KEY", "alice", "submitter", None),
    ("SANDBOXD_API_KEY_2", "bob", "submitter", ["executor"]),
    ("SANDBOXD_REVIEWER_KEY", "rev", "reviewer", None),
    ("SANDBOXD_ADMIN_KEY", "admin", "admin", None),
]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, server, config):
        self.server = server
        self.config = config
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([self.server, "--config", self.config],
                                     stdout=subprocess.PIPE, stderr=sys.stderr,
                                     text=True, start_new_session=True)
        seen = []
        for line in self.proc.stdout:
            seen.append(line)
            sys.stderr.write("[sandboxd] " + line)
            if line.startswith("sandboxd: ready"):
                # Keep reading its stdout so that it never blocks on a full pipe.
                threading.Thread(target=self._drain, daemon=True).start()
                return
        self.proc.wait()
        raise RuntimeError("sandboxd-server exited with %s before it was ready:\n%s"
                           % (self.proc.returncode, "".join(seen)))

    def _drain(self):
        for line in self.proc.stdout:
            sys.stderr.write("[sandboxd] " + line)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve_control(path, daemon, lock):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)

    def handle(conn):
        with conn:
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(256)
                if not chunk:
                    return
                data += chunk
            if data.strip() != b"restart":
                conn.sendall(b"error unknown command\n")
                return
            with lock:
                try:
                    daemon.stop()
                    daemon.start()
                    conn.sendall(b"ok\n")
                except Exception as e:  # reported to the caller, which fails its test
                    conn.sendall(("error %s\n" % str(e).replace("\n", " ")).encode())

    def loop():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return srv


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--policy")
    ap.add_argument("--extra-config")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("no command after --")

    tmp = tempfile.mkdtemp(prefix="sbx-harness-")
    os.chmod(tmp, 0o711)  # the sandboxes reach their mount points through it
    cgroup_parent = "sandboxd-harness-%d" % os.getpid()
    os.makedirs(tmp + "/policies")
    policy = DEFAULT_POLICY
    if args.policy:
        with open(args.policy) as f:
            policy = f.read()
    with open(tmp + "/policies/commands.yaml", "w") as f:
        f.write(policy)
    port = free_port()
    env = dict(os.environ)
    lines = [
        'listen: ["127.0.0.1:%d"]' % port,
        "database: sqlite://%s/sandboxd.db" % tmp,
        "data_dir: %s/data" % tmp,
        "node: harness-%d" % os.getpid(),
        "cgroup_parent: %s" % cgroup_parent,
        "policy_dir: %s/policies" % tmp,
        "api_keys:",
    ]
    for var, name, role, profiles in KEYS:
        key = "sbx_test_" + secrets.token_hex(16)
        env[var] = key
        entry = "  - {name: %s, role: %s, key_sha256: %s" % (
            name, role, hashlib.sha256(key.encode()).hexdigest())
        if profiles is not None:
            entry += ", mcp_profiles: [%s]" % ", ".join(profiles)
        lines.append(entry + "}")
    config = tmp + "/sandboxd.yaml"
    with open(config, "w") as f:
        f.write("\n".join(lines) + "\n")
        if args.extra_config:
            with open(args.extra_config) as extra:
                f.write(extra.read())

    daemon = Daemon(args.server, config)
    control = None
    rc = 1
    try:
        daemon.start()
        control_path = tmp + "/harness.sock"
        control = serve_control(control_path, daemon, threading.Lock())
        env.update({
            "SANDBOXD_URL": "http://127.0.0.1:%d" % port,
            "SANDBOXD_SERVER": args.server,
            "SANDBOXD_HARNESS": control_path,
        })
        rc = subprocess.call(command, env=env)
    finally:
        if control is not None:
            control.close()
        daemon.stop()
        for root in ["/sys/fs/cgroup"] + ["/sys/fs/cgroup/" + d for d in
                                          (os.listdir("/sys/fs/cgroup")
                                           if os.path.isdir("/sys/fs/cgroup") else [])]:
            try:
                os.rmdir(os.path.join(root, cgroup_parent))
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
