"""Where things are, decided once.

- REPO: the toolkit's own files (tools/, quant_pattern.py, tests/), wherever it is checked out.
- root(): the working root. Every command reads and writes its data/, models/ and logs/ there
  and finds prototxt/<net>/ there: the current directory, which is also where Caffe resolves
  the relative paths inside prototxts and solvers (`source: "data/mnist/..."`,
  `snapshot_prefix: "models/lenet/lenet"`). The Makefile runs every command in the repository
  root; any directory laid out the same way (prototxt/<net>/ ...) works as a workspace.
- shared(): the team's shared files beside the checkout (../shared), or $SEPNETS_SHARED;
  authors() is the SEP-Nets authors' reference files in it.
"""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def root():
    return Path.cwd()


def shared():
    return Path(os.environ.get("SEPNETS_SHARED") or REPO.parent / "shared")


def authors():
    """The authors' prototxts, solvers and training log (used by tests and benchmarks)."""
    return shared() / "reference" / "sepnets-authors"
