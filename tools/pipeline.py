#!/usr/bin/env python3
"""The paper's procedure step by step (what the Makefile's train/quant/finetune/eval/plot/
results/demo targets run): see `python tools/pipeline.py --help`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sepnets.bootstrap import ensure_venv

ensure_venv()
from sepnets.cli.pipeline import main
from sepnets.errors import cli

if __name__ == "__main__":
    sys.exit(cli(main)())
