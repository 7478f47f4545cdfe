"""Fixtures for the black-box tests of the shamirfs command line."""
import shutil
import tempfile
from pathlib import Path

import pytest

from sfs_common import ROOT, Storage


@pytest.fixture
def workdir():
    """A scratch directory removed afterwards (it holds key and password files)."""
    base = ROOT / "build" / "test-scratch"
    base.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix="cli-", dir=base))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def storage(workdir):
    return Storage(workdir)
