#!/usr/bin/env python3
"""MNIST (the bundled real 5,000-image sample, or the official idx files) as uint8
LMDB/LevelDB databases for Caffe; see --help."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sepnets.bootstrap import ensure_venv

ensure_venv()
from sepnets.cli.prepare_mnist import main
from sepnets.errors import cli

if __name__ == "__main__":
    sys.exit(cli(main)())
