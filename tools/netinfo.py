#!/usr/bin/env python3
"""Shapes, parameters by kind, MACs and R/B/BQ model sizes of a Caffe net prototxt."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sepnets.bootstrap import ensure_venv

ensure_venv()
from sepnets.cli.netinfo import main
from sepnets.errors import cli

if __name__ == "__main__":
    sys.exit(cli(main)())
