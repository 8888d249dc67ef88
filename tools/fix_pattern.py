#!/usr/bin/env python3
"""Fine-tune net and solver prototxts with the pattern layers frozen (lr_mult 0, decay_mult 0)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sepnets.bootstrap import ensure_venv

ensure_venv()
from sepnets.cli.fix_pattern import main
from sepnets.errors import cli

if __name__ == "__main__":
    sys.exit(cli(main)())
