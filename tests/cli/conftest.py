"""Fixtures for the black-box tests of the shamirfs command line."""
import shutil

import pytest

from sfs_common import ROOT, Storage, make_workdir


@pytest.fixture
def workdir():
    """A scratch directory removed afterwards (it holds key and password files)."""
    d = make_workdir(ROOT / "build" / "test-scratch")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def storage(workdir):
    return Storage(workdir)
