"""The project as the tests see it: where things are, and running one of its commands."""
import subprocess
import sys

from sepnets import paths

REPO = paths.REPO
NETS = REPO / "tests" / "nets"      # the tests' own small nets
AUTHORS = paths.authors()           # the SEP-Nets authors' prototxts, solvers and log


def run_tool(*argv, cwd=None, check=False):
    """Runs a project command with the test's python; returns the CompletedProcess."""
    cmd = [sys.executable] + [str(a) for a in argv]
    return subprocess.run(cmd, cwd=cwd or REPO, capture_output=True, text=True, check=check)


def tool(name):
    """Path of a command script: quant_pattern.py at the top, the others in tools/."""
    top = REPO / name
    return top if top.exists() else REPO / "tools" / name

