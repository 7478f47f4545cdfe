"""An ordinary user creates, mounts (through fusermount3), edits and unmounts,
with a locked-memory limit too small for the document."""
import os
import pwd
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from mountlib import MARKER, MOUNT_HELPER, SHAMIRFS, mounted_at, traversable_by_others, wait_until
from sfs_common import CHEAP_KDF, talk

USER = "sfstestuser"


@pytest.fixture
def user():
    if os.geteuid() != 0:
        pytest.fail("this test creates a user and needs root (CI runs as root)")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True)
    # Debian's udev makes /dev/fuse 0666; some containers leave it 0600, and then
    # libfuse cannot mount for ordinary users at all. Test as on a standard system.
    mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    os.chmod("/dev/fuse", 0o666)
    yield pwd.getpwnam(USER)
    os.chmod("/dev/fuse", mode)


def user_home(workdir, user, name):
    """A 0700 directory of the user's, and the binaries it can run (copies if
    the build is out of its reach)."""
    d = workdir / name
    d.mkdir()
    shamirfs, helper = SHAMIRFS, MOUNT_HELPER
    if not traversable_by_others(SHAMIRFS.parent):
        (workdir / "bin").mkdir(exist_ok=True)
        shamirfs, helper = (Path(shutil.copy2(b, workdir / "bin")) for b in (SHAMIRFS, MOUNT_HELPER))
    os.chown(d, user.pw_uid, user.pw_gid)
    os.chmod(d, 0o700)
    return d, shamirfs, helper


def as_user(cmd, **kw):
    return subprocess.run(["runuser", "-u", USER, "--", "sh", "-c", cmd], capture_output=True, timeout=120, **kw)


def test_unprivileged_user_with_a_small_memlock_limit(workdir, user):
    d, shamirfs, helper = user_home(workdir, user, "home")
    r = as_user(f"cd {d} && umask 077 && printf 'user pw\\n' > pw && mkdir keys mnt && "
                f"{shamirfs} create enc.json --partitions 1 {' '.join(CHEAP_KDF)} --key-dir keys --passfile a=pw")
    assert r.returncode == 0, r.stderr
    big = '{"items": [' + ",".join(f'"{MARKER} item {i:06d}"' for i in range(300000)) + "]}"  # 10 MB
    r = as_user(f"cd {d} && {shamirfs} update enc.json - --keyfile keys/a.key --passfile pw", input=big.encode())
    assert r.returncode == 0, r.stderr
    # Debian's default 8 MiB of locked memory cannot hold the 10 MB document: the
    # mount works, and says so on the terminal with the limit and what to do.
    r = as_user(f"cd {d} && ulimit -l 8192 && {helper} enc.json mnt -o keyfile=keys/a.key,passfile=pw")
    try:
        assert r.returncode == 0, r.stderr
        assert r.stderr.count(b"memory is not locked") == 1, r.stderr
        assert b"RLIMIT_MEMLOCK is 8192 KiB" in r.stderr and b"ulimit -l" in r.stderr, r.stderr
        fields = mounted_at(d / "mnt")
        assert fields and fields[2] == "fuse.shamirfs" and f"user_id={user.pw_uid}" in fields[3]
        r = as_user(f"cd {d}/mnt && stat -c '%U %a' a.json && wc -c < a.json")
        assert r.stdout.split() == [USER.encode(), b"600", str(len(big)).encode()]
        r = as_user(f"cd {d}/mnt && sed -i 's/item 000000/item changed/' a.json && grep -c 'item changed' a.json")
        assert r.returncode == 0 and r.stdout == b"1\n", r.stderr
    finally:
        u = as_user(f"fusermount3 -u {d}/mnt")
        if mounted_at(d / "mnt"):
            subprocess.run(["umount", "-l", str(d / "mnt")])
    assert u.returncode == 0, u.stderr
    wait_until(lambda: subprocess.run(["pgrep", "-u", USER, "-f", "mount.shamirfs"]).returncode != 0, 10,
               "the user's daemon to exit")
    r = as_user(f"cd {d} && {shamirfs} cat enc.json --keyfile keys/a.key --passfile pw")
    assert r.returncode == 0
    assert r.stdout == big.replace("item 000000", "item changed").encode()


