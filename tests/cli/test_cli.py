"""Black-box tests of the shamirfs CLI: create, cat, update, info."""
import json
import os
import re
import stat
import subprocess
import time

from sfs_common import (CHEAP_KDF, DATA, EXIT_AUTH, EXIT_CORRUPT, EXIT_INVALID_JSON, EXIT_IO, EXIT_MALFORMED_KEY,
                        EXIT_USAGE, SHAMIRFS, Storage, run, set_header_field, sha, talk)


def document(size, seed=1):
    """A realistic JSON document of about `size` bytes."""
    items, n = [], 0
    while sum(len(x) for x in items) < size:
        items.append(json.dumps({"id": n, "name": f"user-{n * seed % 9973} é日本", "score": n * 1.25,
                                 "tags": ["x", str(n % 7)], "nested": {"ok": n % 2 == 0}}, ensure_ascii=False))
        n += 1
    return ("{\"users\": [\n  " + ",\n  ".join(items) + "\n]}\n").encode()


def test_newcomer_story_two_partitions_1mb_round_trip(storage):
    doc = document(1 << 20)
    r = storage.update("a", doc)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    for field in ("committed:", "document rows:", "rows rewritten:", "shares regenerated:", "capacity:",
                  "bytes written:", "time:"):
        assert field in out
    assert storage.cat("a") == doc
    assert storage.cat("b") == b"{}"


def test_large_document_files_go_in_from_where_they_lie(storage, workdir):
    # A file of 1 MiB and more is read where it lies (mapped, not copied):
    # the same bytes go in, and invalid JSON is refused as from a pipe.
    doc = document(3 << 20)
    f = workdir / "big.json"
    f.write_bytes(doc)
    assert run("update", storage.path, f, *storage.cred("a")).returncode == 0
    assert storage.cat("a") == doc
    before = sha(storage.path)
    f.write_bytes(doc[:-5] + b",]}\n")
    r = run("update", storage.path, f, *storage.cred("a"))
    assert r.returncode == EXIT_INVALID_JSON and b"invalid JSON at line" in r.stderr
    assert sha(storage.path) == before


