"""The synchronous client: runs, sandboxes, processes, files and terminals (projects and plans:
projects.py)."""

import base64
import io
import json
import os
import tarfile
import time

from . import errors
from ._http import Closing, RetryPolicy, Transport, _Secret, seg

DEFAULT_URL = "http://127.0.0.1:8080"

RUN_TERMINAL = frozenset(["SUCCEEDED", "FAILED", "CANCELLED"])
SANDBOX_TERMINAL = frozenset(["STOPPED", "FAILED"])
PROCESS_TERMINAL = frozenset(["FINISHED", "REJECTED", "CANCELLED"])


def _deadline(timeout):
    return None if timeout is None else time.monotonic() + timeout


def _left(deadline, what):
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise errors.Timeout("%s did not happen in time" % what)
    return left


def _poll_waits(first=0.05, cap=1.0):
    d = first
    while True:
        yield d
        d = min(cap, d * 2)


def _sleep(waits, deadline, what):
    left = _left(deadline, what)
    d = next(waits)
    time.sleep(d if left is None else min(d, left))


def _await_change(client, refresh, waiting, moved, deadline, what):
    """Waits until ``waiting(refresh())`` is false, on the change feed.

    Opens GET /v1/events/sandboxes first, then reads the record (``refresh``, one GET): nothing
    is replayed, so a change between the two is in the record. While it still waits, reads the
    feed until a change for which ``moved(change)`` is true, then reads the record once more and
    returns. A feed that ends (1013 after an overflow, 1001 when the daemon stops, a dropped
    connection) is opened again and the record read again. A daemon without the feed (an older
    one: 404) is polled with backoff instead, for the rest of the client's life.
    """
    t = client._t
    waits = _poll_waits()
    while True:
        if t.feed_missing:
            refresh()
            if not waiting():
                return
            _sleep(waits, deadline, what)
            continue
        try:
            feed = client.sandboxes.changes()
        except errors.NotFound:
            t.feed_missing = True
            continue
        with feed:
            refresh()
            if not waiting():
                return
            while True:
                c = feed.next(_left(deadline, what))
                if c is None:  # closed by the daemon: subscribe and read the record again
                    break
                if moved(c):
                    refresh()
                    return
        _sleep(waits, deadline, what)


class Client(Closing):
    """A connection to a sandboxd daemon.

    ``url`` defaults to $SANDBOXD_URL (else http://127.0.0.1:8080; ``unix:/PATH`` for a Unix
    socket) and ``api_key`` to $SANDBOXD_API_KEY. ``timeout`` is the socket timeout of each
    request in seconds. Idempotent requests are retried after connection errors, 503 and 429
    (honouring Retry-After) up to ``max_retries`` times with exponential backoff.

    Thread-safe: requests share a small pool of keep-alive connections.
    """

    def __init__(self, url=None, api_key=None, *, timeout=60.0, max_retries=5, backoff=0.1,
                 max_backoff=2.0, max_retry_after=60.0, user_agent=None):
        url = url or os.environ.get("SANDBOXD_URL") or DEFAULT_URL
        if api_key is None:
            api_key = os.environ.get("SANDBOXD_API_KEY", "")
        retry = RetryPolicy(max_retries, backoff, max_backoff, max_retry_after)
        self._t = Transport(url, _Secret(api_key), timeout=timeout, retry=retry,
                            user_agent=user_agent)
        from .projects import Projects  # it builds on this module's Run
        self.runs = Runs(self)
        self.sandboxes = Sandboxes(self)
        self.projects = Projects(self)

    @property
    def url(self):
        return self._t.endpoint.url

    @property
    def retry(self):
        return self._t.retry

    def __repr__(self):
        return "Client(url=%r)" % self.url

    __str__ = __repr__

    def close(self):
        """Closes pooled connections and the WebSocket loop."""
        self._t.close()


    # -- meta --------------------------------------------------------------------------------

    def health(self):
        return self._t.json("GET", "/healthz")

    def info(self):
        return self._t.json("GET", "/v1/info")

    def evaluate_policy(self, **request):
        """POST /v1/policy:evaluate: what the command policy would decide for a request."""
        return self._t.json("POST", "/v1/policy:evaluate", body=request)

    # -- shortcuts ---------------------------------------------------------------------------

    def sandbox(self, sandbox_id):
        """The sandbox with this id (GET)."""
        return self.sandboxes.get(sandbox_id)

    def run(self, run_id):
        return self.runs.get(run_id)


