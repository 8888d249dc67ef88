"""Caffe's own tools/extra/parse_log.py (BVLC's, with extract_seconds.py), taken from the
pinned sdist that `make setup` caches, as the reference the log parser is checked and
benchmarked against. Extracted into a temporary directory when needed, never kept in the
repository.

The one change made to it: its last line is a Python 2 print statement
(`print 'Wrote %s' % output_filename`), a syntax error under Python 3; it becomes a call.
"""
import csv
import importlib.util
import subprocess
import sys
import tarfile
from pathlib import Path

from sepnets.caffe.proto_build import SDIST_NAME, SDIST_VERSION, _sdist_path

_MEMBER_DIR = f"{SDIST_NAME}-{SDIST_VERSION}/tools/extra"
_PY2_PRINT = "print 'Wrote %s' % output_filename"


def extract(dest):
    """Writes parse_log.py and extract_seconds.py into `dest`; returns parse_log.py's path."""
    dest = Path(dest)
    with tarfile.open(_sdist_path()) as tar:
        for name in ("parse_log.py", "extract_seconds.py"):
            source = tar.extractfile(f"{_MEMBER_DIR}/{name}").read().decode()
            if name == "parse_log.py":
                if _PY2_PRINT not in source:
                    raise RuntimeError(f"{_MEMBER_DIR}/parse_log.py changed: no Python 2 print")
                source = source.replace(_PY2_PRINT, "print('Wrote %s' % output_filename)")
            (dest / name).write_text(source)
    return dest / "parse_log.py"


def run(script, log, outdir):
    """Runs `parse_log.py LOG OUTDIR` as a user would; returns (train rows, test rows), each a
    list of dicts as csv.DictReader reads LOG.train and LOG.test (empty if not written)."""
    subprocess.run([sys.executable, "-W", "ignore", str(script), str(log), str(outdir)],
                   check=True, capture_output=True, text=True, cwd=Path(script).parent)
    return tuple(read_csv(Path(outdir) / f"{Path(log).name}.{kind}") for kind in ("train", "test"))


def read_csv(path):
    if not Path(path).exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load(script):
    """parse_log.py as a module (its parse_log and save_csv_files functions), for timing in
    the same process as our parser."""
    sys.path.insert(0, str(Path(script).parent))      # parse_log.py imports extract_seconds
    try:
        spec = importlib.util.spec_from_file_location("caffe_parse_log", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(Path(script).parent))
    return module
