"""Deniability over time from the command line: defaults that say nothing,
deniable storages (every commit rewrites every slot, partitions not unlocked
are erased, and the terminal says so first), add and shrink."""
import json

from sfs_common import CHEAP_KDF, EXIT_AUTH, EXIT_USAGE, Storage, run


def test_default_slot_count_does_not_tell_the_partition_count(workdir):
    infos = []
    for n in (1, 3):
        path = workdir / f"p{n}.json"
        pw = workdir / "pw"
        pw.write_text("pw\n")
        labels = ["a", "b", "c"][:n]
        run("create", path, "--partitions", n, "--key-dir", workdir, *CHEAP_KDF,
            *[a for label in labels for a in ("--passfile", f"{label}={pw}")], check=True)
        for label in labels:
            (workdir / f"{label}.key").unlink()
        infos.append(json.loads(run("info", path, "--json", check=True).stdout))
    assert infos[0] == infos[1]
    assert infos[0]["slots"] == 4
    r = run("create", workdir / "five.json", "--partitions", "5", *CHEAP_KDF)
    assert r.returncode == EXIT_USAGE and b"more partitions than slots" in r.stderr


def cred(storage, *labels):
    out = []
    for label in labels:
        out += ["--keyfile", storage.key(label), "--passfile", storage.pw[label]]
    return out


def test_deniable_update_keeps_what_is_unlocked_and_erases_the_rest_after_saying_so(workdir):
    s = Storage(workdir, extra=("--deniable",))
    assert json.loads(run("info", s.path, "--json", check=True).stdout)["mode"] == "deniable"
    # Both unlocked: a changes, b is kept.
    r = run("update", s.path, "-", *cred(s, "a", "b"), input=b'{"a": 1}')
    assert r.returncode == 0, r.stderr
    assert b"ERASED" in r.stderr and b"2 partition(s) unlocked" in r.stderr
    assert s.cat("a") == b'{"a": 1}' and s.cat("b") == b"{}"
    before = s.path.read_bytes()
    # Only a unlocked: the terminal says b goes, and it does.
    r = run("update", s.path, "-", *cred(s, "a"), input=b'{"a": 2}')
    assert r.returncode == 0 and b"ERASED" in r.stderr
    assert s.cat("a") == b'{"a": 2}'
    r = run("cat", s.path, *cred(s, "b"))
    assert r.returncode == EXIT_AUTH
    assert s.path.read_bytes() != before


def test_add_and_shrink_from_the_command_line(workdir):
    s = Storage(workdir)
    new_pw = workdir / "c.pass"
    new_pw.write_text("password of c\n")
    key_c = workdir / "c.key"
    # A shared storage: the slots not unlocked may be someone else's.
    r = run("add", s.path, *cred(s, "a", "b"), "--label", "c", "--key-out", key_c, "--new-passfile", new_pw)
    assert r.returncode == EXIT_USAGE and b"--all-unlocked" in r.stderr
    assert not key_c.exists()
    r = run("add", s.path, *cred(s, "a", "b"), "--label", "c", "--key-out", key_c, "--new-passfile", new_pw,
            "--all-unlocked")
    assert r.returncode == 0, r.stderr
    assert b"lost key or password is a lost document" in r.stderr
    assert run("cat", s.path, "--keyfile", key_c, "--passfile", new_pw, check=True).stdout == b"{}"
    big = b'{"k": "' + b"x" * 3_000_000 + b'"}'
    assert s.update("a", big).returncode == 0
    grown = json.loads(run("info", s.path, "--json", check=True).stdout)["capacity"]
    assert s.update("a", b'{"k": 1}').returncode == 0
    r = run("shrink", s.path, *cred(s, "a", "b"), "--keyfile", key_c, "--passfile", new_pw, "--all-unlocked")
    assert r.returncode == 0, r.stderr
    assert f"capacity: {grown} -> 16 rows".encode() in r.stdout
    assert s.cat("a") == b'{"k": 1}' and s.cat("b") == b"{}"
    assert run("fsck", s.path).returncode == 0