class _Resource:
    """An object as the API shows it: ``.data`` is the JSON, ``obj["field"]`` reads it."""

    _id_field = "id"

    def __init__(self, client, data):
        self._client = client
        self.data = data

    def __getitem__(self, key):
        return self.data[key]

    def get(self, key, default=None):
        return self.data.get(key, default)

    @property
    def id(self):
        return self.data[self._id_field]

    @property
    def state(self):
        return self.data.get("state")

    def __repr__(self):
        return "%s(id=%r, state=%r)" % (type(self).__name__, self.data.get(self._id_field),
                                        self.data.get("state"))

    def __eq__(self, other):
        return type(self) is type(other) and self.id == other.id

    def __hash__(self):
        return hash((type(self).__name__, self.id))


class Event(dict):
    """One event from a stream (a dict), with ``.type``, ``.seq`` and, for log events,
    ``.data`` (the bytes) and ``.stream``."""

    binary = None  # the bytes of a binary-format log event

    @property
    def type(self):
        return self.get("type")

    @property
    def seq(self):
        return self.get("seq")

    @property
    def stream(self):
        return self.get("stream")

    @property
    def data(self):
        if self.binary is not None:
            return self.binary
        if "data" in self:
            return self["data"].encode("utf-8")
        if "data_b64" in self:
            return base64.b64decode(self["data_b64"])
        return None


def _parse_message(msg):
    if isinstance(msg, bytes):
        head, _, rest = msg.partition(b"\n")
        e = Event(json.loads(head.decode("utf-8")))
        e.binary = rest
        return e
    return Event(json.loads(msg))


class _Feed(Closing):
    """A WebSocket read message by message: ``next()`` (in the subclass), iteration until the
    daemon closes it, ``close_code``, and ``close()`` (or ``with``)."""

    def __init__(self, ws):
        self._ws = ws

    @property
    def close_code(self):
        return self._ws.close_code

    def __iter__(self):
        while True:
            item = self.next()
            if item is None:
                return
            yield item

    def close(self):
        self._ws.close()


class EventStream(_Feed):
    """Iterates over the events of a WebSocket route (process or run events, file watches).

    Iteration ends when the daemon closes the stream; ``close_code`` then says how (1000 after
    a run completed, 1001 when the daemon stopped, 1013 after an overflow). ``last_seq`` is the
    seq of the last event seen, for reattaching with ``after=``.
    """

    def __init__(self, ws, after=0, skip_through=0):
        super().__init__(ws)
        self.last_seq = after
        self._skip = skip_through

    def next(self, timeout=None):
        """The next event, or None once the stream ended; raises Timeout after ``timeout``."""
        while True:
            msg = self._ws.recv(timeout)
            if msg is None:
                return None
            e = _parse_message(msg)
            if not (self._skip and isinstance(e.get("seq"), int) and e["seq"] <= self._skip):
                break
        if isinstance(e.get("seq"), int):
            self.last_seq = max(self.last_seq or 0, e["seq"])
        return e

    def send_json(self, obj):
        self._ws.send(json.dumps(obj))

    def __repr__(self):
        return "<EventStream last_seq=%r %s>" % (self.last_seq,
                                                 "closed" if self._ws.closed else "open")


class ProcessEvents(EventStream):
    """Events of a sandbox process; also writes the process's stdin."""

    def write_stdin(self, data, close=False):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.send_json({"type": "stdin", "data_b64": base64.b64encode(data).decode("ascii"),
                        "close": bool(close)})


def _key(name):
    return property(lambda self: self.get(name), doc="The message's %r." % name)


class Change(dict):
    """One message of the change feed (a dict): ``type`` ("sandbox.state" or "process.state"),
    ``sandbox_id``, ``process_id`` (process changes), ``submitter``, ``state`` (after the
    change), ``reason`` (how it ended, once it has) and ``ts`` (ms since the epoch)."""

    type = _key("type")
    sandbox_id = _key("sandbox_id")
    process_id = _key("process_id")
    submitter = _key("submitter")
    state = _key("state")
    reason = _key("reason")
    ts = _key("ts")


