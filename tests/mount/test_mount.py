"""The mounted file system: readers, rejected commits, several partitions and
mounts, options, POSIX details, drafts at unmount, crashes, mount(8) and fstab."""
import copy as _copy
import ctypes
import errno
import fcntl
import os
import signal
import stat
import struct
import subprocess
import tempfile
import time

import pytest

from mountlib import MARKER, MOUNT_HELPER, SHAMIRFS, Mount, doc, mounted_at, wait_until
from sfs_common import EXIT_AUTH, EXIT_USAGE, Tmux, run, sh

BASE = ["a.json", "b.json"]




def test_readers(m):
    a = m.path("a.json")
    content = doc("old")
    assert sh(f"cat {a}").stdout == content
    assert sh(f"grep -c {MARKER} {a}").stdout == b"1\n"
    assert sh(f"jq -r .n {a}").stdout == b"1\n"
    assert sh(f"wc -c < {a}").stdout.strip() == str(len(content)).encode()
    assert os.stat(a).st_size == len(content)
    with open(m.path("copy.json"), "wb") as f:
        f.write(content)
    assert sh(f"diff {a} {m.path('copy.json')}").returncode == 0
    assert sh(f"diff {a} {m.path('b.json')}").returncode == 1
    # rsync out of the mount (to memory-backed /dev/shm, never to disk)
    out = f"/dev/shm/sfs-rsync-{os.getpid()}"
    try:
        assert sh(f"rsync -a {a} {out}").returncode == 0
        assert open(out, "rb").read() == content
    finally:
        if os.path.exists(out):
            os.unlink(out)
    os.unlink(m.path("copy.json"))


def test_a_large_commit_skips_the_page_cache_and_reads_back(m, mount):
    """A storage of 16 MiB or more is written by the mount with O_DIRECT:
    the mount, `shamirfs cat` and a remount read back the bytes written."""
    rnd = os.urandom(1_500_000).hex()  # hex: zstd halves it at best, so the storage is > 16 MiB
    content = ('{"marker": "%s", "blob": "%s", "n": 1}\n' % (MARKER, rnd)).encode()
    src = f"/dev/shm/sfs-large-{os.getpid()}.json"  # (plaintext stays in memory)
    b = open(m.path("b.json"), "rb").read()
    try:
        for n in (1, 2):
            body = content.replace(b'"n": 1', b'"n": %d' % n)
            with open(src, "wb") as f:
                f.write(body)
            assert sh(f"cp {src} {m.path('a.json')}").returncode == 0
            assert m.storage.path.stat().st_size >= 16 << 20
            assert m.storage.cat("a") == body
            assert open(m.path("a.json"), "rb").read() == body
    finally:
        os.unlink(src)
    m.unmount()
    again = mount()
    assert open(again.path("a.json"), "rb").read() == content.replace(b'"n": 1', b'"n": 2')
    assert open(again.path("b.json"), "rb").read() == b


def test_tail_f_sees_an_append(m):
    a = m.path("a.json")
    tail = subprocess.Popen(["tail", "-f", str(a)], stdout=subprocess.PIPE)
    try:
        fcntl.fcntl(tail.stdout, fcntl.F_SETFL, os.O_NONBLOCK)
        got = b""

        def read_more():
            nonlocal got
            try:
                got += tail.stdout.read() or b""
            except (BlockingIOError, TypeError):
                pass
            return got

        wait_until(lambda: MARKER.encode() in read_more(), 10, "tail to print the document")
        with open(a, "ab") as f:
            f.write(b"  \n")
        wait_until(lambda: read_more().endswith(b"}\n  \n"), 10, "tail to print the append")
    finally:
        tail.kill()
        tail.wait()
    assert m.storage.cat("a") == doc("old") + b"  \n"


REFUSED_JSON = r"a commit at \w+ was refused: invalid JSON"


