"""The mount always shows the truth: outside changes, POSIX handles across
saves, scratch directories, safe mount points, lazy unmounts."""
import os
import shutil
import subprocess
import tarfile
import threading
import time

import pytest

from mountlib import MARKER, MOUNT_HELPER, Mount, doc, mounted_at, wait_until
from sfs_common import EXIT_MOUNT_POINT, Storage, run

OUTSIDE = [r"committed outside this mount"]


def committed(m, label="a"):
    return m.storage.cat(label)


def shows(m, text, label="a"):
    """Waits (2 s at most) until the mounted file shows `text`."""
    wait_until(lambda: m.path(f"{label}.json").read_bytes() == text, timeout=2, what="the new text in the mount")


def test_cli_update_shows_at_once_with_a_newer_mtime(storage, mount):
    m = mount(allow=OUTSIDE)
    before = os.stat(m.path("a.json"))
    time.sleep(0.01)
    assert storage.update("a", doc("from the cli")).returncode == 0
    shows(m, doc("from the cli"))
    after = os.stat(m.path("a.json"))
    assert after.st_mtime_ns > before.st_mtime_ns
    assert after.st_size == len(doc("from the cli"))
    assert m.path("b.json").read_bytes() == doc("other", 2)
    m.unmount()
    assert committed(m) == doc("from the cli")


def test_a_save_through_a_second_mount_shows_in_the_first(storage, mount):
    m1 = mount(allow=OUTSIDE)
    m2 = mount(labels=("a",), allow=OUTSIDE)
    m2.path("a.json").write_bytes(doc("via mount 2"))
    shows(m1, doc("via mount 2"))
    m1.path("a.json").write_bytes(doc("via mount 1"))
    shows(m2, doc("via mount 1"))
    m1.unmount()
    m2.unmount()
    assert committed(m1) == doc("via mount 1")


def test_a_storage_renamed_into_place_shows(storage, mount, workdir):
    m = mount(allow=OUTSIDE)
    newer = workdir / "newer.json"
    shutil.copy2(storage.path, newer)
    assert run("update", newer, "-", *storage.cred("a"), input=doc("synced")).returncode == 0
    os.rename(newer, storage.path)
    shows(m, doc("synced"))
    m.unmount()


def test_a_storage_that_no_longer_opens_gives_eio_not_the_old_text(storage, mount, workdir):
    m = mount(allow=[r"no longer opens a partition"])
    other = Storage(workdir, name="other.json")
    os.rename(other.path, storage.path)
    with pytest.raises(OSError) as e:
        wait_until(lambda: m.path("a.json").read_bytes() != doc("old"), timeout=2, what="a read error")
    assert e.value.errno == 5
    assert "no longer holds" in os.getxattr(m.path("a.json"), "user.shamirfs.error").decode()
    st = run("status", m.mnt)
    assert b"the storage no longer opens it" in st.stdout, st.stdout
    m.unmount()


def test_vim_warns_at_w_after_an_outside_commit(storage, mount, tmux):
    m = mount(allow=OUTSIDE)
    t = tmux(f"vim -u DEFAULTS -i NONE {m.path('a.json')}")
    t.wait_for("old")
    assert storage.update("a", doc("from the cli")).returncode == 0
    time.sleep(1.1)  # vim compares mtimes in seconds
    t.keys(":w", "Enter")
    t.wait_for("changed since reading")
    t.keys("y")  # last writer wins, as on any file system, and the mount says so
    wait_until(lambda: committed(m) == doc("old"), what="vim's save")
    assert "replaced a version committed outside" in os.getxattr(m.path("a.json"), "user.shamirfs.error").decode()
    t.close()
    wait_until(lambda: subprocess.run(["fusermount3", "-u", str(m.mnt)], capture_output=True).returncode == 0,
               what="vim's end")
    m.unmount()


def test_emacs_says_the_file_changed_on_disk(storage, mount, tmux):
    m = mount(allow=OUTSIDE)
    t = tmux(f"emacs -nw -Q {m.path('a.json')}")
    t.wait_for("old")
    assert storage.update("a", doc("from the cli")).returncode == 0
    time.sleep(0.2)
    t.keys("x")  # the first change to the buffer checks the file on disk
    t.wait_for("changed on disk")
    t.keys("n")
    t.close()
    wait_until(lambda: subprocess.run(["fusermount3", "-u", str(m.mnt)], capture_output=True).returncode == 0,
               what="emacs's end")
    m.unmount()
    assert committed(m) == doc("from the cli")


