#!/usr/bin/env python3
"""Pattern binarization of a .caffemodel, as in the SEP-Nets authors' instructions:

    python quant_pattern.py --offset 0.06 --filter 3x3 5x5 --model x.caffemodel

See `python quant_pattern.py --help` and README.md (quant_pattern.py and fix_pattern.py).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sepnets.bootstrap import ensure_venv

ensure_venv()
from sepnets.cli.quant_pattern import main
from sepnets.errors import cli

if __name__ == "__main__":
    sys.exit(cli(main)())
