"""Readers never wait for writers, read-only copies with an interrupted commit
still read, and the storage path is the real file (symlinks followed, FIFOs,
directories and hard links refused clearly). Needs the development build (fault
injection) and root for the read-only bind mount."""
import os
import signal
import subprocess
import time

import pytest

from sfs_common import EXIT_BUSY, EXIT_USAGE, SHAMIRFS, Storage, run


def doc(i, size=200):
    body = ",".join(f'"k{j}": "value {i}-{j}"' for j in range(size // 16))
    return ("{\"version\": %d, %s}" % (i, body)).encode()


def wait_stopped(proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().split(") ", 1)[1].startswith("T"):
                return
        time.sleep(0.02)
    raise AssertionError("the update never stopped at its fault point")


def test_readers_do_not_wait_for_a_commit_that_holds_the_lock(storage):
    storage.update("a", doc(1))
    storage.update("b", doc(2))
    # An update of a, stopped (SIGSTOP) while it holds the lock with its new file written.
    proc = subprocess.Popen([str(SHAMIRFS), "update", str(storage.path), "-", *map(str, storage.cred("a"))],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "SHAMIRFS_FAULT": "stop:after-ready-name"})
    proc.stdin.write(doc(3))
    proc.stdin.close()
    try:
        wait_stopped(proc)
        for args in (["cat", storage.path, *storage.cred("b")], ["cat", storage.path, *storage.cred("a")],
                     ["info", storage.path], ["fsck", storage.path]):
            t0 = time.monotonic()
            r = run(*args)
            assert r.returncode == 0, (args, r.stderr)
            assert time.monotonic() - t0 < 5, args  # no lock backoff
        assert run("cat", storage.path, *storage.cred("a")).stdout == doc(1)  # the last complete commit
        # A writer does wait, and says so.
        assert storage.update("b", doc(4)).returncode == EXIT_BUSY
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()
    assert storage.cat("a") == doc(3) and storage.cat("b") == doc(2)


@pytest.fixture
def read_only_copy(storage, workdir):
    """The storage's directory with an interrupted commit (its new file under
    its ready name), bind-mounted read-only."""
    storage.update("a", doc(1))
    r = run("update", storage.path, "-", *storage.cred("a"), input=doc(2),
            env={**os.environ, "SHAMIRFS_FAULT": "after-ready-name"})
    assert r.returncode == -signal.SIGKILL
    assert list(storage.dir.glob(f".{storage.path.name}.shamirfs-ready-*"))
    ro = workdir.parent / (workdir.name + "-ro")
    ro.mkdir()
    subprocess.run(["mount", "--bind", str(storage.dir), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        yield ro
    finally:
        subprocess.run(["umount", str(ro)], check=True)
        ro.rmdir()


def test_a_read_only_copy_with_an_interrupted_commit_reads_the_last_complete_version(storage, read_only_copy):
    copy = read_only_copy / storage.path.name
    r = run("cat", copy, *storage.cred("a"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == doc(1)
    assert r.stderr.count(b"\n") == 1 and b"interrupted" in r.stderr
    assert run("info", copy).returncode == 0
    # With write access, the next command finishes the commit.
    assert storage.cat("a") == doc(2)


def test_commits_through_a_symlink_go_to_the_real_file(storage, workdir):
    link = workdir / "link.json"
    link.symlink_to(storage.path.name)
    assert run("update", link, "-", *storage.cred("a"), input=doc(7)).returncode == 0
    assert link.is_symlink()
    assert storage.cat("a") == doc(7)
    assert not any(".link.json.shamirfs" in p.name for p in workdir.iterdir())


def test_a_fifo_or_directory_in_the_storage_path_fails_at_once(storage, workdir):
    fifo = workdir / "fifo.json"
    os.mkfifo(fifo)
    for path in (fifo, workdir):
        for args in (["cat", path, *storage.cred("a")], ["info", path], ["fsck", path]):
            t0 = time.monotonic()
            r = run(*args, timeout=10)
            assert r.returncode != 0 and b"not a regular file" in r.stderr, (args, r.stderr)
            assert time.monotonic() - t0 < 5


def test_a_storage_with_hard_links_refuses_commits(storage, workdir):
    other = workdir / "other-name.json"
    os.link(storage.path, other)
    r = storage.update("a", doc(8))
    assert r.returncode == EXIT_USAGE and b"hard links" in r.stderr
    assert storage.cat("a") == b"{}"
    other.unlink()
    assert storage.update("a", doc(8)).returncode == 0


def test_a_storage_name_too_long_for_the_files_beside_it_is_refused_clearly(workdir):
    """A commit's ready name adds 83 bytes to the storage's name (NAME_MAX is
    255): the longest name that works is 172 bytes; a longer one is refused
    when it is created, before anything is written."""
    longest = Storage(workdir, name="n" * 167 + ".json")
    assert len(longest.path.name) == 172
    assert longest.update("a", b'{"long": true}').returncode == 0
    assert longest.cat("a") == b'{"long": true}'
    too_long = workdir / ("m" * 168 + ".json")
    pw = workdir / "pw"
    pw.write_text("password\n")
    (workdir / "k").mkdir()
    r = run("create", too_long, "--key-dir", workdir / "k", "--kdf-ops", "2", "--kdf-mem", str(64 << 20),
            "--passfile", f"a={pw}", "--passfile", f"b={pw}")
    assert r.returncode == EXIT_USAGE, r.stderr
    assert b"longer than 172 bytes" in r.stderr
    assert not too_long.exists()
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".m")] == []  # no lock, no temp file
    assert list((workdir / "k").iterdir()) == []  # no keys of a storage that is not there