class SandboxChanges(_Feed):
    """The change feed, GET /v1/events/sandboxes: every change of state of the caller's
    sandboxes and their processes (a reviewer's or an admin's: everyone's) from the moment it
    opened. Nothing is replayed: open it, then read the current state, then apply the changes.

    Iteration ends when the daemon closes the feed; ``close_code`` then says how (1013: this
    client fell behind, list again; 1001: the daemon stopped). Close it (or use ``with``).
    """

    def next(self, timeout=None):
        """The next change, or None once the feed closed; raises Timeout after ``timeout``."""
        while True:
            msg = self._ws.recv(timeout)
            if msg is None:
                return None
            if isinstance(msg, bytes):
                continue
            try:
                c = json.loads(msg)
            except ValueError:
                continue
            if isinstance(c, dict):
                return Change(c)

    def __repr__(self):
        return "<SandboxChanges %s>" % ("closed" if self._ws.closed else "open")


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------

class Runs:
    def __init__(self, client):
        self._client = client
        self._t = client._t

    def submit(self, argv=None, *, steps=None, limits=None, env=None, stdin=None, labels=None,
               workspace=None, network=None, seccomp_profile=None, backend=None, image=None,
               idempotency_key=None, project=None):
        """POST /v1/runs. ``argv`` (a list) or ``steps`` ([{"name", "argv"}]). With an
        ``idempotency_key`` the submission is retried safely like a GET. With ``project`` (its
        id or name, or a Project), a run of that project: it inherits the project's limits,
        workspace and labels where the request leaves them out."""
        if project is not None and not isinstance(project, str):
            project = project.id
        body = {"argv": list(argv) if argv is not None else None, "steps": steps,
                "limits": limits, "env": env, "stdin": stdin, "labels": labels,
                "workspace": workspace, "network": network, "seccomp_profile": seccomp_profile,
                "backend": backend, "image": image, "project": project}
        body = {k: v for k, v in body.items() if v is not None}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return Run(self._client, self._t.json("POST", "/v1/runs", body=body, headers=headers))

    def get(self, run_id):
        return Run(self._client, self._t.json("GET", "/v1/runs/" + seg(run_id)))

    def list(self, *, state=None, label=None, limit=None, project=None):
        """Every run this key may see, newest first (pages fetched as needed). ``state`` and
        ``label`` ("k=v") take one value or a list; ``project`` (an id or name, or a Project)
        keeps that project's runs (NotFound for a project this key may not see)."""
        if project is not None and not isinstance(project, str):
            project = project.id
        cursor = None
        while True:
            page = self._t.json("GET", "/v1/runs", query={
                "state": state, "label": label, "limit": limit, "cursor": cursor,
                "project": project})
            for r in page.get("runs", []):
                yield Run(self._client, r)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def approve(self, run_id):
        return Run(self._client, self._t.json("POST", "/v1/runs/%s:approve" % seg(run_id)))

    def reject(self, run_id, reason=None):
        body = {"reason": reason} if reason else None
        return Run(self._client, self._t.json("POST", "/v1/runs/%s:reject" % seg(run_id),
                                              body=body))

    def cancel(self, run_id):
        return Run(self._client, self._t.json("POST", "/v1/runs/%s:cancel" % seg(run_id)))

    def changes(self, run_id):
        """GET /v1/runs/{id}/changes: what a copy-on-write run that ended would write into the
        host directory. A dict: ``diff_sha256`` (of its diff.patch), ``applicable``,
        ``applied`` (None, or who applied it, when, and the counts), ``entries`` ([{"path",
        "op", "host", "mode", "size", ...}]), ``refused`` and ``total_bytes``. NotFound for a
        run without a copy-on-write workspace, or one that has not ended."""
        return self._t.json("GET", "/v1/runs/%s/changes" % seg(run_id))

    def apply(self, run_id, diff_sha256=None):
        """POST /v1/runs/{id}:apply: writes a succeeded copy-on-write run's changes into the host
        directory, once (a reviewer's or an admin's key, never the run's submitter's:
        PermissionDenied). With ``diff_sha256``, only if the run's diff.patch is that one (the
        diff that was read). Returns the counts: ``files_written``, ``files_deleted``,
        ``dirs_made``, ``dirs_removed``, with ``diff_sha256`` and ``changes_sha256``. Raises
        Conflict (``.conflicts``: [{"path", "why"}]) when the host directory is no longer what
        the run found, and nothing was written; FailedPrecondition or AlreadyExists when the run
        did not succeed, its set holds refusals, its diff is not ``diff_sha256``, or it was
        applied already. Never retried: a POST that failed may have been carried out."""
        body = {"diff_sha256": diff_sha256} if diff_sha256 else None
        return self._t.json("POST", "/v1/runs/%s:apply" % seg(run_id), body=body)


