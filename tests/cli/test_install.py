"""`meson install` puts the binaries, the three man pages, bash completion and
the editor settings (contrib/) in place."""
import subprocess

from sfs_common import BUILD


def test_meson_install_puts_everything_in_place(workdir):
    dest = workdir / "dest"
    r = subprocess.run(["meson", "install", "-C", str(BUILD), "--destdir", str(dest), "--no-rebuild"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    installed = {str(p.relative_to(dest)).split("/", 2)[-1] for p in dest.rglob("*") if p.is_file()}
    for want in ("bin/shamirfs", "sbin/mount.shamirfs", "share/man/man1/shamirfs.1", "share/man/man5/shamirfs.5",
                 "share/man/man8/mount.shamirfs.8", "share/vim/vimfiles/plugin/shamirfs.vim",
                 "share/emacs/site-lisp/shamirfs.el", "share/shamirfs/nanorc",
                 "share/bash-completion/completions/shamirfs"):
        assert any(p.endswith(want) for p in installed), (want, sorted(installed))
