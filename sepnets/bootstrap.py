"""Lets `python tools/X.py` work with any python: re-runs the command with the project's
virtualenv (.venv, made by `make setup`) when the running interpreter lacks its packages."""
import os
import sys
from pathlib import Path

from sepnets.paths import REPO

VENV_PYTHON = REPO / ".venv" / "bin" / "python"


def ensure_venv():
    try:
        import google.protobuf  # noqa: F401
        import numpy  # noqa: F401
        return
    except ImportError:
        pass
    if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON)] + sys.argv)
    sys.exit(f"{Path(sys.argv[0]).name}: error: numpy/protobuf are missing; run 'make setup' "
             "first (it makes .venv), then use .venv/bin/python or 'source .venv/bin/activate'")
