#!/usr/bin/env python3
"""CIFAR-10 in the SEP-Nets authors' three versions (nin, highway, highway-padded) as float
LevelDB/LMDB databases with mean files; see --help for the exact preprocessing."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sepnets.bootstrap import ensure_venv

ensure_venv()
from sepnets.cli.prepare_cifar10 import main
from sepnets.errors import cli

if __name__ == "__main__":
    sys.exit(cli(main)())
