"""The terminal: a shell on a pty over a WebSocket, input, output, resize, reattach."""
import unittest

from _support import sandboxd, SandboxTestCase


class TerminalTest(SandboxTestCase):
    def test_shell(self):
        with self.sbx.terminal(["sh"], cols=80, rows=24) as term:
            self.assertEqual(term.process.data["pty"], {"cols": 80, "rows": 24})
            # The shell computes the marker, so the echo of the input cannot match it.
            term.write("stty size; echo M$((40+2))\n")
            out = term.read_until("M42", timeout=20)
            self.assertIn(b"24 80", out)
            term.resize(120, 40)
            term.write("stty size; echo M$((50+1))\n")
            self.assertIn(b"40 120", term.read_until("M51", timeout=20))
            # Resizing over HTTP works as well.
            term.process.resize(100, 30)
            term.write("stty size; echo M$((60+3))\n")
            self.assertIn(b"30 100", term.read_until("M63", timeout=20))
            # A second connection gets the scrollback, then the same live output.
            with term.process.terminal() as again:
                self.assertIn(b"M42", again.read_until("M63", timeout=20))
                term.write("echo M$((70+7))\n")
                again.read_until("M77", timeout=20)
            term.write("exit 5\n")
            rest = b""
            while True:
                chunk = term.read(timeout=20)
                if not chunk:
                    break
                rest += chunk
        p = term.process.wait(timeout=20)
        self.assertEqual(p.exit_code, 5)

    def test_no_terminal(self):
        p = self.sbx.start(["sleep", "30"])
        try:
            with self.assertRaises(sandboxd.FailedPrecondition) as cm:
                p.terminal()
            self.assertIn("no terminal", cm.exception.message)
        finally:
            p.kill()

    def test_control_c(self):
        with self.sbx.terminal(["sh"]) as term:
            # The job prints R2 itself, so it is the terminal's foreground job by then.
            term.write("sh -c 'echo R$((1+1)); exec sleep 60'; echo after$((1+1))\n")
            term.read_until("R2", timeout=20)
            term.write(b"\x03")  # ^C on the terminal interrupts sleep, not the shell
            term.write("echo alive$((2+2))\n")
            self.assertNotIn(b"after2", term.read_until("alive4", timeout=20))
            self.assertEqual(term.process.refresh().state, "RUNNING")
            term.write("exit\n")


if __name__ == "__main__":
    unittest.main()
