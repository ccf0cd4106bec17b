"""Files: write, read, list, stat, move, remove, upload and download (tar), watch, hostile paths."""
import io
import os
import tarfile
import tempfile
import unittest

from _support import sandboxd, SandboxTestCase


class FilesTest(SandboxTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.files = cls.sbx.files

    def test_write_read_list_stat(self):
        f = self.files
        self.assertEqual(f.write("/tmp/w/a.txt", "hello\n"), {"path": "/tmp/w/a.txt", "size": 6})
        blob = os.urandom(3000) + b"\x00\xff"
        f.write("/tmp/w/b.bin", blob, mode=0o600)
        self.assertEqual(f.read_text("/tmp/w/a.txt"), "hello\n")
        self.assertEqual(f.read("/tmp/w/b.bin"), blob)
        self.assertEqual(f.read("/tmp/w/b.bin", offset=10, length=5), blob[10:15])
        self.assertEqual(f.read("/tmp/w/b.bin", offset=2990), blob[2990:])
        with self.assertRaises(sandboxd.RangeNotSatisfiable):
            f.read("/tmp/w/b.bin", offset=10 ** 6)
        entries = {e["name"]: e for e in f.list("/tmp/w")}
        self.assertEqual(set(entries), {"a.txt", "b.bin"})
        self.assertEqual(entries["b.bin"]["size"], len(blob))
        self.assertEqual(entries["b.bin"]["mode"], "0600")
        st = f.stat("/tmp/w/a.txt")
        self.assertEqual((st["type"], st["size"]), ("file", 6))
        with self.assertRaises(sandboxd.FailedPrecondition):
            f.read("/tmp/w")  # a directory
        with self.assertRaises(sandboxd.FailedPrecondition):
            f.list("/tmp/w/a.txt")  # a file
        # What the API wrote, a process in the sandbox sees.
        self.assertEqual(self.sbx.run(["cat", "/tmp/w/a.txt"]).stdout, b"hello\n")
        # Replacing is atomic and whole.
        f.write("/tmp/w/a.txt", b"x")
        self.assertEqual(f.read("/tmp/w/a.txt"), b"x")

    def test_mkdir_move_remove(self):
        f = self.files
        f.mkdir("/tmp/m/deep/er")
        f.write("/tmp/m/deep/er/f", "1")
        f.move("/tmp/m/deep/er/f", "/tmp/m/g")
        self.assertFalse(f.exists("/tmp/m/deep/er/f"))
        self.assertEqual(f.read("/tmp/m/g"), b"1")
        f.write("/tmp/m/h", "2")
        with self.assertRaises(sandboxd.SandboxdError):
            f.move("/tmp/m/g", "/tmp/m/h")  # no replace unless asked
        f.move("/tmp/m/g", "/tmp/m/h", replace=True)
        self.assertEqual(f.read("/tmp/m/h"), b"1")
        with self.assertRaises(sandboxd.SandboxdError):
            f.remove("/tmp/m")  # not empty
        f.remove("/tmp/m", recursive=True)
        with self.assertRaises(sandboxd.NotFound):
            f.stat("/tmp/m")

    def test_upload_download(self):
        with tempfile.TemporaryDirectory() as src, tempfile.TemporaryDirectory() as dst:
            os.makedirs(os.path.join(src, "sub"))
            with open(os.path.join(src, "top.txt"), "w") as fh:
                fh.write("top")
            with open(os.path.join(src, "sub", "inner.bin"), "wb") as fh:
                fh.write(b"\x00\x01" * 1000)
            stats = self.files.upload(src, "/tmp/up")
            self.assertEqual(stats["skipped"], [])
            self.assertEqual(self.files.read("/tmp/up/sub/inner.bin"), b"\x00\x01" * 1000)
            self.assertEqual(self.sbx.run(["ls", "/tmp/up"]).stdout.split(), [b"sub", b"top.txt"])
            # A single file, and a tar archive given as bytes.
            self.files.upload(os.path.join(src, "top.txt"), "/tmp/up/single")
            self.assertEqual(self.files.read("/tmp/up/single/top.txt"), b"top")
            names = self.files.download("/tmp/up", dst)
            self.assertIn("sub/inner.bin", [n.lstrip("./") for n in names])
            with open(os.path.join(dst, "sub", "inner.bin"), "rb") as fh:
                self.assertEqual(fh.read(), b"\x00\x01" * 1000)
            with open(os.path.join(dst, "single", "top.txt")) as fh:
                self.assertEqual(fh.read(), "top")
        raw = self.files.download_tar("/tmp/up/sub")
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            self.assertIn("inner.bin", [m.name.lstrip("./") for m in tar.getmembers()])

    def test_hostile_paths(self):
        f = self.files
        with self.assertRaises(sandboxd.InvalidArgument) as cm:
            f.read("../../etc/passwd")
        self.assertEqual(cm.exception.status, 400)
        for bad in ("/tmp/../../etc/passwd", "/../../../etc/shadow"):
            with self.assertRaises(sandboxd.InvalidArgument):
                f.read(bad)
        with self.assertRaises(sandboxd.InvalidArgument):
            f.write("../../tmp/escaped", "x")
        # A symlink made inside the sandbox resolves inside its root, never on the host.
        self.sbx.run(["sh", "-c", "ln -sf /../../../etc/shadow /tmp/link"])
        with open("/etc/hostname", "rb") as fh:
            host = fh.read()
        self.sbx.run(["sh", "-c", "ln -sf ../../../../etc/hostname /tmp/hn"])
        try:
            self.assertNotEqual(f.read("/tmp/hn"), host)
        except sandboxd.SandboxdError as e:
            self.assertIn(e.status, (400, 403, 404))
        try:
            got = f.read("/tmp/link")
            self.assertNotIn(b"root:", got)
        except sandboxd.SandboxdError as e:
            self.assertIn(e.status, (400, 403, 404))
        # A tar stream with a "../" entry changes nothing.
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("../../evil")
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
        with self.assertRaises(sandboxd.SandboxdError) as cm:
            f.upload(buf.getvalue(), "/tmp/tarin")
        self.assertIn(cm.exception.status, (400, 403))
        self.assertFalse(f.exists("/evil"))

    def test_watch(self):
        self.files.mkdir("/tmp/watched")
        with self.files.watch("/tmp/watched") as w:
            self.files.write("/tmp/watched/new.txt", "x")
            seen = []
            while not any(e.get("path", "").endswith("new.txt") for e in seen):
                e = w.next(timeout=20)
                self.assertIsNotNone(e, "the watch ended early: %r" % seen)
                seen.append(e)
            self.assertTrue({e.type for e in seen} & {"created", "moved", "modified"})
            self.files.remove("/tmp/watched/new.txt")
            while True:
                e = w.next(timeout=20)
                self.assertIsNotNone(e)
                if e.type == "deleted":
                    break


if __name__ == "__main__":
    unittest.main()
