#!/usr/bin/env python3
"""The engine's caffe command from any directory: `tools/caffe_torch.py train -solver S ...`
is `python -m sepnets.caffe train -solver S ...` (Caffe semantics on PyTorch)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sepnets.bootstrap import ensure_venv

ensure_venv()
from sepnets.engine.commands import main
from sepnets.errors import cli

if __name__ == "__main__":
    sys.exit(cli(main)(program="caffe_torch.py"))
