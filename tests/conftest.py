"""Shared fixtures: stock Caffe (required, never skipped), the authors' reference files."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sepnets import stockcaffe  # noqa: E402

SHARED = Path(os.environ.get("SEPNETS_SHARED", REPO.parent / "shared"))
AUTHORS = SHARED / "reference" / "sepnets-authors"
NETS = Path(__file__).resolve().parent / "nets"


@pytest.fixture(scope="session")
def stock():
    """Stock Caffe must be installed (make setup); its absence is a failure, not a skip."""
    if not stockcaffe.available():
        pytest.fail("stock Caffe is not available: run 'make setup' (or set CAFFE and PYCAFFE)")
    return stockcaffe


@pytest.fixture(scope="session")
def authors():
    if not AUTHORS.is_dir():
        pytest.fail(f"the authors' reference files are missing: {AUTHORS} (set SEPNETS_SHARED)")
    return AUTHORS


def run_tool(*argv, cwd=None, check=False):
    """Runs a project command with the test's python; returns the CompletedProcess."""
    cmd = [sys.executable] + [str(a) for a in argv]
    return subprocess.run(cmd, cwd=cwd or REPO, capture_output=True, text=True, check=check)
