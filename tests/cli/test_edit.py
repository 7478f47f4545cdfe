"""shamirfs edit: $EDITOR on a copy in memory-backed storage, reopened on
invalid JSON, committed when valid, and nothing left behind."""
import os
import subprocess

import pytest

from sfs_common import SHAMIRFS, run


@pytest.fixture
def runtime_dir(workdir):
    """A private tmpfs as $XDG_RUNTIME_DIR, to see exactly what edit leaves there."""
    d = workdir / "run"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(d)], check=True)
    yield d
    subprocess.run(["umount", str(d)], check=True)


def fake_editor(workdir, texts):
    """An editor that writes texts[i] on its i-th run and records each run."""
    runs = workdir / "runs"
    script = workdir / "fake-editor"
    cases = "\n".join(f"  {i}) printf '%s' '{t}' > \"$1\" ;;" for i, t in enumerate(texts))
    script.write_text(f"""#!/bin/sh
n=$(cat {runs} 2>/dev/null | wc -l)
echo "$1" >> {runs}
case $n in
{cases}
esac
""")
    script.chmod(0o755)
    return script, runs


def test_edit_reopens_on_invalid_json_then_commits_and_leaves_nothing(storage, workdir, runtime_dir):
    storage.update("a", b'{"before": true}')
    editor, runs = fake_editor(workdir, ['{"secret": "EDITMARK", oops', '{"secret": "EDITMARK"}'])
    r = subprocess.run([str(SHAMIRFS), "edit", str(storage.path), *map(str, storage.cred("a"))], capture_output=True,
                       env={**os.environ, "EDITOR": str(editor), "XDG_RUNTIME_DIR": str(runtime_dir)}, timeout=60)
    assert r.returncode == 0, r.stderr
    paths = runs.read_text().split()
    assert len(paths) == 2 and paths[0].startswith(str(runtime_dir) + "/shamirfs-edit-"), paths
    assert b"not valid JSON: line 1" in r.stderr
    assert storage.cat("a") == b'{"secret": "EDITMARK"}'
    assert list(runtime_dir.iterdir()) == []  # no plaintext file remains
    hits = subprocess.run(["grep", "-rl", "--exclude=fake-editor", "EDITMARK", str(workdir)], capture_output=True).stdout
    assert hits == b"", hits


def test_edit_keeps_a_text_left_invalid_as_a_draft(storage, workdir, runtime_dir):
    editor, runs = fake_editor(workdir, ['{"half": ', '{"half": '])
    r = subprocess.run([str(SHAMIRFS), "edit", str(storage.path), *map(str, storage.cred("a"))], capture_output=True,
                       env={**os.environ, "EDITOR": str(editor), "XDG_RUNTIME_DIR": str(runtime_dir)}, timeout=60)
    assert r.returncode == 8 and b"kept as the partition's draft" in r.stderr, r.stderr
    assert storage.cat("a") == b"{}"
    assert run("cat", storage.path, *storage.cred("a"), "--draft").stdout == b'{"half": '
    assert list(runtime_dir.iterdir()) == []


def test_edit_refuses_a_disk_backed_runtime_dir_without_tmpfs(storage, workdir):
    # /dev/shm is the fallback; with neither memory-backed, nothing is written.
    r = subprocess.run([str(SHAMIRFS), "edit", str(storage.path), *map(str, storage.cred("a"))], capture_output=True,
                       env={**os.environ, "EDITOR": "true", "XDG_RUNTIME_DIR": str(workdir)}, timeout=60)
    shm_is_tmpfs = os.path.ismount("/dev/shm")
    if shm_is_tmpfs:
        assert r.returncode == 0 and b"no change" in r.stderr, r.stderr
        assert not [p for p in os.listdir("/dev/shm") if p.startswith("shamirfs-edit-")]
    else:
        assert r.returncode == 3 and b"memory-backed" in r.stderr
    assert not [p for p in workdir.iterdir() if p.name.startswith("shamirfs-edit-")]
