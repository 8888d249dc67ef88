"""Shared fixtures: stock Caffe (required, never skipped), the authors' reference files.
Shared helpers are the package tests.support."""
import pytest

from sepnets.caffe import stock as stockcaffe
from tests.support.project import AUTHORS


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
