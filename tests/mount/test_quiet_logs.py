"""What a mount logs or prints at the default level never tells what the file
hides: no partition label, no document size, no row count, not which partition
committed. -v on a foreground mount may (the positive control)."""
import re
import subprocess

from mountlib import MOUNT_HELPER, Mount, doc, mounted_at, wait_until
from sfs_common import Storage


REFUSED = r"a commit at \w+ was refused: invalid JSON"


def busy_mount(m, n):
    """Commits to both partitions and a refused save."""
    m.path("secret.json").write_bytes(doc("one", n))
    m.path("hidden.json").write_bytes(doc("two", n + 21))
    try:
        m.path("hidden.json").write_bytes(b"{not json")
    except OSError:
        pass
    return {len(doc("one", n)), len(doc("two", n + 21))}


def leaks(text, sizes):
    found = [w for w in ("secret", "hidden") if w in text]
    found += [f"size {s}" for s in sizes if re.search(rf"\b{s}\b", text)]
    found += [w for w in (" bytes", " rows") if w in text]
    return found


def test_the_default_log_names_no_partition_and_no_size(workdir):
    storage = Storage(workdir, labels=("secret", "hidden"))
    m = Mount(storage, labels=("secret", "hidden"), allow=[REFUSED])
    try:
        sizes = busy_mount(m, 1)
        log = m.unmount()
    finally:
        m.cleanup()
    assert "committed at" in log and "refused" in log  # it does log the events
    assert leaks(log, sizes) == []
    # The positive control: with -v the same mount names them.
    verbose = Mount(storage, labels=("secret", "hidden"), extra_args=("-v",), allow=[REFUSED])
    try:
        busy_mount(verbose, 2)
        log = verbose.unmount()
    finally:
        verbose.cleanup()
    assert "secret" in log and "hidden" in log


def test_a_background_mount_prints_nothing_that_tells(workdir):
    storage = Storage(workdir, labels=("secret", "hidden"))
    mnt = workdir / "bg"
    mnt.mkdir()
    opts = ",".join(f"keyfile={storage.key(l)},passfile={storage.pw[l]}" for l in ("secret", "hidden"))
    r = subprocess.run([str(MOUNT_HELPER), str(storage.path), str(mnt), "-o", opts], capture_output=True, timeout=60)
    try:
        assert r.returncode == 0, r.stderr
        wait_until(lambda: mounted_at(mnt), what="the background mount")
        (mnt / "secret.json").write_bytes(doc("bg", 3))
        (mnt / "hidden.json").write_bytes(doc("bg2", 4))
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
    printed = (r.stdout + r.stderr).decode()
    assert leaks(printed, {len(doc("bg", 3)), len(doc("bg2", 4))}) == []
