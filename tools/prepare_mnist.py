#!/usr/bin/env python3
"""MNIST (the bundled real 5,000-image sample, or the official idx files) as uint8
LMDB/LevelDB databases for Caffe; see --help."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sepnets.bootstrap import ensure_venv  # noqa: E402

ensure_venv()
from sepnets.datasets.mnist import main  # noqa: E402
from sepnets.errors import cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli(main)())
