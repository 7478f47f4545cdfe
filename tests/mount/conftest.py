"""Fixtures for the mount tests (see mountlib)."""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from mountlib import SCRATCH, Mount, doc
from sfs_common import Storage


@pytest.fixture
def workdir():
    SCRATCH.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix="m-", dir=SCRATCH))
    os.chmod(d, 0o755)
    yield d
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
    for m in mounts:
        m.cleanup()


@pytest.fixture
def m(mount):
    """Partitions a and b of a fresh storage, mounted."""
    return mount()
