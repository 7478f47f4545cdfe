"""Several devices: a commit never drops a version it did not see (a sync tool
renaming another version in between the commit's check and its swap), conflict
copies are noticed and merged. Needs the development build (fault injection)."""
import os
import shutil
import signal
import subprocess
import time

from sfs_common import SHAMIRFS, Storage, run
from test_paths_and_readers import wait_stopped


def doc(name, n=1):
    return ('{"from": "%s", "n": %d}' % (name, n)).encode()


def stopped_update(storage, label, text, point="stop:after-ready-name"):
    proc = subprocess.Popen([str(SHAMIRFS), "update", str(storage.path), "-", *map(str, storage.cred(label))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "SHAMIRFS_FAULT": point})
    proc.stdin.write(text)
    proc.stdin.close()
    proc.stdin = None  # (communicate() must not flush it)
    wait_stopped(proc)
    return proc


def resume(proc, timeout=60):
    """SIGCONT until it ends (it stops again at the same point on a second swap)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    return proc.communicate(timeout=5)


def other_device_version(storage, workdir, label, text):
    """What another device made of the same storage: a copy with `label` committed."""
    other = workdir / "other-device.json"
    shutil.copy2(storage.path, other)
    assert run("update", other, "-", *storage.cred(label), input=text).returncode == 0
    return other


def test_a_version_renamed_in_between_check_and_swap_is_kept(storage, workdir):
    storage.update("a", doc("a", 0))
    storage.update("b", doc("b", 0))
    newer = other_device_version(storage, workdir, "b", doc("b on the other device"))
    proc = stopped_update(storage, "a", doc("a here"))
    os.rename(newer, storage.path)  # the sync tool takes no lock
    out, err = resume(proc)
    assert proc.returncode == 0, err
    assert b"rebased: yes" in out, out
    assert storage.cat("a") == doc("a here")
    assert storage.cat("b") == doc("b on the other device")
    assert [p.name for p in workdir.iterdir() if "conflict" in p.name] == []
    assert run("fsck", storage.path).returncode == 0


def test_another_storage_renamed_in_is_kept_as_a_conflict_copy_and_noticed(storage, workdir):
    storage.update("a", doc("a", 0))
    stranger = Storage(workdir, name="stranger.json")
    proc = stopped_update(storage, "a", doc("a here"))
    os.rename(stranger.path, storage.path)
    out, err = resume(proc)
    assert proc.returncode == 0, err
    copies = [p for p in workdir.iterdir() if ".shamirfs-conflict-" in p.name]
    assert len(copies) == 1 and copies[0].name.startswith("enc.shamirfs-conflict-") and copies[0].suffix == ".json"
    # Our commit is in place; the stranger, which is no version of this
    # storage and cannot be merged into it, is kept beside it.
    assert storage.cat("a") == doc("a here")
    assert run("cat", copies[0], *stranger.cred("a")).returncode == 0
    r = run("info", storage.path)
    assert b"conflict cop" in r.stderr and copies[0].name.encode() in r.stderr, r.stderr


def test_killed_after_the_swap_recovery_keeps_an_unseen_version(storage, workdir):
    storage.update("a", doc("a", 0))
    storage.update("b", doc("b", 0))
    newer = other_device_version(storage, workdir, "b", doc("b elsewhere"))
    # Paused before its swap, a version put in place meanwhile, then killed
    # right after the swap: the unseen version sits at the temp name.
    proc = stopped_update(storage, "a", doc("a here"), point="stop:after-ready-name,after-rename")
    os.rename(newer, storage.path)
    proc.send_signal(signal.SIGCONT)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert storage.cat("a") == doc("a here")  # the reader recovers first: the swap stands
    copies = [p for p in workdir.iterdir() if "conflict" in p.name]
    assert len(copies) == 1, copies
    assert run("cat", copies[0], *storage.cred("b")).stdout == doc("b elsewhere")
    assert not [p for p in workdir.glob(".enc.json.shamirfs-*") if not p.name.endswith("-lock")]  # WAL, temps


def conflict(storage, workdir, changes):
    """A Syncthing-style conflict copy: the storage as another device changed
    it (`changes`: label -> text), made from the current version."""
    copy = workdir / "enc.sync-conflict-20261201-120000-ABCDEFG.json"
    shutil.copy2(storage.path, copy)
    for label, text in changes.items():
        assert run("update", copy, "-", *storage.cred(label), input=text).returncode == 0
    return copy


def test_merge_brings_back_a_conflict_copys_commit_to_another_partition(storage, workdir):
    storage.update("a", doc("a", 0))
    storage.update("b", doc("b", 0))
    copy = conflict(storage, workdir, {"b": doc("b on device 2")})
    storage.update("a", doc("a on device 1"))
    r = run("cat", storage.path, *storage.cred("a"))
    assert copy.name.encode() in r.stderr and b"shamirfs merge" in r.stderr, r.stderr
    r = run("merge", storage.path, *storage.cred("a"), *storage.cred("b"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert b"partition b: document from " + copy.name.encode() in r.stdout, r.stdout
    assert storage.cat("a") == doc("a on device 1") and storage.cat("b") == doc("b on device 2")
    assert not copy.exists() and copy.with_name(copy.name + ".merged").exists()
    assert run("fsck", storage.path).returncode == 0
    assert run("cat", storage.path, *storage.cred("a")).stderr == b""  # nothing beside it any more


def test_merge_with_a_base_needs_no_credentials_in_a_shared_storage(storage, workdir):
    storage.update("a", doc("a", 0))
    storage.update("b", doc("b", 0))
    base = workdir / "base.json"
    shutil.copy2(storage.path, base)  # the version before the conflict (a sync engine's version folder)
    copy = conflict(storage, workdir, {"b": doc("b on device 2")})
    storage.update("a", doc("a on device 1"))
    r = run("merge", storage.path, "--base", base, "--remove")
    assert r.returncode == 0, r.stdout + r.stderr
    assert b"taken from " + copy.name.encode() in r.stdout and b"removed" in r.stdout, r.stdout
    assert not copy.exists()
    assert storage.cat("a") == doc("a on device 1") and storage.cat("b") == doc("b on device 2")
    # Without a base or a key, a differing slot cannot be placed: the copy stays.
    copy = conflict(storage, workdir, {"b": doc("b again")})
    r = run("merge", storage.path)
    assert r.returncode == 14 and b"give its key" in r.stdout and copy.exists(), r.stdout


def test_the_same_partition_on_both_sides_keeps_the_newer_as_document_the_other_as_draft(storage, workdir):
    storage.update("a", doc("a", 0))
    copy = conflict(storage, workdir, {})
    storage.update("a", doc("a here"))
    time.sleep(1.1)  # commit times are in seconds
    # The other device's commit: the same generation, made later.
    assert run("update", copy, "-", *storage.cred("a"), input=doc("a there")).returncode == 0
    r = run("merge", storage.path, *storage.cred("a"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert b"kept as its draft" in r.stdout, r.stdout
    assert storage.cat("a") == doc("a there")
    assert run("cat", storage.path, *storage.cred("a"), "--draft").stdout == doc("a here")


def test_a_reader_waits_for_a_storage_that_is_missing_for_a_moment(storage, workdir):
    storage.update("a", doc("a", 5))
    aside = workdir / "aside.json"
    os.rename(storage.path, aside)
    proc = subprocess.Popen([str(SHAMIRFS), "cat", str(storage.path), *map(str, storage.cred("a"))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    os.rename(aside, storage.path)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == doc("a", 5)
    os.rename(storage.path, aside)
    t0 = time.monotonic()
    r = run("cat", storage.path, *storage.cred("a"))
    assert r.returncode == 3 and 1.5 < time.monotonic() - t0 < 10  # gone for good: an error after 2 s
