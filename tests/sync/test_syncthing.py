"""Several devices through a real Syncthing: device A and device B are two
Syncthing instances on this machine (127.0.0.1 only) sharing one folder that
holds the storage. No commit may be lost for good: conflict copies are merged
back, every version B receives is one of A's commits, and a mount on B shows
A's commits."""
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mount"))
from mountlib import Mount  # noqa: E402
from sfs_common import ROOT, Storage, make_workdir, run, wait_until  # noqa: E402
from syncthing import Syncthing, listing, wait_in_sync  # noqa: E402

FOLDER = "shamirfs-test"


def doc(device, n):
    return ('{"device": "%s", "n": %d}' % (device, n)).encode()


@pytest.fixture
def pair():
    """Two connected Syncthing instances sharing A's and B's folders, the
    storage (partitions a and b) created on A and received by B."""
    work = make_workdir(ROOT / "build" / "sync-scratch")
    devices = []
    try:
        a_dir, b_dir = work / "A" / "Sync", work / "B" / "Sync"
        a_dir.mkdir(parents=True)
        b_dir.mkdir(parents=True)
        a, b = Syncthing(work / "A" / "home", "A"), Syncthing(work / "B" / "home", "B")
        devices += [a, b]
        keys = Storage(work / "A")  # keys and passwords stay outside the synced folder
        shutil.move(str(keys.path), a_dir / "enc.json")
        for me, other, d in ((a, b, a_dir), (b, a, b_dir)):
            me.start()
            me.add_device(other)
            me.add_folder(FOLDER, d, other)
        wait_until(lambda: a.connected(b) and b.connected(a), timeout=60, what="the two devices to connect")
        wait_in_sync(a_dir, b_dir, timeout=60, settle=1)
        yield a, b, a_dir, b_dir, keys
    finally:
        for d in devices:
            d.stop()
        shutil.rmtree(work, ignore_errors=True)


def meet_again(a, b):
    """Paused devices that each committed: each indexes its own commit, then
    they reconnect, so the two versions meet as a conflict however late the
    file watcher reports (under load it took over a minute once)."""
    a.scan(FOLDER)
    b.scan(FOLDER)
    a.resume(b)
    b.resume(a)


def commit(folder, keys, label, text):
    r = run("update", folder / "enc.json", "-", *keys.cred(label), input=text)
    assert r.returncode == 0, r.stderr
    return r


def cat(folder, keys, label, *extra):
    return run("cat", folder / "enc.json", *keys.cred(label), *extra, check=True).stdout


def conflict_copies(folder):
    return sorted(n for n in listing(folder) if ".sync-conflict-" in n and n.endswith(".json"))


def test_no_packet_leaves_the_loopback(pair):
    a, b, *_ = pair
    for d in (a, b):
        cfg = d.rest("GET", "/rest/config")
        o = cfg["options"]
        assert o["listenAddresses"] == [f"tcp://127.0.0.1:{d.listen_port}"]
        assert not o["globalAnnounceEnabled"] and not o["localAnnounceEnabled"]
        assert not o["relaysEnabled"] and not o["natEnabled"] and not o["crashReportingEnabled"]
        assert o["urAccepted"] == -1 and o["autoUpgradeIntervalH"] == 0 and o["stunKeepaliveStartS"] == 0
        assert all(addr.startswith("tcp://127.0.0.1:") for dev in cfg["devices"] for addr in dev["addresses"])


def test_concurrent_commits_to_different_partitions_are_both_kept_after_merge(pair):
    a, b, a_dir, b_dir, keys = pair
    a.pause(b)  # both commit within the sync delay
    b.pause(a)
    commit(a_dir, keys, "a", doc("A", 1))
    commit(b_dir, keys, "b", doc("B", 1))
    meet_again(a, b)
    wait_until(lambda: conflict_copies(a_dir) and conflict_copies(b_dir), timeout=120, what="a conflict copy")
    wait_in_sync(a_dir, b_dir)
    r = run("merge", a_dir / "enc.json", *keys.cred("a"), *keys.cred("b"))
    assert r.returncode == 0, r.stdout + r.stderr
    files = wait_in_sync(a_dir, b_dir)
    assert conflict_copies(a_dir) == [] and conflict_copies(b_dir) == [], sorted(files)
    for d in (a_dir, b_dir):
        assert cat(d, keys, "a") == doc("A", 1) and cat(d, keys, "b") == doc("B", 1)
        assert run("fsck", d / "enc.json").returncode == 0


