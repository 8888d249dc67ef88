#!/usr/bin/env python3
"""Writes prototxt/<net>/{train_val,deploy,solver}.prototxt for every network (make nets)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sepnets.bootstrap import ensure_venv

ensure_venv()
from sepnets.cli.make_nets import main
from sepnets.errors import cli

if __name__ == "__main__":
    sys.exit(cli(main)())