def test_a_document_file_changed_while_it_is_read_is_not_committed(storage, workdir):
    # The password comes through a FIFO, so the command waits for it after it
    # has mapped the document; the document is appended to meanwhile.
    doc = document(2 << 20)
    f = workdir / "big.json"
    f.write_bytes(doc)
    fifo = workdir / "pw.fifo"
    os.mkfifo(fifo)
    before = sha(storage.path)
    p = subprocess.Popen([str(SHAMIRFS), "update", str(storage.path), str(f), "--keyfile", str(storage.key("a")),
                          "--passfile", str(fifo)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)
    with open(f, "ab") as out:
        out.write(b" ")
    fifo.write_bytes(storage.pw["a"].read_bytes())
    _, err = p.communicate(timeout=120)
    assert p.returncode == EXIT_IO, err
    assert b"changed while it was read; nothing was committed" in err
    assert sha(storage.path) == before
    assert [x for x in storage.dir.iterdir() if ".shamirfs-tmp" in x.name] == []
    assert run("update", storage.path, f, *storage.cred("a")).returncode == 0
    assert storage.cat("a") == doc + b" "


def test_create_writes_0600_files_and_prints_keys_without_key_dir(workdir):
    s = Storage(workdir)
    assert stat.S_IMODE(s.path.stat().st_mode) == 0o600
    for label in ("a", "b"):
        assert stat.S_IMODE(s.key(label).stat().st_mode) == 0o600
        assert re.fullmatch(r"sfk1-([a-z2-7]{6}-){5}[a-z2-7]{6}\n", s.key(label).read_text())
    pa = workdir / "pa"
    pa.write_text("x\n")
    r = run("create", workdir / "printed.json", "--partitions", "1", "--passfile", f"a={pa}", *CHEAP_KDF)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(rb"a: sfk1-[a-z2-7-]+\n", r.stdout)
    # refuses to overwrite a storage or a key file
    r = run("create", s.path, "--key-dir", s.keys, *CHEAP_KDF, "--passfile", f"a={pa}", "--passfile", f"b={pa}")
    assert r.returncode == EXIT_USAGE
    assert b"already exists" in r.stderr


def test_update_from_file_and_pretty_unicode_kept_byte_for_byte(storage, workdir):
    doc = '{\n\t"名前" : "Jürgen 🔑",\n    "n": [1,   2]   \n}\n\n'.encode()
    assert storage.update("b", doc).returncode == 0
    assert storage.cat("b") == doc
    assert storage.cat("a") == b"{}"


def test_invalid_json_is_refused_and_nothing_changes(storage):
    before = sha(storage.path)
    r = storage.update("a", b'{"a": 1,\n "b": [1, 2}\n')
    assert r.returncode == EXIT_INVALID_JSON
    assert b"invalid JSON at line 2, column" in r.stderr
    assert sha(storage.path) == before
    assert storage.update("a", b"").returncode == EXIT_INVALID_JSON
    assert storage.cat("a") == b"{}"


def test_dry_run_reports_without_writing(storage):
    before = sha(storage.path)
    r = storage.update("a", document(20000), "--dry-run")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "dry run: nothing written" in out
    assert re.search(r"rows now: 1\n", out)
    after = int(re.search(r"rows after: (\d+)", out).group(1))
    assert after > 2
    pct = float(re.search(r"size change: \+([\d.]+) %", out).group(1))
    assert abs(pct - 100.0 * (after - 1) / 1) < 0.1
    assert "warning: the document's size changes by more than 50 %" in out
    assert re.search(r"estimated time: \d+\.\d+ s", out)
    assert sha(storage.path) == before


def test_wrong_credentials_all_fail_the_same_way(storage, workdir):
    other = Storage(workdir, name="other.json")
    attempts = [
        ["--keyfile", storage.key("a"), "--passfile", storage.pw["b"]],   # wrong password
        ["--keyfile", storage.key("b"), "--passfile", storage.pw["a"]],   # other partition's key
        ["--keyfile", other.key("a"), "--passfile", storage.pw["a"]],     # other storage's key
        ["--keyfile", other.key("a"), "--passfile", other.pw["a"]],       # other storage's credentials
    ]
    results = {(r.returncode, r.stderr, r.stdout) for r in (run("cat", storage.path, *c) for c in attempts)}
    assert len(results) == 1
    rc, err, out = results.pop()
    assert rc == EXIT_AUTH
    assert err == b"shamirfs: cannot unlock: wrong partition map key or password\n"
    assert out == b""


def test_malformed_key_says_so(storage, workdir):
    k = storage.key("a").read_text()
    typo = workdir / "typo.key"
    typo.write_text(k[:8] + ("a" if k[8] != "a" else "b") + k[9:])
    r = run("cat", storage.path, "--keyfile", typo, "--passfile", storage.pw["a"])
    assert r.returncode == EXIT_MALFORMED_KEY
    assert b"malformed key: checksum mismatch" in r.stderr


def test_info_prints_public_parameters_only(storage):
    r = run("info", storage.path, "--json", check=True)
    info = json.loads(r.stdout)
    assert set(info) == {"format_version", "field", "threshold", "shares", "slots", "columns", "chunk_bytes",
                         "chunks_per_row", "capacity_classes_per_doubling", "mode", "capacity", "kdf", "file_bytes"}
    assert info["threshold"] == 3 and info["shares"] == 9 and info["slots"] == 4 and info["columns"] == 36
    assert info["file_bytes"] == storage.path.stat().st_size
    text = run("info", storage.path, check=True).stdout.decode()
    assert "threshold: 3" in text and "capacity: 16 rows" in text
    # Nothing about partitions: no labels, no counts in use.
    assert "partition" not in text.lower() and " a" not in text.lower().replace("argon", "")


def test_info_is_the_same_with_one_or_two_partitions_written(workdir):
    s1, s2 = Storage(workdir, "one.json"), Storage(workdir, "two.json")
    s1.update("a", document(3000))
    s2.update("a", document(3000))
    s2.update("b", document(2500, 2))
    i1 = json.loads(run("info", s1.path, "--json", check=True).stdout)
    i2 = json.loads(run("info", s2.path, "--json", check=True).stdout)
    assert i1 == i2
    assert s1.path.stat().st_size == s2.path.stat().st_size


def test_missing_and_corrupt_storages_are_clear_errors(storage, workdir):
    r = run("info", workdir / "nope.json")
    assert r.returncode == EXIT_IO and b"cannot open storage" in r.stderr
    trunc = workdir / "trunc.json"
    trunc.write_bytes(storage.path.read_bytes()[:5000])
    r = run("cat", trunc, *storage.cred("a"))
    assert r.returncode == EXIT_CORRUPT and b"invalid storage file" in r.stderr
    garbage = workdir / "garbage.json"
    garbage.write_bytes(os.urandom(3000))
    r = run("info", garbage)
    assert r.returncode == EXIT_CORRUPT
    weak = workdir / "weak.json"
    weak.write_bytes(set_header_field(storage.path.read_bytes(), b'"ops":2', b'"ops":1'))
    r = run("info", weak)
    assert r.returncode == EXIT_CORRUPT and b"KDF ops 1 outside" in r.stderr


def test_usage_errors(storage):
    assert run().returncode == EXIT_USAGE
    assert run("frobnicate").returncode == EXIT_USAGE
    assert run("cat", storage.path, "--bogus", "1").returncode == EXIT_USAGE
    r = run("create", storage.dir / "x.json", "--threshold", "1", *CHEAP_KDF)
    assert r.returncode == EXIT_USAGE
    r = run("create", storage.dir / "y.json", "--kdf-ops", "1", "--passfile", f"a={storage.pw['a']}",
            "--partitions", "1")
    assert r.returncode == EXIT_USAGE and b"KDF ops 1" in r.stderr


def test_no_terminal_and_no_passfile_is_a_clear_error(storage):
    p = subprocess.run([str(SHAMIRFS), "cat", str(storage.path), "--keyfile", str(storage.key("a"))],
                       stdin=subprocess.DEVNULL, capture_output=True, start_new_session=True)
    assert p.returncode == EXIT_USAGE
    assert b"no terminal to ask on: use --passfile FILE or --extpass CMD" in p.stderr


def test_prompts_echo_the_key_not_the_password(storage):
    key = storage.key("a").read_bytes().strip()
    password = storage.pw["a"].read_bytes().strip()
    rc, shown = talk([str(SHAMIRFS), "cat", str(storage.path)],
                      [(b"Partition map key (or its key file):", b"a: " + key), (b"Password for partition a:", password)])
    assert rc == 0, shown
    assert shown.rstrip().endswith(b"{}")
    assert key in shown and password not in shown  # a key is not a password: seeing it pasted helps
    # The path of a key file is taken at the key prompt too.
    rc, shown = talk([str(SHAMIRFS), "cat", str(storage.path)],
                      [(b"Partition map key (or its key file):", str(storage.key("a")).encode()),
                       (b"Password:", password)])
    assert rc == 0 and shown.rstrip().endswith(b"{}"), shown


def test_create_asks_each_password_twice(workdir):
    mismatch = [(b"Password for partition a:", b"pw one"), (b"Repeat the password for partition a:", b"pw two")]
    # Three mismatched confirmations: an error, and nothing on disk.
    rc, shown = talk([str(SHAMIRFS), "create", str(workdir / "p.json"), "--partitions", "1", *CHEAP_KDF], mismatch * 3)
    assert rc == EXIT_USAGE and b"differ" in shown
    assert not (workdir / "p.json").exists()
    # A mistyped confirmation asks again; nothing typed before is lost.
    rc, shown = talk([str(SHAMIRFS), "create", str(workdir / "p.json"), "--partitions", "1", *CHEAP_KDF],
                      mismatch + [(b"Password for partition a:", b"pw same"),
                                  (b"Repeat the password for partition a:", b"pw same")])
    assert rc == 0, shown
    assert b"the two passwords differ; again" in shown
    assert re.search(rb"a: sfk1-[a-z2-7-]{41}", shown)
    assert b"lost key or password is a lost document" in shown
    assert b"pw same" not in shown


def test_create_never_leaves_a_storage_whose_keys_were_not_written(workdir):
    keys = workdir / "keys"
    keys.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(keys)], check=True)
    try:
        (keys / "filler").write_bytes(b"x" * 4096)  # the key directory is full
        pw = workdir / "pw"
        pw.write_text("pw\n")
        r = run("create", workdir / "k.json", "--key-dir", keys, *CHEAP_KDF, "--passfile", f"a={pw}",
                "--passfile", f"b={pw}")
        assert r.returncode != 0 and b"the new storage was removed again" in r.stderr, r.stderr
        assert not (workdir / "k.json").exists()
        assert sorted(p.name for p in keys.iterdir()) == ["filler"]
    finally:
        subprocess.run(["umount", str(keys)], check=True)