def test_uid_gid_umask_and_allow_other(storage, mount, user):
    m = mount(options=[f"uid={user.pw_uid}", f"gid={user.pw_gid}", "umask=022", "allow_other"])
    st = os.stat(m.path("a.json"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (user.pw_uid, user.pw_gid, 0o644)
    root = os.stat(m.mnt)
    assert stat.S_IMODE(root.st_mode) == 0o755 and root.st_uid == user.pw_uid
    assert "allow_other" in mounted_at(m.mnt)[3] and "default_permissions" in mounted_at(m.mnt)[3]
    # Another user reads through allow_other; the kernel checks the modes (default_permissions).
    r = as_user(f"cat {m.path('a.json')}")
    assert r.returncode == 0 and MARKER.encode() in r.stdout
    os.chmod(m.path("b.json"), 0o600)
    os.chown(m.path("b.json"), 0, 0)
    r = as_user(f"cat {m.path('b.json')}")
    assert r.returncode != 0 and b"Permission denied" in r.stderr


def test_prompts_for_keys_and_passwords_until_an_empty_key(storage):
    import tempfile
    mnt = tempfile.mkdtemp(prefix="mnt-", dir=storage.dir)
    b_key = storage.key("b").read_bytes().strip()
    secrets = [storage.pw["b"].read_bytes().strip(), storage.pw["a"].read_bytes().strip()]
    # b's key first, as the line create prints it; then a's key file's path, a wrong password, the right one.
    rc, shown = talk([str(MOUNT_HELPER), str(storage.path), mnt],
                     [(b"Key for the first partition (or its key file):", b"b: " + b_key),
                      (b"Password for partition b:", secrets[0]),
                      (b"Key for the next partition (empty to finish):", str(storage.key("a")).encode()),
                      (b"Password for this partition:", b"wrong password"),
                      (b"Key for the next partition (empty to finish):", str(storage.key("a")).encode()),
                      (b"Password for this partition:", secrets[1]),
                      (b"Key for the next partition (empty to finish):", b"")], timeout=60)
    try:
        assert rc == 0, shown
        assert sorted(os.listdir(mnt)) == ["a.json", "b.json"]
        assert (Path(mnt) / "b.json").read_bytes() == storage.cat("b")  # named after the partition, not the order
        assert b_key in shown  # the key is echoed (it is not a password)
        for secret in secrets:
            assert secret not in shown  # passwords are not
    finally:
        subprocess.run(["fusermount3", "-u", mnt])
    # An empty first key unlocks nothing: an error, nothing mounted.
    rc, shown = talk([str(MOUNT_HELPER), str(storage.path), mnt], [(b"Key for the first partition (or its key file):", b"")], timeout=30)
    assert rc == 2 and b"nothing to mount" in shown
    assert mounted_at(mnt) is None


def test_ordinary_user_sees_outside_changes_keeps_handles_and_is_safe_after_a_lazy_unmount(workdir, user):
    subprocess.run(["groupadd", "-f", "sfstestgrp"], check=True)
    subprocess.run(["usermod", "-aG", "sfstestgrp", USER], check=True)
    d, shamirfs, helper = user_home(workdir, user, "home2")
    cred = "--keyfile keys/a.key --passfile pw"
    r = as_user(f"cd {d} && umask 077 && printf 'user pw\\n' > pw && mkdir keys mnt full && touch full/x && "
                f"{shamirfs} create enc.json --partitions 1 {' '.join(CHEAP_KDF)} --key-dir keys --passfile a=pw && "
                f"echo '{{\"v\": \"first {MARKER}\"}}' | {shamirfs} update enc.json - {cred}")
    assert r.returncode == 0, r.stderr
    opts = "-o keyfile=keys/a.key,passfile=pw"
    r = as_user(f"cd {d} && {helper} enc.json full {opts}")
    assert r.returncode == 15 and b"not empty" in r.stderr, r.stderr
    r = as_user(f"cd {d} && {helper} enc.json mnt {opts}")
    assert r.returncode == 0, r.stderr
    try:
        # An fd opened before an outside commit reads the old text; a new open the new one.
        r = as_user(f"cd {d} && exec 3< mnt/a.json && echo '{{\"v\": \"second {MARKER}\"}}' | "
                    f"{shamirfs} update enc.json - {cred} >/dev/null && cat mnt/a.json && cat <&3 && "
                    f"t=$(mktemp -d -p mnt) && mkdir -p $t/x/y && echo s > $t/x/y/f && rm -r $t && ls mnt")
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().split("\n") == [f'{{"v": "second {MARKER}"}}', f'{{"v": "first {MARKER}"}}',
                                                 "a.json", ""]
        # An owner may chgrp to a group it belongs to (rsync -a, install -g).
        r = as_user(f"cd {d} && touch mnt/x && chgrp sfstestgrp mnt/x && stat -c %G mnt/x && rm mnt/x")
        assert r.returncode == 0 and r.stdout == b"sfstestgrp\n", r.stderr
        # Lazily unmounted while a reader holds it: the directory under it takes no file.
        holder = subprocess.Popen(["runuser", "-u", USER, "--", "sh", "-c", f"exec sleep 60 < {d}/mnt/a.json"])
        time.sleep(0.5)
        r = as_user(f"fusermount3 -u -z {d}/mnt && (echo '{MARKER}' > {d}/mnt/a.json) 2>&1; ls -A {d}/mnt")
        assert b"Permission denied" in r.stdout, r.stdout + r.stderr
        subprocess.run(["pkill", "-u", USER, "-x", "sleep"])  # (runuser does not pass the kill on)
        holder.wait()
    finally:
        if mounted_at(d / "mnt"):
            as_user(f"fusermount3 -u {d}/mnt")
    wait_until(lambda: subprocess.run(["pgrep", "-u", USER, "-f", "mount.shamirfs"]).returncode != 0, 10,
               "the user's daemon to exit")
    assert stat.S_IMODE(os.stat(d / "mnt").st_mode) == 0o700
    assert os.listdir(d / "mnt") == []
