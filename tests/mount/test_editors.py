"""Every way editors and tools save (vim's two modes, emacs batch and
interactive, nano, sed -i, perl -i, jq + mv, cp, shell redirection, Python,
rsync, atomic savers) commits the new text through a real mount and leaves no
stray name behind."""
import json
import os
import subprocess

import pytest

from mountlib import MARKER, doc, wait_until
from sfs_common import sh

BASE = ["a.json", "b.json"]


def committed(m, label="a"):
    return m.storage.cat(label)




def put_scratch(m, name, data):
    """A source file inside the mount (scratch, memory only: no plaintext on disk)."""
    with open(m.path(name), "wb") as f:
        f.write(data)


@pytest.mark.parametrize("mode", ["rename", "in place"])
def test_vim_save_modes(m, mode):
    # -u DEFAULTS: backupcopy=auto, the rename method; -u NONE: compatible, backupcopy=yes.
    init = "DEFAULTS" if mode == "rename" else "NONE"
    ino = os.stat(m.path("a.json")).st_ino
    r = subprocess.run(["vim", "-es", "-u", init, "-i", "NONE", "--cmd", "set bsk=",
                        "-c", "%s/old/new/", "-c", "wq", str(m.path("a.json"))], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert committed(m) == doc("new")
    # the rename method makes a new file; the in-place method overwrites the same one
    assert (os.stat(m.path("a.json")).st_ino != ino) == (mode == "rename")
    assert m.names() == BASE


def test_emacs_batch_with_backup_and_fsync(m):
    lisp = ('(progn (setq backup-enable-predicate (lambda (_) t) write-region-inhibit-fsync nil)'
            ' (find-file "%s") (goto-char (point-min))'
            ' (while (search-forward "old" nil t) (replace-match "new")) (save-buffer))') % m.path("a.json")
    r = subprocess.run(["emacs", "--batch", "-Q", "--eval", lisp], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert committed(m) == doc("new")
    assert m.names() == ["a.json", "a.json~", "b.json"]  # Emacs keeps its backup (in memory here)
    assert m.path("a.json~").read_bytes() == doc("old")



def test_emacs_interactive_under_tmux(m, tmux):
    t = tmux(f"emacs -nw -Q --eval '(setq backup-enable-predicate (lambda (_) t))' {m.path('a.json')}")
    t.wait_for(MARKER)
    t.keys("M-x")
    t.keys("replace-string", "Enter")
    t.keys("old", "Enter")
    t.keys("new", "Enter")
    t.keys("C-x", "C-s")
    wait_until(lambda: committed(m) == doc("new"), 20, "the emacs save to commit")
    t.keys("C-x", "C-c")
    wait_until(lambda: "a.json.swp" not in m.names() and ".#a.json" not in m.names(), 10, "emacs to exit")
    assert m.names() == ["a.json", "a.json~", "b.json"]


def test_nano_under_tmux(m, tmux):
    put_scratch(m, "one.json", b"")
    with open(m.path("a.json"), "wb") as f:
        f.write(f'{{"note": "old {MARKER}"}}\n'.encode())
    t = tmux(f"nano {m.path('a.json')}")
    t.wait_for(MARKER)
    t.keys("C-k")                                   # cut the line (into memory)
    t.keys(f'{{"note": "new {MARKER}"}}')       # typed on the now empty line
    t.keys("C-o")
    t.wait_for("File Name to Write")
    t.keys("Enter")
    wait_until(lambda: committed(m) == f'{{"note": "new {MARKER}"}}\n'.encode(), 20, "the nano save")
    t.keys("C-x")
    wait_until(lambda: ".a.json.swp" not in m.names(), 10, "nano to exit")
    os.unlink(m.path("one.json"))
    assert m.names() == BASE


def test_sed_in_place(m):
    r = sh(f"sed -i 's/old/new/' {m.path('a.json')}")
    assert r.returncode == 0, r.stderr
    assert committed(m) == doc("new")
    assert m.names() == BASE


def test_perl_in_place(m):
    r = sh(f"perl -pi -e 's/old/new/' {m.path('a.json')}")
    assert r.returncode == 0, r.stderr
    assert committed(m) == doc("new")
    assert m.names() == BASE


def test_jq_to_temp_then_mv(m):
    r = sh(f"cd {m.mnt} && jq '.note = \"new {MARKER}\"' a.json > t && mv t a.json")
    assert r.returncode == 0, r.stderr
    got = committed(m)
    assert json.loads(got) == {"note": f"new {MARKER}", "n": 1}
    assert m.path("a.json").read_bytes() == got
    assert m.names() == BASE


@pytest.mark.parametrize("how", ["cp", "cat >", "python open(w)", "rsync", "rsync --inplace", "atomic save"])
def test_writers_replace_the_document(m, how):
    new = doc("new", 7)
    put_scratch(m, "new.json", new)
    a, src = m.path("a.json"), m.path("new.json")
    if how == "cp":
        r = sh(f"cp {src} {a}")
    elif how == "cat >":
        r = sh(f"cat {src} > {a}")
    elif how == "rsync":
        r = sh(f"rsync -I {src} {a}")  # -I: same size and mtime second would look up to date
    elif how == "rsync --inplace":
        r = sh(f"rsync -I --inplace --no-whole-file {src} {a}")
    elif how == "python open(w)":
        r = subprocess.run(["python3", "-c", f"open({str(a)!r}, 'w').write(open({str(src)!r}).read())"],
                           capture_output=True)
    else:
        code = (f"import os\np={str(a)!r}\nt=os.path.join(os.path.dirname(p), '.a.json.XYZ123.tmp')\n"
                f"fd=os.open(t, os.O_RDWR|os.O_CREAT|os.O_EXCL|os.O_NOFOLLOW, 0o600)\n"
                f"os.write(fd, open({str(src)!r}, 'rb').read()); os.fchmod(fd, 0o600); os.fsync(fd); os.close(fd)\n"
                f"os.rename(t, p)\nd=os.open(os.path.dirname(p), os.O_RDONLY|os.O_DIRECTORY); os.fsync(d); os.close(d)\n")
        r = subprocess.run(["python3", "-c", code], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert committed(m) == new
    assert a.read_bytes() == new
    os.unlink(src)
    assert m.names() == BASE


def test_append_and_truncate(m):
    a = m.path("a.json")
    r = sh(f"echo '   ' >> {a}")
    assert r.returncode == 0
    assert committed(m) == doc("old") + b"   \n"
    assert os.stat(a).st_size == len(doc("old")) + 4
    r = sh(f"truncate -s {len(doc('old'))} {a}")
    assert r.returncode == 0, r.stderr
    assert committed(m) == doc("old")
    assert os.stat(a).st_size == len(doc("old"))
    assert m.names() == BASE


def test_jetbrains_safe_write_and_mv_from_elsewhere(m):
    a = m.path("a.json")
    put_scratch(m, "a.json___jb_tmp___", doc("jb"))
    os.rename(a, m.path("a.json___jb_old___"))     # the document name disappears
    os.rename(m.path("a.json___jb_tmp___"), a)     # rename onto an absent name: commit
    os.unlink(m.path("a.json___jb_old___"))
    assert committed(m) == doc("jb")
    # mv across file systems: unlink, create O_EXCL, write, close.
    os.unlink(a)
    fd = os.open(a, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, doc("moved"))
    os.close(fd)
    assert committed(m) == doc("moved")
    assert m.names() == BASE
