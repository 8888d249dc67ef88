#!/usr/bin/env python3
"""Writes prototxt/<net>/{train_val,deploy,solver}.prototxt for every network (make nets)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sepnets.bootstrap import ensure_venv  # noqa: E402

ensure_venv()
from sepnets.errors import cli  # noqa: E402
from sepnets.netgen import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli(main)())