def test_kernel_caches_stay_exact(m):
    """Names, attributes and pages are cached by the kernel across opens; every
    way of changing the file must show at the next open and stat."""
    m.allow.append(REFUSED_JSON)
    a = m.path("a.json")
    held = os.open(a, os.O_RDONLY)  # the file before any change, held open
    try:
        assert a.read_bytes() == doc("old")  # now in the page cache
        # rename-over (sed -i): the name shows the new file; the held fd the old one
        assert sh(f"sed -i s/old/renamed/ {a}").returncode == 0
        assert a.read_bytes() == doc("renamed")
        assert os.pread(held, 4096, 0) == doc("old")
        # in place, shorter, through O_TRUNC: no stale tail from cached pages
        a.write_bytes(doc("x"))
        assert a.read_bytes() == doc("x") and os.stat(a).st_size == len(doc("x"))
        # in place through a second descriptor while a reader holds the file
        with open(a, "rb") as r:
            assert r.read() == doc("x")
            with open(a, "r+b") as w:
                w.write(doc("y"))
            r.seek(0)
            assert r.read() == doc("y")
        # truncate by name and append
        os.truncate(a, len(doc("y")) - 1)
        assert a.read_bytes() == doc("y")[:-1]
        with open(a, "ab") as f:
            f.write(b"\n")
        assert a.read_bytes() == doc("y") and os.stat(a).st_size == len(doc("y"))
        # a refused save keeps what was written, as the kernel's pages say
        with pytest.raises(OSError):
            with open(a, "wb") as f:
                f.write(b"{broken")
        assert a.read_bytes() == b"{broken"
        a.write_bytes(doc("z"))
    finally:
        os.close(held)
    m.unmount()
    assert m.storage.cat("a") == doc("z")


