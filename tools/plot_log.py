#!/usr/bin/env python3
"""Plots, parse_log.py-style CSV tables and a summary of Caffe training logs."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sepnets.bootstrap import ensure_venv

ensure_venv()
from sepnets.cli.plot_log import main
from sepnets.errors import cli

if __name__ == "__main__":
    sys.exit(cli(main)())
