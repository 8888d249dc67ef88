#!/usr/bin/env python3
"""Image lists (ImageNet train.txt/val.txt) as LMDB/LevelDB databases, like Caffe's
convert_imageset, with workers and bad images skipped; see --help."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sepnets.bootstrap import ensure_venv  # noqa: E402

ensure_venv()
from sepnets.datasets.imagenet import main  # noqa: E402
from sepnets.errors import cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli(main)())