def test_posix_details(m):
    import errno
    for make in (lambda p: os.mkfifo(p), lambda p: os.mknod(p, 0o600 | 0o020000, os.makedev(1, 3)),
                 lambda p: os.link(m.path("a.json"), p)):
        with pytest.raises(OSError) as e:
            make(m.path("special"))
        assert e.value.errno == errno.EPERM
    long = "x" * 256
    for make in (lambda p: open(p, "w"), lambda p: os.mkdir(p), lambda p: os.symlink("a.json", p)):
        with pytest.raises(OSError) as e:
            make(m.path(long))
        assert e.value.errno == errno.ENAMETOOLONG
    open(m.path("y" * 255), "w").close()
    before = os.stat(m.mnt)
    time.sleep(0.01)
    os.unlink(m.path("y" * 255))
    after = os.stat(m.mnt)
    assert after.st_mtime_ns > before.st_mtime_ns and after.st_ctime_ns > before.st_ctime_ns
    m.unmount()


def test_an_fd_opened_before_a_rename_over_save_reads_the_old_text(m):
    with open(m.path("a.json"), "rb") as f:
        first = f.read(5)
        m.path("new.json").write_bytes(doc("new"))
        os.rename(m.path("new.json"), m.path("a.json"))
        assert first + f.read() == doc("old")
        assert os.fstat(f.fileno()).st_size == len(doc("old"))
    with open(m.path("b.json"), "rb") as f:
        os.unlink(m.path("b.json"))
        assert os.fstat(f.fileno()).st_nlink == 0
        assert f.read() == doc("other", 2)
    assert m.path("a.json").read_bytes() == doc("new")
    m.unmount()
    assert committed(m) == doc("new")
    assert committed(m, "b") == doc("other", 2)


def test_tail_f_survives_twenty_saves(m):
    out = m.storage.dir / "tail.out"
    tail = subprocess.Popen(["tail", "-f", str(m.path("a.json"))], stdout=subprocess.DEVNULL,
                            stderr=open(out, "w"))
    try:
        for i in range(20):
            how = i % 3
            if how == 0:
                r = subprocess.run(["vim", "-es", "-u", "DEFAULTS", "-i", "NONE", "--cmd", "set bsk=",
                                    "-c", f"%s/\"n\": [0-9]*/\"n\": {i}/", "-c", "wq", str(m.path("a.json"))],
                                   capture_output=True, timeout=60)
            elif how == 1:
                r = subprocess.run(["sed", "-i", f"s/\"n\": [0-9]*/\"n\": {i}/", str(m.path("a.json"))],
                                   capture_output=True, timeout=60)
            else:
                m.path("a.tmp").write_bytes(doc("old", i))
                r = subprocess.run(["mv", str(m.path("a.tmp")), str(m.path("a.json"))], capture_output=True)
            assert r.returncode == 0, r.stderr
        time.sleep(1.5)  # tail -f looks every second
        assert tail.poll() is None, out.read_text()
        assert "Stale" not in out.read_text() and "error" not in out.read_text().lower(), out.read_text()
    finally:
        tail.kill()
        tail.wait()
    m.unmount()
    assert committed(m) == doc("old", 19)


def test_open_read_close_loop_sees_no_error_while_200_saves_land(m):
    errors, reads = [], [0]
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                with open(m.path("a.json"), "rb") as f:
                    os.fstat(f.fileno())
                    data = f.read()
                assert data.startswith(b"{"), data
                reads[0] += 1
            except (OSError, AssertionError) as e:
                errors.append(repr(e))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(200):
            tmp = m.path(f".a.json.{i}.tmp")
            tmp.write_bytes(doc("loop", i))
            os.rename(tmp, m.path("a.json"))
    finally:
        stop.set()
        t.join()
    assert errors == [], errors[:5]
    assert reads[0] > 200
    m.unmount()
    assert committed(m) == doc("loop", 199)


def test_scratch_directories_mktemp_tar_rm(m, workdir):
    d = subprocess.run(["mktemp", "-d", "-p", str(m.mnt)], capture_output=True, text=True, check=True).stdout.strip()
    assert os.path.isdir(d)
    src = workdir / "tree"
    (src / "x" / "y" / "z").mkdir(parents=True)
    (src / "x" / "y" / "z" / "deep.txt").write_text("deep")
    (src / "x" / "top.txt").write_text("top")
    archive = workdir / "tree.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(src / "x", arcname="x")
    subprocess.run(["tar", "xf", str(archive), "-C", d], check=True)
    assert open(os.path.join(d, "x/y/z/deep.txt")).read() == "deep"
    os.rename(os.path.join(d, "x/y"), os.path.join(d, "y-moved"))
    assert open(os.path.join(d, "y-moved/z/deep.txt")).read() == "deep"
    subprocess.run(["rm", "-r", d], check=True)
    assert not os.path.exists(d)
    os.mkdir(m.path("kept-until-unmount"))
    (m.path("kept-until-unmount") / "f").write_text("scratch")
    m.unmount(allow=[r"vanish at unmount.*kept-until-unmount/"])
    m2 = Mount(m.storage)
    assert m2.names() == ["a.json", "b.json"]
    m2.unmount()


