#!/usr/bin/env python3
"""Image lists (ImageNet train.txt/val.txt) as LMDB/LevelDB databases, like Caffe's
convert_imageset, with workers and bad images skipped; see --help."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sepnets.bootstrap import ensure_venv

ensure_venv()
from sepnets.cli.prepare_imagenet import main
from sepnets.errors import cli

if __name__ == "__main__":
    sys.exit(cli(main)())