class Run(_Resource):
    """A run. Methods act with the client that fetched it (approve needs a reviewer's)."""

    @property
    def result(self):
        return self.data.get("result")

    @property
    def exit_code(self):
        r = self.data.get("result") or {}
        return r.get("exit_code")

    @property
    def done(self):
        return self.state in RUN_TERMINAL

    @property
    def project_id(self):
        """The id of the run's project, or None."""
        return self.data.get("project_id")

    def refresh(self):
        self.data = self._client.runs.get(self.id).data
        return self

    def approve(self):
        self.data = self._client.runs.approve(self.id).data
        return self

    def reject(self, reason=None):
        self.data = self._client.runs.reject(self.id, reason).data
        return self

    def cancel(self):
        self.data = self._client.runs.cancel(self.id).data
        return self

    def changes(self):
        """The change set of this copy-on-write run (``runs.changes``)."""
        return self._client.runs.changes(self.id)

    def apply(self, diff_sha256=None):
        """Writes this run's changes into the host directory (``runs.apply``); a reviewer's
        client."""
        return self._client.runs.apply(self.id, diff_sha256)

    def events(self, after=0):
        """The run's events from seq ``after`` on, then live; closes after run.completed."""
        ws = self._client._t.websocket("/v1/runs/%s/events" % seg(self.id),
                                       {"after": after, "format": "binary"})
        return EventStream(ws, after)

    def wait(self, timeout=None):
        """Blocks until the run ended (following its events) and returns it refreshed."""
        deadline = _deadline(timeout)
        after = 0
        while True:
            self.refresh()
            if self.done:
                return self
            with self.events(after) as s:
                while True:
                    e = s.next(_left(deadline, "the end of run %s" % self.id))
                    if e is None:
                        break
                    if e.type == "overflow":  # resume where the daemon says
                        after = e.get("resume_after") or s.last_seq
                        break
                    after = s.last_seq
                    if e.type == "run.completed":
                        break

    def logs(self, stream="all", *, tail=None, timestamps=False):
        """The output recorded so far, as bytes."""
        return self._client._t.request(
            "GET", "/v1/runs/%s/logs" % seg(self.id),
            {"stream": stream, "tail": tail, "timestamps": timestamps or None}).body

    def stream_logs(self, stream="all", *, timestamps=False, timeout=None):
        """Yields the output as it is written (bytes chunks), from the start to the run's end."""
        r = self._client._t.request(
            "GET", "/v1/runs/%s/logs" % seg(self.id),
            {"stream": stream, "follow": True, "timestamps": timestamps or None},
            stream=True, timeout=timeout or 0)
        return r.iter_chunks()

    def artifacts(self):
        """[{"name", "size", "sha256"}]; empty until the run ended."""
        return self._client._t.json("GET", "/v1/runs/%s/artifacts" % seg(self.id))["artifacts"]

    def artifact(self, name):
        """One artifact's bytes (``name`` as listed, e.g. "report.md" or "files/out.txt")."""
        parts = [seg(p) for p in name.split("/")]
        return self._client._t.request(
            "GET", "/v1/runs/%s/artifacts/%s" % (seg(self.id), "/".join(parts))).body


# ---------------------------------------------------------------------------------------------
# Sandboxes
# ---------------------------------------------------------------------------------------------