def mount_rc(storage, mnt, *extra):
    opts = f"keyfile={storage.key('a')},passfile={storage.pw['a']}"
    return subprocess.run([str(MOUNT_HELPER), str(storage.path), str(mnt), "-o", opts, *extra],
                          capture_output=True, text=True, timeout=30)


def test_unsafe_mount_points_are_refused(storage, m, workdir):
    r = mount_rc(storage, m.mnt)  # already a mount point
    assert r.returncode == EXIT_MOUNT_POINT, r.stderr
    assert "already a mount point" in r.stderr and "fusermount3 -u" in r.stderr and r.stderr.count("\n") == 1
    full = workdir / "full"
    full.mkdir()
    (full / "file").write_text("x")
    r = mount_rc(storage, full)
    assert r.returncode == EXIT_MOUNT_POINT and "not empty" in r.stderr and "-o nonempty" in r.stderr, r.stderr
    r = mount_rc(storage, storage.dir)  # the storage's own directory
    assert r.returncode == EXIT_MOUNT_POINT and "inside the mount point" in r.stderr, r.stderr
    r = mount_rc(storage, storage.dir.parent)  # a directory above it
    assert r.returncode == EXIT_MOUNT_POINT and "inside the mount point" in r.stderr, r.stderr
    assert m.path("a.json").read_bytes() == doc("old")  # the first mount is untouched
    assert mounted_at(full) is None
    # -o nonempty mounts over the files, which show again afterwards.
    m2 = Mount(storage, mnt=full, labels=("a",), options=("nonempty",))
    assert m2.names() == ["a.json"]
    m2.unmount()
    assert (full / "file").read_text() == "x"


def test_lazy_unmount_with_vim_open_writes_nothing_to_disk(storage, mount, tmux):
    m = mount()
    mode = os.stat(m.mnt.parent).st_mode
    t = tmux(f"cd {m.mnt.parent} && vim -u DEFAULTS -i NONE {m.mnt.name}/a.json")
    t.wait_for("old")
    subprocess.run(["fusermount3", "-u", "-z", str(m.mnt)], check=True)
    assert mounted_at(m.mnt) is None
    secret = f"LAZY{MARKER}"
    t.keys("gg", "O", f'"{secret}": 1,', "Escape")
    t.keys(":w", "Enter")
    time.sleep(1)
    t.keys(":w!", "Enter")
    time.sleep(1)
    t.keys(":q!", "Enter")
    wait_until(lambda: m.proc.poll() is not None, timeout=20, what="the daemon's end")
    assert not any(m.mnt.iterdir())
    hits = subprocess.run(["grep", "-rl", secret, str(storage.dir)], capture_output=True, text=True).stdout
    assert hits == "", hits
    assert os.stat(m.mnt).st_mode & 0o7777 == 0o700  # mkdtemp's mode, set back
    assert os.stat(m.mnt.parent).st_mode == mode
    m.check_log()


def test_a_mount_point_left_protected_by_a_killed_daemon_is_set_back(storage, mount):
    m = mount()
    assert os.stat(m.mnt).st_mode  # (the mounted root)
    m.proc.kill()
    m.proc.wait()
    subprocess.run(["fusermount3", "-u", "-z", str(m.mnt)], check=True)
    assert os.stat(m.mnt).st_mode & 0o7777 == 0  # left protected
    assert not os.access(m.mnt, os.W_OK) or os.geteuid() == 0
    with pytest.raises(PermissionError):
        (m.mnt / "a.json").write_text(MARKER)  # (root too: the directory is immutable)
    m2 = Mount(storage, mnt=m.mnt)
    m2.unmount()
    assert os.stat(m.mnt).st_mode & 0o7777 == 0o700


def test_automerge_takes_a_conflict_copys_commit_into_the_mount(storage, mount, workdir):
    m = mount(options=("automerge",), allow=OUTSIDE)
    prepared = workdir / "other-device.json"
    shutil.copy2(storage.path, prepared)
    assert run("update", prepared, "-", *storage.cred("b"), input=doc("from the other device", 3)).returncode == 0
    copy = workdir / "enc.sync-conflict-20261201-120000-ABCDEFG.json"
    os.rename(prepared, copy)  # as a sync engine puts it there
    shows(m, doc("from the other device", 3), label="b")
    assert m.path("a.json").read_bytes() == doc("old")
    assert not copy.exists() and copy.with_name(copy.name + ".merged").exists()
    m.unmount()
    assert committed(m, "b") == doc("from the other device", 3)
