"""Fixtures for the mount tests (see mountlib)."""
import os
import shutil
import subprocess

import pytest

from mountlib import SCRATCH, Mount, doc
from sfs_common import Storage, Tmux, make_workdir


@pytest.fixture
def workdir():
    """A scratch directory other users can reach (the ordinary-user tests), removed afterwards."""
    d = make_workdir(SCRATCH, 0o755)
    yield d
    subprocess.run(["chattr", "-R", "-i", str(d)], capture_output=True)  # mount points a killed daemon left
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def storage(workdir):
    s = Storage(workdir)
    assert s.update("a", doc("old")).returncode == 0
    assert s.update("b", doc("other", 2)).returncode == 0
    return s


@pytest.fixture
def mount(storage):
    mounts = []

    def make(**kw):
        m = Mount(storage, **kw)
        mounts.append(m)
        return m

    yield make
    errors = []
    for m in mounts:  # every mount is cleaned up, then the first complaint fails the test
        try:
            m.cleanup()
        except AssertionError as e:
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def m(mount):
    """Partitions a and b of a fresh storage, mounted."""
    return mount()


@pytest.fixture
def tmux():
    """Terminal programs under tmux, closed afterwards."""
    sessions = []

    def make(cmd):
        t = Tmux(f"sfs{os.getpid()}x{len(sessions)}", cmd)
        sessions.append(t)
        return t

    yield make
    for t in sessions:
        t.close()
