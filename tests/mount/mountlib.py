"""Helpers for black-box tests against real shamirfs mounts.

Mounts live under build/mount-scratch (outside /tmp: editors skip backups
there). Every document contains MARKER, a string made at run time (so it is
in no source file); the last test checks that it is nowhere on disk."""
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from sfs_common import ROOT, SHAMIRFS, wait_until  # noqa: F401 (re-exported)

BUILD = SHAMIRFS.parent
MOUNT_HELPER = BUILD / "mount.shamirfs"


def traversable_by_others(path):
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents] if p.exists())


# In the build directory (not /tmp: editors skip backups there), unless another
# user could not reach it (a clone under a 0700 home): the tests with an
# ordinary user need to, so /var/tmp then (searched by the plaintext test too).
SCRATCH = ROOT / "build" / "mount-scratch"
if not traversable_by_others(ROOT / "build"):
    SCRATCH = Path("/var/tmp") / f"shamirfs-mount-scratch-{os.getuid()}"
MARKER = "SFSMARK" + secrets.token_hex(6)
# Only files changed (ctime) after this stamp can hold the marker.
SCRATCH.mkdir(parents=True, exist_ok=True)
STAMP = SCRATCH / f".stamp-{os.getpid()}"
STAMP.touch()


def require_fuse():
    if not os.path.exists("/dev/fuse"):
        pytest.fail("/dev/fuse is missing: the mount tests need FUSE")
    if shutil.which("fusermount3") is None:
        pytest.fail("fusermount3 is missing (Debian package fuse3)")


def mounted_at(path):
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[1] == str(path):
                return fields
    return None




def unexpected_log_lines(log, allow):
    """The daemon's warnings and errors that match none of the `allow` patterns
    (as libfuse's own tests do: a test fails on a complaint it did not expect)."""
    return [line for line in log.splitlines()
            if (": WARN: " in line or ": ERROR: " in line) and not any(re.search(p, line) for p in allow)]


class Mount:
    """mount.shamirfs run in the foreground (-f) on a fresh mount point.
    `allow`: patterns of the warnings and errors the test expects in its log;
    any other makes unmount() and cleanup() fail."""

    def __init__(self, storage, labels=("a", "b"), options=(), env=None, prefix=(), mnt=None, extra_args=(),
                 allow=()):
        self.allow = list(allow)
        require_fuse()
        self.storage = storage
        self.mnt = Path(mnt) if mnt else Path(tempfile.mkdtemp(prefix="mnt-", dir=storage.dir))
        self.log = storage.dir / f"{self.mnt.name}.log"
        opts = []
        for label in labels:
            opts += [f"keyfile={storage.key(label)}", f"passfile={storage.pw[label]}"]
        opts += list(options)
        argv = [*prefix, str(MOUNT_HELPER), str(storage.path), str(self.mnt), "--foreground", *extra_args, "-o", ",".join(opts)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "w"), env={**os.environ, **(env or {})})
        wait_until(lambda: mounted_at(self.mnt) or self.proc.poll() is not None, what="the mount")
        if not mounted_at(self.mnt):
            raise AssertionError(f"mount failed ({self.proc.returncode}): {self.log.read_text()}")

    def path(self, name):
        return self.mnt / name

    def names(self):
        return sorted(os.listdir(self.mnt))

    def check_log(self, allow=()):
        bad = unexpected_log_lines(self.log.read_text(), self.allow + list(allow))
        assert not bad, f"unexpected warnings or errors from the daemon: {bad}"

    def unmount(self, expect_rc=0, allow=()):
        if mounted_at(self.mnt):
            subprocess.run(["fusermount3", "-u", str(self.mnt)], check=True)
        rc = self.proc.wait(timeout=30)
        assert rc == expect_rc, f"mount.shamirfs exited {rc}: {self.log.read_text()}"
        self.allow += list(allow)
        self.check_log()
        return self.log.read_text()

    def cleanup(self):
        if mounted_at(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], check=False)
        try:
            self.proc.wait(timeout=10)  # its end sets the mount point's mode back
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            release_mount_point(self.mnt)
        self.check_log()


def release_mount_point(path):
    """What a killed daemon leaves for the next mount to undo: the directory
    under the mount immutable (root) and mode 0."""
    subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    os.chmod(path, 0o700)


def doc(text="old", n=1):
    """A small pretty-printed document with the marker."""
    return f'{{\n  "note": "{text} {MARKER}",\n  "n": {n}\n}}\n'.encode()
