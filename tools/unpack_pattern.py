#!/usr/bin/env python3
"""A packed pattern model (quant_pattern.py --pack) back to a standard .caffemodel."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sepnets.bootstrap import ensure_venv

ensure_venv()
from sepnets.cli.unpack_pattern import main
from sepnets.errors import cli

if __name__ == "__main__":
    sys.exit(cli(main)())