class Sandboxes:
    def __init__(self, client):
        self._client = client
        self._t = client._t

    def create(self, *, limits=None, idle_timeout_s=None, network=None, seccomp_profile=None,
               env=None, workspace=None, labels=None, idempotency_key=None, backend=None,
               from_snapshot=None, wait=True, timeout=None):
        """POST /v1/sandboxes. With ``wait`` (the default) returns once it is RUNNING when the
        policy approved it; one that needs a reviewer comes back AWAITING_REVIEW."""
        body = {"limits": limits, "idle_timeout_s": idle_timeout_s, "network": network,
                "seccomp_profile": seccomp_profile, "env": env, "workspace": workspace,
                "labels": labels, "backend": backend, "from_snapshot": from_snapshot}
        body = {k: v for k, v in body.items() if v is not None}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        sbx = Sandbox(self._client, self._t.json("POST", "/v1/sandboxes", body=body,
                                                 headers=headers))
        if wait and sbx.state in ("PENDING", "STARTING"):
            sbx.wait_running(timeout)
        return sbx

    def get(self, sandbox_id):
        return Sandbox(self._client, self._t.json("GET", "/v1/sandboxes/" + seg(sandbox_id)))

    def list(self, *, state=None, label=None, limit=None):
        cursor = None
        while True:
            page = self._t.json("GET", "/v1/sandboxes", query={
                "state": state, "label": label, "limit": limit, "cursor": cursor})
            for s in page.get("sandboxes", []):
                yield Sandbox(self._client, s)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def approve(self, sandbox_id):
        return Sandbox(self._client,
                       self._t.json("POST", "/v1/sandboxes/%s:approve" % seg(sandbox_id)))

    def reject(self, sandbox_id, reason=None):
        body = {"reason": reason} if reason else None
        return Sandbox(self._client, self._t.json(
            "POST", "/v1/sandboxes/%s:reject" % seg(sandbox_id), body=body))

    def changes(self):
        """Opens the change feed (GET /v1/events/sandboxes) and returns it as a
        SandboxChanges: iterate over it for each Change, from now on. Raises NotFound from a
        daemon without the feed.

            with client.sandboxes.changes() as feed:
                sbx.refresh()                  # the state now; the feed has what follows
                for c in feed:
                    print(c.type, c.sandbox_id, c.process_id, c.state)
        """
        return SandboxChanges(self._t.websocket("/v1/events/sandboxes"))

    def snapshots(self):
        return self._t.json("GET", "/v1/snapshots")

    def delete_snapshot(self, name):
        return self._t.json("DELETE", "/v1/snapshots/" + seg(name))


class Sandbox(_Resource):
    """A long-lived sandbox: processes, files and terminals. Usable as a context manager that
    deletes it on exit."""

    def __init__(self, client, data):
        super().__init__(client, data)
        self.files = Files(self)

    @property
    def _path(self):
        return "/v1/sandboxes/" + seg(self.id)

    @property
    def reason(self):
        return self.data.get("reason")

    def refresh(self):
        self.data = self._client._t.json("GET", self._path)
        return self

    def wait_running(self, timeout=None):
        """Waits until the sandbox left PENDING, STARTING and AWAITING_REVIEW (a reviewer
        decided), on the change feed; returns it once RUNNING, else raises FailedPrecondition.
        Polls a daemon without the feed."""
        waiting = ("PENDING", "STARTING", "AWAITING_REVIEW")
        _await_change(
            self._client, self.refresh, lambda: self.state in waiting,
            lambda c: (c.type == "sandbox.state" and c.sandbox_id == self.id
                       and c.state not in waiting),
            _deadline(timeout), "sandbox %s running" % self.id)
        if self.state != "RUNNING":
            raise errors.FailedPrecondition(
                "sandbox %s is %s (%s)" % (self.id, self.state, self.reason))
        return self

    def delete(self):
        self.data = self._client._t.json("DELETE", self._path, idempotent=True)
        return self

    def _act(self, action, body=None):
        self.data = self._client._t.json("POST", "%s:%s" % (self._path, action), body=body)
        return self

    def approve(self):
        return self._act("approve")

    def reject(self, reason=None):
        return self._act("reject", {"reason": reason} if reason else None)

    def pause(self):
        return self._act("pause")

    def resume(self):
        return self._act("resume")

    def touch(self):
        return self._act("touch")

    def snapshot(self, name):
        return self._client._t.json("POST", self._path + ":snapshot", body={"name": name})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.delete()
        except errors.SandboxdError:
            if exc[0] is None:
                raise

    # -- processes ---------------------------------------------------------------------------

    def _process_body(self, argv, env, cwd, stdin, stdin_open, tag, timeout_s, pty):
        if isinstance(argv, str):
            raise TypeError("argv is a list of strings, e.g. ['sh', '-c', 'echo hi']")
        body = {"argv": list(argv), "env": env, "cwd": cwd, "tag": tag, "timeout_s": timeout_s}
        if stdin is not None:
            if isinstance(stdin, str):
                body["stdin"] = stdin
            else:
                body["stdin_b64"] = base64.b64encode(bytes(stdin)).decode("ascii")
        if stdin_open:
            body["stdin_open"] = True
        if pty:
            body["pty"] = pty if isinstance(pty, dict) else {"cols": 80, "rows": 24}
        return {k: v for k, v in body.items() if v is not None}

    def start(self, argv, *, env=None, cwd=None, stdin=None, stdin_open=False, tag=None,
              timeout_s=None, pty=None):
        """Starts a process and returns it at once (RUNNING, or AWAITING_REVIEW when the
        command policy wants a reviewer). Raises PermissionDenied when the policy denies it."""
        body = self._process_body(argv, env, cwd, stdin, stdin_open, tag, timeout_s, pty)
        return Process(self, self._client._t.json("POST", self._path + "/processes", body=body))

    def run(self, argv, *, env=None, cwd=None, stdin=None, tag=None, timeout_s=None,
            timeout=None):
        """Runs a process to its end and returns it with ``stdout``/``stderr`` (bytes, up to
        1 MiB each). One that waits for review comes back at once, AWAITING_REVIEW: approve
        it, then ``wait()``."""
        body = self._process_body(argv, env, cwd, stdin, False, tag, timeout_s, None)
        data = self._client._t.json("POST", self._path + "/processes", {"wait": True},
                                    body=body, timeout=timeout or 0)
        werr = data.pop("wait_error", None)
        if werr:
            cls = errors.error_class(werr.get("code"))
            raise cls(werr.get("message", ""), code=werr.get("code"))
        return Process(self, data)

    def process(self, pid):
        """A process by id or tag (GET): reattach to one started earlier."""
        return Process(self, self._client._t.json(
            "GET", "%s/processes/%s" % (self._path, seg(pid))))

    def processes(self, *, tag=None, state=None):
        data = self._client._t.json("GET", self._path + "/processes",
                                    {"tag": tag, "state": state})
        return [Process(self, p) for p in data["processes"]]

    def terminal(self, argv=("sh",), *, cols=80, rows=24, env=None, cwd=None, tag=None,
                 timeout_s=None):
        """Starts ``argv`` on a terminal and connects to it."""
        p = self.start(argv, env=env, cwd=cwd, tag=tag, timeout_s=timeout_s,
                       pty={"cols": cols, "rows": rows})
        if p.state == "AWAITING_REVIEW":
            raise errors.FailedPrecondition(
                "process %s waits for review; approve it, then process.terminal()" % p.id)
        return p.terminal()


