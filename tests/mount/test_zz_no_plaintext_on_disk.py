"""Runs last: after the mount tests (editors with swap, backup, lock and temp
files; invalid saves; crashes), the marker that every test document carries is
nowhere on disk: not in the test directories, /tmp, /var/tmp or $HOME. Only
files changed during the run (ctime newer than the stamp) are searched."""
import os
import subprocess

from mountlib import MARKER, SCRATCH, STAMP
from sfs_common import ROOT


def files_with_marker():
    dirs = [str(ROOT / "build"), "/tmp", "/var/tmp", os.path.expanduser("~")]
    find = subprocess.run(["find", *dirs, "-xdev", "-type", "f", "-cnewer", str(STAMP), "-print0"],
                          capture_output=True)
    hits = []
    for f in sorted({f for f in find.stdout.split(b"\0") if f}):  # the directories may overlap
        try:
            with open(f, "rb") as fh:
                if MARKER.encode() in fh.read():
                    hits.append(f.decode(errors="replace"))
        except OSError:
            pass
    return hits


def test_the_marker_is_nowhere_on_disk():
    # Control: a file with the marker written now is found, so the search works.
    control = SCRATCH / "control-with-marker"
    control.write_text(f"control {MARKER}\n")
    try:
        assert files_with_marker() == [str(control)]
    finally:
        control.unlink()
    assert files_with_marker() == []
