"""Credentials that live as long as the data: passwd and rekey re-seal one
partition through the commit path; the old password or key then fails with the
usual error, and the other partition is untouched."""
from sfs_common import EXIT_AUTH, EXIT_USAGE, Layout, run


def changed_cells(before, after):
    """The slots with a cell that differs between two versions of a storage."""
    lay = Layout(before)
    return {c // lay.shares for r in range(lay.capacity) for c in range(lay.slots * lay.shares)
            if before[lay.cell(r, c):lay.cell(r, c) + 88] != after[lay.cell(r, c):lay.cell(r, c) + 88]}


def test_passwd_changes_the_password_and_nothing_else(storage, workdir):
    storage.update("a", b'{"secret": 1}')
    storage.update("b", b'{"other": 2}')
    before = storage.path.read_bytes()
    new = workdir / "new.pass"
    new.write_text("a brand new password\n")
    r = run("passwd", storage.path, *storage.cred("a"), "--new-passfile", new)
    assert r.returncode == 0, r.stderr
    assert run("cat", storage.path, "--keyfile", storage.key("a"), "--passfile", new, check=True).stdout == b'{"secret": 1}'
    old = run("cat", storage.path, *storage.cred("a"))
    wrong = run("cat", storage.path, "--keyfile", storage.key("a"), "--passfile", storage.pw["b"])
    assert old.returncode == EXIT_AUTH and old.stderr == wrong.stderr  # the usual, indistinguishable error
    assert storage.cat("b") == b'{"other": 2}'
    assert len(changed_cells(before, storage.path.read_bytes())) == 1  # only a's slot was rewritten


def test_rekey_replaces_the_key_and_nothing_else(storage, workdir):
    storage.update("a", b'{"secret": 1}')
    before = storage.path.read_bytes()
    new_key = workdir / "a-new.key"
    r = run("rekey", storage.path, *storage.cred("a"), "--new-key-out", new_key)
    assert r.returncode == 0, r.stderr
    assert new_key.stat().st_mode & 0o777 == 0o600
    assert run("cat", storage.path, "--keyfile", new_key, "--passfile", storage.pw["a"], check=True).stdout == b'{"secret": 1}'
    assert run("cat", storage.path, *storage.cred("a")).returncode == EXIT_AUTH
    assert storage.cat("b") == b"{}"
    assert len(changed_cells(before, storage.path.read_bytes())) == 1
    # An existing output file is never overwritten.
    r = run("rekey", storage.path, "--keyfile", new_key, "--passfile", storage.pw["a"], "--new-key-out", new_key)
    assert r.returncode == EXIT_USAGE and b"already exists" in r.stderr


def test_password_files_first_line_up_to_4096_bytes_whatever_follows(storage, workdir):
    storage.update("a", b'{"k": 1}')
    # The first line counts, however long the file: 100 KiB follow it here.
    pf = workdir / "long.pass"
    pf.write_bytes(storage.pw["a"].read_bytes().splitlines()[0] + b"\n" + b"x" * (100 << 10))
    r = run("cat", storage.path, "--keyfile", storage.key("a"), "--passfile", pf)
    assert r.returncode == 0 and r.stdout == b'{"k": 1}', r.stderr
    # A first line over the documented 4096 bytes is refused, saying why.
    pf.write_bytes(b"p" * 4097 + b"\n")
    r = run("cat", storage.path, "--keyfile", storage.key("a"), "--passfile", pf)
    assert r.returncode == 2 and b"longer than 4096 bytes" in r.stderr, r.stderr
    # A password of exactly 4096 bytes can be set and used (prompts take as much).
    pf.write_bytes(b"q" * 4096 + b"\n")
    r = run("passwd", storage.path, *storage.cred("a"), "--new-passfile", pf)
    assert r.returncode == 0, r.stderr
    assert run("cat", storage.path, "--keyfile", storage.key("a"), "--passfile", pf).stdout == b'{"k": 1}'


def test_extpass_on_the_command_line_and_key_lines_with_their_label(storage, workdir):
    storage.update("a", b'{"k": 2}')
    # The line create prints ("a: sfk1-...") is a key file too.
    line = workdir / "printed.key"
    line.write_bytes(b"a: " + storage.key("a").read_bytes())
    r = run("cat", storage.path, "--keyfile", line, "--extpass", f"test \"$SHAMIRFS_LABEL\" = a && cat {storage.pw['a']}")
    assert r.returncode == 0 and r.stdout == b'{"k": 2}', r.stderr
    r = run("update", storage.path, "-", "--keyfile", storage.key("a"), "--extpass", "echo wrong", input=b"{}")
    assert r.returncode == 6, r.stderr
    r = run("cat", storage.path, "--keyfile", storage.key("a"), "--extpass", "exit 3")
    assert r.returncode == 2 and b"extpass command failed" in r.stderr, r.stderr