def test_posix_semantics(m):
    a = m.path("a.json")
    fd1 = os.open(a, os.O_RDWR)
    fd2 = os.open(a, os.O_RDONLY)
    try:
        assert os.pread(fd2, 5, 0) == b'{\n  "'
        os.pwrite(fd1, b'"n"', doc("old").index(b'"n"'))  # same bytes at an offset
        size = os.fstat(fd1).st_size
        os.pwrite(fd1, b"   ", size)                       # extend at the end
        assert os.fstat(fd2).st_size == size + 3           # visible at once on the other handle
        assert os.stat(a).st_size == size + 3
        os.ftruncate(fd1, size)
        assert os.fstat(fd2).st_size == size
        os.fsync(fd1)                                      # commit point
    finally:
        os.close(fd1)
        os.close(fd2)
    assert m.storage.cat("a") == doc("old")
    st = os.stat(a)
    assert st.st_nlink == 1 and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o600
    # O_APPEND writes at the end whatever the offset
    fd = os.open(a, os.O_WRONLY | os.O_APPEND)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, b"\n")
    os.close(fd)
    assert m.path("a.json").read_bytes() == doc("old") + b"\n"
    # chmod, chown to oneself, utimens are stored
    os.chmod(a, 0o640)
    os.chown(a, os.getuid(), os.getgid())
    os.utime(a, ns=(1_000_000_000_123, 2_000_000_000_456))
    st = os.stat(a)
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_mtime_ns == 2_000_000_000_456
    # scratch names of every kind; O_EXCL; symlink locks; RENAME_NOREPLACE
    for name in ["4913", ".a.json.swp", "#a.json#", "sedAbC123", "a.json~"]:
        fd = os.open(m.path(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        with pytest.raises(FileExistsError):
            os.open(m.path(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.unlink(m.path(name))
    os.symlink("user@host.1234", m.path(".#a.json"))
    assert os.readlink(m.path(".#a.json")) == "user@host.1234"
    assert stat.S_ISLNK(os.lstat(m.path(".#a.json")).st_mode)
    os.unlink(m.path(".#a.json"))
    libc = ctypes.CDLL(None, use_errno=True)
    with open(m.path("lock"), "w") as f:
        f.write("x")
    rc = libc.renameat2(-100, str(m.path("lock")).encode(), -100, str(a).encode(), 1)  # RENAME_NOREPLACE
    assert rc == -1 and ctypes.get_errno() == errno.EEXIST
    os.unlink(m.path("lock"))
    # xattrs as the checklist says
    for name in ["system.posix_acl_access", "security.selinux", "user.shamirfs.error"]:
        with pytest.raises(OSError) as e:
            os.getxattr(a, name)
        assert e.value.errno == errno.ENODATA
    with pytest.raises(OSError) as e:
        acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, 0xFFFFFFFF)
                                              for tag, perm in ((1, 6), (4, 0), (0x20, 0)))
        os.setxattr(a, "system.posix_acl_access", acl)  # what Vim, Emacs and sed write back
    assert e.value.errno == errno.EOPNOTSUPP
    vfs = os.statvfs(m.mnt)
    assert vfs.f_bsize == 4096 and vfs.f_namemax == 255 and vfs.f_bavail > 0
    os.fsync(os.open(m.mnt, os.O_RDONLY))  # fsync of the directory
    assert m.names() == BASE


def test_scratch_memory_limit_answers_enospc(mount):
    m = mount(options=["memory_max=200000"])
    with pytest.raises(OSError) as e:
        with open(m.path("big.bin"), "wb") as f:
            f.write(b"x" * 300000)
    assert e.value.errno == errno.ENOSPC
    os.unlink(m.path("big.bin"))
    with open(m.path("small.bin"), "wb") as f:
        f.write(b"x" * 1000)
    os.unlink(m.path("small.bin"))


def test_invalid_json_from_cp_and_cat_is_refused_and_nothing_is_lost(m):
    m.allow.append(REFUSED_JSON)
    a = m.path("a.json")
    bad = b'{"note": "half written ' + MARKER.encode() + b'",\n  "x": [1, 2\n}\n'
    with open(m.path("bad.json"), "wb") as f:
        f.write(bad)
    for cmd in (f"cp {m.path('bad.json')} {a}", f"cat {m.path('bad.json')} > {a}"):
        r = sh(cmd)
        assert r.returncode != 0, cmd
        assert b"Invalid argument" in r.stderr, r.stderr
        assert m.storage.cat("a") == doc("old")          # storage unchanged
        assert a.read_bytes() == bad                       # the text stays readable to fix
        err = sh(f"getfattr --only-values -n user.shamirfs.error {a}")
        assert err.returncode == 0 and b"invalid JSON at line 3, column 1" in err.stdout
        assert MARKER.encode() not in err.stdout
    # Fixing and saving again works, and clears the error.
    with open(a, "wb") as f:
        f.write(doc("fixed"))
    assert m.storage.cat("a") == doc("fixed")
    assert sh(f"getfattr -n user.shamirfs.error {a}").returncode != 0
    os.unlink(m.path("bad.json"))
    log = m.unmount()
    assert "a commit at close was refused: invalid JSON at line 3, column 1" in log
    assert "partition a" not in log  # the default log does not say which partition
    assert MARKER not in log


def test_invalid_json_from_vim_keeps_the_buffer_and_the_storage(m):
    m.allow.append(REFUSED_JSON)
    t = Tmux(f"sfsvim{os.getpid()}", f"vim -u DEFAULTS -i NONE --cmd 'set bsk=' {m.path('a.json')}")
    try:
        t.wait_for(MARKER)
        t.keys("gg", "O", "garbage {", "Escape")
        t.keys(":w", "Enter")
        # fsync fails (E667), then close fails too (the error is sticky), which
        # Vim 9.0 reports as E512; either way it rolls back to its backup.
        wait_until(lambda: "E667" in t.screen() or "E512" in t.screen(), 20, "Vim's write error")
        t.keys("Enter")                                    # dismiss the message: the buffer is redrawn
        t.wait_for("garbage {")                            # ... and still has the edit
        t.keys(":q!", "Enter")
        wait_until(lambda: ".a.json.swp" not in m.names(), 10, "vim to exit")
    finally:
        t.close()
    assert m.storage.cat("a") == doc("old")
    assert m.path("a.json").read_bytes() == doc("old")     # Vim renamed its backup back
    assert m.names() == BASE


def test_two_partitions_edited_alternately_and_one_alone(storage, mount):
    m = mount()
    for i in range(3):
        for label in ("a", "b"):
            with open(m.path(f"{label}.json"), "wb") as f:
                f.write(doc(f"{label}{i}", i))
    assert storage.cat("a") == doc("a2", 2) and storage.cat("b") == doc("b2", 2)
    m.unmount()
    only_b = mount(labels=("b",))
    assert only_b.names() == ["b.json"]
    assert only_b.path("b.json").read_bytes() == doc("b2", 2)


def test_the_same_storage_mounted_twice_both_edits_land(storage, mount):
    ma = mount(labels=("a",))
    mb = mount(labels=("b",))
    for i in range(5):
        with open(ma.path("a.json"), "wb") as f:
            f.write(doc("from mount a", i))
        with open(mb.path("b.json"), "wb") as f:
            f.write(doc("from mount b", i))
    assert storage.cat("a") == doc("from mount a", 4)
    assert storage.cat("b") == doc("from mount b", 4)


def test_read_only_mount(mount, storage):
    m = mount(options=["ro"])
    assert m.path("a.json").read_bytes() == doc("old")
    for action in (lambda: open(m.path("a.json"), "wb"), lambda: open(m.path("new"), "wb"),
                   lambda: os.unlink(m.path("a.json")), lambda: os.rename(m.path("a.json"), m.path("x"))):
        with pytest.raises(OSError) as e:
            action()
        assert e.value.errno == errno.EROFS
    assert "ro" in mounted_at(m.mnt)[3].split(",")


def test_mount_lists_as_fuse_shamirfs_with_the_storage_as_source(m):
    fields = mounted_at(m.mnt)
    assert fields[0] == str(m.storage.path) and fields[2] == "fuse.shamirfs"


def test_unmount_commits_a_valid_text_and_keeps_the_rest_as_a_draft(storage, mount):
    m = mount(allow=[REFUSED_JSON, "was refused: storage busy"])
    lock = open(storage.dir / f".{storage.path.name}.shamirfs-lock", "a")
    fcntl.flock(lock, fcntl.LOCK_EX)      # the commit at close fails: storage busy
    with pytest.raises(OSError) as e:
        with open(m.path("a.json"), "wb") as f:
            f.write(doc("draft"))
    assert e.value.errno == errno.EBUSY
    with open(m.path("b.json"), "wb") as f:  # emptied: a pending text, not an error
        pass
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()
    log = m.unmount()
    assert storage.cat("a") == doc("draft")
    assert "committed an unsaved text at unmount" in log
    assert storage.cat("b") == doc("other", 2)
    assert "kept a text that could not be committed as a draft" in log
    assert run("cat", storage.path, *storage.cred("b"), "--draft", check=True).stdout == b""


def test_kill_9_of_the_daemon_in_a_commit_then_remount_recovers(storage, mount):
    m = mount(env={"SHAMIRFS_FAULT": "after-ready-name"})
    with pytest.raises(OSError):
        with open(m.path("a.json"), "wb") as f:
            f.write(doc("new"))
    m.proc.wait(timeout=10)
    assert m.proc.returncode == -signal.SIGKILL
    subprocess.run(["fusermount3", "-u", "-z", str(m.mnt)], check=True)
    again = mount(allow=["recovery of .*: finished an interrupted commit"])
    assert again.path("a.json").read_bytes() == doc("new")   # "ready": the complete new file was put in place
    assert again.path("b.json").read_bytes() == doc("other", 2)
    assert not any(".shamirfs-ready-" in p.name or ".shamirfs-tmp-" in p.name for p in storage.dir.iterdir())
    again.unmount()
    # kill -9 before the new file is complete: the old document stays.
    m2 = mount(env={"SHAMIRFS_FAULT": "after-temp-create"})
    with pytest.raises(OSError):
        with open(m2.path("a.json"), "wb") as f:
            f.write(doc("lost"))
    m2.proc.wait(timeout=10)
    subprocess.run(["fusermount3", "-u", "-z", str(m2.mnt)], check=True)
    assert storage.cat("a") == doc("new")


def test_failed_unlock_mounts_nothing(storage, workdir):
    mnt = workdir / "mnt"
    mnt.mkdir()
    wrong = workdir / "wrong.pass"
    wrong.write_text("not the password\n")
    r = subprocess.run([str(MOUNT_HELPER), str(storage.path), str(mnt), "-o",
                        f"keyfile={storage.key('a')},passfile={wrong}"], capture_output=True, timeout=30)
    assert r.returncode == EXIT_AUTH
    assert r.stderr == b"mount.shamirfs: cannot unlock: wrong partition map key or password\n"
    assert mounted_at(mnt) is None
    r = subprocess.run([str(MOUNT_HELPER), str(storage.path), str(mnt)], capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL, start_new_session=True)
    assert r.returncode == EXIT_USAGE and b"no terminal to ask on" in r.stderr
    assert mounted_at(mnt) is None


def test_extpass_and_labels_and_background_mode_with_sigterm(storage, workdir):
    mnt = workdir / "mnt"
    mnt.mkdir()
    cmd = f"cat {storage.pw['a']}"
    r = subprocess.run([str(MOUNT_HELPER), str(storage.path), str(mnt), "-o",
                        f"keyfile={storage.key('a')},extpass={cmd},label=work"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr        # the helper returns once the mount is up, in the background
    try:
        assert sorted(os.listdir(mnt)) == ["work.json"]
        assert (mnt / "work.json").read_bytes() == doc("old")
        with open(mnt / "work.json", "wb") as f:
            f.write(doc("bg"))
        pid = int(subprocess.run(["pgrep", "-f", f"mount.shamirfs {storage.path} {mnt}"], capture_output=True,
                                 text=True).stdout.split()[0])
        os.kill(pid, signal.SIGTERM)               # clean unmount on SIGTERM
        wait_until(lambda: mounted_at(mnt) is None, 10, "the unmount after SIGTERM")
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 10, "the daemon to exit")
    finally:
        if mounted_at(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)])
    assert storage.cat("a") == doc("bg")


@pytest.fixture
def helper_on_path():
    """What an install provides: mount(8) runs /sbin/mount.shamirfs for type shamirfs;
    for fuse.shamirfs, mount.fuse3 runs 'shamirfs' from mount(8)'s standard PATH."""
    if os.geteuid() != 0:
        pytest.fail("mount(8) tests need root (CI runs as root)")
    links = {"/sbin/mount.shamirfs": MOUNT_HELPER, "/usr/local/bin/shamirfs": SHAMIRFS}
    created = [link for link in links if not os.path.lexists(link)]
    for link in created:
        os.symlink(links[link], link)
    yield dict(os.environ)
    for link in created:
        os.unlink(link)


@pytest.mark.parametrize("fstype", ["shamirfs", "fuse.shamirfs"])
def test_mount_8_and_fstab(storage, workdir, helper_on_path, fstype):
    mnt = workdir / "mnt"
    mnt.mkdir()
    opts = f"keyfile={storage.key('a')},passfile={storage.pw['a']}"
    r = subprocess.run(["mount", "-t", fstype, str(storage.path), str(mnt), "-o", opts], capture_output=True,
                       env=helper_on_path, timeout=60)
    assert r.returncode == 0, r.stderr
    try:
        fields = mounted_at(mnt)
        assert fields[0] == str(storage.path) and fields[2] == "fuse.shamirfs"
        assert (mnt / "a.json").read_bytes() == doc("old")
        subprocess.run(["umount", str(mnt)], check=True)
        wait_until(lambda: mounted_at(mnt) is None, 10, "umount")
        # an fstab line (as mount(8) passes it: noauto removed, nofail/_netdev ignored)
        fstab = workdir / "fstab"
        # (a space inside an option is \040 in fstab, as mount.shamirfs(8) says: extpass runs "cat FILE")
        fstab_opts = f"keyfile={storage.key('a')},extpass=cat\\040{storage.pw['a']}"
        fstab.write_text(f"{storage.path} {mnt} {fstype} noauto,nofail,_netdev,x-systemd.automount,{fstab_opts} 0 0\n")
        r = subprocess.run(["mount", "-T", str(fstab), str(mnt)], capture_output=True, env=helper_on_path, timeout=60)
        assert r.returncode == 0, r.stderr
        assert (mnt / "a.json").read_bytes() == doc("old")
        with open(mnt / "a.json", "wb") as f:
            f.write(doc("via fstab"))
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        wait_until(lambda: mounted_at(mnt) is None, 10, "umount")
    wait_until(lambda: subprocess.run(["pgrep", "-f", f"mount.shamirfs {storage.path}"]).returncode != 0, 10,
               "the daemon to exit")
    assert storage.cat("a") == doc("via fstab")


def _stopped_update(storage, label, text):
    """`shamirfs update` of `label`, stopped (SIGSTOP) while it holds the lock."""
    proc = subprocess.Popen([str(SHAMIRFS), "update", str(storage.path), "-", *map(str, storage.cred(label))],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "SHAMIRFS_FAULT": "stop:after-ready-name"})
    proc.stdin.write(text)
    proc.stdin.close()
    wait_until(lambda: open(f"/proc/{proc.pid}/stat").read().split(") ", 1)[1].startswith("T"), what="the stop")
    return proc


