#!/usr/bin/env python3
"""Fine-tune net and solver prototxts with the pattern layers frozen (lr_mult 0, decay_mult 0)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sepnets.bootstrap import ensure_venv  # noqa: E402

ensure_venv()
from sepnets.errors import cli  # noqa: E402
from sepnets.fixpattern import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli(main)())