class Process(_Resource):
    """A process in a sandbox. ``stdout``/``stderr`` are set (bytes) on what ``run`` returns."""

    def __init__(self, sandbox, data):
        super().__init__(sandbox._client, data)
        self.sandbox = sandbox

    @property
    def _path(self):
        return "%s/processes/%s" % (self.sandbox._path, seg(self.id))

    def __repr__(self):
        return "Process(id=%r, sandbox_id=%r, state=%r)" % (
            self.data.get("id"), self.data.get("sandbox_id"), self.data.get("state"))

    def __eq__(self, other):
        return (type(self) is type(other) and self.id == other.id
                and self.sandbox.id == other.sandbox.id)

    def __hash__(self):
        return hash(("Process", self.sandbox.id, self.id))

    @property
    def result(self):
        return self.data.get("result")

    @property
    def exit_code(self):
        return (self.data.get("result") or {}).get("exit_code")

    @property
    def done(self):
        return self.state in PROCESS_TERMINAL

    def _output(self, name):
        if name in self.data:
            return self.data[name].encode("utf-8")
        if name + "_b64" in self.data:
            return base64.b64decode(self.data[name + "_b64"])
        return None

    @property
    def stdout(self):
        return self._output("stdout")

    @property
    def stderr(self):
        return self._output("stderr")

    def refresh(self):
        keep = {k: v for k, v in self.data.items()
                if k.startswith(("stdout", "stderr")) and not k.endswith("_bytes")}
        self.data = self._client._t.json("GET", self._path)
        self.data.update(keep)
        return self

    def _act(self, action, body=None):
        self.data = self._client._t.json("POST", "%s:%s" % (self._path, action), body=body)
        return self

    def signal(self, sig):
        """Sends a signal ("SIGTERM", "INT", or a number) to the process's group."""
        return self._act("signal", {"signal": sig})

    def kill(self):
        return self._act("kill")

    def approve(self):
        return self._act("approve")

    def reject(self, reason=None):
        return self._act("reject", {"reason": reason} if reason else None)

    def write_stdin(self, data, close=False):
        return self._client._t.json("POST", self._path + ":stdin",
                                    {"close": True} if close else None, body=data or b"")

    def resize(self, cols, rows):
        return self._client._t.json("POST", self._path + ":resize",
                                    body={"cols": cols, "rows": rows})

    def logs(self, stream="stdout", offset=0):
        """The stored bytes of one stream from byte ``offset`` (also after the end)."""
        return self._client._t.request("GET", self._path + "/logs",
                                       {"stream": stream, "offset": offset or None}).body

    def events(self, after=0):
        """The process's events with seq > ``after``, then live, ending after
        process.finished. Reattach with ``after=`` the last seq you saw."""
        skip = 0
        if after and self.refresh().done:
            # The daemon keeps a stream of a finished process open when ``after`` is at or past
            # its last event (nothing more will come): replay it all and skip here instead.
            after, skip = 0, after
        ws = self._client._t.websocket(self._path + "/events",
                                       {"after": after, "format": "binary"})
        return ProcessEvents(ws, skip or after, skip)

    def stream(self, after=0, timeout=None):
        """Yields (stream, bytes) for each piece of output from seq ``after`` on, until the
        process finished; then the process is refreshed (its ``result`` set)."""
        deadline = _deadline(timeout)
        with self.events(after) as s:
            while True:
                e = s.next(_left(deadline, "the end of process %s" % self.id))
                if e is None:
                    break
                if e.type == "process.log":
                    yield e.stream, e.data
                elif e.type == "process.finished":
                    break
        self.refresh()

    def _await_review(self, deadline):
        """While it awaits review: waits on the change feed for the reviewer's decision."""
        sid = self.sandbox.id

        def moved(c):
            if c.sandbox_id != sid:
                return False
            if c.type == "sandbox.state":
                return c.state in SANDBOX_TERMINAL
            return c.process_id == self.id and c.state != "AWAITING_REVIEW"

        _await_change(self._client, self.refresh, lambda: self.state == "AWAITING_REVIEW",
                      moved, deadline, "review of process %s" % self.id)

    def wait(self, timeout=None):
        """Blocks until the process ended and returns it refreshed: one awaiting review waits
        on the change feed for the reviewer's decision, a running one follows its events."""
        deadline = _deadline(timeout)
        after = 0
        while True:
            if self.state == "AWAITING_REVIEW":
                self._await_review(deadline)
            else:
                self.refresh()
            if self.done:
                return self
            if self.state == "AWAITING_REVIEW":
                continue
            with self.events(after) as s:
                while True:
                    e = s.next(_left(deadline, "the end of process %s" % self.id))
                    if e is None or e.type == "process.finished":
                        break
                after = s.last_seq

    def terminal(self):
        """Connects to the process's terminal (it must have been started with a pty)."""
        ws = self._client._t.websocket(self._path + "/pty")
        return Terminal(self, ws)


