"""Processes: run, start, stream, reattach, stdin, signal, review."""
import unittest

from _support import reviewer, sandboxd, SandboxTestCase


def _first_log(stream):
    while True:
        e = stream.next(timeout=20)
        if e is None:
            raise AssertionError("the stream ended before any output")
        if e.type == "process.log":
            return e.data


class ProcessesTest(SandboxTestCase):
    sandbox_options = {"labels": {"suite": "processes"}}

    def test_run_to_the_end(self):
        p = self.sbx.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        self.assertEqual(p.state, "FINISHED")
        self.assertEqual((p.stdout, p.stderr, p.exit_code), (b"out\n", b"err\n", 3))
        self.assertEqual(p.result["reason"], "exited")
        # Binary output and stdin come through unchanged.
        blob = bytes(range(256))
        p = self.sbx.run(["cat"], stdin=blob)
        self.assertEqual(p.stdout, blob)
        p = self.sbx.run(["wc", "-c"], stdin="12345")
        self.assertEqual(p.stdout.strip(), b"5")

    def test_stream_a_running_process(self):
        p = self.sbx.start(["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.05; done; "
                            "echo bye >&2"], tag="streamer")
        self.assertEqual(p.state, "RUNNING")
        got = {"stdout": b"", "stderr": b""}
        for stream, data in p.stream(timeout=20):
            got[stream] += data
        self.assertEqual(got, {"stdout": b"line1\nline2\nline3\n", "stderr": b"bye\n"})
        self.assertEqual(p.state, "FINISHED")
        self.assertEqual(p.exit_code, 0)
        # By tag, and its stored logs from an offset.
        again = self.sbx.process("streamer")
        self.assertEqual(again.id, p.id)
        self.assertEqual(again.logs(), b"line1\nline2\nline3\n")
        self.assertEqual(again.logs(offset=6), b"line2\nline3\n")
        self.assertEqual(again.logs("stderr"), b"bye\n")
        self.assertIn(p.id, [x.id for x in self.sbx.processes(tag="streamer")])

    def test_reattach_with_after(self):
        # The process waits on stdin between its two lines: the first connection sees line one
        # live, goes away, and a second one (after=its last seq) sees only what followed.
        p = self.sbx.start(["sh", "-c", "echo one; read x; echo two $x"], stdin_open=True)
        with p.events() as s:
            seen = []
            while True:
                e = s.next(timeout=20)
                self.assertIsNotNone(e, "the stream ended early")
                seen.append(e)
                if e.type == "process.log":
                    break
            self.assertEqual(seen[0].type, "process.started")
            self.assertEqual(seen[-1].data, b"one\n")
            last = s.last_seq
        again = self.sbx.process(p.id)
        again.write_stdin(b"more\n", close=True)
        with again.events(after=last) as s:
            rest = list(s)
        self.assertTrue(all(e.seq > last for e in rest))
        self.assertEqual(b"".join(e.data for e in rest if e.type == "process.log"), b"two more\n")
        self.assertEqual(rest[-1].type, "process.finished")
        self.assertEqual(rest[-1]["result"]["exit_code"], 0)
        # The whole history replays from the start, and reattaching past the end is empty.
        with again.events(after=0) as s:
            self.assertEqual([e.seq for e in s], list(range(1, rest[-1].seq + 1)))
        with again.events(after=rest[-1].seq) as s:
            self.assertEqual(list(s), [])

    def test_stdin_over_the_stream(self):
        p = self.sbx.start(["cat"], stdin_open=True)
        with p.events() as s:
            s.write_stdin("ping\n")
            out = b""
            while b"ping\n" not in out:
                e = s.next(timeout=20)
                self.assertIsNotNone(e)
                if e.type == "process.log":
                    out += e.data
            s.write_stdin(b"", close=True)
            types = [e.type for e in s]
        self.assertEqual(types[-1], "process.finished")
        self.assertEqual(p.wait(timeout=20).exit_code, 0)

    def test_signal_a_sleeping_process(self):
        # "ready" comes from the program itself, so its process group exists when the signal
        # is sent (a signal in the first instants after the start can be answered 409).
        p = self.sbx.start(["sh", "-c", "echo ready; exec sleep 60"])
        with p.events() as s:
            self.assertEqual(_first_log(s), b"ready\n")
            p.signal("SIGTERM")
            last = list(s)[-1]
        self.assertEqual(last.type, "process.finished")
        self.assertEqual(last["result"]["reason"], "signaled")
        p.refresh()
        self.assertEqual(p.result["signal"], 15)
        # A number works too, for the whole group.
        q = self.sbx.start(["sh", "-c", "sleep 60 & echo ready; sleep 60; wait"])
        with q.events() as s:
            self.assertEqual(_first_log(s), b"ready\n")
            q.signal(9)
            self.assertEqual(list(s)[-1]["result"]["reason"], "signaled")
        # kill ends the whole tree (its cgroup).
        r = self.sbx.start(["sleep", "60"])
        r.kill()
        self.assertIn(r.wait(timeout=20).result["reason"], ("killed", "signaled"))
        # Signalling a finished process is refused with a typed error.
        with self.assertRaises(sandboxd.FailedPrecondition) as cm:
            p.signal("SIGINT")
        self.assertEqual(cm.exception.status, 409)

    def test_review_then_finish(self):
        # "needs-review *" waits for a reviewer; the program is a script in /tmp found on PATH.
        self.sbx.files.write("/tmp/bin/needs-review", "#!/bin/sh\necho reviewed \"$@\"\n",
                             mode=0o755)
        p = self.sbx.run(["needs-review", "ok"], env={"PATH": "/tmp/bin:/usr/bin:/bin"})
        self.assertEqual(p.state, "AWAITING_REVIEW")
        with self.assertRaises(sandboxd.PermissionDenied):
            p.approve()  # alice is a submitter
        with reviewer() as rev:
            approved = rev.sandboxes.get(self.sbx.id).process(p.id).approve()
            self.assertNotEqual(approved.state, "AWAITING_REVIEW")
        p.wait(timeout=20)
        self.assertEqual(p.state, "FINISHED")
        self.assertEqual(p.exit_code, 0)
        self.assertEqual(p.logs(), b"reviewed ok\n")
        # A rejected one ends without running.
        q = self.sbx.start(["needs-review", "no"])
        with reviewer() as rev:
            sandboxd.Process(rev.sandboxes.get(self.sbx.id), q.data).reject("no thanks")
        self.assertEqual(q.wait(timeout=20).state, "REJECTED")


if __name__ == "__main__":
    unittest.main()