def test_golden_storage_reads_through_the_cli(workdir):
    pw = workdir / "golden.pass"
    pw.write_text("golden password a\n")
    r = run("cat", DATA / "golden-v1.json", "--keyfile", DATA / "golden-v1.a.key", "--passfile", pw, check=True)
    assert r.stdout == (DATA / "golden-v1.a.json").read_bytes()


def test_mistyped_commands_help_and_global_options(storage, workdir):
    mnt = workdir / "mnt"
    mnt.mkdir()
    r = run("pasword", storage.path, mnt)
    assert r.returncode == EXIT_USAGE and b"did you mean passwd?" in r.stderr
    assert not os.path.ismount(mnt)
    r = run("cat", "--help")
    assert r.returncode == 0 and r.stdout.startswith(b"usage: shamirfs [-v|-q] cat STORAGE") and b"update" not in r.stdout
    for cmd in ("create", "update", "info", "fsck", "add", "shrink", "passwd", "rekey", "status"):
        assert run(cmd, "--help").stdout.startswith(f"usage: shamirfs [-v|-q] {cmd} ".encode()), cmd
    # -v after the command is the global option it is before it.
    assert run("info", storage.path, "-v").returncode == 0


def test_out_of_memory_is_a_size_limit_not_an_internal_error(storage, workdir):
    big = workdir / "big.json"
    with open(big, "w") as f:
        f.write('{"x": "' + "a" * 200_000_000 + '"}')
    r = subprocess.run(["bash", "-c", f"ulimit -v 400000; exec {SHAMIRFS} update {storage.path} {big} "
                                      f"--keyfile {storage.key('a')} --passfile {storage.pw['a']}"],
                       capture_output=True, timeout=120)
    assert r.returncode == 9 and b"out of memory" in r.stderr, r.stderr
    assert storage.cat("a") != b"" and run("fsck", storage.path).returncode == 0  # nothing lost


def test_long_work_shows_a_percentage_on_a_terminal_only(workdir):
    pw = workdir / "pw"
    pw.write_text("progress pw\n")
    argv = [str(SHAMIRFS), "create", str(workdir / "big.json"), "--partitions", "1", *CHEAP_KDF,
            "--capacity", "600000", "--key-dir", str(workdir / "k"), "--passfile", f"a={pw}"]
    rc, shown = talk(argv, [], timeout=120)
    assert rc == 0, shown
    assert b"shamirfs: create " in shown and b" %" in shown, shown  # the percentage while it worked
    assert b"\r\x1b[K" in shown and shown.index(b"\r\x1b[K") < shown.index(b"created")  # wiped before the output
    r = subprocess.run([*argv[:2], str(workdir / "big2.json"), *argv[3:-4], "--key-dir", str(workdir / "k2"),
                        "--passfile", f"a={pw}"], capture_output=True, timeout=120)
    assert r.returncode == 0 and b"%" not in r.stderr, r.stderr  # not a terminal: nothing
