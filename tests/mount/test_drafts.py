"""Nothing typed is lost: a text that could not be committed is kept as a
sealed draft and shows again at the next mount; an empty text is pending, not
an error; shamirfs status says what is pending and why; files that are not
partitions are named before they vanish."""
import json
import os
import subprocess

from mountlib import MARKER, Mount, doc, wait_until
from sfs_common import EXIT_USAGE, SHAMIRFS, Tmux, run, sh

EXIT_PENDING = 14
REFUSED = r"(a commit at \w+ was refused: invalid JSON|kept a text that could not be committed)"


def status(m):
    r = subprocess.run([str(SHAMIRFS), "status", str(m.mnt)], capture_output=True, text=True)
    return r.returncode, r.stdout


def test_a_refused_text_comes_back_as_a_draft(storage):
    m = Mount(storage, allow=[REFUSED])
    try:
        text = f"not json {MARKER}"
        r = sh(f"printf '{text}' > {m.path('a.json')}")
        assert r.returncode != 0 or True  # the shell may or may not report close()'s error
        rc, out = status(m)
        assert rc == EXIT_PENDING and "partition a:" in out and "uncommitted text: yes" in out
        assert "invalid JSON at line 1, column 2" in out
        m.unmount()
    finally:
        m.cleanup()
    assert storage.cat("a") == doc("old")  # the committed document is unchanged
    assert run("cat", storage.path, *storage.cred("a"), "--draft", check=True).stdout == text.encode()
    again = Mount(storage)
    try:
        assert sorted(os.listdir(again.mnt)) == ["a.draft.json", "a.json", "b.json"]
        assert again.path("a.draft.json").read_bytes() == text.encode()
        assert again.path("a.json").read_bytes() == doc("old")
        assert status(again)[0] == EXIT_PENDING
        # Saving valid JSON to a.json drops the draft.
        again.path("a.json").write_bytes(doc("fixed"))
        assert sorted(os.listdir(again.mnt)) == ["a.json", "b.json"]
        again.unmount()
    finally:
        again.cleanup()
    r = run("cat", storage.path, *storage.cred("a"), "--draft")
    assert r.returncode == EXIT_USAGE and b"no draft" in r.stderr
    assert storage.cat("a") == doc("fixed")


def test_removing_the_draft_file_drops_the_draft(storage):
    m = Mount(storage, allow=[REFUSED])
    try:
        sh(f"printf '{{broken' > {m.path('b.json')}")
        m.unmount()
    finally:
        m.cleanup()
    again = Mount(storage)
    try:
        os.unlink(again.path("b.draft.json"))
        again.unmount()
    finally:
        again.cleanup()
    assert run("cat", storage.path, *storage.cred("b"), "--draft").returncode == EXIT_USAGE
    assert storage.cat("b") == doc("other", 2)


def test_empty_then_append_works(storage):
    m = Mount(storage)
    try:
        a = m.path("a.json")
        assert sh(f"truncate -s 0 {a}").returncode == 0
        assert a.read_bytes() == b""
        assert sh(f"printf '{{\"x\":1}}' >> {a}").returncode == 0
        m.unmount()
    finally:
        m.cleanup()
    assert storage.cat("a") == b'{"x":1}'


def test_an_empty_text_at_unmount_keeps_the_document_and_the_draft(storage):
    m = Mount(storage, allow=[REFUSED])
    try:
        assert sh(f"truncate -s 0 {m.path('a.json')}").returncode == 0
        m.unmount()
    finally:
        m.cleanup()
    assert storage.cat("a") == doc("old")
    assert run("cat", storage.path, *storage.cred("a"), "--draft", check=True).stdout == b""


def test_files_that_are_not_partitions_are_named_before_they_vanish(storage):
    m = Mount(storage, allow=["files that are not partitions vanish at unmount"])
    try:
        m.path("notes.txt").write_bytes(b"12345")
        m.path("a.json~").write_bytes(b"backup")  # an editor's: not named
        rc, out = status(m)
        assert rc == EXIT_PENDING and "notes.txt (5 bytes)" in out and "a.json~" not in out
        log = m.unmount()
    finally:
        m.cleanup()
    assert "notes.txt (5 bytes)" in log and "a.json~" not in log


def editor_home(workdir):
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    return home


def test_vim_and_emacs_in_their_default_configuration_see_why(storage, workdir):
    home = editor_home(workdir)
    # Both save by rename and may put their backup back after the refusal: the
    # reason stays with the partition, not with an inode.
    for name, cmd, keys in [
        ("vim", "vim {f}", ("G", "o", "broken", "Escape", ":w", "Enter")),
        ("emacs", "emacs -nw {f}", ("M->", "broken", "C-x", "C-s")),
    ]:
        m = Mount(storage, allow=[REFUSED])
        t = Tmux(f"sfsdraft{name}{os.getpid()}", f"env HOME={home} " + cmd.format(f=m.path("a.json")))
        try:
            t.wait_for(MARKER, 30)
            t.keys(*keys)
            wait_until(lambda: "refused at" in status(m)[1], 20, f"{name}'s refusal in shamirfs status")
            out = status(m)[1]
            assert "partition a:" in out and "invalid JSON at line" in out and "column" in out, out
            r = sh(f"getfattr --only-values -n user.shamirfs.error {m.path('a.json')}")
            assert b"invalid JSON at line" in r.stdout, r.stderr
        finally:
            t.close()
            m.cleanup()