def test_the_same_partition_on_both_keeps_the_newer_as_document_the_older_as_draft(pair):
    a, b, a_dir, b_dir, keys = pair
    a.pause(b)
    b.pause(a)
    commit(a_dir, keys, "a", doc("A", 2))
    time.sleep(1.1)  # commit times are in seconds: B's is the newer
    commit(b_dir, keys, "a", doc("B", 2))
    meet_again(a, b)
    wait_until(lambda: conflict_copies(a_dir), timeout=120, what="a conflict copy")
    wait_in_sync(a_dir, b_dir)
    r = run("merge", b_dir / "enc.json", *keys.cred("a"))
    assert r.returncode == 0, r.stdout + r.stderr
    wait_in_sync(a_dir, b_dir)
    for d in (a_dir, b_dir):
        assert cat(d, keys, "a") == doc("B", 2)
        assert cat(d, keys, "a", "--draft") == doc("A", 2)


def test_every_version_b_receives_of_fifty_commits_is_whole_and_one_of_as(pair, tmp_path_factory):
    a, b, a_dir, b_dir, keys = pair
    seen, stop = {}, threading.Event()

    def watch():
        last = None
        while not stop.is_set():
            try:
                st = os.stat(b_dir / "enc.json")
                ident = (st.st_ino, st.st_mtime_ns, st.st_size)
                if ident != last:
                    data = (b_dir / "enc.json").read_bytes()
                    seen.setdefault(data, ident)
                    last = ident
            except FileNotFoundError:
                pass
            time.sleep(0.01)

    t = threading.Thread(target=watch)
    t.start()
    committed = set()
    try:
        for i in range(50):
            commit(a_dir, keys, "a", doc("A", 100 + i))
            committed.add(doc("A", 100 + i))
        wait_in_sync(a_dir, b_dir, timeout=120)
    finally:
        stop.set()
        t.join()
    assert conflict_copies(b_dir) == []
    # The one ignore line kept A's lock, log and temp files at home.
    assert list(a_dir.glob(".enc.json.shamirfs-*")) and not list(b_dir.glob(".enc.json.shamirfs-*"))
    scratch = make_workdir(ROOT / "build" / "sync-scratch")
    try:
        received = 0
        for i, data in enumerate(seen):
            f = scratch / f"v{i}.json"
            f.write_bytes(data)
            assert run("fsck", f).returncode == 0, f"version {i} received by B is damaged"
            text = run("cat", f, *keys.cred("a"), check=True).stdout
            if text != b"{}":  # (the version before the loop)
                assert text in committed, text
                received += 1
        assert received >= 1 and cat(b_dir, keys, "a") == doc("A", 149)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_a_mount_on_b_shows_as_commit(pair):
    a, b, a_dir, b_dir, keys = pair
    mnt = b_dir.parent / "mnt"  # outside the synced folder
    mnt.mkdir()
    storage_b = Storage.__new__(Storage)  # the same keys, B's copy of the storage
    storage_b.dir, storage_b.path, storage_b.keys, storage_b.pw = b_dir.parent, b_dir / "enc.json", keys.keys, keys.pw
    m = Mount(storage_b, mnt=mnt, allow=[r"committed outside this mount"])
    try:
        commit(a_dir, keys, "a", doc("A", 7))
        t0 = time.monotonic()
        wait_until(lambda: (b_dir / "enc.json").read_bytes() == (a_dir / "enc.json").read_bytes(), timeout=60,
                   what="B to receive A's commit")
        t_file = time.monotonic()
        wait_until(lambda: (mnt / "a.json").read_bytes() == doc("A", 7), timeout=2, what="the mount to show it")
        print(f"received after {t_file - t0:.1f} s; shown {time.monotonic() - t_file:.2f} s later")
        m.unmount()
    finally:
        m.cleanup()
