"""Editors keep text outside the file they edit: Vim's ~/.viminfo holds every
deleted line (registers). With the shipped contrib/vim plugin, a document on
the mount leaves nothing there; without it, the marker is in ~/.viminfo (the
positive control: the test can fail)."""
import shutil

from mountlib import MARKER, Mount, wait_until
from sfs_common import ROOT, Tmux

PLUGIN = ROOT / "contrib" / "vim" / "plugin" / "shamirfs.vim"


def delete_the_marker_line_with_vim(storage, home):
    """Vim as a person runs it (its defaults, ~/.viminfo on), in HOME=home:
    the line with the marker deleted (into a register), saved, Vim quit."""
    m = Mount(storage)
    session = f"sfsviminfo-{home.name}"
    t = Tmux(session, f"env HOME={home} vim {m.path('a.json')}")
    try:
        t.wait_for(MARKER, 30)
        t.keys("2", "G", "d", "d", ":wq", "Enter")
        wait_until(lambda: MARKER.encode() not in storage.cat("a"), 20, "vim's save")
        wait_until(lambda: session not in Tmux.sessions(), 20, "vim to exit")
    finally:
        t.close()
        m.cleanup()


def test_vim_history_keeps_no_document_text_with_the_shipped_plugin(storage, workdir):
    home = workdir / "home-plugin"
    (home / ".vim" / "plugin").mkdir(parents=True)
    shutil.copy(PLUGIN, home / ".vim" / "plugin")
    (home / ".vimrc").write_text("source $VIMRUNTIME/defaults.vim\n")  # what Vim does without a vimrc
    delete_the_marker_line_with_vim(storage, home)
    info = home / ".viminfo"
    assert not info.exists() or MARKER.encode() not in info.read_bytes()


def test_without_the_plugin_vim_keeps_the_deleted_line(storage, workdir):
    home = workdir / "home-plain"
    home.mkdir()
    try:
        delete_the_marker_line_with_vim(storage, home)
        assert MARKER.encode() in (home / ".viminfo").read_bytes()
    finally:
        (home / ".viminfo").unlink(missing_ok=True)  # the no-plaintext test must not find this one