class Terminal(Closing):
    """A process's terminal over a WebSocket: ``write`` input, ``read`` output, ``resize``.
    The first read returns up to the last 64 KiB of earlier output."""

    def __init__(self, process, ws):
        self.process = process
        self._ws = ws
        self._buf = b""

    def __repr__(self):
        return "<Terminal process=%r %s>" % (self.process.id,
                                             "closed" if self._ws.closed else "open")

    def write(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self._ws.send(bytes(data))

    def resize(self, cols, rows):
        self._ws.send(json.dumps({"type": "resize", "cols": cols, "rows": rows}))

    def read(self, timeout=None):
        """The next output bytes; b"" once the terminal closed. Raises Timeout."""
        if self._buf:
            out, self._buf = self._buf, b""
            return out
        while True:
            msg = self._ws.recv(timeout)
            if msg is None:
                return b""
            if isinstance(msg, bytes):
                return msg
            # A text message is the daemon's note ({"type": "error", ...}): surface it.
            try:
                note = json.loads(msg)
            except ValueError:
                return msg.encode("utf-8")
            raise errors.InvalidArgument(str(note.get("message", msg)))

    def read_until(self, marker, timeout=10.0):
        """Reads until ``marker`` (bytes or str) appeared; returns everything up to and
        including it (the rest stays buffered). Raises Timeout, or ConnectionFailed if the
        terminal closed first."""
        if isinstance(marker, str):
            marker = marker.encode("utf-8")
        deadline = _deadline(timeout)
        got = b""
        while True:
            i = got.find(marker)
            if i >= 0:
                end = i + len(marker)
                self._buf = got[end:] + self._buf
                return got[:end]
            what = "%r on the terminal (got %r)" % (marker, got[-200:])
            try:
                chunk = self.read(_left(deadline, what))
            except errors.Timeout:
                raise errors.Timeout("%s did not happen in time" % what) from None
            if not chunk:
                raise errors.ConnectionFailed("the terminal closed before %r (got %r)"
                                              % (marker, got[-200:]))
            got += chunk

    def close(self):
        self._ws.close()

    @property
    def closed(self):
        return self._ws.closed


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

class Files:
    """The files of a sandbox; paths are the sandbox's own ("/workspace/a.txt")."""

    def __init__(self, sandbox):
        self._sbx = sandbox

    @property
    def _t(self):
        return self._sbx._client._t

    def _p(self, suffix=""):
        return self._sbx._path + "/files" + suffix

    def read(self, path, *, offset=None, length=None):
        """A file's bytes (a byte range with ``offset``/``length``)."""
        headers = None
        if offset is not None or length is not None:
            first = offset or 0
            last = "" if length is None else str(first + length - 1)
            headers = {"Range": "bytes=%d-%s" % (first, last)}
        r = self._t.request("GET", self._p(), {"path": path}, headers=headers)
        if r.content_type == "application/json":
            raise errors.FailedPrecondition("%s is a directory; use files.list()" % path,
                                            code="failed_precondition")
        return r.body

    def read_text(self, path, encoding="utf-8"):
        return self.read(path).decode(encoding)

    def write(self, path, data, *, mode=None, parents=True):
        """Replaces the file atomically with ``data`` (bytes or str)."""
        if isinstance(mode, int):
            mode = "%04o" % mode
        return self._t.json("PUT", self._p(), {"path": path, "mode": mode,
                                               "parents": parents or None}, body=data)

    def list(self, path):
        """A directory's entries: [{"name", "type", "size", "mode", "mtime"}]."""
        r = self._t.request("GET", self._p(), {"path": path})
        if r.content_type != "application/json":
            raise errors.FailedPrecondition("%s is not a directory" % path)
        return r.json()["entries"]

    def stat(self, path):
        return self._t.json("GET", self._p(":stat"), {"path": path})

    def exists(self, path):
        try:
            self.stat(path)
            return True
        except errors.NotFound:
            return False

    def mkdir(self, path, *, mode=None):
        if isinstance(mode, int):
            mode = "%04o" % mode
        return self._t.json("POST", self._p(":mkdir"), {"path": path, "mode": mode})

    def remove(self, path, *, recursive=False):
        return self._t.json("DELETE", self._p(), {"path": path, "recursive": recursive or None})

    def move(self, src, dst, *, replace=False):
        body = {"from": src, "to": dst}
        if replace:
            body["replace"] = True
        return self._t.json("POST", self._p(":move"), body=body)

    def upload(self, local, path, *, parents=True):
        """Copies ``local`` into the sandbox directory ``path`` as a tar stream: a local file or
        directory (by its name), or a tar archive given as bytes or a binary file object."""
        if isinstance(local, (bytes, bytearray)):
            data = bytes(local)
        elif hasattr(local, "read"):
            data = local.read()
        else:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
                local = os.fspath(local)
                if os.path.isdir(local):
                    for name in sorted(os.listdir(local)):
                        tar.add(os.path.join(local, name), arcname=name)
                else:
                    tar.add(local, arcname=os.path.basename(local))
            data = buf.getvalue()
        return self._t.json("PUT", self._p(":tar"), {"path": path, "parents": parents or None},
                            body=data, headers={"Content-Type": "application/x-tar"})

    def download_tar(self, path, fileobj=None):
        """The directory ``path`` as a tar stream: written to ``fileobj``, else returned."""
        r = self._t.request("GET", self._p(":tar"), {"path": path}, stream=True)
        if fileobj is None:
            return r.read()
        return r.readinto_file(fileobj)

    def download(self, path, local_dir):
        """Extracts the sandbox directory ``path`` into ``local_dir``; returns the names.
        Entries that would land outside ``local_dir``, links, and devices are skipped."""
        data = self.download_tar(path)
        root = os.path.realpath(local_dir)
        os.makedirs(root, exist_ok=True)
        names = []
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for m in tar.getmembers():
                target = os.path.realpath(os.path.join(root, m.name))
                if os.path.isabs(m.name) or (target != root and
                                             not target.startswith(root + os.sep)):
                    continue
                if not (m.isfile() or m.isdir()):
                    continue
                m.mode &= 0o777
                m.uid = m.gid = os.getuid()
                m.uname = m.gname = ""
                if hasattr(tarfile, "data_filter"):
                    tar.extract(m, root, set_attrs=m.isfile(), filter="data")
                else:
                    tar.extract(m, root, set_attrs=m.isfile())
                names.append(m.name)
        return names

    def watch(self, path):
        """A stream of changes under ``path``: {"type": created|modified|deleted|moved, "path"}."""
        ws = self._t.websocket(self._p(":watch"), {"path": path})
        return EventStream(ws)
