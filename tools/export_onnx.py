#!/usr/bin/env python3
"""A TEST-phase Caffe net and its caffemodel as ONNX (pattern layers stored low-bit)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sepnets.bootstrap import ensure_venv

ensure_venv()
from sepnets.cli.export_onnx import main
from sepnets.errors import cli

if __name__ == "__main__":
    sys.exit(cli(main)())