def test_a_mount_does_not_wait_for_a_commit_that_holds_the_lock(storage, mount):
    proc = _stopped_update(storage, "a", doc("pending"))
    try:
        t0 = time.monotonic()
        m = mount(labels=("b",))
        assert time.monotonic() - t0 < 5
        assert m.path("b.json").read_bytes() == doc("other", 2)
        m.unmount()
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert storage.cat("a") == doc("pending")


def test_a_read_only_mount_of_a_read_only_copy_with_an_interrupted_commit(storage, mount, workdir):
    r = subprocess.run([str(SHAMIRFS), "update", str(storage.path), "-", *map(str, storage.cred("a"))],
                       input=doc("interrupted"), capture_output=True,
                       env={**os.environ, "SHAMIRFS_FAULT": "after-ready-name"})
    assert r.returncode == -signal.SIGKILL
    ro = workdir.parent / (workdir.name + "-ro")
    ro.mkdir()
    subprocess.run(["mount", "--bind", str(workdir), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        copy = _copy.copy(storage)
        copy.path = ro / storage.path.name
        m = Mount(copy, options=("ro",), mnt=tempfile.mkdtemp(prefix="mnt-", dir=workdir),
                  allow=["was interrupted and cannot be finished here"])
        try:
            assert m.path("a.json").read_bytes() == doc("old")   # the last complete commit
            assert "interrupted" in m.unmount()
        finally:
            m.cleanup()
    finally:
        subprocess.run(["umount", str(ro)], check=True)
        ro.rmdir()
    assert storage.cat("a") == doc("interrupted")  # with write access, recovery finishes it


def test_a_mount_through_a_symlink_commits_to_the_real_file(storage, mount, workdir):
    link = workdir / "link.json"
    link.symlink_to(storage.path)
    via = _copy.copy(storage)
    via.path = link
    m = Mount(via, mnt=tempfile.mkdtemp(prefix="mnt-", dir=workdir))
    try:
        m.path("a.json").write_bytes(doc("through the link"))
        m.unmount()
    finally:
        m.cleanup()
    assert link.is_symlink()
    assert storage.cat("a") == doc("through the link")


def test_sigterm_ends_a_foreground_mount_cleanly(storage, mount):
    m = mount()
    m.path("a.json").write_bytes(doc("before the signal"))
    m.proc.send_signal(signal.SIGTERM)
    assert m.proc.wait(timeout=30) == 0  # mount.shamirfs(8): SIGTERM unmounts, exit status 0
    wait_until(lambda: mounted_at(m.mnt) is None, 10, "the unmount after SIGTERM")
    assert storage.cat("a") == doc("before the signal")


def test_mount_8_conventions_fake_namespace_and_remount(storage, workdir, helper_on_path):
    mnt = workdir / "mnt"
    mnt.mkdir()
    opts = f"keyfile={storage.key('a')},passfile={storage.pw['a']}"
    # mount -f: everything but the mount, and mount(8) does not hang.
    r = subprocess.run(["mount", "-f", "-t", "shamirfs", str(storage.path), str(mnt), "-o", opts],
                       capture_output=True, env=helper_on_path, timeout=30)
    assert r.returncode == 0 and mounted_at(mnt) is None, r.stderr
    # -o remount: refused in one line.
    r = subprocess.run([str(MOUNT_HELPER), str(storage.path), str(mnt), "-o", "ro,remount," + opts],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "remount is not supported" in r.stderr and r.stderr.count("\n") == 2, r.stderr
    # -N: in the mount namespace of a process (here our own).
    r = subprocess.run([str(MOUNT_HELPER), str(storage.path), str(mnt), "-N", str(os.getpid()), "-o", opts],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    try:
        assert (mnt / "a.json").read_bytes() == doc("old")
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=True)


def test_idle_unmounts_after_that_long_unused_but_not_while_a_file_is_open(storage, mount):
    m = mount(options=("idle=1",))
    with open(m.path("a.json"), "rb") as f:
        time.sleep(2.5)
        assert mounted_at(m.mnt)  # a file is open
        assert f.read() == doc("old")
    wait_until(lambda: m.proc.poll() is not None, timeout=10, what="the idle unmount")
    assert m.proc.returncode == 0 and mounted_at(m.mnt) is None
